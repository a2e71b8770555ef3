"""OpenAI-compatible servers (vLLM, OpenRouter, llama.cpp, ...) through the OpenAI drop-in."""

from __future__ import annotations

from pathlib import Path

from cachesaver.models import cache_flags
from cachesaver.models.openai import AsyncOpenAI
from cachesaver.testing.server import FakeLLMServer

HI = [{"role": "user", "content": "Hi"}]


def calls(server: FakeLLMServer) -> int:
    return int(server.stats()["chat_requests"])


async def test_one_model_name_on_two_endpoints_never_shares_samples(tmp_path: Path) -> None:
    """A 'local copy' and 'the provider' serving one model name keep separate samples."""
    cache = str(tmp_path / "c")
    with FakeLLMServer(seed=1) as local, FakeLLMServer(seed=2) as hosted:
        async with AsyncOpenAI(cache=cache, base_url=local.openai_base_url, api_key="t") as a:
            first = await a.chat.completions.create(model="llama-3-8b", messages=HI)
        async with AsyncOpenAI(cache=cache, base_url=hosted.openai_base_url, api_key="t") as b:
            second = await b.chat.completions.create(model="llama-3-8b", messages=HI)
        assert (calls(local), calls(hosted)) == (1, 1)
        assert cache_flags(second)[0].cached is False
        assert first.choices[0].message.content != second.choices[0].message.content


async def test_a_server_that_ignores_n_is_filled_and_stored_complete(tmp_path: Path) -> None:
    """n=3 from a one-choice server takes 3 calls; a new client replays all 3 with no HTTP."""
    cache = str(tmp_path / "c")
    with FakeLLMServer(max_choices=1) as server:
        async with AsyncOpenAI(cache=cache, base_url=server.openai_base_url, api_key="t") as a:
            fresh = await a.chat.completions.create(model="m", messages=HI, n=3)
        assert calls(server) == 3
        assert [f.duplicated for f in cache_flags(fresh)] == [False, False, False]
        async with AsyncOpenAI(cache=cache, base_url=server.openai_base_url, api_key="t") as b:
            again = await b.chat.completions.create(model="m", messages=HI, n=3)
        assert calls(server) == 3
    assert [c.message.content for c in again.choices] == [c.message.content for c in fresh.choices]
    assert [f.cached for f in cache_flags(again)] == [True, True, True]


async def test_server_specific_parameters_go_in_extra_body_and_the_key(tmp_path: Path) -> None:
    """vLLM-style top_k in extra_body is sent, and another value is another key."""
    with FakeLLMServer() as server:
        async with AsyncOpenAI(
            cache=str(tmp_path / "c"), base_url=server.openai_base_url, api_key="t"
        ) as client:
            await client.chat.completions.create(model="m", messages=HI, extra_body={"top_k": 5})
            await client.chat.completions.create(model="m", messages=HI, extra_body={"top_k": 6})
        bodies = [r.body for r in server.received if r.path.endswith("/chat/completions")]
    assert [b.get("top_k") for b in bodies] == [5, 6]
