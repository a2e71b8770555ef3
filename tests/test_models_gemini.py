"""The Gemini adapter, through the real google-genai SDK over HTTP to the test server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from cachesaver import InvalidRequestError, OnlineAPI, Request
from cachesaver.models.gemini import GeminiModel
from cachesaver.testing.server import FakeLLMServer


@dataclass(frozen=True)
class Ask(Request):
    temperature: float | None = None
    max_output_tokens: int | None = None
    response_mime_type: str | None = None
    response_json_schema: dict[str, Any] | None = None
    colour: str | None = None


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


@pytest.fixture
async def client(server: FakeLLMServer) -> AsyncIterator[genai.Client]:
    """A google-genai client on httpx (with aiohttp installed, as LiteLLM brings it,
    the SDK would use aiohttp, which warns about the SDK's subclass of its session)."""
    async with httpx.AsyncClient() as transport:
        options = types.HttpOptions(base_url=server.url, httpx_async_client=transport)
        yield genai.Client(api_key="test", http_options=options)


def adapter(client: genai.Client, **options: Any) -> GeminiModel:
    return GeminiModel(client, "gemini-test", **options)


def bodies(server: FakeLLMServer) -> list[dict[str, Any]]:
    return [r.body for r in server.received if r.path.endswith(":generateContent")]


async def test_n_is_candidate_count_in_one_call_and_a_replay_is_free(
    server: FakeLLMServer, client: genai.Client, tmp_path: Path
) -> None:
    """n=3 is one call with candidateCount 3; a new pipeline answers from the cache."""
    cache = str(tmp_path / "c")
    request = Ask("Name a colour.", n=3, temperature=0.9)
    async with OnlineAPI(adapter(client), cache=cache) as api:
        first = await api.request(request)
    (body,) = bodies(server)
    assert body["generationConfig"]["candidateCount"] == 3
    assert body["generationConfig"]["temperature"] == 0.9
    assert first.duplicated == [False, True, True]
    async with OnlineAPI(adapter(client), cache=cache) as api:
        again = await api.request(request)
    assert len(bodies(server)) == 1
    assert again.data == first.data and again.cached == [True, True, True]


async def test_a_model_that_returns_one_candidate_is_asked_again(tmp_path: Path) -> None:
    """With one candidate per call, n=3 is three calls, each paying its own prompt."""
    with FakeLLMServer(max_choices=1) as capped:
        async with httpx.AsyncClient() as transport:
            options = types.HttpOptions(base_url=capped.url, httpx_async_client=transport)
            model = GeminiModel(genai.Client(api_key="t", http_options=options), "gemini-test")
            async with OnlineAPI(model, cache=str(tmp_path / "c")) as api:
                response = await api.request(Ask("Hi", n=3, temperature=0.9))
        assert len(response.data) == 3
        assert response.duplicated == [False, False, False]
        counts = [b["generationConfig"]["candidateCount"] for b in bodies(capped)]
        assert counts == [3, 2, 1]


async def test_chat_messages_become_gemini_contents(
    server: FakeLLMServer, client: genai.Client, tmp_path: Path
) -> None:
    """OpenAI-style messages map to contents (assistant -> model) and a system instruction."""
    prompt = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Again"},
    ]
    async with OnlineAPI(adapter(client), cache=str(tmp_path / "c")) as api:
        await api.request(Ask(prompt))
    (body,) = bodies(server)
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["systemInstruction"]["parts"][0]["text"] == "Be brief."


async def test_structured_output_is_an_instance_of_the_schema(
    server: FakeLLMServer, client: genai.Client, tmp_path: Path
) -> None:
    """response_json_schema reaches the wire and the sample is JSON of that shape."""
    import json

    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    async with OnlineAPI(adapter(client), cache=str(tmp_path / "c")) as api:
        response = await api.request(
            Ask("24?", response_mime_type="application/json", response_json_schema=schema)
        )
    assert isinstance(json.loads(response.data[0])["answer"], int)


async def test_errors_are_the_sdks_and_unknown_fields_are_refused(
    server: FakeLLMServer, client: genai.Client, tmp_path: Path
) -> None:
    """A 429 is google-genai's ClientError; a field that is no config field fails first."""
    async with OnlineAPI(adapter(client), cache=str(tmp_path / "c")) as api:
        server.fail_next(429)
        with pytest.raises(genai_errors.ClientError):
            await api.request(Ask("Hi"))
        with pytest.raises(InvalidRequestError, match="'colour'"):
            await api.request(Ask("Hi", colour="red"))
        ok = await api.request(Ask("Hi"))
    assert ok.cached == [False]


async def test_identity_names_the_endpoint(server: FakeLLMServer, client: genai.Client) -> None:
    """The same model name behind two endpoints has two identities."""
    here = adapter(client).identity
    assert here["base_url"] == server.url and here["model"] == "gemini-test"
    async with httpx.AsyncClient() as transport:
        options = types.HttpOptions(base_url="http://127.0.0.1:9", httpx_async_client=transport)
        elsewhere = GeminiModel(genai.Client(api_key="x", http_options=options), "gemini-test")
        assert elsewhere.identity != here
