"""SEMANTICS "Batching": size, timeout, concurrency, contract errors and closing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cachesaver import (
    AsyncBatcher,
    Batch,
    LocalAPI,
    ModelContractError,
    OnlineAPI,
    PipelineClosedError,
    Request,
    Response,
)
from cachesaver.testing import InjectedFailure, RecordingModel, SimulatedLLM

from .helpers import stored


async def test_batch_size_bounds_the_samples_in_a_batch() -> None:
    """A batch holds at most batch_size samples, counting every request's n."""
    model = RecordingModel()
    async with AsyncBatcher(model, batch_size=4, timeout=0.01) as batcher:
        await asyncio.gather(
            *(batcher.request(Request(f"q{i}", n=n)) for i, n in enumerate([1, 2, 2, 3, 1]))
        )
    sizes = [sum(r.n for r in b.requests) for b in model.batches]
    assert all(size <= 4 for size in sizes)
    assert sizes == [3, 2, 4]


async def test_a_request_larger_than_the_batch_goes_alone() -> None:
    """A request with n > batch_size is never split: it is sent as its own batch."""
    model = RecordingModel()
    async with AsyncBatcher(model, batch_size=2, timeout=0.01) as batcher:
        big, small = await asyncio.gather(
            batcher.request(Request("big", n=5)), batcher.request(Request("small"))
        )
    assert len(big.data) == 5 and len(small.data) == 1
    assert sorted([r.n for r in b.requests] for b in model.batches) == [[1], [5]]


async def test_a_partial_batch_is_sent_after_the_timeout() -> None:
    """A batch that never fills is sent timeout seconds after its first request, not before."""
    model = RecordingModel()
    async with AsyncBatcher(model, batch_size=100, timeout=0.05) as batcher:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.request(Request("lonely"))
        waited = loop.time() - start
    assert waited >= 0.05 - 0.005  # the loop's clock resolution
    assert [len(b.requests) for b in model.batches] == [1]


async def test_a_full_batch_is_sent_without_waiting_for_the_timeout() -> None:
    """A batch that fills is sent at once, long before an hour-long timeout."""
    model = RecordingModel()
    async with AsyncBatcher(model, batch_size=2, timeout=3600) as batcher:
        both = asyncio.gather(batcher.request(Request("a")), batcher.request(Request("b")))
        await model.wait_entered(1)  # pytest-timeout fails the test if this waits an hour
        assert [len(b.requests) for b in model.batches] == [2]
        await both


async def test_slow_batch_does_not_hold_back_the_next() -> None:
    """Several batches are in flight at once; a fast batch finishes while a slow one waits."""

    class Slow(SimulatedLLM):
        def __init__(self) -> None:
            super().__init__()
            self.entered = asyncio.Event()
            self.gate = asyncio.Event()

        async def batch_request(self, batch: Batch) -> list[Response]:
            if batch.requests[0].prompt == "slow":
                self.entered.set()
                await self.gate.wait()
            return await super().batch_request(batch)

    model = Slow()
    async with AsyncBatcher(model, batch_size=1, timeout=0) as batcher:
        slow = asyncio.ensure_future(batcher.request(Request("slow")))
        await model.entered.wait()
        fast = await batcher.request(Request("fast"))  # would wait forever if held back
        assert not slow.done() and len(fast.data) == 1
        model.gate.set()
        await slow


async def test_wrong_number_of_responses_fails_every_caller_clearly() -> None:
    """A batch model returning too few responses gives every caller a clear error."""

    class Short:
        async def batch_request(self, batch: Batch) -> list[Response]:
            return [Response(data=["x"])]

    async with AsyncBatcher(Short(), batch_size=3, timeout=0.01) as batcher:
        results = await asyncio.gather(
            *(batcher.request(Request(p)) for p in "abc"), return_exceptions=True
        )
    assert all(isinstance(r, ModelContractError) for r in results)
    assert "one Response per request" in str(results[0])


async def test_wrong_number_of_samples_fails_that_caller_only() -> None:
    """A response with the wrong number of samples fails only its own request."""
    model = RecordingModel()
    async with AsyncBatcher(model, batch_size=1, timeout=0) as batcher:
        model.wrong_count_next(1)
        with pytest.raises(ModelContractError, match="exactly n samples"):
            await batcher.request(Request("a", n=2))
        ok = await batcher.request(Request("b", n=2))
    assert len(ok.data) == 2


async def test_model_error_reaches_callers_and_the_batcher_stays_usable() -> None:
    """A model that raises fails its batch's callers promptly; later batches work."""
    model = RecordingModel()
    model.fail_next(1, ValueError("boom"))
    async with AsyncBatcher(model, batch_size=2, timeout=0.01) as batcher:
        results = await asyncio.wait_for(
            asyncio.gather(
                batcher.request(Request("a")), batcher.request(Request("b")), return_exceptions=True
            ),
            2,
        )
        assert all(isinstance(r, ValueError) for r in results)
        assert len((await batcher.request(Request("c"))).data) == 1


async def test_close_sends_waiting_requests_and_answers_every_caller() -> None:
    """aclose() sends the partial batch at once and waits for in-flight batches."""
    model = RecordingModel(SimulatedLLM(latency=0.05))
    batcher = AsyncBatcher(model, batch_size=100, timeout=60)
    pending = [asyncio.ensure_future(batcher.request(Request(f"q{i}"))) for i in range(5)]
    await asyncio.sleep(0.01)
    await asyncio.wait_for(batcher.aclose(), 2)
    assert all(p.done() and len(p.result().data) == 1 for p in pending)


async def test_use_after_close_raises() -> None:
    """A closed stage refuses new requests with a CacheSaverError."""
    batcher = AsyncBatcher(RecordingModel(), batch_size=2, timeout=0)
    await batcher.aclose()
    with pytest.raises(PipelineClosedError, match="closed"):
        await batcher.request(Request("late"))


@pytest.mark.parametrize("size", [0, -1, 2.5, "4", True, None])
def test_bad_batch_size_is_refused(size: Any) -> None:
    """batch_size must be a positive int."""
    with pytest.raises(ValueError, match="batch_size"):
        AsyncBatcher(RecordingModel(), batch_size=size)


@pytest.mark.parametrize("timeout", [-1, float("inf"), float("nan"), None, "1"])
def test_bad_timeout_is_refused(timeout: Any) -> None:
    """timeout must be a finite number of seconds: nothing waits forever."""
    with pytest.raises(ValueError, match="timeout"):
        AsyncBatcher(RecordingModel(), batch_size=2, timeout=timeout)


def test_pipelines_validate_batching_options(cache_dir: str) -> None:
    """OnlineAPI rejects a bad batch_size or timeout when it is created."""
    with pytest.raises(ValueError, match="batch_size"):
        OnlineAPI(RecordingModel(), cache=cache_dir, batch_size=0)
    with pytest.raises(ValueError, match="timeout"):
        OnlineAPI(RecordingModel(), cache=cache_dir, timeout=-0.5)


async def test_local_api_splits_a_request_larger_than_the_batch_size(cache_dir: str) -> None:
    """LocalAPI: n=7 with batch_size 5 reaches the model in batches of at most 5, in order."""
    model = RecordingModel(SimulatedLLM(seed=4))
    async with LocalAPI(model, cache=cache_dir, batch_size=5, timeout=0) as api:
        response = await api.request(Request("q", n=7))
        samples = await stored(api.store, api.key_of(Request("q")), 7)
    assert [sum(r.n for r in batch.requests) for batch in model.batches] == [5, 2]
    reference = await SimulatedLLM(seed=4).request(Request("q", n=7))
    assert response.data == reference.data == samples, "the samples keep their order"
    assert response.cached == [False] * 7
    assert response.duplicated == [False, True, True, True, True, False, True]


async def test_online_api_never_splits_a_request() -> None:
    """OnlineAPI (an API takes any n): a request larger than the batch goes alone, whole."""
    model = RecordingModel()
    async with AsyncBatcher(model, batch_size=5, timeout=0) as batcher:
        response = await batcher.request(Request("q", n=7))
    assert [r.n for r in model.calls] == [7] and len(response.data) == 7


async def test_a_failed_part_fails_the_split_request() -> None:
    """If one part of a split request fails, the request fails with that error."""
    model = RecordingModel()
    model.fail_next(1)
    async with AsyncBatcher(model, batch_size=2, timeout=0, split=True) as batcher:
        with pytest.raises(InjectedFailure):
            await batcher.request(Request("q", n=5))
