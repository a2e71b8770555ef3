"""Worker processes for the multi-process tests: ``python -m tests.workers KIND ...``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from cachesaver import OnlineAPI, Request, Response
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


def main(argv: list[str]) -> None:
    kind, *args = argv
    if kind == "shard":
        asyncio.run(shard(args[0], int(args[1]), float(args[2]), args[3], int(args[4])))
    elif kind == "slow":
        asyncio.run(slow(args[0], args[1], float(args[2]), float(args[3])))
    else:
        raise SystemExit(f"unknown worker kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
