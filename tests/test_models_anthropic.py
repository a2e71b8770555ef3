"""The Anthropic adapter, through the real anthropic SDK over HTTP to the test server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import pytest

from cachesaver import InvalidRequestError, OnlineAPI, Request
from cachesaver.models.anthropic import AnthropicModel
from cachesaver.testing.server import FakeLLMServer


@dataclass(frozen=True)
class Ask(Request):
    temperature: float | None = None
    max_tokens: int | None = None
    stop_sequences: list[str] | None = None
    colour: str | None = None


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(error_retry_after=0.005) as running:
        yield running


@pytest.fixture
async def client(server: FakeLLMServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    sdk = anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=2)
    yield sdk
    await sdk.close()


def adapter(client: anthropic.AsyncAnthropic, **options: Any) -> AnthropicModel:
    return AnthropicModel(client, "claude-test", max_tokens=40, **options)


def bodies(server: FakeLLMServer) -> list[dict[str, Any]]:
    return [r.body for r in server.received if r.path == "/v1/messages"]


async def test_n_samples_are_n_calls_each_paying_its_prompt(
    server: FakeLLMServer, client: anthropic.AsyncAnthropic, tmp_path: Path
) -> None:
    """n=3 is three Messages calls; no sample is flagged duplicated, and a replay is free."""
    cache = str(tmp_path / "c")
    request = Ask("Name a colour.", n=3, temperature=0.8)
    async with OnlineAPI(adapter(client), cache=cache) as api:
        first = await api.request(request)
        stats = api.stats()
    assert len(bodies(server)) == 3
    assert first.cached == [False, False, False]
    assert first.duplicated == [False, False, False]
    assert stats.duplicated == 0
    assert len(set(first.data)) == 3
    async with OnlineAPI(adapter(client), cache=cache) as api:
        again = await api.request(request)
    assert len(bodies(server)) == 3
    assert again.data == first.data and again.cached == [True, True, True]


async def test_fields_map_to_the_messages_api(
    server: FakeLLMServer, client: anthropic.AsyncAnthropic, tmp_path: Path
) -> None:
    """A system message becomes `system`; sampling fields and max_tokens reach the wire."""
    prompt = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    async with OnlineAPI(adapter(client), cache=str(tmp_path / "c")) as api:
        await api.request(Ask(prompt, temperature=0.2, max_tokens=7, stop_sequences=["##"]))
    (body,) = bodies(server)
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 7
    assert body["stop_sequences"] == ["##"]
    assert body["model"] == "claude-test"


async def test_unknown_fields_are_refused_before_any_call(
    server: FakeLLMServer, client: anthropic.AsyncAnthropic, tmp_path: Path
) -> None:
    """A field the Messages API does not take fails clearly, unless the adapter ignores it."""
    async with OnlineAPI(adapter(client), cache=str(tmp_path / "c")) as api:
        with pytest.raises(InvalidRequestError, match="'colour'"):
            await api.request(Ask("Hi", colour="red"))
    assert bodies(server) == []
    async with OnlineAPI(
        adapter(client, ignore_fields=["colour"]), cache=str(tmp_path / "d")
    ) as api:
        await api.request(Ask("Hi", colour="red"))
    assert "colour" not in bodies(server)[0]


async def test_errors_are_the_sdks_and_consume_nothing(
    server: FakeLLMServer, client: anthropic.AsyncAnthropic, tmp_path: Path
) -> None:
    """A 400 is anthropic.BadRequestError; the retry gets indices 0.. as a replay shows."""
    cache = str(tmp_path / "c")
    request = Ask("Hi", n=2, temperature=0.5)
    async with OnlineAPI(adapter(client, max_concurrency=1), cache=cache) as api:
        server.fail_next(400)
        with pytest.raises(anthropic.BadRequestError):
            await api.request(request)
        retried = await api.request(request)
    async with OnlineAPI(adapter(client), cache=cache) as api:
        replayed = await api.request(request)
    assert replayed.data == retried.data and replayed.cached == [True, True]


async def test_full_samples_keep_the_whole_message(
    server: FakeLLMServer, client: anthropic.AsyncAnthropic, tmp_path: Path
) -> None:
    """sample='full' stores the Message as JSON, which the SDK type reads back."""
    async with OnlineAPI(adapter(client, sample="full"), cache=str(tmp_path / "c")) as api:
        response = await api.request(Ask("Hi", n=2, temperature=0.5))
    message = anthropic.types.Message.model_validate(response.data[0])
    assert message.content[0].type == "text"
    assert message.usage.input_tokens > 0


async def test_merged_requests_flag_only_provider_cached_prompts(
    server: FakeLLMServer, client: anthropic.AsyncAnthropic, tmp_path: Path
) -> None:
    """Two same-key requests merge into one adapter call; each sample paid its prompt."""
    async with OnlineAPI(adapter(client), cache=str(tmp_path / "c"), timeout=0.05) as api:
        a, b = await asyncio.gather(api.request(Ask("Same")), api.request(Ask("Same")))
        stats = api.stats()
    assert a.duplicated == [False] and b.duplicated == [False]
    assert stats.model_calls == 1 and stats.duplicated == 0
    assert len(bodies(server)) == 2


async def test_identity_names_model_endpoint_and_max_tokens(
    server: FakeLLMServer, client: anthropic.AsyncAnthropic
) -> None:
    """Two adapters that would answer differently never share a key."""
    a = adapter(client).identity
    assert a["provider"] == "anthropic" and a["model"] == "claude-test"
    assert a["base_url"] == server.url
    assert AnthropicModel(client, "claude-test", max_tokens=41).identity != a
    with pytest.raises(ValueError, match="temperature"):
        adapter(client, call_options={"temperature": 1})
