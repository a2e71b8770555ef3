"""The OpenAI drop-in client and adapters, driven through the real openai SDK over HTTP."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from cachesaver import CacheMissError, InvalidRequestError, OnlineAPI, Request
from cachesaver.models import (
    ChatRequest,
    ChoiceFlags,
    UncachedPathError,
    cache_flags,
    sample_text,
)
from cachesaver.models.openai import (
    CHAT_NOT_IN_KEY,
    AsyncOpenAI,
    OpenAIEmbeddingModel,
    OpenAIModel,
)
from cachesaver.pipelines import LocalAPI
from cachesaver.testing.server import FakeLLMServer

MESSAGES = [{"role": "user", "content": "What is the meaning of life?"}]
_SDK_CHAT_PARAMS = frozenset(
    inspect.signature(openai.resources.chat.completions.AsyncCompletions.create).parameters
)


def NEWER(name: str, value: Any) -> dict[str, Any]:
    """``{name: value}`` if the installed SDK takes that parameter (CI tests old SDKs too)."""
    return {name: value} if name in _SDK_CHAT_PARAMS else {}


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(error_retry_after=0.005) as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


def client_for(server: FakeLLMServer, cache: str, **options: Any) -> AsyncOpenAI:
    options.setdefault("max_retries", 2)
    return AsyncOpenAI(cache=cache, base_url=server.openai_base_url, api_key="test", **options)


def sdk_for(server: FakeLLMServer, **options: Any) -> openai.AsyncOpenAI:
    options.setdefault("max_retries", 2)
    return openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="test", **options)


def texts(completion: ChatCompletion) -> list[str | None]:
    return [choice.message.content for choice in completion.choices]


def chat_requests(server: FakeLLMServer) -> list[dict[str, Any]]:
    return [r.body for r in server.received if r.path.endswith("/chat/completions")]


# -- drop-in basics --------------------------------------------------------------------


async def test_dropin_replays_in_a_new_client_with_zero_http_calls(
    server: FakeLLMServer, cache: str
) -> None:
    """A new client over the same cache replays every answer without any HTTP request."""
    async with client_for(server, cache) as client:
        first = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=3, temperature=0.7, namespace="run"
        )
        second = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=3, temperature=0.7, namespace="run"
        )
    assert isinstance(first, ChatCompletion)
    assert texts(first) != texts(second)  # fresh draws within a namespace
    sent = server.stats()["requests"]
    async with client_for(server, cache) as client:
        again_first = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=3, temperature=0.7, namespace="run"
        )
        again_second = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=3, temperature=0.7, namespace="run"
        )
    assert server.stats()["requests"] == sent
    assert texts(again_first) == texts(first)
    assert texts(again_second) == texts(second)
    assert cache_flags(again_first) == [ChoiceFlags(True, False)] * 3
    assert again_first.usage is not None and again_first.usage.total_tokens == 0


async def test_namespaces_reuse_samples_and_draw_fresh_within_one(
    server: FakeLLMServer, cache: str
) -> None:
    """Namespace B reuses what namespace A paid for; a repeat inside A draws fresh samples."""
    async with client_for(server, cache) as client:
        a1 = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=2, namespace="A"
        )
        b1 = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=2, namespace="B"
        )
        assert server.stats()["chat_requests"] == 1
        a2 = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=2, namespace="A"
        )
    assert texts(b1) == texts(a1)
    assert set(texts(a2)).isdisjoint(texts(a1))
    assert server.stats()["chat_requests"] == 2


async def test_client_default_namespace_is_used_and_overridable(
    server: FakeLLMServer, cache: str
) -> None:
    """The client's namespace applies to calls without one; a per-call namespace wins."""
    async with client_for(server, cache, namespace="shared") as client:
        default = await client.chat.completions.create(model="fake-chat", messages=MESSAGES)
        explicit = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="shared"
        )
        other = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="other"
        )
    assert texts(explicit) != texts(default)  # the second draw of namespace "shared"
    assert texts(other) == texts(default)  # namespace "other" starts at sample 0


async def test_n_choices_are_indexed_and_flagged(server: FakeLLMServer, cache: str) -> None:
    """n=3 gives choices 0..2 from one API call, flagged with the prompt paid once."""
    async with client_for(server, cache) as client:
        completion = await client.chat.completions.create(model="fake-chat", messages=MESSAGES, n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert chat_requests(server)[0]["n"] == 3
    assert cache_flags(completion) == [
        ChoiceFlags(False, False),
        ChoiceFlags(False, True),
        ChoiceFlags(False, True),
    ]
    assert completion.choices[1].cached is False  # type: ignore[attr-defined]
    assert completion.choices[1].duplicated is True  # type: ignore[attr-defined]
    stats = server.stats()
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == stats["prompt_tokens"]
    assert completion.usage.completion_tokens == stats["completion_tokens"]


async def test_partial_reuse_asks_only_for_missing_samples(
    server: FakeLLMServer, cache: str
) -> None:
    """n=5 with 2 samples cached sends n=3 and pays only for the 3 new samples."""
    async with client_for(server, cache) as client:
        two = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=2, namespace="A"
        )
        before = server.stats()
        five = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=5, namespace="B"
        )
    after = server.stats()
    assert chat_requests(server)[-1]["n"] == 3
    assert texts(five)[:2] == texts(two)
    assert [c.index for c in five.choices] == [0, 1, 2, 3, 4]
    assert [f.cached for f in cache_flags(five)] == [True, True, False, False, False]
    assert five.usage is not None
    assert five.usage.completion_tokens == after["completion_tokens"] - before["completion_tokens"]
    assert five.usage.prompt_tokens == after["prompt_tokens"] - before["prompt_tokens"] > 0


async def test_concurrent_identical_calls_are_merged(server: FakeLLMServer, cache: str) -> None:
    """Identical calls issued together make one API call with their n summed."""
    async with client_for(server, cache) as client:
        answers = await asyncio.gather(
            *(
                client.chat.completions.create(model="fake-chat", messages=MESSAGES, n=1)
                for _ in range(3)
            )
        )
    assert server.stats()["chat_requests"] == 1
    assert chat_requests(server)[0]["n"] == 3
    contents = [texts(a)[0] for a in answers]
    assert len(set(contents)) == 3
    assert [cache_flags(a)[0] for a in answers] == [
        ChoiceFlags(False, False),
        ChoiceFlags(False, True),
        ChoiceFlags(False, True),
    ]
    prompt_paid = [a.usage.prompt_tokens for a in answers if a.usage is not None]
    assert prompt_paid[0] > 0 and prompt_paid[1:] == [0, 0]


# -- errors ----------------------------------------------------------------------------


async def test_rate_limit_is_retried_by_the_sdk(server: FakeLLMServer, cache: str) -> None:
    """A 429 followed by success is retried by the SDK; the caller sees only the answer."""
    server.fail_next(429)
    async with client_for(server, cache) as client:
        completion = await client.chat.completions.create(model="fake-chat", messages=MESSAGES)
    assert len(completion.choices) == 1
    stats = server.stats()
    assert (stats["chat_requests"], stats["failed"]) == (2, 1)


async def test_server_error_after_retries_consumes_no_sample(
    server: FakeLLMServer, cache: str
) -> None:
    """A 500 that exhausts the SDK's retries raises its own error and consumes nothing."""
    server.fail_next(500, count=3)
    async with client_for(server, cache, max_retries=2) as client:
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(
                model="fake-chat", messages=MESSAGES, namespace="A"
            )
        assert server.stats()["failed"] == 3
        after = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="A"
        )
        first_of_b = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="B"
        )
    assert texts(first_of_b) == texts(after)  # the retried call got sample 0
    assert cache_flags(first_of_b) == [ChoiceFlags(True, False)]


async def test_bad_request_is_the_sdks_error_and_not_retried(
    server: FakeLLMServer, cache: str
) -> None:
    """A 400 reaches the caller as openai.BadRequestError after a single HTTP request."""
    server.fail_next(400, message="bad parameter")
    async with client_for(server, cache) as client:
        with pytest.raises(openai.BadRequestError, match="bad parameter"):
            await client.chat.completions.create(model="fake-chat", messages=MESSAGES)
        ok = await client.chat.completions.create(model="fake-chat", messages=MESSAGES)
    assert server.stats()["chat_requests"] == 2
    assert cache_flags(ok) == [ChoiceFlags(False, False)]


# -- keys ------------------------------------------------------------------------------


async def test_cachesaver_keywords_are_never_sent(server: FakeLLMServer, cache: str) -> None:
    """namespace and request_id stay in cachesaver; a live stream always asks for usage."""
    async with client_for(server, cache) as client:
        await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="ns", request_id="q-17"
        )
        stream = await client.chat.completions.create(
            model="fake-chat",
            messages=MESSAGES,
            namespace="ns",
            request_id="q-18",
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _ in stream:
            pass
    bodies = chat_requests(server)
    assert len(bodies) == 2
    for body in bodies:
        assert not {"namespace", "request_id"} & set(body)
    assert not bodies[0].get("stream")
    # A fresh stream streams live; usage is always asked for (it is what the call paid).
    assert bodies[1]["stream"] is True
    assert bodies[1]["stream_options"] == {"include_usage": True}


async def test_non_output_parameters_are_sent_but_not_in_the_key(
    server: FakeLLMServer, cache: str
) -> None:
    """user, store, metadata, service_tier, headers and timeout are sent but not keyed."""
    async with client_for(server, cache) as client:
        first = await client.chat.completions.create(
            model="fake-chat",
            messages=MESSAGES,
            namespace="A",
            user="alice",
            store=False,
            metadata={"run": "1"},
            service_tier="auto",
            **NEWER("prompt_cache_key", "k1"),
            extra_headers={"X-Trace": "abc"},
            timeout=30,
        )
    body = chat_requests(server)[0]
    assert body["user"] == "alice" and body["metadata"] == {"run": "1"}
    assert server.received[0].headers["x-trace"] == "abc"
    async with client_for(server, cache) as client:
        second = await client.chat.completions.create(
            model="fake-chat",
            messages=MESSAGES,
            namespace="A",
            user="bob",
            store=True,
            service_tier="flex",
            **NEWER("prompt_cache_key", "k2"),
            extra_headers={"X-Trace": "xyz"},
            timeout=5,
        )
    assert server.stats()["chat_requests"] == 1
    assert texts(second) == texts(first)
    assert {"user", "store", "service_tier", "extra_headers", "timeout"} <= CHAT_NOT_IN_KEY


@pytest.mark.parametrize(
    ("name", "a", "b"),
    [
        ("temperature", 0.2, 0.9),
        ("top_p", 0.5, 0.9),
        ("seed", 1, 2),
        ("max_tokens", 5, 6),
        ("max_completion_tokens", 5, 6),
        ("stop", ["x"], ["y"]),
        ("presence_penalty", 0.0, 0.5),
        ("frequency_penalty", 0.0, 0.5),
        ("logit_bias", {"1": 1}, {"1": 2}),
        ("response_format", {"type": "text"}, {"type": "json_object"}),
        ("reasoning_effort", "low", "high"),
        ("extra_body", {"x": 1}, {"x": 2}),
    ],
)
async def test_output_parameters_are_in_the_key(
    server: FakeLLMServer, cache: str, name: str, a: Any, b: Any
) -> None:
    """Changing a parameter that can change the output makes a new API call."""
    async with client_for(server, cache) as client:
        await client.chat.completions.create(model="fake-chat", messages=MESSAGES, **{name: a})
        await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="other", **{name: b}
        )
    assert server.stats()["chat_requests"] == 2
    sent = chat_requests(server)[0]
    if name == "extra_body":
        assert sent["x"] == 1  # extra_body is merged into the JSON body by the SDK
    else:
        assert sent[name] == a


async def test_unknown_parameter_is_refused_with_advice(server: FakeLLMServer, cache: str) -> None:
    """A keyword the SDK does not know is refused before any call, pointing to extra_body."""
    async with client_for(server, cache) as client:
        with pytest.raises(TypeError, match=r"'top_k'.*extra_body"):
            await client.chat.completions.create(model="fake-chat", messages=MESSAGES, top_k=3)
        with pytest.raises(InvalidRequestError, match="messages"):
            await client.chat.completions.create(model="fake-chat", messages=[])
        with pytest.raises(InvalidRequestError, match="'n'"):
            await client.chat.completions.create(model="fake-chat", messages=MESSAGES, n=0)
    assert server.stats()["requests"] == 0


async def test_two_models_on_one_cache_never_mix(server: FakeLLMServer, cache: str) -> None:
    """The same messages to two models are two keys; a replay gives each its own samples."""
    async with client_for(server, cache) as client:
        small = await client.chat.completions.create(model="small", messages=MESSAGES, n=2)
        large = await client.chat.completions.create(model="large", messages=MESSAGES, n=2)
    assert server.stats()["chat_requests"] == 2
    assert texts(small) != texts(large)
    async with client_for(server, cache) as client:
        assert texts(
            await client.chat.completions.create(model="large", messages=MESSAGES, n=2)
        ) == texts(large)
        assert texts(
            await client.chat.completions.create(model="small", messages=MESSAGES, n=2)
        ) == texts(small)
    assert server.stats()["chat_requests"] == 2


async def test_message_objects_from_an_answer_are_accepted(
    server: FakeLLMServer, cache: str
) -> None:
    """An assistant message object taken from an answer can be sent back as history."""
    async with client_for(server, cache) as client:
        first = await client.chat.completions.create(model="fake-chat", messages=MESSAGES)
        history = [*MESSAGES, first.choices[0].message, {"role": "user", "content": "Why?"}]
        second = await client.chat.completions.create(model="fake-chat", messages=history)
    sent = chat_requests(server)[1]["messages"]
    assert sent[1]["content"] == first.choices[0].message.content
    assert len(second.choices) == 1


# -- streams, tools, embeddings --------------------------------------------------------


async def test_stream_replays_fresh_and_cached_answers(server: FakeLLMServer, cache: str) -> None:
    """stream=True yields SDK chunks of the stored answer, fresh or cached, never uncached."""
    async with client_for(server, cache) as client:
        stream = await client.chat.completions.create(
            model="fake-chat",
            messages=MESSAGES,
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces: dict[int, str] = {0: "", 1: ""}
        finish: dict[int, str | None] = {}
        usage = None
        async with stream:
            async for chunk in stream:
                assert isinstance(chunk, ChatCompletionChunk)
                if not chunk.choices:
                    usage = chunk.usage
                for choice in chunk.choices:
                    pieces[choice.index] += choice.delta.content or ""
                    if choice.finish_reason:
                        finish[choice.index] = choice.finish_reason
    assert server.stats()["chat_requests"] == 1
    assert usage is not None and usage.completion_tokens > 0
    async with client_for(server, cache) as client:
        replay = await client.chat.completions.create(model="fake-chat", messages=MESSAGES, n=2)
        cached_stream = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=2, stream=True, namespace="other"
        )
        replayed = [chunk async for chunk in cached_stream]
    assert server.stats()["chat_requests"] == 1
    assert [pieces[0], pieces[1]] == texts(replay)
    assert set(finish) == {0, 1}
    assert cache_flags(cached_stream.completion) == [ChoiceFlags(True, False)] * 2
    assert all(chunk.usage is None for chunk in replayed)


async def test_tool_calls_are_stored_and_replayed(server: FakeLLMServer, cache: str) -> None:
    """A tool-call answer replays with the same tool calls and finish reason."""
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    async with client_for(server, cache) as client:
        first = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, tools=tools, tool_choice="required"
        )
    async with client_for(server, cache) as client:
        again = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, tools=tools, tool_choice="required"
        )
    calls = again.choices[0].message.tool_calls
    assert calls is not None and first.choices[0].message.tool_calls == calls
    assert again.choices[0].finish_reason == "tool_calls"
    assert server.stats()["chat_requests"] == 1


async def test_embeddings_send_only_unknown_inputs(server: FakeLLMServer, cache: str) -> None:
    """A list of 3 known and 2 new inputs calls the API with just the 2 new ones."""
    async with client_for(server, cache) as client:
        known = await client.embeddings.create(model="fake-embed", input=["a", "b", "c"])
        mixed = await client.embeddings.create(
            model="fake-embed", input=["a", "new one", "b", "c", "another"]
        )
        same = await client.embeddings.create(model="fake-embed", input=["c", "a"])
    bodies = [r.body for r in server.received]
    assert [b["input"] for b in bodies] == [["a", "b", "c"], ["new one", "another"]]
    assert [d.index for d in mixed.data] == [0, 1, 2, 3, 4]
    assert mixed.data[0].embedding == known.data[0].embedding
    assert mixed.data[3].embedding == known.data[2].embedding
    assert mixed.usage.prompt_tokens == 3  # "new one" + "another", as the server counts
    assert same.usage.prompt_tokens == 0 and same.data[1].embedding == known.data[0].embedding
    async with sdk_for(server) as sdk:
        direct = await sdk.embeddings.create(model="fake-embed", input=["another"])
    assert mixed.data[4].embedding == direct.data[0].embedding


async def test_embeddings_dedupe_inputs_and_honour_base64(
    server: FakeLLMServer, cache: str
) -> None:
    """Repeated inputs are embedded once; encoding_format='base64' returns base64 strings."""
    async with client_for(server, cache) as client:
        floats = await client.embeddings.create(model="fake-embed", input=["x", "x", "y"])
        encoded = await client.embeddings.create(
            model="fake-embed", input="x", encoding_format="base64", namespace="ignored"
        )
    assert server.received[0].body["input"] == ["x", "y"]
    assert floats.data[0].embedding == floats.data[1].embedding
    assert isinstance(encoded.data[0].embedding, str)
    assert server.stats()["embedding_requests"] == 1


# -- pipeline adapters -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Sampling(Request):
    temperature: float = 1.0
    max_completion_tokens: int | None = None
    stop: list[str] | None = None
    top_p: float | None = None
    seed: int | None = None


async def test_openai_model_maps_request_fields_to_parameters(
    server: FakeLLMServer, cache: str
) -> None:
    """Request subclass fields are sent as API parameters; text samples come back."""
    async with sdk_for(server) as sdk:
        model = OpenAIModel(sdk, "fake-chat")
        async with OnlineAPI(model, cache=cache) as pipeline:
            response = await pipeline.request(
                Sampling(
                    "Hi",
                    n=2,
                    temperature=0.3,
                    max_completion_tokens=50,
                    stop=["END"],
                    top_p=0.9,
                    seed=4,
                )
            )
    body = chat_requests(server)[0]
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert {
        k: body[k] for k in ("temperature", "max_completion_tokens", "stop", "top_p", "seed", "n")
    } == {
        "temperature": 0.3,
        "max_completion_tokens": 50,
        "stop": ["END"],
        "top_p": 0.9,
        "seed": 4,
        "n": 2,
    }
    assert all(isinstance(text, str) for text in response.data)
    assert model.identity == {
        "provider": "openai",
        "endpoint": "chat.completions",
        "model": "fake-chat",
        "base_url": server.openai_base_url,
        "sample": "text",
    }
    assert model.usage.calls == 1 and model.usage.completion_tokens > 0


async def test_full_samples_share_the_cache_with_the_dropin(
    server: FakeLLMServer, cache: str
) -> None:
    """A sample="full" adapter with ChatRequest reads what the drop-in client stored."""
    async with client_for(server, cache) as client:
        dropin = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=2, temperature=0.5, namespace="x"
        )
    async with sdk_for(server) as sdk:
        model = OpenAIModel(sdk, "fake-chat", sample="full")
        async with OnlineAPI(model, cache=cache) as pipeline:
            response = await pipeline.request(
                ChatRequest(MESSAGES, n=2, temperature=0.5, namespace="y")
            )
    assert server.stats()["chat_requests"] == 1
    assert [sample_text(s) for s in response.data] == texts(dropin)
    assert response.cached == [True, True]
    sample = response.data[0]
    assert sample["prompt_tokens"] is not None and sample["choice"]["finish_reason"]


async def test_text_and_full_adapters_never_mix_samples(server: FakeLLMServer, cache: str) -> None:
    """Adapters storing different sample kinds have different identities and keys."""
    async with sdk_for(server) as sdk:
        async with OnlineAPI(OpenAIModel(sdk, "fake-chat"), cache=cache) as pipeline:
            text = await pipeline.request(Request("Hi"))
        async with OnlineAPI(OpenAIModel(sdk, "fake-chat", sample="full"), cache=cache) as p:
            full = await p.request(Request("Hi"))
    assert isinstance(text.data[0], str) and isinstance(full.data[0], dict)
    assert server.stats()["chat_requests"] == 2


async def test_adapter_refuses_fields_that_are_not_parameters(
    server: FakeLLMServer, cache: str
) -> None:
    """A request field that is not an API parameter is an error naming it, unless ignored."""

    @dataclass(frozen=True, kw_only=True)
    class Tagged(Request):
        task: str | None = None

    async with sdk_for(server) as sdk:
        async with OnlineAPI(OpenAIModel(sdk, "fake-chat"), cache=cache) as pipeline:
            with pytest.raises(InvalidRequestError, match=r"'task'.*ignore_fields"):
                await pipeline.request(Tagged("Hi", task="t1"))
            assert await pipeline.request(Tagged("Hi"))  # unset fields are fine
        model = OpenAIModel(sdk, "fake-chat", ignore_fields=["task"])
        async with OnlineAPI(model, cache=cache) as pipeline:
            await pipeline.request(Tagged("Hi", task="t1"))
    assert "task" not in chat_requests(server)[-1]
    with pytest.raises(ValueError, match="call_options"):
        OpenAIModel(sdk, "fake-chat", call_options={"temperature": 0})


async def test_max_concurrency_bounds_api_calls(server: FakeLLMServer, cache: str) -> None:
    """max_concurrency caps the API calls in flight at once."""
    server.latency = 0.05
    async with client_for(server, cache, max_concurrency=2) as client:
        await asyncio.gather(
            *(
                client.chat.completions.create(
                    model="fake-chat", messages=[{"role": "user", "content": f"q{i}"}]
                )
                for i in range(6)
            )
        )
    stats = server.stats()
    assert stats["chat_requests"] == 6 and stats["max_in_flight"] == 2


async def test_replay_mode_never_calls_the_api(server: FakeLLMServer, cache: str) -> None:
    """mode='replay' serves cached answers and raises CacheMissError for the rest."""
    async with client_for(server, cache) as client:
        stored = await client.chat.completions.create(model="fake-chat", messages=MESSAGES)
    async with client_for(server, cache, mode="replay") as client:
        again = await client.chat.completions.create(model="fake-chat", messages=MESSAGES)
        with pytest.raises(CacheMissError):
            await client.chat.completions.create(model="fake-chat", messages=MESSAGES)
    assert texts(again) == texts(stored)
    assert server.stats()["chat_requests"] == 1


async def test_embedding_adapter_batches_a_pipeline(server: FakeLLMServer, cache: str) -> None:
    """OpenAIEmbeddingModel under LocalAPI embeds a whole batch with one API call."""
    from cachesaver import Batch
    from cachesaver.models import EmbeddingRequest

    async with sdk_for(server) as sdk:
        model = OpenAIEmbeddingModel(sdk, "fake-embed")
        async with LocalAPI(model, cache=cache, batch_size=8) as pipeline:
            responses = await pipeline.batch_request(
                Batch([EmbeddingRequest(w, dimensions=4) for w in ("a", "b", "c")])
            )
    assert [len(r.data[0]["embedding"]) for r in responses] == [4, 4, 4]
    assert server.stats()["embedding_requests"] == 1
    assert server.received[0].body["dimensions"] == 4


async def test_uncached_sdk_paths_are_refused_and_settings_read_through(
    server: FakeLLMServer, cache: str
) -> None:
    """Uncached SDK resources are refused naming client.sdk; settings read through."""
    async with client_for(server, cache) as client:
        with pytest.raises(UncachedPathError, match=r"client\.sdk\.models"):
            _ = client.models
        page = await client.sdk.models.list()
        assert [m.id for m in page.data] == ["fake-chat", "fake-embed"]
        assert client.max_retries == 2 and str(client.base_url) == server.openai_base_url + "/"
    assert server.stats()["requests"] == 0  # models.list is not an API request it counts
    with pytest.raises(TypeError, match="sdk_client"):
        AsyncOpenAI(cache=cache, sdk_client=client.sdk, api_key="x")
    with pytest.raises(ValueError, match="batch_timeout"):
        AsyncOpenAI(cache=cache, api_key="x", batch_timeout=-1)


async def test_provider_returning_fewer_choices_is_asked_again(cache: str) -> None:
    """When a provider caps n, the adapter asks again for the missing choices."""
    with FakeLLMServer(max_choices=2) as capped:
        async with client_for(capped, cache) as client:
            completion = await client.chat.completions.create(
                model="fake-chat", messages=MESSAGES, n=5
            )
        assert [body.get("n", 1) for body in chat_requests(capped)] == [5, 3, 1]
        paid = capped.stats()
    assert [c.index for c in completion.choices] == [0, 1, 2, 3, 4]
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == paid["prompt_tokens"]
    assert completion.usage.completion_tokens == paid["completion_tokens"]
    assert len(set(texts(completion))) == 5
    flags = cache_flags(completion)
    # Each extra call paid its prompt again: its first choice is not duplicated.
    assert [f.duplicated for f in flags] == [False, True, False, True, False]


async def test_non_json_parameter_values_are_refused(server: FakeLLMServer, cache: str) -> None:
    """A class or other non-JSON value as a parameter is refused, naming the parameter."""

    class Answer:
        pass

    async with client_for(server, cache) as client:
        with pytest.raises(InvalidRequestError, match=r"response_format is the class .*Answer"):
            await client.chat.completions.create(
                model="fake-chat", messages=MESSAGES, response_format=Answer
            )
        with pytest.raises(InvalidRequestError, match="temperature"):
            await client.chat.completions.create(
                model="fake-chat", messages=MESSAGES, temperature=float("nan")
            )
        with pytest.raises(TypeError, match="stream must be"):
            await client.chat.completions.create(
                model="fake-chat",
                messages=MESSAGES,
                stream="yes",  # type: ignore[call-overload]
            )
    assert server.stats()["requests"] == 0


async def test_close_waits_for_calls_in_flight_and_then_refuses(
    server: FakeLLMServer, cache: str
) -> None:
    """close() lets calls in flight finish; a call after close is a PipelineClosedError."""
    from cachesaver import PipelineClosedError

    server.latency = 0.1
    client = client_for(server, cache)
    call = asyncio.ensure_future(
        client.chat.completions.create(model="fake-chat", messages=MESSAGES)
    )
    await asyncio.sleep(0.02)
    await client.close()
    assert len((await call).choices) == 1
    with pytest.raises(PipelineClosedError):
        await client.chat.completions.create(model="fake-chat", messages=MESSAGES)


async def test_cancelled_call_still_stores_what_the_api_returned(
    server: FakeLLMServer, cache: str
) -> None:
    """A call cancelled mid-flight consumes nothing, and the paid-for answer is kept."""
    server.latency = 0.1
    async with client_for(server, cache) as client:
        call = asyncio.ensure_future(
            client.chat.completions.create(model="fake-chat", messages=MESSAGES, namespace="A")
        )
        for _ in range(1000):  # cancel only once the API has the request (bounded wait)
            if server.stats()["chat_requests"]:
                break
            await asyncio.sleep(0.005)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        again = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="A"
        )
    assert server.stats()["chat_requests"] == 1
    assert cache_flags(again) == [ChoiceFlags(True, False)]
