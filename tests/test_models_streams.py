"""Live streams: a fresh answer streams as it arrives, is stored whole, or not at all."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cachesaver import CacheMissError
from cachesaver.manifest import read_manifest
from cachesaver.models import ChoiceFlags, LiveStream, cache_flags
from cachesaver.models.openai import AsyncOpenAI
from cachesaver.models.together import AsyncTogether
from cachesaver.testing.server import FakeLLMServer

MESSAGES = [{"role": "user", "content": "Tell me a story."}]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(error_retry_after=0.005, stream_delay=0.001) as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


def client_for(server: FakeLLMServer, cache: str, **options: Any) -> AsyncOpenAI:
    options.setdefault("max_retries", 0)
    return AsyncOpenAI(cache=cache, base_url=server.openai_base_url, api_key="t", **options)


def joined(chunks: list[Any], n: int) -> list[str]:
    out = [""] * n
    for chunk in chunks:
        for part in chunk.choices:
            out[part.index] += part.delta.content or ""
    return out


async def collect(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


async def test_a_fresh_stream_arrives_live_and_is_stored_when_complete(
    server: FakeLLMServer, cache: str
) -> None:
    """Chunks reach the caller while the API is still sending; the cache gets the whole."""
    server.hold_streams(after=2)
    async with client_for(server, cache) as client:
        stream = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, stream=True, namespace="A"
        )
        assert isinstance(stream, LiveStream)
        first = await stream.__anext__()
        # The server is paused mid-answer: nothing is complete, nothing is stored.
        assert server.stats()["streams_completed"] == 0
        assert await client.store.keys() == []
        server.release_streams()
        rest = await collect(stream)
        assert stream.completion is not None
        assert cache_flags(stream.completion) == [ChoiceFlags(False, False)]
    text = joined([first, *rest], 1)[0]
    assert text and text == stream.completion.choices[0].message.content
    sent = server.stats()["requests"]
    async with client_for(server, cache) as client:
        replay = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, stream=True, namespace="A"
        )
        chunks = await collect(replay)
    assert server.stats()["requests"] == sent  # a hit: zero HTTP requests
    assert joined(chunks, 1)[0] == text
    assert cache_flags(replay.completion) == [ChoiceFlags(True, False)]


async def test_partial_hits_replay_stored_choices_and_stream_the_rest(
    server: FakeLLMServer, cache: str
) -> None:
    """n=3 with one stored sample: choice 0 is replayed, choices 1 and 2 stream live."""
    async with client_for(server, cache) as client:
        stored = await client.chat.completions.create(model="fake-chat", messages=MESSAGES)
    async with client_for(server, cache) as client:
        stream = await client.chat.completions.create(
            model="fake-chat",
            messages=MESSAGES,
            n=3,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = await collect(stream)
    texts = joined(chunks, 3)
    assert texts[0] == stored.choices[0].message.content
    assert cache_flags(stream.completion) == [
        ChoiceFlags(True, False),
        ChoiceFlags(False, False),
        ChoiceFlags(False, True),
    ]
    assert server.received[-1].body["n"] == 2  # only the missing samples were asked
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    async with client_for(server, cache) as client:
        again = await client.chat.completions.create(model="fake-chat", messages=MESSAGES, n=3)
    assert [c.message.content for c in again.choices] == texts


async def test_a_slow_reader_of_a_partial_hit_stream_stores_each_choice_as_made(
    server: FakeLLMServer, cache: str
) -> None:
    """A caller reading a partly cached live stream slowly gets and stores each choice's text."""
    async with client_for(server, cache) as client:
        await client.chat.completions.create(model="fake-chat", messages=MESSAGES)
    async with client_for(server, cache) as client:
        stream = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=3, stream=True
        )
        chunks = []
        async for chunk in stream:  # read until the second live choice has begun
            chunks.append(chunk)
            if any(part.index == 2 for part in chunk.choices):
                break
        assert await asyncio.to_thread(server.wait_for_streams, 1)
        # The call ends and is stored while most of its chunks are still unread.
        await asyncio.wait_for(asyncio.shield(stream._task), 10)
        chunks += await collect(stream)
    texts = joined(chunks, 3)
    async with client_for(server, cache) as client:
        again = await client.chat.completions.create(model="fake-chat", messages=MESSAGES, n=3)
    assert [c.message.content for c in again.choices] == texts
    assert all(c.finish_reason == "stop" for c in again.choices)


async def test_a_closed_stream_stores_nothing_and_consumes_no_index(
    server: FakeLLMServer, cache: str, tmp_path: Path
) -> None:
    """Closing a fresh stream early abandons the call: nothing stored, the index is free."""
    manifest = tmp_path / "m.jsonl"
    server.hold_streams(after=2)
    async with client_for(server, cache, manifest=manifest) as client:
        stream = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, stream=True, namespace="A", request_id="s"
        )
        await stream.__anext__()
        await stream.close()
        server.release_streams()
        assert server.wait_for_streams(1)
        after = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="A", request_id="next"
        )
    assert cache_flags(after) == [ChoiceFlags(False, False)]
    assert [(e.request_id, e.indices) for e in read_manifest(manifest)] == [("next", (0,))]


async def test_a_cancelled_consumer_abandons_the_stream(server: FakeLLMServer, cache: str) -> None:
    """Cancelling the task that reads a stream abandons its call; nothing partial is kept."""
    server.hold_streams(after=2)
    async with client_for(server, cache) as client:
        stream = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, stream=True, namespace="A"
        )
        await stream.__anext__()
        reader = asyncio.ensure_future(collect(stream))
        await asyncio.sleep(0)  # the reader waits for the next chunk
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        server.release_streams()
        assert server.wait_for_streams(1)
        assert await client.store.keys() == []
    async with client_for(server, cache, mode="replay") as client:
        with pytest.raises(CacheMissError):
            await client.chat.completions.create(model="fake-chat", messages=MESSAGES)


async def test_a_broken_stream_raises_and_stores_nothing(
    server: FakeLLMServer, cache: str, tmp_path: Path
) -> None:
    """A connection cut mid-stream fails the call; its index goes to the next call."""
    manifest = tmp_path / "m.jsonl"
    server.cut_next_stream(after=3)
    async with client_for(server, cache, manifest=manifest) as client:
        stream = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, stream=True, namespace="A", request_id="cut"
        )
        with pytest.raises(Exception) as caught:
            await collect(stream)
        assert not isinstance(caught.value, (AssertionError, CacheMissError))
        retry = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, stream=True, namespace="A", request_id="ok"
        )
        chunks = await collect(retry)
    assert joined(chunks, 1)[0]
    assert [(e.request_id, e.indices) for e in read_manifest(manifest)] == [("ok", (0,))]


async def test_together_streams_live_and_replays(server: FakeLLMServer, cache: str) -> None:
    """AsyncTogether streams a fresh answer live and replays it as Together chunks."""

    def together(**options: Any) -> AsyncTogether:
        return AsyncTogether(
            cache=cache, base_url=server.url, api_key="t", max_retries=0, **options
        )

    async with together() as client:
        fresh = await collect(
            await client.chat.completions.create(
                model="fake-chat", messages=MESSAGES, stream=True, n=2
            )
        )
    sent = server.stats()["requests"]
    async with together() as client:
        replay = await collect(
            await client.chat.completions.create(
                model="fake-chat", messages=MESSAGES, stream=True, n=2
            )
        )
    assert server.stats()["requests"] == sent
    assert joined(replay, 2) == joined(fresh, 2) and all(joined(fresh, 2))
