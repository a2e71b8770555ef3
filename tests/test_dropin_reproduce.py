"""SEMANTICS rule 8 through the drop-in clients: a recorded run replays exactly, whatever
order its agents ask in."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cachesaver import CacheMissError
from cachesaver.models._errors import DropInOptionError
from cachesaver.models.anthropic import AsyncAnthropic
from cachesaver.models.openai import AsyncOpenAI
from cachesaver.testing.server import FakeLLMServer

AGENTS = 8


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


async def agents(client: Any, order: list[int], ask: Any) -> dict[int, str]:
    """Each agent asks its own question, then the shared one when its turn in ``order``
    comes (the order stands for model latency: it differs between runs)."""
    turns = [asyncio.Event() for _ in range(AGENTS)]
    answered = [asyncio.Event() for _ in range(AGENTS)]
    answers: dict[int, str] = {}

    async def agent(i: int) -> None:
        await ask(client, f"Agent {i}: what is your task?", f"agent{i}-own")
        await turns[i].wait()
        answers[i] = await ask(client, "Shared: what should we do next?", f"agent{i}-shared")
        answered[i].set()

    async def conductor() -> None:
        for i in order:  # the next agent asks only after this one was answered
            turns[i].set()
            await answered[i].wait()

    await asyncio.gather(*(agent(i) for i in range(AGENTS)), conductor())
    return answers


async def ask_openai(client: AsyncOpenAI, text: str, request_id: str) -> str:
    answer = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": text}], request_id=request_id
    )
    return str(answer.choices[0].message.content)


async def ask_anthropic(client: AsyncAnthropic, text: str, request_id: str) -> str:
    message: Any = await client.messages.create(
        model="m",
        max_tokens=20,
        messages=[{"role": "user", "content": text}],
        request_id=request_id,
    )
    return str(message.content[0].text)


@pytest.mark.parametrize("trial", range(8))
async def test_eight_agents_replay_exactly_through_the_openai_drop_in(
    server: FakeLLMServer, tmp_path: Path, trial: int
) -> None:
    """Recorded in one order, reproduced in another: every agent gets its own sample."""
    rng = random.Random(trial)
    first_order, second_order = rng.sample(range(AGENTS), AGENTS), rng.sample(range(AGENTS), AGENTS)
    cache, record = str(tmp_path / "c"), str(tmp_path / "run.jsonl")
    options: dict[str, Any] = {"base_url": server.openai_base_url, "api_key": "t"}
    async with AsyncOpenAI(cache=cache, manifest=record, **options) as client:
        first = await agents(client, first_order, ask_openai)
    calls = server.stats()["chat_requests"]
    async with AsyncOpenAI(cache=cache, reproduce=record, mode="replay", **options) as client:
        again = await agents(client, second_order, ask_openai)
    assert again == first
    assert server.stats()["chat_requests"] == calls  # zero model calls
    assert len(set(first.values())) == AGENTS  # the shared question drew 8 samples


async def test_the_anthropic_drop_in_reproduces_too(server: FakeLLMServer, tmp_path: Path) -> None:
    """The same holds for AsyncAnthropic; a call the record lacks is a CacheMissError."""
    cache, record = str(tmp_path / "c"), str(tmp_path / "run.jsonl")
    options: dict[str, Any] = {"base_url": server.url, "api_key": "t"}
    async with AsyncAnthropic(cache=cache, manifest=record, **options) as client:
        first = await agents(client, list(range(AGENTS)), ask_anthropic)
    async with AsyncAnthropic(cache=cache, reproduce=record, mode="replay", **options) as client:
        again = await agents(client, list(reversed(range(AGENTS))), ask_anthropic)
        with pytest.raises(CacheMissError):
            await ask_anthropic(client, "Shared: what should we do next?", "agent9-shared")
    assert again == first


def test_reproduce_is_validated_before_anything_opens(tmp_path: Path) -> None:
    """A reproduce= that is not a path or a RunManifest, or with run_id=, is refused."""
    with pytest.raises(DropInOptionError, match="reproduce"):
        AsyncOpenAI(cache=str(tmp_path / "c"), reproduce=42, api_key="t")  # type: ignore[arg-type]
    with pytest.raises(DropInOptionError, match="run_id"):
        AsyncOpenAI(cache=str(tmp_path / "c"), reproduce="run.jsonl", run_id="r", api_key="t")
    assert not (tmp_path / "c").exists()
