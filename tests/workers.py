"""Worker processes for the multi-process tests: ``python -m tests.workers KIND ...``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from cachesaver import ModelTimeoutError, OnlineAPI, Request, Response
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


class Tracking(SimulatedLLM):
    """Every worker samples differently but all are one model (one identity)."""

    def __init__(self, seed: int, latency: float = 0.0) -> None:
        super().__init__(seed=seed, latency=latency)
        self.generated: list[list[Any]] = []

    @property
    def identity(self) -> dict[str, str]:
        return {"model": "shared"}

    async def request(self, request: Request) -> Response:
        print(json.dumps({"event": "generating", "prompt": request.prompt}), flush=True)
        response = await super().request(request)
        self.generated.append([request.prompt, response.data])
        return response


async def shard(cache: str, worker: int, start: float, run_id: str, count: int) -> None:
    """Answer ``count`` requests on overlapping keys as one worker of a shared run."""
    await asyncio.sleep(max(0.0, start - time.time()))  # all workers begin together
    model = Tracking(seed=worker)
    requests = [
        Request(f"q{(i * 7 + worker) % 40}", n=1 + i % 2, namespace=f"ns{i % 3}")
        for i in range(count)
    ]
    async with OnlineAPI(model, cache=cache, run_id=run_id, batch_size=8, timeout=0.002) as api:
        responses = await asyncio.gather(*(api.request(r) for r in requests))
    out = [[r.prompt, r.namespace, resp.data] for r, resp in zip(requests, responses, strict=True)]
    print(json.dumps({"responses": out, "generated": model.generated}), flush=True)


async def slow(cache: str, run_id: str, latency: float, lease_ttl: float) -> None:
    """Ask for one sample with a slow model, reporting when the model is called."""
    model = Tracking(seed=99, latency=latency)
    async with OnlineAPI(model, cache=cache, run_id=run_id, lease_ttl=lease_ttl, timeout=0) as api:
        response = await api.request(Request("contended", n=2, namespace="w"))
    print(json.dumps({"data": response.data, "cached": response.cached}), flush=True)


class Hanging(Tracking):
    """A model call that never returns (until the pipeline's deadline cancels it)."""

    async def request(self, request: Request) -> Response:
        print(json.dumps({"event": "generating", "prompt": request.prompt}), flush=True)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def hang(cache: str, run_id: str, call_timeout: float) -> None:
    """Ask for samples with a model that hangs; report the error the deadline gives."""
    model = Hanging(seed=98)
    async with OnlineAPI(
        model, cache=cache, run_id=run_id, lease_ttl=60, timeout=0, call_timeout=call_timeout
    ) as api:
        try:
            await api.request(Request("contended", n=2, namespace="w"))
        except ModelTimeoutError as exc:
            report = {"error": type(exc).__name__, "timeout": isinstance(exc, TimeoutError)}
            print(json.dumps(report), flush=True)


class Gated(Tracking):
    """A model call that waits until the test writes a line to this process's stdin."""

    async def request(self, request: Request) -> Response:
        print(json.dumps({"event": "generating", "prompt": request.prompt}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        response = await SimulatedLLM.request(self, request)
        self.generated.append([request.prompt, response.data])
        return response


class ReportingLeases:
    """A real store (disk or Redis) that prints an event when a lease is refused."""

    def __init__(self, spec: str) -> None:
        store, _ = open_store(spec)
        assert isinstance(store, SharedStore)
        self.inner: SharedStore = store

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
            print(json.dumps({"event": "lease-refused"}), flush=True)
        return granted

    async def unlease(self, requests: Sequence[LeaseRequest]) -> list[None]:
        return await self.inner.unlease(requests)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def gated(cache: str, run_id: str, seed: int) -> None:
    """Ask for one sample; the model waits for a line on stdin; lease refusals are reported."""
    store = ReportingLeases(cache)
    model = Gated(seed=seed)
    async with OnlineAPI(model, cache=store, run_id=run_id, lease_ttl=60, timeout=0) as api:
        response = await api.request(Request("contended", n=2, namespace="w"))
    await store.aclose()
    print(json.dumps({"data": response.data, "cached": response.cached}), flush=True)


def main(argv: list[str]) -> None:
    kind, *args = argv
    if kind == "shard":
        asyncio.run(shard(args[0], int(args[1]), float(args[2]), args[3], int(args[4])))
    elif kind == "gated":
        asyncio.run(gated(args[0], args[1], int(args[2])))
    elif kind == "hang":
        asyncio.run(hang(args[0], args[1], float(args[2])))
    elif kind == "slow":
        asyncio.run(slow(args[0], args[1], float(args[2]), float(args[3])))
    else:
        raise SystemExit(f"unknown worker kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
