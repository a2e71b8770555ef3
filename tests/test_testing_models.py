"""cachesaver.testing: models users can use in their own tests."""

from __future__ import annotations

import asyncio

import pytest

from cachesaver import Batch, Request
from cachesaver.testing import InjectedFailure, RecordingModel, SimulatedLLM


async def test_simulated_llm_is_stochastic_across_samples() -> None:
    """Samples of one request differ from each other and from the next call's."""
    model = SimulatedLLM(seed=0)
    first = (await model.request(Request("q", n=5))).data
    second = (await model.request(Request("q", n=5))).data
    assert len(set(first + second)) == 10


async def test_simulated_llm_is_reproducible_by_seed() -> None:
    """Two models with one seed give the same samples; another seed gives others."""
    a = [(await SimulatedLLM(seed=4).request(Request("q", n=3))).data for _ in range(2)]
    b = (await SimulatedLLM(seed=5).request(Request("q", n=3))).data
    assert a[0] == a[1]
    assert a[0] != b


async def test_simulated_llm_draws_do_not_depend_on_other_prompts() -> None:
    """The k-th sample for a prompt is the same whatever else was asked before."""
    plain = SimulatedLLM(seed=1)
    busy = SimulatedLLM(seed=1)
    await busy.request(Request("other", n=4))
    assert (await plain.request(Request("q", n=2))).data == (
        await busy.request(Request("q", n=2))
    ).data


async def test_simulated_llm_latency_and_batches() -> None:
    """latency is slept once per call, and batch_request answers each request."""
    model = SimulatedLLM(latency=0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    responses = await model.batch_request(Batch([Request("a", n=2), Request("b")]))
    assert loop.time() - start >= 0.045
    assert [len(r.data) for r in responses] == [2, 1]


async def test_simulated_llm_custom_responder() -> None:
    """A responder decides what one sample is, with a seeded rng."""
    model = SimulatedLLM(responder=lambda request, rng: {"value": rng.randint(0, 9)})
    data = (await model.request(Request("q", n=3))).data
    assert all(set(d) == {"value"} for d in data)


async def test_recording_model_counts_and_fails_on_demand() -> None:
    """RecordingModel records calls and raises the injected failures in order."""
    model = RecordingModel()
    model.fail_next(2)
    for _ in range(2):
        with pytest.raises(InjectedFailure):
            await model.request(Request("q"))
    await model.request(Request("q", n=3))
    assert [r.n for r in model.calls] == [1, 1, 3]
    assert model.samples_generated == 5


async def test_recording_model_hold_and_release() -> None:
    """hold() parks calls at a gate until release()."""
    model = RecordingModel()
    model.hold()
    call = asyncio.ensure_future(model.request(Request("q")))
    await asyncio.sleep(0.01)
    assert not call.done() and model.entered == 1
    model.release()
    assert len((await call).data) == 1


async def test_simulated_samples_do_not_depend_on_how_draws_are_split() -> None:
    """n=2 in one call gives the same samples as two calls of n=1 (merging is invisible)."""
    together = (await SimulatedLLM(seed=0).request(Request("q", n=2))).data
    split = SimulatedLLM(seed=0)
    apart = [(await split.request(Request("q"))).data[0] for _ in range(2)]
    assert together == apart
