"""Core throughput benchmarks: prints a table. Run: python benchmarks/bench_core.py"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import Any

from cachesaver import Batch, OnlineAPI, Request
from cachesaver.testing import SimulatedLLM

Row = tuple[str, str, str, str]


def _timed(fn: Callable[[], Coroutine[Any, Any, None]]) -> float:
    start = time.perf_counter()
    asyncio.run(fn())
    return time.perf_counter() - start


def cold_and_warm(root: str, count: int = 2000) -> list[Row]:
    path = os.path.join(root, "cold")
    requests = [Request(f"question {i}", n=1, namespace="bench") for i in range(count)]
    rows: list[Row] = []
    for label, target in (("fresh cache", 15000), ("new run, all cached", 40000)):
        pipeline = OnlineAPI(SimulatedLLM(), cache=path, batch_size=100, timeout=0.01)

        async def go(p: OnlineAPI = pipeline) -> None:
            async with p:
                await asyncio.gather(*(p.request(r) for r in requests))

        seconds = _timed(go)
        rate = count / seconds
        rows.append(
            (
                f"{count} distinct concurrent requests, {label}",
                f"{rate:,.0f} req/s",
                f">= {target:,} req/s",
                "ok" if rate >= target else "MISS",
            )
        )
    return rows


def batched_latency(root: str) -> Row:
    path = os.path.join(root, "latency")
    requests = [Request(f"question {i}", n=1) for i in range(500)]
    pipeline = OnlineAPI(SimulatedLLM(latency=0.02), cache=path, batch_size=10, timeout=0.05)

    async def go() -> None:
        async with pipeline:
            await pipeline.batch_request(Batch(requests))

    seconds = _timed(go)
    return (
        "500 requests, 20 ms model, batch 10, timeout 0.05 s",
        f"{seconds * 1000:.0f} ms",
        "< 100 ms",
        "ok" if seconds < 0.1 else "MISS",
    )


def big_n(root: str) -> list[Row]:
    path = os.path.join(root, "bign")
    request = Request("one prompt, many samples", n=1000)
    rows: list[Row] = []
    model = SimulatedLLM()
    calls = 0

    async def cold() -> None:
        nonlocal calls
        async with OnlineAPI(model, cache=path, batch_size=16) as p:
            await p.request(request)
            calls = p.stats().model_calls

    _timed(cold)
    rows.append(
        (
            "one prompt n=1000, cold",
            f"{calls} model call(s)",
            "1 call",
            "ok" if calls == 1 else "MISS",
        )
    )
    elapsed = 0.0

    async def warm() -> None:
        nonlocal elapsed
        async with OnlineAPI(model, cache=path) as p:
            await p.request(Request("warm-up", n=1))
            start = time.perf_counter()
            await p.request(request)
            elapsed = time.perf_counter() - start

    _timed(warm)
    rows.append(
        (
            "one prompt n=1000, cached",
            f"{elapsed * 1000:.1f} ms",
            "< 10 ms",
            "ok" if elapsed < 0.01 else "MISS",
        )
    )
    return rows


def memory(root: str, total: int = 100_000, wave: int = 2000) -> Row:
    path = os.path.join(root, "memory")

    async def go() -> None:
        async with OnlineAPI(SimulatedLLM(), cache=path, batch_size=100, timeout=0.01) as p:
            for start in range(0, total, wave):
                await asyncio.gather(
                    *(p.request(Request(f"q{i}", n=1)) for i in range(start, start + wave))
                )

    gc.collect()
    _timed(go)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (
        f"{total:,} requests in waves of {wave:,}",
        f"{rss_mb:.0f} MB peak RSS",
        "< 300 MB",
        "ok" if rss_mb < 300 else "MISS",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip the 100k memory run")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="cachesaver-bench-")
    try:
        rows: list[Row] = []
        rows += cold_and_warm(root)
        rows.append(batched_latency(root))
        rows += big_n(root)
        if not args.quick:
            rows.append(memory(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    widths = [
        max(len(r[i]) for r in [("benchmark", "measured", "target", ""), *rows]) for i in range(4)
    ]
    header = ("benchmark", "measured", "target", "")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
