"""Every pipeline and drop-in client says what it paid and saved; replay misses explain
themselves."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from cachesaver import CacheMissError, OnlineAPI, Request, Response
from cachesaver.models import ChatRequest
from cachesaver.models.anthropic import AsyncAnthropic
from cachesaver.models.openai import AsyncOpenAI, OpenAIModel
from cachesaver.savings import Price, SavingsCounter
from cachesaver.testing import RecordingModel
from cachesaver.testing.server import FakeLLMServer

HI = [{"role": "user", "content": "Hi"}]
PRICES = {"m": Price(prompt=1.0, completion=2.0)}


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


async def test_a_pipeline_counts_tokens_and_dollars_paid_then_saved(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    """A first run pays what the server counted; a replay saves exactly that."""
    cache = str(tmp_path / "c")
    request = ChatRequest("Hi", n=3, temperature=0.5)
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="t") as sdk:
        model = OpenAIModel(sdk, "m", sample="full")
        async with OnlineAPI(model, cache=cache, prices=PRICES) as first:
            await first.request(request)
            paid = first.savings()
        async with OnlineAPI(model, cache=cache, prices=PRICES) as second:
            await second.request(request)
            saved = second.savings()
    counted = server.stats()
    assert paid.prompt_tokens_paid == counted["prompt_tokens"]
    assert paid.completion_tokens_paid == counted["completion_tokens"]
    assert paid.samples_paid == 3 and paid.calls_paid == 1 and paid.samples_saved == 0
    expected = (counted["prompt_tokens"] * 1.0 + counted["completion_tokens"] * 2.0) / 1e6
    assert paid.dollars_paid == pytest.approx(expected)
    assert saved.samples_saved == 3 and saved.samples_paid == 0
    assert saved.completion_tokens_saved == paid.completion_tokens_paid
    assert saved.dollars_paid == 0


async def test_without_a_price_dollars_are_unknown_not_zero(tmp_path: Path) -> None:
    """A model with no price reports dollars as None, and text samples count no tokens."""
    async with OnlineAPI(RecordingModel(), cache=str(tmp_path / "c")) as api:
        await api.request(Request("q", n=2))
        summary = api.savings()
    assert summary.samples_paid == 2 and summary.dollars_paid is None


async def test_drop_in_clients_sum_what_their_calls_paid(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    """client.savings() agrees with the usage the answers report, for OpenAI and Anthropic."""
    cache = str(tmp_path / "c")
    async with AsyncOpenAI(
        cache=cache, base_url=server.openai_base_url, api_key="t", prices=PRICES
    ) as client:
        answer = await client.chat.completions.create(model="m", messages=HI, n=2)
        await client.chat.completions.create(model="m", messages=HI, n=2, namespace="again")
        summary = client.savings()
    assert answer.usage is not None
    assert summary.prompt_tokens_paid == answer.usage.prompt_tokens
    assert summary.completion_tokens_paid == answer.usage.completion_tokens
    assert summary.completion_tokens_saved == answer.usage.completion_tokens
    assert summary.dollars_saved is not None and summary.dollars_saved > 0
    async with AsyncAnthropic(cache=cache, base_url=server.url, api_key="t") as claude:
        message: Any = await claude.messages.create(model="c", max_tokens=9, messages=HI)
        spent = claude.savings()
    assert spent.prompt_tokens_paid == message.usage.input_tokens > 0
    assert spent.completion_tokens_paid == message.usage.output_tokens


@dataclass(frozen=True)
class Sampled(Request):
    temperature: float | None = None


async def test_a_replay_miss_names_the_nearest_key_and_the_difference(tmp_path: Path) -> None:
    """explain_misses=True: the error says temperature 0.70001 vs the stored 0.7."""
    cache = str(tmp_path / "c")
    async with OnlineAPI(RecordingModel(), cache=cache) as api:
        await api.request(Sampled("The same question", temperature=0.7))
    async with OnlineAPI(RecordingModel(), cache=cache, mode="replay", explain_misses=True) as api:
        with pytest.raises(CacheMissError) as caught:
            await api.request(Sampled("The same question", temperature=0.70001))
    message = str(caught.value)
    assert "temperature" in message and "0.70001" in message and "0.7" in message
    async with OnlineAPI(RecordingModel(), cache=cache, mode="replay") as api:
        with pytest.raises(CacheMissError) as plain:
            await api.request(Sampled("The same question", temperature=0.70001))
    assert "temperature" not in str(plain.value)  # off by default: no store scan


async def test_one_counter_watching_two_pipelines_counts_both(tmp_path: Path) -> None:
    """A `SavingsCounter` shared by two pipelines (as a drop-in client's endpoints share
    one) counts the samples and calls each answered, paid and saved."""
    counter = SavingsCounter()
    async with (
        OnlineAPI(RecordingModel(), cache=str(tmp_path / "a"), savings=counter) as one,
        OnlineAPI(RecordingModel(), cache=str(tmp_path / "b"), savings=counter) as two,
    ):
        await one.request(Request("q", n=2))
        await two.request(Request("q", n=3))
        await two.request(Request("q", n=3, namespace="again"))
        summary = counter.summary()
    assert (summary.samples_paid, summary.samples_saved) == (5, 3)
    assert summary.calls_paid == 2 and summary.dollars_paid is None
    assert one.savings() == two.savings() == summary


def test_token_counts_are_taken_only_from_int_counts_of_dict_samples() -> None:
    """Only int token counts count (not bools, floats or strings); a sample with neither
    count takes an Anthropic ``usage``; text samples count none; flags decide who paid."""
    counter = SavingsCounter(prices=PRICES)
    odd = {"prompt_tokens": True, "completion_tokens": 3.0}
    anthropic = {"usage": {"input_tokens": 7, "output_tokens": 5}}
    half = {"prompt_tokens": None, "completion_tokens": 4}
    full = {"prompt_tokens": 10, "completion_tokens": "6"}
    counter.add_tokens(
        Response(
            [odd, anthropic, half, full, "text"], [False] * 5, [False, True, False, False, False]
        ),
        model="m",
    )
    counter.add_tokens(Response([anthropic, full, half], [True, True, True], None), model="m")
    counter.add_tokens(Response([full], None, None), model="m")
    s = counter.summary()
    assert (s.prompt_tokens_paid, s.completion_tokens_paid) == (0 + 0 + 0 + 10 + 10, 5 + 4)
    assert (s.prompt_tokens_saved, s.completion_tokens_saved) == (7 + 10, 5 + 4)
    assert s.calls_saved == 2  # the saved samples with prompt tokens
    assert s.dollars_paid == pytest.approx((20 * 1.0 + 9 * 2.0) / 1e6)
    assert s.dollars_saved == pytest.approx((17 * 1.0 + 9 * 2.0) / 1e6)
