"""The drop-in clients' whole surface: nothing reaches the API uncached without saying so."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cachesaver import CacheMissError, InvalidRequestError
from cachesaver.manifest import read_manifest
from cachesaver.models import (
    CachedRawResponse,
    ChoiceFlags,
    DropInOptionError,
    UncachedPathError,
    cache_flags,
)
from cachesaver.models.openai import AsyncOpenAI
from cachesaver.models.together import AsyncTogether
from cachesaver.testing.server import FakeLLMServer

MESSAGES = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(error_retry_after=0.005) as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


def openai_client(server: FakeLLMServer, cache: str, **options: Any) -> AsyncOpenAI:
    options.setdefault("max_retries", 1)
    return AsyncOpenAI(cache=cache, base_url=server.openai_base_url, api_key="t", **options)


def together_client(server: FakeLLMServer, cache: str, **options: Any) -> AsyncTogether:
    options.setdefault("max_retries", 1)
    return AsyncTogether(cache=cache, base_url=server.url, api_key="t", **options)


def texts(completion: Any) -> list[str | None]:
    return [c.message.content for c in completion.choices]


# -- nothing silent ------------------------------------------------------------------------

UNCACHED_OPENAI = [
    "models",
    "files",
    "batches",
    "images",
    "audio",
    "moderations",
    "completions",
    "fine_tuning",
    "vector_stores",
    "get",
    "post",
    "request",
    "with_streaming_response",
    "chat.completions.stream",
    "chat.completions.list",
    "chat.completions.retrieve",
    "chat.completions.messages",
    "chat.completions.with_streaming_response",
    "chat.something_new",
    "embeddings.with_streaming_response",
    "responses.retrieve",
    "responses.parse",
    "responses.stream",
    "responses.input_items",
    "beta.assistants",
    "beta.threads",
    "beta.chat.completions.stream",
    "with_raw_response.models",
    "with_raw_response.chat.completions.list",
]


@pytest.mark.parametrize("path", UNCACHED_OPENAI)
async def test_every_uncached_openai_path_raises_naming_the_sdk_path(
    server: FakeLLMServer, cache: str, path: str
) -> None:
    """Each SDK path cachesaver does not serve raises UncachedPathError naming client.sdk."""
    async with openai_client(server, cache) as client:
        target: Any = client
        *parents, last = path.split(".")
        for part in parents:
            target = getattr(target, part)
        with pytest.raises(UncachedPathError) as caught:
            getattr(target, last)
    message = str(caught.value)
    assert f"client.{path}" in message and "client.sdk." in message
    assert "chat.completions.create" in message  # the cached alternative is named
    assert server.stats()["requests"] == 0


@pytest.mark.parametrize(
    "path", ["models", "files", "chat.completions.parse", "responses", "beta", "rerank"]
)
async def test_every_uncached_together_path_raises(
    server: FakeLLMServer, cache: str, path: str
) -> None:
    """AsyncTogether refuses what it does not cache, parse and responses included."""
    async with together_client(server, cache) as client:
        target: Any = client
        *parents, last = path.split(".")
        for part in parents:
            target = getattr(target, part)
        with pytest.raises(UncachedPathError, match=r"client\.sdk\."):
            getattr(target, last)


async def test_settings_read_through_and_sdk_is_explicit(server: FakeLLMServer, cache: str) -> None:
    """Plain SDK settings read through; client.sdk is the explicit, uncached SDK."""
    async with openai_client(server, cache, max_retries=3, timeout=12.5) as client:
        assert client.max_retries == 3 and client.timeout == 12.5
        assert client.api_key == "t"
        page = await client.sdk.models.list()
        assert page.data
        assert not hasattr(client, "models")  # hasattr is False, not an API call


# -- with_options / copy ---------------------------------------------------------------------


async def test_with_options_shares_the_cache_and_the_namespace_draws(
    server: FakeLLMServer, cache: str
) -> None:
    """A derived client continues the same namespace draws and sends its own options."""
    async with openai_client(server, cache) as client:
        first = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="A"
        )
        derived = client.with_options(timeout=30, default_headers={"x-trace": "7"})
        assert isinstance(derived, AsyncOpenAI) and derived.timeout == 30
        second = await derived.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="A"
        )
        copied = client.copy(max_retries=0)
        other_ns = await copied.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="B"
        )
        await derived.close()  # a derived client owns nothing
        third = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="A"
        )
    assert texts(first) != texts(second) != texts(third)  # fresh draws in namespace A
    assert texts(other_ns) == texts(first) and cache_flags(other_ns) == [ChoiceFlags(True, False)]
    assert server.received[1].headers.get("x-trace") == "7"
    assert server.stats()["chat_requests"] == 3


async def test_with_options_base_url_is_part_of_the_key(server: FakeLLMServer, cache: str) -> None:
    """A derived client with another base_url never reads the first endpoint's samples."""
    with FakeLLMServer(seed=5) as other:
        async with openai_client(server, cache) as client:
            await client.chat.completions.create(model="fake-chat", messages=MESSAGES)
            moved = client.with_options(base_url=other.openai_base_url)
            answer = await moved.chat.completions.create(model="fake-chat", messages=MESSAGES)
        assert cache_flags(answer) == [ChoiceFlags(False, False)]
        assert other.stats()["chat_requests"] == 1


async def test_with_options_refuses_options_of_the_cache(server: FakeLLMServer, cache: str) -> None:
    """cache/mode/manifest/run_id cannot change on a derived client: a clear error."""
    async with openai_client(server, cache) as client:
        for name in ("cache", "mode", "manifest", "run_id"):
            with pytest.raises(DropInOptionError, match=name):
                client.with_options(**{name: "x"})


# -- run options -------------------------------------------------------------------------------


async def test_run_options_manifest_mode_and_run_id(
    server: FakeLLMServer, cache: str, tmp_path: Path
) -> None:
    """manifest= records each call's samples; mode='replay' never calls; run_id joins a run."""
    manifest = tmp_path / "run.jsonl"
    async with openai_client(server, cache, manifest=manifest, run_id="exp-1") as client:
        await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=2, namespace="A", request_id="q1"
        )
        await client.responses.create(model="fake-chat", input="hi", request_id="q2")
    entries = list(read_manifest(manifest))
    assert [(e.request_id, e.indices) for e in entries] == [("q1", (0, 1)), ("q2", (0,))]
    sent = server.stats()["requests"]
    async with openai_client(server, cache, mode="replay") as client:
        again = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=2, namespace="A"
        )
        assert cache_flags(again) == [ChoiceFlags(True, False)] * 2
        with pytest.raises(CacheMissError):
            await client.chat.completions.create(model="fake-chat", messages=MESSAGES, n=3)
    assert server.stats()["requests"] == sent


async def test_reproduce_gives_each_call_its_recorded_samples(
    server: FakeLLMServer, cache: str, tmp_path: Path
) -> None:
    """reproduce= on a drop-in client: calls issued in another order get recorded samples."""
    record = tmp_path / "run.jsonl"
    questions = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    async with openai_client(server, cache, manifest=record) as client:
        first = {
            f"r{i}": texts(
                await client.chat.completions.create(
                    model="fake-chat", messages=questions[0], namespace="A", request_id=f"r{i}"
                )
            )
            for i in range(3)
        }
    sent = server.stats()["requests"]
    async with openai_client(server, cache, reproduce=record) as client:
        again = {}
        for i in (2, 0, 1):  # another issue order
            again[f"r{i}"] = texts(
                await client.chat.completions.create(
                    model="fake-chat", messages=questions[0], namespace="A", request_id=f"r{i}"
                )
            )
    assert again == first and len({t[0] for t in first.values()}) == 3
    assert server.stats()["requests"] == sent
    with pytest.raises(DropInOptionError, match="reproduce"):
        AsyncOpenAI(cache=cache, api_key="t", reproduce=record, run_id="x")
    async with openai_client(server, cache) as client:
        with pytest.raises(DropInOptionError, match="reproduce"):
            client.with_options(reproduce=record)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("mode", "write-only"),
        ("reproduce", 3),
        ("manifest", 42),
        ("run_id", ""),
        ("batch_size", 0),
        ("namespace", 3),
        ("max_concurrency", 0),
    ],
)
def test_bad_run_options_are_cachesaver_errors(cache: str, option: str, value: Any) -> None:
    """A bad option raises DropInOptionError naming it, before anything is opened."""
    with pytest.raises(DropInOptionError, match=option):
        AsyncOpenAI(cache=cache, api_key="t", **{option: value})
    with pytest.raises(DropInOptionError, match=option):
        AsyncTogether(cache=cache, api_key="t", **{option: value})
    assert not Path(cache).exists()


# -- keys: sets refused -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"stop": {"a", "b"}}, "stop"),
        ({"logit_bias": {"1": 2}, "extra_body": {"tags": frozenset({"x"})}}, "extra_body"),
        ({"tools": [{"type": "function", "function": {"name": "f", "x": {1, 2}}}]}, "tools"),
    ],
)
async def test_sets_are_refused_naming_the_parameter(
    server: FakeLLMServer, cache: str, params: dict[str, Any], named: str
) -> None:
    """A set's order depends on the process, so a set parameter is refused by name."""
    async with openai_client(server, cache) as client:
        with pytest.raises(InvalidRequestError, match=rf"{named}.*set"):
            await client.chat.completions.create(model="fake-chat", messages=MESSAGES, **params)
        with pytest.raises(InvalidRequestError, match=r"input.*set"):
            await client.embeddings.create(model="fake-embed", input=[{"a", "b"}])  # type: ignore[list-item]
        with pytest.raises(InvalidRequestError, match=r"text.*set"):
            await client.responses.create(model="fake-chat", input="x", text={"f": {"a"}})
    async with together_client(server, cache) as client:
        with pytest.raises(InvalidRequestError, match=r"stop.*set"):
            await client.chat.completions.create(
                model="fake-chat", messages=MESSAGES, stop={"a", "b"}
            )
    assert server.stats()["requests"] == 0


# -- where the cache is --------------------------------------------------------------------


async def test_the_cache_location_is_logged_once_on_first_use(
    server: FakeLLMServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    """The default cache directory is created only on first use, and said at INFO."""
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="cachesaver")
    client = AsyncOpenAI(base_url=server.openai_base_url, api_key="t")
    assert not (tmp_path / "caches").exists() and not caplog.records
    await client.chat.completions.create(model="fake-chat", messages=MESSAGES)
    await client.chat.completions.create(model="other", messages=MESSAGES)
    await client.close()
    lines = [r.getMessage() for r in caplog.records if "caches in" in r.getMessage()]
    assert len(lines) == 1
    assert str(tmp_path / "caches" / "default") in lines[0] and "the default" in lines[0]


# -- with_raw_response -----------------------------------------------------------------------


async def test_raw_responses_are_served_from_the_cache_with_headers(
    server: FakeLLMServer, cache: str
) -> None:
    """with_raw_response is cached; its synthetic headers say whether samples were cached."""
    async with openai_client(server, cache) as client:
        raw = await client.with_raw_response.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=2
        )
        assert isinstance(raw, CachedRawResponse)
        assert raw.headers["x-cachesaver-cached"] == "false"
        completion = raw.parse()
        assert raw.json()["choices"][0]["message"]["content"] == texts(completion)[0]
    async with openai_client(server, cache) as client:
        again = await client.chat.completions.with_raw_response.create(
            model="fake-chat", messages=MESSAGES, n=3
        )
        assert again.headers["x-cachesaver-cached"] == "partial"
        assert json.loads(again.headers["x-cachesaver-flags"]) == [
            [True, False],
            [True, False],
            [False, False],
        ]
        emb = await client.with_raw_response.embeddings.create(model="fake-embed", input="x")
        assert emb.parse().data[0].embedding
        resp = await client.responses.with_raw_response.create(model="fake-chat", input="hi")
        assert resp.headers["x-cachesaver-cached"] == "false" and resp.parse().output_text
        with pytest.raises(InvalidRequestError, match="stream=True"):
            await client.with_raw_response.chat.completions.create(
                model="fake-chat", messages=MESSAGES, stream=True
            )
    assert server.stats()["chat_requests"] == 2
