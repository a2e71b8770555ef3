"""cachesaver against a deliberately minimal cache on the same rows: prints a ratio table.

Run: python benchmarks/bench_reference.py [--trials 9] [--count 2000]

The reference (benchmarks/reference_cache.py) writes the same diskcache rows with the
same keys, with one bulk read and one bulk write per group and no stages. Five workloads,
each on ``--count`` distinct one-sample requests and a zero-latency model:

- fresh, ``gather``: ``asyncio.gather`` of ``request()`` on an empty store;
- cached, ``gather``: the same in a new run (new pipeline) over that store;
- fresh / cached, ``batch_request``: one ``batch_request`` of all the requests;
- sequential hits: a new run awaits every (cached) request one by one.

Each trial times every workload for both, in alternating order (A B, then B A), on fresh
directories; a workload's time starts after the store is open (a warm-up request) and
ends when the last response is back (cachesaver answers only after its write, as the
reference does). The table shows each side's median time and, per workload, the median
and range of the per-trial ratio cachesaver / reference. Target: ratio <= 1.25.
Before timing, the script checks that each side serves the other's store as cached.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from reference_cache import ReferenceCache

from cachesaver import Batch, OnlineAPI, Request, Response

TARGET = 1.25


class Echo:
    """A zero-latency model that does (almost) no work of its own."""

    async def request(self, request: Request) -> Response:
        return Response(data=[f"{request.prompt} #{k}" for k in range(request.n)])


class Side(Protocol):
    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def request(self, request: Request) -> Response: ...


def open_side(name: str, directory: str) -> Any:
    if name == "cachesaver":
        return OnlineAPI(Echo(), cache=directory, batch_size=100, timeout=0.01)
    return ReferenceCache(Echo(), directory)


async def batch(side: Any, requests: list[Request]) -> list[Response]:
    if isinstance(side, ReferenceCache):
        return await side.batch_request(requests)
    result: list[Response] = await side.batch_request(Batch(requests))
    return result


Workload = Callable[[Any, list[Request]], Awaitable[list[Response]]]


async def via_gather(side: Any, requests: list[Request]) -> list[Response]:
    return list(await asyncio.gather(*(side.request(r) for r in requests)))


async def one_by_one(side: Any, requests: list[Request]) -> list[Response]:
    return [await side.request(r) for r in requests]


def timed(name: str, directory: str, run: Workload, requests: list[Request], cached: bool) -> float:
    async def go() -> float:
        async with open_side(name, directory) as side:
            await side.request(Request("warm-up: opens the store", namespace="warm-up"))
            start = time.perf_counter()
            responses = await run(side, requests)
            seconds = time.perf_counter() - start
        flags = [bool(all(r.cached or [])) for r in responses]
        if len(responses) != len(requests) or any(f != cached for f in flags):
            raise SystemExit(f"{name}: expected every response cached={cached}")
        return seconds

    gc.collect()
    return asyncio.run(go())


def check_same_rows(root: str, requests: list[Request]) -> None:
    """Each side finds the other's samples: the rows and keys are the same."""
    for writer, reader in (("reference", "cachesaver"), ("cachesaver", "reference")):
        path = os.path.join(root, f"check-{writer}")
        timed(writer, path, via_gather, requests[:50], cached=False)
        timed(reader, path, via_gather, requests[:50], cached=True)


WORKLOADS: list[tuple[str, str, Workload, bool]] = [
    # label, store ("g" or "b": which fresh store a cached workload reuses), run, cached
    ("fresh, gather of request()", "g", via_gather, False),
    ("cached, gather of request()", "g", via_gather, True),
    ("fresh, one batch_request()", "b", batch, False),
    ("cached, one batch_request()", "b", batch, True),
    ("sequential hits, await one by one", "g", one_by_one, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=9)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    requests = [Request(f"question {i}", n=1, namespace="bench") for i in range(args.count)]
    root = tempfile.mkdtemp(prefix="cachesaver-bench-ref-")
    times: dict[tuple[str, str], list[float]] = {}
    try:
        check_same_rows(root, requests)
        for trial in range(args.trials):
            order = ("cachesaver", "reference") if trial % 2 == 0 else ("reference", "cachesaver")
            for label, store, run, cached in WORKLOADS:
                for name in order:
                    path = os.path.join(root, f"{name}-{store}-{trial}")
                    seconds = timed(name, path, run, requests, cached)
                    times.setdefault((label, name), []).append(seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = [("workload", "cachesaver (median)", "reference (median)", "ratio median [range]", "")]
    for label, *_ in WORKLOADS:
        ours, ref = times[(label, "cachesaver")], times[(label, "reference")]
        ratios = [a / b for a, b in zip(ours, ref, strict=True)]
        ratio = statistics.median(ratios)
        rows.append(
            (
                f"{args.count} {label}",
                f"{statistics.median(ours) * 1000:.1f} ms",
                f"{statistics.median(ref) * 1000:.1f} ms",
                f"{ratio:.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]",
                "ok" if ratio <= TARGET else "MISS",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print(f"{args.trials} interleaved trials; target: cachesaver time <= {TARGET}x reference")
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
