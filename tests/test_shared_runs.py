"""Shared runs over a store: many workers, one run, disjoint draws, leases (disk and Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from cachesaver import DiskStore, OnlineAPI, Request
from cachesaver.stores.base import (
    LeaseRequest,
    Reservation,
    SampleRead,
    SampleWrite,
    Store,
    WriteResult,
)
from cachesaver.testing import InjectedFailure, RecordingModel

from .helpers import stored

ROOT = Path(__file__).resolve().parent.parent


class Shared(RecordingModel):
    """One model identity for every worker (as in tests/workers.py)."""

    @property
    def identity(self) -> dict[str, str]:
        return {"model": "shared"}


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.workers", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


async def test_workers_of_one_run_draw_disjoint_samples(store_spec: str) -> None:
    """Two pipelines of one run take successive indices in a namespace; a new run replays."""
    model = Shared()
    async with (
        OnlineAPI(model, cache=store_spec, run_id="sweep-1") as one,
        OnlineAPI(model, cache=store_spec, run_id="sweep-1") as two,
    ):
        a = await one.request(Request("q", n=2, namespace="n"))
        b = await two.request(Request("q", n=2, namespace="n"))
        c = await one.request(Request("q", n=1, namespace="n"))
    assert len(set(a.data + b.data + c.data)) == 5
    async with OnlineAPI(model, cache=store_spec, run_id="sweep-2") as replay:
        again = await replay.request(Request("q", n=5, namespace="n"))
    assert again.data == a.data + b.data + c.data
    assert again.cached == [True] * 5
    assert len(model.calls) == 3


async def test_failed_request_returns_its_indices_to_the_shared_run(store_spec: str) -> None:
    """A failure in a shared run hands its indices to the next request of that run."""
    model = Shared()
    model.fail_next(1)
    async with OnlineAPI(model, cache=store_spec, run_id="r", timeout=0) as one:
        with pytest.raises(InjectedFailure):
            await one.request(Request("q", n=2, namespace="n"))
    async with OnlineAPI(model, cache=store_spec, run_id="r", timeout=0) as two:
        got = await two.request(Request("q", n=2, namespace="n"))
        samples = await stored(two.store, two.key_of(Request("q")), 3)
    assert got.data == samples[:2] and samples[2] is None


def test_run_id_needs_a_store_that_can_share_runs(cache_dir: str) -> None:
    """A store without shared-run support is refused with a clear message."""

    class Minimal:
        location = "minimal"

        async def read(self, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
            return [{} for _ in reads]

        async def write(self, writes: Sequence[SampleWrite]) -> list[WriteResult]:
            return [WriteResult(w.samples) for w in writes]

        async def aclose(self) -> None:
            return None

    store: Store = Minimal()
    with pytest.raises(TypeError, match="shared runs"):
        OnlineAPI(RecordingModel(), cache=store, run_id="x")
    with pytest.raises(ValueError, match="run_id"):
        OnlineAPI(RecordingModel(), cache=cache_dir, run_id="")


def test_four_workers_of_one_run_lose_nothing_and_pay_once(store_spec: str) -> None:
    """4 processes x 500 requests on overlapping keys: nothing lost, nothing paid twice."""
    start = time.time() + 2.0
    procs = [spawn("shard", store_spec, str(w), str(start), "run-A", "500") for w in range(4)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    asyncio.run(check_shards(store_spec, results))


async def check_shards(store_spec: str, results: list[dict[str, Any]]) -> None:
    generated: dict[str, list[Any]] = {}
    for r in results:
        for prompt, data in r["generated"]:
            generated.setdefault(prompt, []).extend(data)
    drawn: dict[tuple[str, str], list[Any]] = {}
    for r in results:
        for prompt, namespace, data in r["responses"]:
            drawn.setdefault((prompt, namespace), []).extend(data)
    model = Shared()
    async with OnlineAPI(model, cache=store_spec) as api:
        for prompt, samples in generated.items():
            assert len(samples) == len(set(samples)), "no sample generated twice"
            stored_list = await stored(api.store, api.key_of(Request(prompt)), len(samples) + 1)
            assert stored_list[-1] is None and None not in stored_list[:-1], "contiguous"
            assert sorted(stored_list[:-1]) == sorted(samples), "no sample lost"
            deepest = max(len(d) for (p, _), d in drawn.items() if p == prompt)
            assert len(samples) == deepest, "each index was paid for once, by one worker"
        for (prompt, namespace), samples in drawn.items():
            counts = Counter(samples)
            assert max(counts.values()) == 1, "draws within a namespace are disjoint"
            # A later run (new id) replays: namespace positions 0..k-1 are exactly the
            # samples the workers of the shared run received, in list order.
            replay = await api.request(Request(prompt, n=len(samples), namespace=namespace))
            assert sorted(replay.data) == sorted(samples)
            assert replay.cached is not None and all(replay.cached)
        most = max(len(s) for s in generated.values())
        assert most > 1
    assert model.calls == [], "the replay made zero model calls"


def test_workers_wait_for_a_sample_another_worker_is_generating(store_spec: str) -> None:
    """Two processes needing the same missing samples at once cause one model call."""
    first = spawn("gated", store_spec, "lease-run-1", "1")
    second = None
    try:
        line = first.stdout.readline()  # type: ignore[union-attr]
        assert json.loads(line)["event"] == "generating", line
        second = spawn("gated", store_spec, "lease-run-2", "2")
        line = second.stdout.readline()  # type: ignore[union-attr]
        assert json.loads(line)["event"] == "lease-refused", "the second worker waits, not pays"
        # Only now may the first worker's model answer.
        out_first, err = first.communicate("go\n", timeout=30)
        assert first.returncode == 0, err
        out_second, err = second.communicate(timeout=30)
        assert second.returncode == 0, err
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    lines = out_second.strip().splitlines()
    assert not any('"generating"' in line for line in lines), "the second worker never paid"
    result_second = json.loads(lines[-1])
    result_first = json.loads(out_first.strip().splitlines()[-1])
    assert result_second["data"] == result_first["data"]
    assert result_second["cached"] == [True, True]


def test_a_killed_worker_blocks_others_no_longer_than_its_lease(store_spec: str) -> None:
    """SIGKILL mid-call: another worker takes over once the lease expires."""
    victim = spawn("slow", store_spec, "kill-run-1", "60", "1.5")
    assert json.loads(victim.stdout.readline())["event"] == "generating"  # type: ignore[union-attr]
    started = time.monotonic()
    survivor = spawn("slow", store_spec, "kill-run-2", "0", "1.5")
    time.sleep(0.3)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    out, err = survivor.communicate(timeout=30)
    elapsed = time.monotonic() - started
    assert survivor.returncode == 0, err
    lines = out.strip().splitlines()
    assert sum('"generating"' in line for line in lines) == 1, "it generated once, itself"
    assert json.loads(lines[-1])["cached"] == [False, False]
    assert 1.0 <= elapsed < 15, f"waited for the lease ({elapsed:.1f}s), not forever"


class GatedLeases(DiskStore):
    """The real disk store; lease calls wait at a gate (to cancel a request during one).

    ``entered`` is set when a lease call arrives; ``asked`` and ``granted`` log them.
    """

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.asked: list[list[int]] = []
        self.granted: list[list[int]] = []

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[list[int]]:
        self.asked.extend(list(r.indices) for r in requests)
        self.entered.set()
        await self.gate.wait()
        granted = await super().lease(requests)
        self.granted.extend(granted)
        return granted


async def test_cancelled_while_taking_a_lease_leaves_nothing_stuck(cache_dir: str) -> None:
    """Cancelling a request during its lease call frees its claim, indices and lease."""
    store = GatedLeases(cache_dir)
    model = Shared()
    async with OnlineAPI(model, cache=store, run_id="r", lease_ttl=60, timeout=0) as api:
        # Issued together: the waiter (same key, other namespace) waits on first's claim.
        first = asyncio.ensure_future(api.request(Request("q", n=2, namespace="n")))
        waiter = asyncio.ensure_future(api.request(Request("q", n=2, namespace="m")))
        await store.entered.wait()
        assert store.asked == [[0, 1]], "first is inside its lease call, waiter is not"
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        store.gate.set()
        got = await waiter
        again = await api.request(Request("q", n=2, namespace="n"))
    await store.aclose()
    assert len(store.asked) >= 2 and all(a == [0, 1] for a in store.asked)
    assert store.granted[-1] == [0, 1], "first's lease was dropped, not left to expire (60 s)"
    assert got.cached == [False, False], "the waiter generated once the claim was freed"
    assert again.data == got.data and again.cached == [True, True]
    assert len(model.calls) == 1


class SlowReservations(DiskStore):
    """The real disk store, with reservations that take a while (to cancel during one)."""

    async def reserve(self, reservations: Sequence[Reservation]) -> list[list[int]]:
        await asyncio.sleep(0.1)
        return await super().reserve(reservations)


async def test_cancelled_while_reserving_gives_the_indices_back(cache_dir: str) -> None:
    """A request cancelled during its reservation returns the indices once granted."""
    store = SlowReservations(cache_dir)
    model = Shared()
    async with OnlineAPI(model, cache=store, run_id="r", timeout=0) as api:
        first = asyncio.ensure_future(api.request(Request("q", n=2, namespace="n")))
        await asyncio.sleep(0.02)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.sleep(0.2)  # the reservation lands and goes back
        second = await api.request(Request("q", n=2, namespace="n"))
        samples = await stored(api.store, api.key_of(Request("q")), 3)
    await store.aclose()
    assert second.data == samples[:2], "the next request got indices 0 and 1"
