"""The Gemini drop-in client, through the real google-genai SDK over HTTP to the test server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.genai import errors as genai_errors
from google.genai import types

from cachesaver import CacheMissError, InvalidRequestError
from cachesaver.models._errors import UncachedPathError
from cachesaver.models.gemini import Client
from cachesaver.testing.server import FakeLLMServer


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


def options(server: FakeLLMServer) -> types.HttpOptions:
    # An httpx transport: with aiohttp installed google-genai would use aiohttp, which
    # warns about the SDK's subclass of its session.
    transport = {"transport": httpx.AsyncHTTPTransport()}
    return types.HttpOptions(base_url=server.url, async_client_args=transport)


@pytest.fixture
async def client(server: FakeLLMServer, cache: str) -> AsyncIterator[Client]:
    c = Client(cache=cache, api_key="t", http_options=options(server))
    async with c.aio:
        yield c


def calls(server: FakeLLMServer) -> int:
    return int(server.stats()["generate_requests"])


async def test_candidate_count_is_n_and_flags_are_per_candidate(
    server: FakeLLMServer, client: Client
) -> None:
    """candidate_count=3 is one call; the SDK's response says per candidate how it was paid."""
    answer = await client.aio.models.generate_content(
        model="gemini-t", contents="Hi", config={"candidate_count": 3, "temperature": 0.9}
    )
    assert isinstance(answer, types.GenerateContentResponse)
    assert len(answer.candidates or []) == 3
    flagged: Any = answer  # the drop-in's subclass adds the flags
    assert flagged.cached == [False] * 3
    assert flagged.duplicated == [False, True, True]
    assert answer.usage_metadata is not None
    assert (answer.usage_metadata.prompt_token_count or 0) > 0
    assert calls(server) == 1


async def test_a_new_client_replays_with_zero_http(server: FakeLLMServer, cache: str) -> None:
    """The same calls from a second client over the cache make no HTTP request."""
    config = types.GenerateContentConfig(temperature=0.5, max_output_tokens=20)
    texts = []
    for _ in range(2):
        c = Client(cache=cache, api_key="t", http_options=options(server))
        async with c.aio:
            answer = await c.aio.models.generate_content(
                model="gemini-t", contents="Hi", config=config
            )
            texts.append(answer.text)
            last = answer
    assert texts[0] == texts[1] and calls(server) == 1
    assert last.cached == [True]
    assert last.usage_metadata is not None
    assert last.usage_metadata.prompt_token_count == 0


async def test_config_fields_are_in_the_key_and_labels_are_not(
    server: FakeLLMServer, client: Client
) -> None:
    """temperature and system_instruction make new keys; labels do not."""
    models = client.aio.models
    await models.generate_content(model="gemini-t", contents="Hi")
    await models.generate_content(model="gemini-t", contents="Hi", config={"temperature": 0.1})
    await models.generate_content(
        model="gemini-t", contents="Hi", config={"system_instruction": "Be terse."}
    )
    assert calls(server) == 3
    await models.generate_content(
        model="gemini-t", contents="Hi", config={"labels": {"run": "x"}}, namespace="b"
    )
    assert calls(server) == 3
    await models.generate_content(
        model="gemini-t", contents="Sent", config={"labels": {"run": "y"}}
    )
    assert server.received[-1].body.get("labels") == {"run": "y"}  # sent, not dropped


async def test_streams_replay_chunks_of_the_sdk_type(server: FakeLLMServer, client: Client) -> None:
    """generate_content_stream yields SDK chunks whose text adds up to the answer."""
    whole = await client.aio.models.generate_content(model="gemini-t", contents="Stream")
    stream = await client.aio.models.generate_content_stream(
        model="gemini-t", contents="Stream", namespace="other"
    )
    text = "".join([chunk.text or "" async for chunk in stream])
    assert text == whole.text and calls(server) == 1


async def test_errors_and_uncached_paths_are_loud(server: FakeLLMServer, client: Client) -> None:
    """A 429 is the SDK's ClientError and consumes nothing; other paths are refused."""
    server.fail_next(429)
    with pytest.raises(genai_errors.ClientError):
        await client.aio.models.generate_content(model="gemini-t", contents="Hi")
    await client.aio.models.generate_content(model="gemini-t", contents="Hi")
    other = await client.aio.models.generate_content(model="gemini-t", contents="Hi", namespace="x")
    assert other.cached == [True]
    with pytest.raises(UncachedPathError, match=r"client\.sdk\.aio\.models\.embed_content"):
        _ = client.aio.models.embed_content
    with pytest.raises(UncachedPathError, match=r"client\.sdk\.files"):
        _ = client.files
    with pytest.raises(InvalidRequestError, match="http_options"):
        await client.aio.models.generate_content(
            model="gemini-t", contents="Hi", config={"http_options": {"timeout": 5}}
        )
    with pytest.raises(InvalidRequestError, match="set"):
        await client.aio.models.generate_content(
            model="gemini-t", contents="Hi", config={"stop_sequences": {"a", "b"}}
        )


async def test_replay_mode_never_calls_the_api(server: FakeLLMServer, cache: str) -> None:
    """mode='replay' raises CacheMissError for an unseen call."""
    c = Client(cache=cache, mode="replay", api_key="t", http_options=options(server))
    async with c.aio:
        with pytest.raises(CacheMissError):
            await c.aio.models.generate_content(model="gemini-t", contents="Hi")
    assert calls(server) == 0


def test_the_sync_side_serves_calls_and_streams(server: FakeLLMServer, cache: str) -> None:
    """client.models works from sync code on the client's own loop, across many calls."""
    with Client(cache=cache, api_key="t", http_options=options(server)) as c:
        first = c.models.generate_content(model="gemini-t", contents="Hi")
        second = c.models.generate_content(model="gemini-t", contents="Hi")
        assert first.text != second.text
        chunks = list(
            c.models.generate_content_stream(model="gemini-t", contents="Hi", namespace="z")
        )
        assert "".join(chunk.text or "" for chunk in chunks) == first.text
    assert calls(server) == 2
