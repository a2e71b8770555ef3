"""SEMANTICS "Batching": every model call has a deadline; a hung call wedges nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from cachesaver import (
    Batch,
    CacheSaverError,
    LocalAPI,
    ModelTimeoutError,
    OnlineAPI,
    Request,
    Response,
)
from cachesaver.pipelines import Pipeline
from cachesaver.stores import open_store
from cachesaver.stores.base import (
    LeaseRequest,
    Reservation,
    SampleRead,
    SampleWrite,
    SharedStore,
    Unreservation,
    WriteResult,
)
from cachesaver.testing import SimulatedLLM

from .helpers import stored

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 0.5  # short, so the tests are quick; the default is 30 minutes


class HangFirst:
    """Its first ``hang`` calls never return (until cancelled); later calls answer.

    ``entered`` is set when a call arrives; ``cancelled`` counts hung calls that were
    cancelled. With ``stubborn`` a hung call ignores its first cancellation and keeps
    waiting until ``let_go`` is set.
    """

    def __init__(self, hang: int = 1, stubborn: bool = False) -> None:
        self.inner = SimulatedLLM(seed=3)
        self.hang = hang
        self.stubborn = stubborn
        self.calls: list[Request] = []
        self.entered = asyncio.Event()
        self.cancelled = 0
        self.let_go = asyncio.Event()

    async def _maybe_hang(self) -> None:
        self.entered.set()
        if self.hang <= 0:
            return
        self.hang -= 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            if not self.stubborn:
                raise
        await self.let_go.wait()
        raise RuntimeError("a stubborn call that finally ended")

    async def request(self, request: Request) -> Response:
        self.calls.append(request)
        await self._maybe_hang()
        return await self.inner.request(request)

    async def batch_request(self, batch: Batch) -> list[Response]:
        self.calls.extend(batch.requests)
        await self._maybe_hang()
        return await self.inner.batch_request(batch)


PIPELINES = [OnlineAPI, LocalAPI]


@pytest.mark.parametrize("pipeline", PIPELINES)
async def test_a_hung_call_fails_its_caller_with_a_timeout_error(
    cache_dir: str, pipeline: type[Pipeline]
) -> None:
    """Past the deadline the caller gets an error that is a CacheSaverError and a TimeoutError."""
    model = HangFirst()
    async with pipeline(model, cache=cache_dir, timeout=0, call_timeout=DEADLINE) as api:
        with pytest.raises(ModelTimeoutError) as caught:
            await asyncio.wait_for(api.request(Request("q", n=2, request_id="r1")), 30)
        key = api.key_of(Request("q"))
    assert isinstance(caught.value, CacheSaverError)
    assert isinstance(caught.value, TimeoutError)
    message = str(caught.value)
    assert "'r1'" in message and key[:12] in message and "call_timeout" in message
    assert model.cancelled == 1, "the hung call was cancelled"


async def test_a_request_waiting_on_a_hung_call_in_another_namespace_makes_its_own(
    cache_dir: str,
) -> None:
    """Same key, other namespace: the waiter stops waiting at the deadline and calls itself."""
    model = HangFirst()
    async with OnlineAPI(model, cache=cache_dir, timeout=0, call_timeout=DEADLINE) as api:
        hung = asyncio.ensure_future(api.request(Request("q", n=2, namespace="A")))
        await model.entered.wait()
        waiter = asyncio.ensure_future(api.request(Request("q", n=2, namespace="B")))
        with pytest.raises(ModelTimeoutError):
            await asyncio.wait_for(hung, 30)
        got = await asyncio.wait_for(waiter, 30)
        samples = await stored(api.store, api.key_of(Request("q")), 2)
    assert got.cached == [False, False], "the waiter made its own call"
    assert got.data == samples
    assert [r.n for r in model.calls] == [2, 2]


async def test_a_retry_after_a_hung_call_gets_the_same_indices_and_its_own_call(
    cache_dir: str,
) -> None:
    """The hung call's indices are free: a retry in that namespace takes them and pays once."""
    model = HangFirst()
    async with OnlineAPI(model, cache=cache_dir, timeout=0, call_timeout=DEADLINE) as api:
        with pytest.raises(ModelTimeoutError):
            await asyncio.wait_for(api.request(Request("q", n=2, namespace="n")), 30)
        retry = await asyncio.wait_for(api.request(Request("q", n=2, namespace="n")), 30)
        samples = await stored(api.store, api.key_of(Request("q")), 3)
    assert retry.data == samples[:2] and samples[2] is None
    assert retry.cached == [False, False]


@pytest.mark.parametrize("pipeline", PIPELINES)
async def test_aclose_does_not_wait_for_a_hung_call_past_its_deadline(
    cache_dir: str, pipeline: type[Pipeline]
) -> None:
    """aclose() returns once the hung call's deadline has passed; its caller gets the error."""
    model = HangFirst()
    api = pipeline(model, cache=cache_dir, timeout=0, call_timeout=DEADLINE)
    hung = asyncio.ensure_future(api.request(Request("q", n=1)))
    await model.entered.wait()
    await asyncio.wait_for(api.aclose(), 30)
    with pytest.raises(ModelTimeoutError):
        await hung


async def test_aclose_does_not_wait_for_a_call_that_ignores_its_cancellation(
    cache_dir: str,
) -> None:
    """Even a model that swallows the cancellation holds neither its caller nor aclose()."""
    model = HangFirst(stubborn=True)
    api = OnlineAPI(model, cache=cache_dir, timeout=0, call_timeout=DEADLINE)
    hung = asyncio.ensure_future(api.request(Request("q", n=1)))
    await model.entered.wait()
    await asyncio.wait_for(api.aclose(), 30)
    with pytest.raises(ModelTimeoutError):
        await hung
    assert model.cancelled == 1
    model.let_go.set()  # let the stubborn call end before the test's loop closes
    for _ in range(5):
        await asyncio.sleep(0)


def test_call_timeout_must_be_a_positive_finite_number(cache_dir: str) -> None:
    """A deadline that is not a positive finite number of seconds is refused, named."""
    for bad in (0, -1, float("inf"), float("nan"), "10", True):
        with pytest.raises(ValueError, match="call_timeout"):
            OnlineAPI(SimulatedLLM(), cache=cache_dir, call_timeout=bad)  # type: ignore[arg-type]


class WatchedLeases:
    """A real store (disk or Redis) that counts lease calls refused by another owner."""

    def __init__(self, spec: str) -> None:
        store, _ = open_store(spec)
        assert isinstance(store, SharedStore)
        self.inner: SharedStore = store
        self.refused = 0
        self.waiting = asyncio.Event()

    @property
    def location(self) -> str:
        return self.inner.location

    async def read(self, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
        return await self.inner.read(reads)

    async def write(self, writes: Sequence[SampleWrite]) -> list[WriteResult]:
        return await self.inner.write(writes)

    async def reserve(self, reservations: Sequence[Reservation]) -> list[list[int]]:
        return await self.inner.reserve(reservations)

    async def unreserve(self, items: Sequence[Unreservation]) -> list[None]:
        return await self.inner.unreserve(items)

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[list[int]]:
        granted = await self.inner.lease(requests)
        if any(len(g) < len(r.indices) for g, r in zip(granted, requests, strict=True)):
            self.refused += 1
            self.waiting.set()
        return granted

    async def unlease(self, requests: Sequence[LeaseRequest]) -> list[None]:
        return await self.inner.unlease(requests)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_worker_waiting_on_a_hung_workers_lease_takes_over_at_the_deadline(
    store_spec: str,
) -> None:
    """Shared run: the hung worker frees its lease at its deadline, not at lease expiry."""
    hung = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.workers", "hang", store_spec, "hang-run-1", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    try:
        assert hung.stdout is not None
        line = await asyncio.wait_for(hung.stdout.readline(), 30)
        assert json.loads(line)["event"] == "generating"
        store = WatchedLeases(store_spec)

        class Shared(SimulatedLLM):
            @property
            def identity(self) -> dict[str, str]:
                return {"model": "shared"}

        async with OnlineAPI(
            Shared(seed=7), cache=store, run_id="hang-run-2", lease_ttl=60, timeout=0
        ) as api:
            waiter = asyncio.ensure_future(api.request(Request("contended", n=2, namespace="w")))
            await asyncio.wait_for(store.waiting.wait(), 30)
            got = await asyncio.wait_for(waiter, 40)  # far less than the 60 s lease
        await store.aclose()
        out, err = await asyncio.wait_for(hung.communicate(), 30)
    finally:
        if hung.returncode is None:
            hung.kill()
            await hung.communicate()
    assert hung.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report == {"error": "ModelTimeoutError", "timeout": True}
    assert store.refused >= 1, "the waiter found the hung worker's lease and waited"
    assert got.cached == [False, False], "it generated the samples itself"
