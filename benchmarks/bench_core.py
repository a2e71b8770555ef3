"""Core performance table. Run: python benchmarks/bench_core.py [--quick] [--repeat N]

Each throughput figure is end to end (open the pipeline, send every request, close),
repeated ``--repeat`` times on fresh directories; the table shows the median and the
best run, since this 2-core machine shares its cores with other work. The model has zero
latency and does almost nothing, so the figures measure cachesaver itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from cachesaver import Batch, OnlineAPI, Request, Response
from cachesaver.testing import SimulatedLLM

Row = tuple[str, str, str, str]


class Echo:
    """A zero-latency model that does (almost) no work of its own."""

    async def request(self, request: Request) -> Response:
        return Response(data=[f"{request.prompt} #{k}" for k in range(request.n)])


def timed(fn: Callable[[], Coroutine[Any, Any, None]]) -> float:
    start = time.perf_counter()
    asyncio.run(fn())
    return time.perf_counter() - start


def rates(count: int, seconds: list[float]) -> tuple[float, float]:
    return count / statistics.median(seconds), count / min(seconds)


def row(label: str, count: int, seconds: list[float], target: float) -> Row:
    median, best = rates(count, seconds)
    return (
        label,
        f"{median:,.0f} req/s (best {best:,.0f})",
        f">= {target:,.0f} req/s",
        "ok" if median >= target else "MISS",
    )


async def drive(spec: str, requests: list[Request]) -> None:
    """2000 concurrent request() calls, as asyncio.gather issues them."""
    async with OnlineAPI(Echo(), cache=spec, batch_size=100, timeout=0.01) as api:
        await asyncio.gather(*(api.request(r) for r in requests))


async def drive_batch(spec: str, requests: list[Request]) -> None:
    """The same requests, concurrently, as one batch_request() call."""
    async with OnlineAPI(Echo(), cache=spec, batch_size=100, timeout=0.01) as api:
        await api.batch_request(Batch(requests))


def cold_and_warm(root: str, repeat: int, count: int = 2000) -> list[Row]:
    requests = [Request(f"question {i}", n=1, namespace="bench") for i in range(count)]
    rows: list[Row] = []
    for how, run in (("gather of request()", drive), ("one batch_request()", drive_batch)):
        cold: list[float] = []
        warm: list[float] = []
        for trial in range(repeat):
            path = os.path.join(root, f"{run.__name__}-{trial}")
            cold.append(timed(lambda path=path, run=run: run(path, requests)))  # type: ignore[misc]
            warm.append(timed(lambda path=path, run=run: run(path, requests)))  # type: ignore[misc]
        rows.append(row(f"{count} distinct, {how}, fresh cache", count, cold, 15000))
        rows.append(row(f"{count} distinct, {how}, new run, all cached", count, warm, 40000))
    return rows


def redis_warm(repeat: int, count: int = 2000) -> list[Row]:
    import redis

    url = "redis://127.0.0.1:6379/9"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        return [("cached requests over Redis", f"skipped: {exc}", ">= 10,000 req/s", "")]
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    spec = f"{url}?prefix={prefix}"
    requests = [Request(f"question {i}", n=1, namespace="bench") for i in range(count)]
    try:
        cold = [timed(lambda: drive(spec, requests))]
        warm = [timed(lambda: drive(spec, requests)) for _ in range(repeat)]
    finally:
        client = redis.Redis.from_url(url)
        names = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if names:
            client.delete(*names)
        client.close()
    return [
        (
            *row(f"{count} distinct requests over Redis (loopback), fresh", count, cold, 0)[:2],
            "(reported)",
            "",
        ),
        row(f"{count} distinct requests over Redis (loopback), all cached", count, warm, 10000),
    ]


def batched_latency(root: str, repeat: int) -> Row:
    requests = [Request(f"question {i}", n=1) for i in range(500)]
    seconds: list[float] = []
    for trial in range(repeat):
        api = OnlineAPI(
            SimulatedLLM(latency=0.02),
            cache=os.path.join(root, f"lat-{trial}"),
            batch_size=10,
            timeout=0.05,
        )

        async def go(api: OnlineAPI = api) -> None:
            async with api:
                await api.request(Request("warm-up"))  # opens the store
                start = time.perf_counter()
                await api.batch_request(Batch(requests))
                seconds.append(time.perf_counter() - start)

        asyncio.run(go())
    median = statistics.median(seconds)
    return (
        "500 requests, 20 ms model, batch 10, timeout 0.05 s",
        f"{median * 1000:.0f} ms (best {min(seconds) * 1000:.0f})",
        "< 100 ms",
        "ok" if median < 0.1 else "MISS",
    )


def big_n(root: str, repeat: int) -> list[Row]:
    path = os.path.join(root, "bign")
    request = Request("one prompt, many samples", n=1000)
    model = SimulatedLLM()
    calls = 0

    async def cold() -> None:
        nonlocal calls
        async with OnlineAPI(model, cache=path, batch_size=16) as api:
            await api.request(request)
            calls = api.stats().model_calls

    asyncio.run(cold())
    seconds: list[float] = []

    async def warm() -> None:
        async with OnlineAPI(model, cache=path) as api:
            await api.request(Request("warm-up", n=1))  # opens the store
            start = time.perf_counter()
            response = await api.request(request)
            seconds.append(time.perf_counter() - start)
            assert response.cached is not None and all(response.cached)

    for _ in range(repeat):
        asyncio.run(warm())
    median = statistics.median(seconds)
    return [
        (
            "one prompt n=1000, cold",
            f"{calls} model call(s)",
            "1 call",
            "ok" if calls == 1 else "MISS",
        ),
        (
            "one prompt n=1000, cached",
            f"{median * 1000:.1f} ms (best {min(seconds) * 1000:.1f})",
            "< 10 ms",
            "ok" if median < 0.01 else "MISS",
        ),
    ]


def memory(root: str) -> Row:
    """Run the memory workload in a fresh process, so its peak RSS is its own."""
    import subprocess

    out = (
        subprocess.run(
            [sys.executable, __file__, "--memory-child", os.path.join(root, "memory")],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    label, measured, target, verdict = out.split("\t")
    return (label, measured, target, verdict)


def memory_child(path: str, total: int = 100_000, wave: int = 2000) -> None:
    async def go() -> None:
        async with OnlineAPI(Echo(), cache=path, batch_size=100, timeout=0.01) as api:
            for start in range(0, total, wave):
                await asyncio.gather(
                    *(api.request(Request(f"q{i}", n=1)) for i in range(start, start + wave))
                )

    seconds = timed(go)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        "\t".join(
            (
                f"{total:,} requests in waves of {wave:,} ({total / seconds:,.0f} req/s)",
                f"{rss_mb:.0f} MB peak RSS",
                "< 300 MB",
                "ok" if rss_mb < 300 else "MISS",
            )
        )
    )


def print_table(rows: list[Row]) -> None:
    header: Row = ("benchmark", "measured (median)", "target", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for line in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip the 100k-request memory run")
    parser.add_argument("--repeat", type=int, default=5, help="trials per figure (default 5)")
    parser.add_argument("--memory-child", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    root = tempfile.mkdtemp(prefix="cachesaver-bench-")
    try:
        rows = cold_and_warm(root, args.repeat)
        rows += redis_warm(args.repeat)
        rows.append(batched_latency(root, args.repeat))
        rows += big_n(root, args.repeat)
        if not args.quick:
            rows.append(memory(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()
