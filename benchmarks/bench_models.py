"""Drop-in client throughput on cache hits (async and sync clients): prints a table.

Run: python benchmarks/bench_models.py [--calls 5000] [--repeats 5]

A local test server (cachesaver.testing.server) fills the cache once; then a new
drop-in client (a new run, so nothing is in memory) answers every call from the cache,
building the SDK's ``ChatCompletion`` each time: the async ``AsyncOpenAI`` (concurrent:
``gather`` of 200 calls at a time; sequential: one ``await`` after the other) and the
sync ``OpenAI`` (sequential; concurrent: 8 threads calling it). Each figure is the
median of ``--repeats`` runs (best in brackets), since the machine may be shared. The
HTTP server counts requests, so the table also shows that no API call was made. Each
rate also says the share of its runs' time the garbage collector took (median): with
the openai SDK imported, one full collection costs tens of milliseconds, so where one
lands moves a run's rate.
Targets (issues 11 and 15): async concurrent >= 15,000 calls/s, async sequential >=
6,000 calls/s; the sync client within 2x of the async one per call (the ratio of
sequential rates, paired by repeat: the repeats interleave every case).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from cachesaver.models.openai import AsyncOpenAI, OpenAI
from cachesaver.testing.server import FakeLLMServer

Row = tuple[str, str, str, str]
CONCURRENT = 15_000
SEQUENTIAL = 6_000
CONCURRENCY = 200


class GcClock:
    """Time the garbage collector takes while ``running`` (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.running = False
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.running:
            self.seconds += time.perf_counter() - self._started

    def start(self) -> float:
        self.seconds = 0.0
        self.running = True
        return time.perf_counter()

    def stop(self, started: float) -> float:
        """Seconds since ``started``; the collector's share stays in ``seconds``."""
        self.running = False
        return time.perf_counter() - started


GC = GcClock()
THREADS = 8
Run = Callable[[AsyncOpenAI, int, int], Awaitable[None]]
SyncRun = Callable[[OpenAI, int, int], None]


def _messages(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": f"Question number {i}: what is {i} + {i}?"},
    ]


def _client(server: FakeLLMServer, cache: str, retries: int = 0) -> AsyncOpenAI:
    return AsyncOpenAI(
        cache=cache, base_url=server.openai_base_url, api_key="bench", max_retries=retries
    )


async def _fill(server: FakeLLMServer, cache: str, distinct: int) -> None:
    # The test server's listen backlog is small: a busy machine may reset a connection.
    async with _client(server, cache, retries=5) as client:
        for start in range(0, distinct, 100):
            await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="fake-chat",
                        messages=_messages(i),
                        n=2,
                        temperature=0.7,
                        namespace="bench",
                    )
                    for i in range(start, min(distinct, start + 100))
                )
            )


async def _measure(server: FakeLLMServer, cache: str, calls: int, distinct: int, run: Run) -> float:
    async with _client(server, cache) as client:
        await run(client, min(CONCURRENCY, calls), distinct)  # warm up pydantic, imports
    async with _client(server, cache) as client:  # a new run: nothing in memory
        start = GC.start()
        await run(client, calls, distinct)
        return GC.stop(start)


def _create_sync(client: OpenAI, i: int, distinct: int, n: int) -> None:
    client.chat.completions.create(
        model="fake-chat",
        messages=_messages(i % distinct),
        n=n,
        temperature=0.7,
        namespace=f"ns{i // distinct}",
    )


def _sync_sequential(client: OpenAI, calls: int, distinct: int) -> None:
    for i in range(calls):
        _create_sync(client, i, distinct, 1)


def _sync_threads(client: OpenAI, calls: int, distinct: int) -> None:
    # Namespaces keep the issue order per thread irrelevant: every call is a hit.
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in pool.map(lambda i: _create_sync(client, i, distinct, 1), range(calls)):
            pass


def _measure_sync(
    server: FakeLLMServer, cache: str, calls: int, distinct: int, run: SyncRun
) -> float:
    def client() -> OpenAI:
        return OpenAI(cache=cache, base_url=server.openai_base_url, api_key="bench", max_retries=0)

    with client() as warm:
        run(warm, min(CONCURRENCY, calls), distinct)
    with client() as fresh:  # a new run: nothing in memory
        start = GC.start()
        run(fresh, calls, distinct)
        return GC.stop(start)


def _run_async(server: FakeLLMServer, cache: str, calls: int, distinct: int, run: Run) -> float:
    return asyncio.run(_measure(server, cache, calls, distinct, run))


async def _concurrent(n: int, client: AsyncOpenAI, calls: int, distinct: int) -> None:
    # Chunks of concurrent calls, as an eval loop with asyncio.gather would issue.
    for start in range(0, calls, CONCURRENCY):
        await asyncio.gather(
            *(
                client.chat.completions.create(
                    model="fake-chat",
                    messages=_messages(i % distinct),
                    n=n,
                    temperature=0.7,
                    namespace=f"ns{i // distinct}",
                )
                for i in range(start, min(calls, start + CONCURRENCY))
            )
        )


async def _sequential(n: int, client: AsyncOpenAI, calls: int, distinct: int) -> None:
    for i in range(calls):
        await client.chat.completions.create(
            model="fake-chat",
            messages=_messages(i % distinct),
            n=n,
            temperature=0.7,
            namespace=f"ns{i // distinct}",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--distinct", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="cachesaver-bench-models-")
    rows: list[Row] = []
    async_cases: list[tuple[str, Run, int]] = [
        (f"async, n=1, concurrent (gather of {CONCURRENCY})", partial(_concurrent, 1), CONCURRENT),
        (f"async, n=2, concurrent (gather of {CONCURRENCY})", partial(_concurrent, 2), CONCURRENT),
        ("async, n=1, sequential (await one by one)", partial(_sequential, 1), SEQUENTIAL),
    ]
    # The sync client's own target is its time per call against the async client's
    # (the ratio row); its rows carry no target of their own.
    sync_cases: list[tuple[str, SyncRun, int | None]] = [
        (f"sync, n=1, concurrent ({THREADS} threads)", _sync_threads, None),
        ("sync, n=1, sequential (one call after the other)", _sync_sequential, None),
    ]
    try:
        with FakeLLMServer() as server:
            cache = f"{root}/cache"
            asyncio.run(_fill(server, cache, args.distinct))
            before = server.stats()["requests"]
            measures: Sequence[tuple[str, Callable[[], float], int | None]] = [
                (
                    label,
                    partial(_run_async, server, cache, args.calls, args.distinct, run),
                    target,
                )
                for label, run, target in async_cases
            ] + [
                (
                    label,
                    partial(_measure_sync, server, cache, args.calls, args.distinct, run),
                    target,
                )
                for label, run, target in sync_cases
            ]
            # Interleaved: each repeat measures every case once, so a burst of load on
            # the shared machine falls on all cases alike (and on both sides of a ratio).
            rates: dict[str, list[float]] = {label: [] for label, _, _ in measures}
            in_gc: dict[str, list[float]] = {label: [] for label, _, _ in measures}
            gc.callbacks.append(GC)
            try:
                for _ in range(max(1, args.repeats)):
                    for label, measure, _ in measures:
                        seconds = measure()
                        rates[label].append(args.calls / seconds)
                        in_gc[label].append(GC.seconds / seconds)
            finally:
                gc.callbacks.remove(GC)
            for label, _, target in measures:
                rate = statistics.median(rates[label])
                rows.append(
                    (
                        f"drop-in chat cache hits, {label}",
                        f"{rate:,.0f} calls/s [best {max(rates[label]):,.0f}], "
                        f"{statistics.median(in_gc[label]):.0%} in GC",
                        "" if target is None else f">= {target:,} calls/s",
                        "" if target is None else "ok" if rate >= target else "MISS",
                    )
                )
            pairs = zip(rates[async_cases[2][0]], rates[sync_cases[1][0]], strict=True)
            ratios = [fast / slow for fast, slow in pairs]
            slower = statistics.median(ratios)
            rows.append(
                (
                    "sync client time per call / async (one by one), median of repeats",
                    f"{slower:.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]",
                    "<= 2x",
                    "ok" if slower <= 2 else "MISS",
                )
            )
            sent = server.stats()["requests"] - before
            rows.append(
                (
                    "HTTP requests during the cached phases",
                    str(sent),
                    "0",
                    "ok" if sent == 0 else "MISS",
                )
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    header = ("benchmark", "measured", "target", "")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(4)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
