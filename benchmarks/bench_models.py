"""Drop-in client throughput on cache hits (async and sync clients): prints a table.

Run: python benchmarks/bench_models.py [--calls 5000] [--repeats 5]

A local test server (cachesaver.testing.server) fills the cache once; then a new
drop-in ``AsyncOpenAI`` client (a new run, so nothing is in memory) answers every call
from the cache, building the SDK's ``ChatCompletion`` each time. Each figure is the
median of ``--repeats`` runs (best in brackets), since the machine may be shared. The
HTTP server counts requests, so the table also shows that no API call was made.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial

from cachesaver.models.openai import AsyncOpenAI, OpenAI
from cachesaver.testing.server import FakeLLMServer

Row = tuple[str, str, str, str]
TARGET = 15_000
CONCURRENCY = 200
Run = Callable[[AsyncOpenAI, int, int], Awaitable[None]]


def _messages(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": f"Question number {i}: what is {i} + {i}?"},
    ]


def _client(server: FakeLLMServer, cache: str) -> AsyncOpenAI:
    return AsyncOpenAI(cache=cache, base_url=server.openai_base_url, api_key="bench", max_retries=0)


async def _fill(server: FakeLLMServer, cache: str, distinct: int) -> None:
    async with _client(server, cache) as client:
        for start in range(0, distinct, 100):  # a loaded machine may drop a burst of connects
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
        start = time.perf_counter()
        await run(client, calls, distinct)
        return time.perf_counter() - start


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


def _sync_rate(server: FakeLLMServer, cache: str, calls: int, distinct: int) -> float:
    """The sync client (one background loop), calls one by one, on hits."""
    options = {"cache": cache, "base_url": server.openai_base_url, "api_key": "bench"}
    with OpenAI(**options, max_retries=0) as client:  # warm up
        for i in range(min(CONCURRENCY, calls)):
            client.chat.completions.create(
                model="fake-chat",
                messages=_messages(i % distinct),
                temperature=0.7,
                namespace="ns0",
            )
    with OpenAI(**options, max_retries=0) as client:  # a new run
        start = time.perf_counter()
        for i in range(calls):
            client.chat.completions.create(
                model="fake-chat",
                messages=_messages(i % distinct),
                temperature=0.7,
                namespace=f"ns{i // distinct}",
            )
        return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--distinct", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="cachesaver-bench-models-")
    rows: list[Row] = []
    cases: list[tuple[str, Run, int | None]] = [
        (f"n=1, concurrent (gather of {CONCURRENCY})", partial(_concurrent, 1), TARGET),
        (f"n=2, concurrent (gather of {CONCURRENCY})", partial(_concurrent, 2), TARGET),
        ("n=1, sequential (await one by one)", partial(_sequential, 1), None),
    ]
    try:
        with FakeLLMServer() as server:
            cache = f"{root}/cache"
            asyncio.run(_fill(server, cache, args.distinct))
            before = server.stats()["requests"]
            for label, run, target in cases:
                rates = [
                    args.calls
                    / asyncio.run(_measure(server, cache, args.calls, args.distinct, run))
                    for _ in range(max(1, args.repeats))
                ]
                rate = statistics.median(rates)
                verdict = "-" if target is None else ("ok" if rate >= target else "MISS")
                goal = "(reported)" if target is None else f">= {target:,} calls/s"
                rows.append(
                    (
                        f"drop-in chat cache hits, {label}",
                        f"{rate:,.0f} calls/s [best {max(rates):,.0f}]",
                        goal,
                        verdict,
                    )
                )
            sequential = [r for r in rows if "sequential" in r[0]]
            sync_rates = [
                _sync_rate(server, cache, args.calls, args.distinct)
                for _ in range(max(1, args.repeats))
            ]
            sync_rate = statistics.median(sync_rates)
            rows.append(
                (
                    "drop-in chat cache hits, n=1, sync client (one by one)",
                    f"{sync_rate:,.0f} calls/s [best {max(sync_rates):,.0f}]",
                    "(reported)",
                    "-",
                )
            )
            async_rate = float(sequential[0][1].split()[0].replace(",", ""))
            slower = async_rate / sync_rate
            rows.append(
                (
                    "sync client time per call / async (one by one)",
                    f"{slower:.2f}x",
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
