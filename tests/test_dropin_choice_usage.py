"""Per-choice token counts of drop-in answers, through the real openai and together SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from cachesaver.models import ChoiceFlags, ChoiceUsage, cache_flags, choice_usage
from cachesaver.models.openai import AsyncOpenAI
from cachesaver.models.together import AsyncTogether
from cachesaver.testing.server import FakeLLMServer

MESSAGES = [{"role": "user", "content": "Which numbers make 24 from 4 9 10 13?"}]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(error_retry_after=0.005) as running:
        yield running


def _openai(server: FakeLLMServer, cache: Path) -> AsyncOpenAI:
    return AsyncOpenAI(cache=str(cache), base_url=server.openai_base_url, api_key="test")


def _together(server: FakeLLMServer, cache: Path) -> AsyncTogether:
    return AsyncTogether(cache=str(cache), base_url=server.url, api_key="test")


def _served(server: FakeLLMServer) -> tuple[int, int]:
    """(prompt, completion) tokens the server has reported so far, over all its answers."""
    stats = server.stats()
    return stats["prompt_tokens"], stats["completion_tokens"]


@pytest.mark.parametrize("make", [_openai, _together], ids=["openai", "together"])
async def test_a_hit_in_a_new_client_shows_the_fresh_calls_per_choice_counts(
    server: FakeLLMServer, tmp_path: Path, make: Any
) -> None:
    """Fresh, each choice carries its call's prompt and its own output; a hit shows the same."""
    model = "fake-chat"
    async with make(server, tmp_path / "c") as client:
        fresh = await client.chat.completions.create(
            model=model, messages=MESSAGES, n=3, temperature=0.7, namespace="run"
        )
    fresh_usage = choice_usage(fresh)
    prompt, output = _served(server)
    assert server.stats()["chat_requests"] == 1 and prompt > 0
    assert [u.prompt_tokens for u in fresh_usage] == [prompt] * 3
    assert sum(u.completion_tokens or 0 for u in fresh_usage) == output
    assert all((u.completion_tokens or 0) > 0 for u in fresh_usage)
    assert {u.completion_id for u in fresh_usage} == {fresh.id}
    assert fresh.usage is not None and fresh.usage.prompt_tokens == prompt
    assert fresh.choices[1].prompt_tokens == prompt  # also readable on the SDK object
    sent = server.stats()["requests"]

    async with make(server, tmp_path / "c") as client:
        hit = await client.chat.completions.create(
            model=model, messages=MESSAGES, n=3, temperature=0.7, namespace="run"
        )
    assert server.stats()["requests"] == sent
    assert cache_flags(hit) == [ChoiceFlags(True, False)] * 3
    assert hit.usage is not None and hit.usage.total_tokens == 0  # paid nothing...
    assert choice_usage(hit) == fresh_usage  # ...but each sample's own counts are kept


async def test_choices_from_two_calls_name_their_own_call_and_counts(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    """A partly cached answer: stored choices keep their call's counts, new ones their own."""
    cache = tmp_path / "c"
    async with _openai(server, cache) as client:
        first = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=2, temperature=0.7, namespace="A"
        )
    before = _served(server)
    async with _openai(server, cache) as client:
        more = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, n=4, temperature=0.7, namespace="A"
        )
    prompt, output = (now - then for now, then in zip(_served(server), before, strict=True))
    assert server.stats()["chat_requests"] == 2
    usage = choice_usage(more)
    assert usage[:2] == choice_usage(first)
    assert [f.cached for f in cache_flags(more)] == [True, True, False, False]
    assert usage[2].completion_id == usage[3].completion_id != first.id
    assert [u.prompt_tokens for u in usage[2:]] == [prompt, prompt]
    assert sum(u.completion_tokens or 0 for u in usage[2:]) == output
    assert more.usage is not None and more.usage.prompt_tokens == prompt


async def test_choice_usage_refuses_an_answer_not_from_a_dropin(server: FakeLLMServer) -> None:
    """choice_usage of a plain SDK answer raises ValueError naming the drop-in clients."""
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="test") as sdk:
        plain = await sdk.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": "Hi"}]
        )
    with pytest.raises(ValueError, match=r"cachesaver\.models\.openai\.AsyncOpenAI"):
        choice_usage(plain)
    with pytest.raises(ValueError, match="got str"):
        choice_usage("not a completion")
    assert ChoiceUsage(1, 2, "x").completion_id == "x"
