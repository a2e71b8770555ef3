"""The Together drop-in client and adapters, driven through the real together SDK over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import together
from together.types.chat.chat_completion import ChatCompletion
from together.types.chat.chat_completion_chunk import ChatCompletionChunk
from together.types.embedding import Embedding

from cachesaver import OnlineAPI, Request
from cachesaver.models import ChatRequest, ChoiceFlags, cache_flags, sample_text
from cachesaver.models.openai import AsyncOpenAI
from cachesaver.models.together import CHAT_NOT_IN_KEY, AsyncTogether, TogetherModel
from cachesaver.testing.server import FakeLLMServer

MODEL = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
MESSAGES = [{"role": "user", "content": "Name a prime number."}]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(error_retry_after=0.005) as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


def client_for(server: FakeLLMServer, cache: str, **options: Any) -> AsyncTogether:
    options.setdefault("max_retries", 2)
    return AsyncTogether(cache=cache, base_url=server.url, api_key="test", **options)


def texts(completion: ChatCompletion) -> list[str | None]:
    return [c.message.content if c.message else None for c in completion.choices]


def chat_bodies(server: FakeLLMServer) -> list[dict[str, Any]]:
    return [r.body for r in server.received if r.path.endswith("/chat/completions")]


async def test_dropin_replays_in_a_new_client_with_zero_http_calls(
    server: FakeLLMServer, cache: str
) -> None:
    """A new AsyncTogether over the same cache replays answers without HTTP requests."""
    async with client_for(server, cache) as client:
        first = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, n=2, temperature=0.8, top_k=40, namespace="run"
        )
    assert isinstance(first, ChatCompletion)
    assert [c.index for c in first.choices] == [0, 1]
    assert cache_flags(first) == [ChoiceFlags(False, False), ChoiceFlags(False, True)]
    async with client_for(server, cache) as client:
        again = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, n=2, temperature=0.8, top_k=40, namespace="run"
        )
    assert texts(again) == texts(first)
    assert server.stats()["chat_requests"] == 1
    assert again.usage is not None and again.usage.total_tokens == 0


async def test_partial_reuse_and_merging(server: FakeLLMServer, cache: str) -> None:
    """n=4 with 1 sample cached sends n=3; identical concurrent calls share one API call."""
    async with client_for(server, cache) as client:
        one = await client.chat.completions.create(model=MODEL, messages=MESSAGES, namespace="A")
        four = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, n=4, namespace="B"
        )
        assert chat_bodies(server)[-1]["n"] == 3
        assert texts(four)[0] == texts(one)[0]
        merged = await asyncio.gather(
            *(
                client.chat.completions.create(model=MODEL, messages=MESSAGES, namespace="C")
                for _ in range(6)
            )
        )
    assert chat_bodies(server)[-1]["n"] == 2  # C reuses B's 4 samples, then 2 fresh
    assert [cache_flags(m)[0].cached for m in merged] == [True] * 4 + [False] * 2
    assert server.stats()["chat_requests"] == 3


async def test_together_parameters_are_in_the_key(server: FakeLLMServer, cache: str) -> None:
    """top_k, repetition_penalty and min_p change the key; compliance does not."""
    async with client_for(server, cache) as client:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, top_k=10)
        await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, top_k=20, namespace="x"
        )
        await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, repetition_penalty=1.1, min_p=0.05, namespace="x"
        )
        assert server.stats()["chat_requests"] == 3
        await client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            top_k=10,
            compliance="hipaa",
            namespace="y",
            extra_headers={"X-Request": "1"},
        )
    assert server.stats()["chat_requests"] == 3
    assert "compliance" in CHAT_NOT_IN_KEY
    assert chat_bodies(server)[0]["top_k"] == 10


async def test_keywords_never_sent_and_unknown_parameters_refused(
    server: FakeLLMServer, cache: str
) -> None:
    """namespace/request_id are not sent; an OpenAI-only parameter is a TypeError."""
    async with client_for(server, cache) as client:
        await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, namespace="n1", request_id="r1"
        )
        with pytest.raises(TypeError, match="max_completion_tokens"):
            await client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_completion_tokens=5
            )
    body = chat_bodies(server)[0]
    assert not {"namespace", "request_id"} & set(body)
    assert server.stats()["requests"] == 1


async def test_rate_limit_then_success(server: FakeLLMServer, cache: str) -> None:
    """A 429 is retried by the together SDK and the call succeeds."""
    server.fail_next(429, count=2)
    async with client_for(server, cache) as client:
        completion = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert len(completion.choices) == 1
    assert (server.stats()["chat_requests"], server.stats()["failed"]) == (3, 2)


async def test_server_error_exhausting_retries_consumes_nothing(
    server: FakeLLMServer, cache: str
) -> None:
    """A 500 past max_retries raises together.InternalServerError and consumes no sample."""
    server.fail_next(500, count=2)
    async with client_for(server, cache, max_retries=1) as client:
        with pytest.raises(together.InternalServerError):
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, namespace="A")
        after = await client.chat.completions.create(model=MODEL, messages=MESSAGES, namespace="A")
        other = await client.chat.completions.create(model=MODEL, messages=MESSAGES, namespace="B")
    assert texts(other) == texts(after)
    assert cache_flags(other) == [ChoiceFlags(True, False)]


async def test_embeddings_partial_reuse(server: FakeLLMServer, cache: str) -> None:
    """Together embeddings send only inputs that are not cached yet."""
    async with client_for(server, cache) as client:
        first = await client.embeddings.create(model="BAAI/bge-base-en-v1.5", input=["a", "b"])
        second = await client.embeddings.create(
            model="BAAI/bge-base-en-v1.5", input=["b", "c", "a"]
        )
    assert isinstance(second, Embedding)
    assert [r.body["input"] for r in server.received] == [["a", "b"], ["c"]]
    assert second.data[0].embedding == first.data[1].embedding
    assert second.data[2].embedding == first.data[0].embedding


async def test_stream_is_replayed_from_the_cache(server: FakeLLMServer, cache: str) -> None:
    """stream=True yields together chunks whose content is the stored answer."""
    async with client_for(server, cache) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        chunks = [chunk async for chunk in stream]
        plain = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, namespace="other"
        )
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == texts(plain)[0]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert server.stats()["chat_requests"] == 1


@dataclass(frozen=True, kw_only=True)
class TogetherSampling(Request):
    temperature: float = 0.7
    top_k: int | None = None
    max_tokens: int | None = None


async def test_together_model_in_a_pipeline(server: FakeLLMServer, cache: str) -> None:
    """TogetherModel maps request fields to parameters and declares its identity."""
    async with together.AsyncTogether(base_url=server.url, api_key="test") as sdk:
        model = TogetherModel(sdk, MODEL, max_concurrency=4)
        async with OnlineAPI(model, cache=cache) as pipeline:
            response = await pipeline.request(
                TogetherSampling("Hello", n=3, top_k=5, max_tokens=100)
            )
    body = chat_bodies(server)[0]
    assert (body["top_k"], body["max_tokens"], body["n"], body["temperature"]) == (5, 100, 3, 0.7)
    assert len(response.data) == 3 and all(isinstance(t, str) for t in response.data)
    assert model.identity["provider"] == "together"
    assert model.identity["model"] == MODEL


async def test_providers_sharing_a_cache_never_mix(server: FakeLLMServer, cache: str) -> None:
    """OpenAI and Together clients on one cache and one model name keep separate samples."""
    async with client_for(server, cache) as tg:
        a = await tg.chat.completions.create(model="shared", messages=MESSAGES)
    async with AsyncOpenAI(cache=cache, base_url=server.openai_base_url, api_key="t") as oa:
        b = await oa.chat.completions.create(model="shared", messages=MESSAGES)
    assert server.stats()["chat_requests"] == 2
    assert cache_flags(b) == [ChoiceFlags(False, False)]
    assert a.choices[0].message is not None


async def test_full_samples_from_together(server: FakeLLMServer, cache: str) -> None:
    """sample="full" stores the whole choice with its token share."""
    async with together.AsyncTogether(base_url=server.url, api_key="test") as sdk:
        model = TogetherModel(sdk, MODEL, sample="full")
        async with OnlineAPI(model, cache=cache) as pipeline:
            response = await pipeline.request(ChatRequest(MESSAGES, n=2))
    shares = [s["completion_tokens"] for s in response.data]
    assert sum(s or 0 for s in shares) == server.stats()["completion_tokens"]
    assert all(sample_text(s) for s in response.data)
