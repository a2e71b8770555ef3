"""SEMANTICS "Allocation": which samples each request receives, and when the model is asked."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from cachesaver import Batch, DiskStore, LocalAPI, OnlineAPI, Request, Response, StoreError
from cachesaver._coordination import coordinator
from cachesaver.stores.base import SampleRead, SampleWrite, WriteResult
from cachesaver.testing import InjectedFailure, RecordingModel, SimulatedLLM

from .helpers import stored


async def test_kth_draw_in_a_namespace_gets_index_k_minus_1(cache_dir: str) -> None:
    """Successive requests in one namespace take successive, disjoint index ranges."""
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir) as api:
        first = await api.request(Request("q", n=2, namespace="a"))
        second = await api.request(Request("q", n=3, namespace="a"))
        key = api.key_of(Request("q"))
        samples = await stored(api.store, key, 5)
    assert first.data == samples[0:2]
    assert second.data == samples[2:5]
    assert len(set(samples)) == 5, "draws within a namespace are fresh"


async def test_other_namespaces_walk_the_same_list_from_the_start(cache_dir: str) -> None:
    """Namespace B reuses what namespace A paid for, in the same order."""
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir) as api:
        a1 = await api.request(Request("q", n=2, namespace="A"))
        a2 = await api.request(Request("q", n=1, namespace="A"))
        b = await api.request(Request("q", n=3, namespace="B"))
    assert b.data == a1.data + a2.data
    assert b.cached == [True, True, True]
    assert model.samples_generated == 3


async def test_a_new_run_replays_every_request_exactly(cache_dir: str) -> None:
    """A new pipeline over the same cache gives each request the same samples, no calls."""
    requests = [Request(f"q{i % 3}", n=1 + i % 2, namespace=f"ns{i % 2}") for i in range(12)]
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir) as api:
        first = [await api.request(r) for r in requests]
    calls = len(model.calls)
    async with OnlineAPI(model, cache=cache_dir, batch_size=3, timeout=0.01) as api:
        again = await asyncio.gather(*(api.request(r) for r in requests))
        assert api.stats().model_calls == 0
    assert [r.data for r in again] == [r.data for r in first]
    assert all(r.cached == [True] * len(r.data) for r in again)
    assert len(model.calls) == calls


class SlowFirst(SimulatedLLM):
    """A model whose first-issued prompt is the slowest to answer."""

    async def request(self, request: Request) -> Response:
        await asyncio.sleep(0.05 if request.request_id == "first" else 0.0)
        return await super().request(request)


@pytest.mark.parametrize(("batch_size", "timeout"), [(1, 0.0), (2, 0.01), (100, 0.02)])
async def test_allocation_follows_issue_order_not_timing(
    cache_dir: str, batch_size: int, timeout: float
) -> None:
    """Indices follow the order requests were issued, whatever batching and latency do."""
    requests = [
        Request("same", n=2, namespace="n", request_id="first"),
        Request("same", n=1, namespace="n", request_id="second"),
        Request("same", n=2, namespace="n", request_id="third"),
    ]
    async with OnlineAPI(
        SlowFirst(), cache=cache_dir, batch_size=batch_size, timeout=timeout
    ) as api:
        responses = await asyncio.gather(*(api.request(r) for r in requests))
        samples = await stored(api.store, api.key_of(requests[0]), 5)
    assert responses[0].data == samples[0:2]
    assert responses[1].data == samples[2:3]
    assert responses[2].data == samples[3:5]


async def test_batch_request_allocates_in_list_order(cache_dir: str) -> None:
    """batch_request hands out indices in list order."""
    requests = [Request("same", n=1, namespace="n", request_id=str(i)) for i in range(4)]
    async with LocalAPI(RecordingModel(), cache=cache_dir, batch_size=1) as api:
        responses = await api.batch_request(Batch(requests))
        samples = await stored(api.store, api.key_of(requests[0]), 4)
    assert [r.data[0] for r in responses] == samples


async def test_model_is_asked_only_for_missing_samples(cache_dir: str) -> None:
    """With 2 of 5 samples stored, the model call asks for n=3 exactly."""
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir) as api:
        await api.request(Request("q", n=2, namespace="first"))
        response = await api.request(Request("q", n=5, namespace="second"))
    assert [r.n for r in model.calls] == [2, 3]
    assert response.cached == [True, True, False, False, False]
    assert response.duplicated == [False, False, False, True, True]


async def test_waits_for_in_flight_samples_instead_of_regenerating(cache_dir: str) -> None:
    """Another namespace asking for samples being generated waits for them: one call."""
    model = RecordingModel()
    model.hold()
    async with OnlineAPI(model, cache=cache_dir, batch_size=10, timeout=0) as api:
        a = asyncio.ensure_future(api.request(Request("q", n=2, namespace="A")))
        await model.wait_entered()
        b = asyncio.ensure_future(api.request(Request("q", n=3, namespace="B")))
        await asyncio.sleep(0.02)
        model.release()
        ra, rb = await a, await b
    assert rb.data[:2] == ra.data
    assert rb.cached == [True, True, False]
    assert ra.cached == [False, False]
    assert [r.n for r in model.calls] == [2, 1]


async def test_after_a_partial_hit_another_request_waits_for_the_generated_rest(
    cache_dir: str,
) -> None:
    """A request whose read found part of its samples still holds the rest it generates."""
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir) as first:
        stored_one = await first.request(Request("q", n=1, namespace="A"))
    model.hold()
    # New runs over one store (nothing remembered; one store thread, so reads and writes
    # keep their order): `a` reads index 0 and generates index 1.
    store = DiskStore(cache_dir)
    async with OnlineAPI(model, cache=store) as one, OnlineAPI(model, cache=store) as two:
        a = asyncio.ensure_future(one.request(Request("q", n=2, namespace="B")))
        await model.wait_entered(2)  # the call for index 1 (the first run made one)
        b = asyncio.ensure_future(two.request(Request("q", n=2, namespace="C")))
        await asyncio.sleep(0)  # `b` claims what it can, and finds index 1 being generated
        model.release()
        ra, rb = await a, await b
        left = dict(coordinator(store.location).claims)
    await store.aclose()
    assert not left, "every claim was given up"
    assert ra.data[0] == stored_one.data[0]
    assert rb.data == ra.data
    assert ra.cached == [True, False]
    assert rb.cached == [True, True]
    assert [r.n for r in model.calls] == [1, 1], "index 1 was generated once"


async def test_two_pipelines_on_one_store_share_in_flight_samples(cache_dir: str) -> None:
    """A second pipeline over the same directory waits for the first one's call."""
    model = RecordingModel()
    model.hold()
    async with OnlineAPI(model, cache=cache_dir) as one, OnlineAPI(model, cache=cache_dir) as two:
        a = asyncio.ensure_future(one.request(Request("q", n=2, namespace="x")))
        await model.wait_entered()
        b = asyncio.ensure_future(two.request(Request("q", n=2, namespace="x")))
        await asyncio.sleep(0.02)
        model.release()
        ra, rb = await a, await b
    assert ra.data == rb.data
    assert rb.cached == [True, True]
    assert len(model.calls) == 1


async def test_waiter_makes_its_own_call_when_the_awaited_call_fails(cache_dir: str) -> None:
    """A request never fails because of another request's model error."""
    model = RecordingModel()
    model.hold()
    model.fail_next(1)
    async with OnlineAPI(model, cache=cache_dir, timeout=0) as api:
        a = asyncio.ensure_future(api.request(Request("q", n=2, namespace="A")))
        await model.wait_entered()
        b = asyncio.ensure_future(api.request(Request("q", n=2, namespace="B")))
        await asyncio.sleep(0.02)
        model.release()
        with pytest.raises(InjectedFailure):
            await a
        rb = await b
        assert rb.cached == [False, False]
        # A's indices went back: A's namespace now gets exactly B's samples, for free.
        ra = await api.request(Request("q", n=2, namespace="A"))
    assert ra.data == rb.data and ra.cached == [True, True]


async def test_failed_request_consumes_nothing(cache_dir: str) -> None:
    """After a failure, the next request in that namespace gets the failed one's indices."""
    model = RecordingModel()
    model.fail_next(1)
    async with OnlineAPI(model, cache=cache_dir) as api:
        with pytest.raises(InjectedFailure):
            await api.request(Request("q", n=2, namespace="n"))
        retry = await api.request(Request("q", n=2, namespace="n"))
        samples = await stored(api.store, api.key_of(Request("q")), 3)
    assert retry.data == samples[0:2]
    assert samples[2] is None


async def test_returned_indices_are_handed_out_first_lowest_first(cache_dir: str) -> None:
    """A failed request's indices go to the next request before new ones, lowest first."""
    model = RecordingModel()
    model.fail_next(1)
    async with OnlineAPI(model, cache=cache_dir, batch_size=2, timeout=0) as api:
        failing = asyncio.ensure_future(api.request(Request("q", n=2, namespace="n")))
        ok = asyncio.ensure_future(api.request(Request("q", n=2, namespace="n")))
        with pytest.raises(InjectedFailure):
            await failing
        second = await ok
        third = await api.request(Request("q", n=3, namespace="n"))
        samples = await stored(api.store, api.key_of(Request("q")), 5)
    assert second.data == samples[2:4]
    assert third.data == [samples[0], samples[1], samples[4]]


class WatchedWrites(DiskStore):
    """The real disk store; ``await written(k)`` returns once k samples were written."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.samples_written = 0
        self._changed = asyncio.Condition()

    async def write(self, writes: Sequence[SampleWrite]) -> list[WriteResult]:
        results = await super().write(writes)
        async with self._changed:
            self.samples_written += sum(len(w.samples) for w in writes)
            self._changed.notify_all()
        return results

    async def written(self, count: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.samples_written >= count)


async def test_cancelled_request_consumes_nothing_but_its_samples_are_kept(
    cache_dir: str,
) -> None:
    """Cancelling a request returns its indices; what the model returned is still stored."""
    model = RecordingModel()
    model.hold()
    store = WatchedWrites(cache_dir)
    async with OnlineAPI(model, cache=store, timeout=0) as api:
        task = asyncio.ensure_future(api.request(Request("q", n=2, namespace="n")))
        await model.wait_entered()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        model.release()
        await store.written(2)  # the orphaned call's samples reached the store
        samples = await stored(api.store, api.key_of(Request("q")), 2)
        again = await api.request(Request("q", n=2, namespace="n"))
    await store.aclose()
    assert None not in samples, "the paid-for samples were stored"
    assert again.data == samples
    assert again.cached == [True, True]
    assert len(model.calls) == 1


async def test_failing_batch_consumes_nothing(cache_dir: str) -> None:
    """When one request of batch_request fails, no request of the batch consumes samples."""
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir, batch_size=1, timeout=0) as api:
        model.fail_next(1)
        with pytest.raises(InjectedFailure):
            await api.batch_request(
                Batch([Request("a", namespace="n"), Request("b", namespace="n")])
            )
        calls = len(model.calls)
        responses = await api.batch_request(
            Batch([Request("a", namespace="n"), Request("b", namespace="n")])
        )
    assert responses[1].cached == [True], "b's stored sample was handed out again"
    assert len(model.calls) == calls + 1, "only a, whose call failed, was asked again"


async def test_same_key_same_namespace_requests_merge_in_issue_order(cache_dir: str) -> None:
    """Same-key requests waiting for one batch become one call with n summed."""
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir, batch_size=10, timeout=0.01) as api:
        responses = await asyncio.gather(
            *(api.request(Request("q", n=k, namespace="n")) for k in (1, 2, 3))
        )
        samples = await stored(api.store, api.key_of(Request("q")), 6)
    assert [r.n for r in model.calls] == [6]
    assert [r.data for r in responses] == [samples[0:1], samples[1:3], samples[3:6]]
    assert [r.duplicated for r in responses] == [[False], [True, True], [True, True, True]]
    assert model.batches == [], "OnlineAPI sends merged requests to request()"


async def test_local_api_sends_each_batch_to_batch_request(cache_dir: str) -> None:
    """LocalAPI hands whole batches, already merged, to the model's batch_request()."""
    model = RecordingModel()
    async with LocalAPI(model, cache=cache_dir, batch_size=10, timeout=0.01) as api:
        await api.batch_request(
            Batch([Request("a", n=2), Request("b"), Request("a", n=3), Request("c")])
        )
    assert len(model.batches) == 1
    assert [(r.prompt, r.n) for r in model.batches[0].requests] == [("a", 5), ("b", 1), ("c", 1)]


async def test_online_api_sends_a_batchs_requests_concurrently(cache_dir: str) -> None:
    """OnlineAPI calls request() for each merged request of a batch at the same time."""
    model = RecordingModel()
    model.hold()
    async with OnlineAPI(model, cache=cache_dir, batch_size=20, timeout=0.01) as api:
        batch = asyncio.ensure_future(
            api.batch_request(Batch([Request(f"q{i}") for i in range(10)]))
        )
        # All ten calls are inside the model at once (one after another, only one would be).
        await model.wait_entered(10)
        model.release()
        await batch
    assert len(model.calls) == 10


class FlakyReads(DiskStore):
    """The real disk store, whose next read fails (as a lost connection would)."""

    fail_reads = 0

    async def read(self, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
        if self.fail_reads:
            self.fail_reads -= 1
            await asyncio.sleep(0.01)
            raise StoreError("disk cache went away")
        return await super().read(reads)


async def test_store_failure_fails_only_its_requests_and_frees_waiters(cache_dir: str) -> None:
    """A failed store read fails the requests in it; nobody waits forever on its claims."""
    store = FlakyReads(cache_dir)
    store.fail_reads = 1
    async with OnlineAPI(RecordingModel(), cache=store, timeout=0) as api:
        first = asyncio.ensure_future(api.request(Request("q", n=1, namespace="a")))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(api.request(Request("q", n=1, namespace="b")))
        with pytest.raises(StoreError):
            await first
        recovered = await asyncio.wait_for(second, 5)
        retry = await api.request(Request("q", n=1, namespace="a"))
    await store.aclose()
    assert retry.data == recovered.data


class HeldReads(DiskStore):
    """The real disk store, whose reads wait until ``gate`` is set."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.gate = asyncio.Event()

    async def read(self, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
        await self.gate.wait()
        return await super().read(reads)


async def test_a_request_cancelled_during_its_read_asks_nothing_and_blocks_nobody(
    cache_dir: str,
) -> None:
    """A request cancelled while its read is in flight makes no model call; a request
    waiting for the same index makes its own, and the index goes back to its namespace."""
    model = RecordingModel()
    store = HeldReads(cache_dir)
    async with OnlineAPI(model, cache=store, timeout=0) as api:
        first = asyncio.ensure_future(api.request(Request("q", namespace="a")))
        await asyncio.sleep(0)  # index 0 reserved and claimed; its read is held
        second = asyncio.ensure_future(api.request(Request("q", namespace="b")))
        await asyncio.sleep(0)  # waits for the first request's claim on index 0
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        store.gate.set()
        answer = await asyncio.wait_for(second, 5)
        again = await api.request(Request("q", namespace="a"))
    await store.aclose()
    assert len(model.calls) == 1, "only the request still waiting paid"
    assert answer.cached == [False]
    assert again.data == answer.data and again.cached == [True]


async def test_batch_waits_for_samples_another_request_is_generating(cache_dir: str) -> None:
    """A batch_request needing in-flight samples waits for them instead of regenerating."""
    model = RecordingModel()
    model.hold()
    async with OnlineAPI(model, cache=cache_dir, timeout=0) as api:
        single = asyncio.ensure_future(api.request(Request("q", n=2, namespace="a")))
        await model.wait_entered()
        batch = asyncio.ensure_future(
            api.batch_request(Batch([Request("q", n=3, namespace="b"), Request("p")]))
        )
        await asyncio.sleep(0.02)
        model.release()
        first, (waited, other) = await single, await batch
    assert waited.data[:2] == first.data
    assert waited.cached == [True, True, False] and other.cached == [False]
    assert sorted(r.n for r in model.calls) == [1, 1, 2]


async def test_cancelled_batch_keeps_what_the_model_returned(cache_dir: str) -> None:
    """Cancelling batch_request mid-call stores the samples and consumes nothing."""
    model = RecordingModel()
    model.hold()
    store = WatchedWrites(cache_dir)
    async with OnlineAPI(model, cache=store, timeout=0) as api:
        batch = asyncio.ensure_future(
            api.batch_request(Batch([Request("a", namespace="n"), Request("b", namespace="n")]))
        )
        await model.wait_entered(2)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch
        model.release()
        await store.written(2)
        again = await api.batch_request(
            Batch([Request("a", namespace="n"), Request("b", namespace="n")])
        )
    await store.aclose()
    assert [r.cached for r in again] == [[True], [True]]
    assert len(model.calls) == 2


class YieldingModel:
    """A model that answers after a seeded number of event-loop turns (no clock), with
    samples unique per call, and records every call."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.calls: list[Request] = []

    async def request(self, request: Request) -> Response:
        self.calls.append(request)
        call = len(self.calls)
        for _ in range(self.random.randrange(4)):
            await asyncio.sleep(0)
        return Response(data=[f"{request.prompt} call {call} #{k}" for k in range(request.n)])


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_cancellations_never_generate_an_index_twice(
    cache_dir: str, seed: int
) -> None:
    """Concurrent requests for shared keys, a third of them cancelled at random points:
    no index is generated twice, answers are stored samples, no claim is left behind."""
    chooser = random.Random(seed)
    model = YieldingModel(seed)
    prompts = ["p0", "p1", "p2"]
    store = DiskStore(cache_dir)
    answers: list[tuple[Request, Response]] = []
    asked_in_all = 0
    async with OnlineAPI(model, cache=store, batch_size=4, timeout=0) as api:
        for _wave in range(6):
            asked = [
                Request(chooser.choice(prompts), n=chooser.randint(1, 3), namespace=ns)
                for ns in ("a", "b", "c")
                for _ in range(chooser.randint(1, 4))
            ]
            asked_in_all += sum(r.n for r in asked)
            tasks = [asyncio.ensure_future(api.request(r)) for r in asked]
            for task in tasks:
                if chooser.random() < 0.33:
                    for _ in range(chooser.randrange(6)):
                        await asyncio.sleep(0)
                    task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            for request, outcome in zip(asked, outcomes, strict=True):
                if isinstance(outcome, Response):
                    answers.append((request, outcome))
                else:
                    assert isinstance(outcome, asyncio.CancelledError), outcome
        keys = {p: api.key_of(Request(p)) for p in prompts}
    # Closed: the generations of cancelled requests have ended (and stored their samples).
    left = dict(coordinator(store.location).claims)
    generated = {p: sum(r.n for r in model.calls if r.prompt == p) for p in prompts}
    reach = asked_in_all + 1  # no index can be beyond what all requests asked for
    kept = {p: [x for x in await stored(store, keys[p], reach) if x is not None] for p in prompts}
    await store.aclose()
    assert not left, "every claim was given up"
    assert answers, "some requests were answered"
    for prompt in prompts:
        # Every generated sample was stored, each at its own index: none generated twice
        # for one index (a second one would not be stored).
        assert len(kept[prompt]) == generated[prompt]
        assert len(set(kept[prompt])) == generated[prompt]
    seen: dict[tuple[str, str], list[str]] = {}
    for request, response in answers:
        assert set(response.data) <= set(kept[request.prompt]), "answers are stored samples"
        seen.setdefault((request.prompt, request.namespace), []).extend(response.data)
    for drawn in seen.values():
        assert len(drawn) == len(set(drawn)), "draws within a namespace are fresh"
