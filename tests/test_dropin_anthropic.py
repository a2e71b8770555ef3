"""The Anthropic drop-in clients, through the real anthropic SDK over HTTP to the test server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from cachesaver import CacheMissError, InvalidRequestError
from cachesaver.models._errors import DropInOptionError, UncachedPathError
from cachesaver.models.anthropic import Anthropic, AsyncAnthropic
from cachesaver.testing.server import FakeLLMServer

HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(error_retry_after=0.005) as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


@pytest.fixture
async def client(server: FakeLLMServer, cache: str) -> AsyncIterator[AsyncAnthropic]:
    async with AsyncAnthropic(cache=cache, base_url=server.url, api_key="t") as c:
        yield c


def calls(server: FakeLLMServer) -> int:
    return int(server.stats()["message_requests"])


async def test_a_call_returns_the_sdks_message_with_flags(
    server: FakeLLMServer, client: AsyncAnthropic
) -> None:
    """create() returns anthropic's Message, flagged, with the usage this call paid."""
    message = await client.messages.create(model="claude-t", max_tokens=30, messages=HI)
    assert isinstance(message, anthropic.types.Message)
    assert message.cached is False and message.duplicated is False  # type: ignore[attr-defined]
    assert message.usage.input_tokens > 0 and message.content[0].type == "text"
    assert calls(server) == 1


async def test_a_new_client_replays_with_zero_http(server: FakeLLMServer, cache: str) -> None:
    """A second client over the same cache answers the same calls without the API."""
    params: dict[str, Any] = {"model": "claude-t", "max_tokens": 30, "temperature": 0.7}
    async with AsyncAnthropic(cache=cache, base_url=server.url, api_key="t") as first:
        a = [await first.messages.create(messages=HI, **params) for _ in range(2)]
    async with AsyncAnthropic(cache=cache, base_url=server.url, api_key="t") as second:
        b = [await second.messages.create(messages=HI, **params) for _ in range(2)]
    assert calls(server) == 2
    assert [m.content[0].text for m in a] == [m.content[0].text for m in b]
    assert a[0].content[0].text != a[1].content[0].text  # fresh draws in one namespace
    assert all(m.cached for m in b)
    assert b[0].usage.input_tokens == 0 and b[0].usage.output_tokens == 0


async def test_namespaces_reuse_what_another_paid_for(
    server: FakeLLMServer, client: AsyncAnthropic
) -> None:
    """Namespace B walks the samples namespace A paid for, from the start."""
    a = await client.messages.create(model="claude-t", max_tokens=30, messages=HI, namespace="A")
    b = await client.messages.create(model="claude-t", max_tokens=30, messages=HI, namespace="B")
    assert b.content[0].text == a.content[0].text and b.cached
    assert calls(server) == 1


async def test_every_parameter_that_changes_the_answer_is_in_the_key(
    server: FakeLLMServer, client: AsyncAnthropic
) -> None:
    """max_tokens, system, temperature, tools and extra_body each make another key."""
    base: dict[str, Any] = {"model": "claude-t", "max_tokens": 30, "messages": HI}
    variants: list[dict[str, Any]] = [
        {},
        {"max_tokens": 31},
        {"system": "Be terse."},
        {"temperature": 0.1},
        {"stop_sequences": ["x"]},
        {"extra_body": {"top_k": 5}},
        {"tools": [{"name": "f", "input_schema": {"type": "object"}}]},
    ]
    for variant in variants:
        await client.messages.create(**{**base, **variant})
    assert calls(server) == len(variants)
    await client.messages.create(**base, metadata={"user_id": "u"}, namespace="again")
    assert calls(server) == len(variants)  # metadata is not in the key
    await client.messages.create(
        model="claude-t",
        max_tokens=30,
        messages=[{"role": "user", "content": "New"}],
        metadata={"user_id": "u"},
    )
    assert server.received[-1].body["metadata"] == {"user_id": "u"}  # but it is sent


async def test_stream_true_and_messages_stream_replay_sdk_events(
    server: FakeLLMServer, client: AsyncAnthropic
) -> None:
    """stream=True yields the SDK's event types; messages.stream gives text and the message."""
    events = await client.messages.create(model="claude-t", max_tokens=30, messages=HI, stream=True)
    kinds = [event.type async for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    whole = await events.get_final_message()
    async with client.messages.stream(
        model="claude-t", max_tokens=30, messages=HI, namespace="other"
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == whole.content[0].text == final.content[0].text
    assert final.cached and calls(server) == 1


async def test_errors_are_the_sdks_and_consume_nothing(
    server: FakeLLMServer, client: AsyncAnthropic
) -> None:
    """A 429 after the SDK's retries is anthropic.RateLimitError; the retry takes index 0."""
    server.fail_next(429, count=3)
    with pytest.raises(anthropic.RateLimitError):
        await client.with_options(max_retries=0).messages.create(
            model="claude-t", max_tokens=30, messages=HI
        )
    retried = await client.messages.create(model="claude-t", max_tokens=30, messages=HI)
    other = await client.messages.create(
        model="claude-t", max_tokens=30, messages=HI, namespace="x"
    )
    assert other.content[0].text == retried.content[0].text  # both are index 0


async def test_nothing_reaches_the_api_uncached_silently(client: AsyncAnthropic) -> None:
    """Unserved paths raise UncachedPathError naming client.sdk; settings still read."""
    with pytest.raises(UncachedPathError, match=r"client\.sdk\.models"):
        _ = client.models
    with pytest.raises(UncachedPathError, match=r"client\.sdk\.messages\.count_tokens"):
        _ = client.messages.count_tokens
    with pytest.raises(UncachedPathError, match=r"messages\.batches"):
        _ = client.messages.batches
    assert client.api_key == "t"
    with pytest.raises(InvalidRequestError, match="colour"):
        await client.messages.create(model="m", max_tokens=5, messages=HI, colour="red")
    with pytest.raises(InvalidRequestError, match="set"):
        await client.messages.create(
            model="m", max_tokens=5, messages=HI, stop_sequences={"a", "b"}
        )


async def test_run_options_are_validated_and_replay_mode_misses_loudly(
    server: FakeLLMServer, cache: str
) -> None:
    """mode/run options get cachesaver's own errors; replay never calls the API."""
    with pytest.raises(DropInOptionError, match="mode"):
        AsyncAnthropic(cache=cache, mode="sometimes", api_key="t")  # type: ignore[arg-type]
    async with AsyncAnthropic(cache=cache, base_url=server.url, api_key="t", mode="replay") as c:
        with pytest.raises(CacheMissError):
            await c.messages.create(model="claude-t", max_tokens=30, messages=HI)
    assert calls(server) == 0


async def test_with_options_shares_the_cache_and_the_draws(
    server: FakeLLMServer, client: AsyncAnthropic
) -> None:
    """A derived client continues the namespace's draws instead of repeating them."""
    first = await client.messages.create(model="claude-t", max_tokens=30, messages=HI)
    derived = client.with_options(timeout=30)
    second = await derived.messages.create(model="claude-t", max_tokens=30, messages=HI)
    assert first.content[0].text != second.content[0].text
    assert calls(server) == 2


def test_the_sync_client_works_in_threads_and_across_calls(
    server: FakeLLMServer, cache: str
) -> None:
    """Anthropic (sync) serves many calls, from several threads, then streams."""
    with Anthropic(cache=cache, base_url=server.url, api_key="t") as client:
        texts: list[str] = []

        def ask() -> None:
            message = client.messages.create(
                model="claude-t", max_tokens=30, messages=HI, namespace="s"
            )
            texts.append(message.content[0].text)

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(set(texts)) == 4
        with client.messages.stream(model="claude-t", max_tokens=30, messages=HI) as stream:
            text = "".join(stream.text_stream)
        assert text == stream.get_final_message().content[0].text
        events = list(
            client.messages.create(model="claude-t", max_tokens=9, messages=HI, stream=True)
        )
        assert events[-1].type == "message_stop"


def test_the_sync_client_works_under_a_running_loop(server: FakeLLMServer, cache: str) -> None:
    """Called from inside a running event loop (as in Jupyter), the sync client answers."""

    async def inside() -> str:
        with Anthropic(cache=cache, base_url=server.url, api_key="t") as client:
            message = client.messages.create(model="claude-t", max_tokens=30, messages=HI)
            return str(message.content[0].text)

    assert asyncio.run(inside())
