"""Growth and scale: long runs, opt-in by flag (CI never runs them). Prints tables.

Run: python benchmarks/bench_growth.py [--waves] [--redis] [--processes] [--all]

``--waves [--total 1000000]``: ``--total`` fresh one-sample requests in waves of 2,000
(``gather``), one pipeline, one disk store, in a child process (so its peak RSS is its
own). Prints the time of the first and of the last 100,000 requests (target: last <=
1.2x first) and the peak RSS (target < 250 MB). Then the write cost per sample: bulk
writes of 2,000 new one-sample keys straight through `DiskStore.write` (as the cacher
writes them: content row and sample row, hashed keys), into that full store and into an
empty one, interleaved (target: full <= 1.3x empty). About 3-10 minutes for 1M on a
shared 2-core machine.

``--writes [--total 1000000]``: the write-cost figure alone, without the waves: a store
of ``--total`` one-sample keys is filled by bulk SQL (a minute), then bulk writes of
2,000 new keys go into it and into an empty store, interleaved, both through
`DiskStore.write` and through the minimal reference cache's own write (the same rows,
one ``executemany`` in one transaction). The reference's growth is the floor the
storage sets: hashed keys land on random pages of diskcache's unique key index.

``--redis``: 2,000 cached requests (``gather``, a new run each time) over Redis on
loopback and over disk, interleaved; target: Redis time <= 1.3x disk.

``--processes``: four processes read one disk store at once (each a new run: ``gather``
of 2,000 cached requests, ``--rounds`` times), against one process alone doing the same
work; target: the four together read >= 1.8x the requests per second of one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from typing import Any

from cachesaver import OnlineAPI, Request, Response
from cachesaver.stores import DiskStore
from cachesaver.stores.base import SampleWrite

WAVE = 2000


class Echo:
    """A zero-latency model that does (almost) no work of its own."""

    async def request(self, request: Request) -> Response:
        return Response(data=[f"{request.prompt} #{k}" for k in range(request.n)])


def table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


# -- waves -----------------------------------------------------------------------------------


def waves_child(path: str, total: int) -> None:
    """Run in a child process: print one line per 100k requests, then the peak RSS."""

    async def go() -> None:
        async with OnlineAPI(Echo(), cache=path, batch_size=100, timeout=0.01) as api:
            block, cpu = time.perf_counter(), time.process_time()
            for start in range(0, total, WAVE):
                await asyncio.gather(
                    *(api.request(Request(f"q{i}", n=1)) for i in range(start, start + WAVE))
                )
                if (start + WAVE) % 100_000 == 0:
                    now, cpu_now = time.perf_counter(), time.process_time()
                    print(f"block\t{start + WAVE}\t{now - block:.3f}\t{cpu_now - cpu:.3f}")
                    sys.stdout.flush()
                    block, cpu = now, cpu_now

    asyncio.run(go())
    print(f"rss\t{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}", flush=True)


def write_cost(path: str, batches: int, tag: str) -> list[float]:
    """Microseconds per sample of ``batches`` bulk writes of 2,000 new keys into ``path``."""
    out: list[float] = []

    async def go() -> None:
        store = DiskStore(path)
        try:
            await store.read([])  # open it (a log builds or loads its key index) untimed
            for b in range(batches):
                writes = []
                for i in range(WAVE):
                    content = f'{{"prompt":"w {tag} {b} {i}"}}'
                    key = hashlib.sha256(f'{{"request":{content}}}'.encode()).hexdigest()
                    writes.append(SampleWrite(key, content, {0: f'"w {tag} {b} {i} #0"'}))
                start = time.perf_counter()
                await store.write(writes)
                out.append((time.perf_counter() - start) / WAVE * 1e6)
        finally:
            await store.aclose()

    gc.collect()
    asyncio.run(go())
    return out


def reference_write_cost(path: str, batches: int, tag: str) -> list[float]:
    """Like `write_cost`, through the minimal reference cache's write (the same rows)."""
    from bench_storage import rows
    from reference_cache import ReferenceCache

    out: list[float] = []
    reference = ReferenceCache(Echo(), path)
    try:
        for b in range(batches):
            new = rows(tag, b)  # the rows `write_cost` writes through `DiskStore.write`
            start = time.perf_counter()
            reference._write(new)
            out.append((time.perf_counter() - start) / WAVE * 1e6)
    finally:
        if reference._cache is not None:
            reference._cache.close()
        reference._executor.shutdown(wait=True)
    return out


def writes(root: str, total: int) -> None:
    """Write cost per sample into a store of ``total`` keys against an empty one."""
    path = os.path.join(root, "full")
    reference_write_cost(path, total // WAVE, "fill")  # fast: bulk SQL, the same rows
    costs: dict[str, list[float]] = {
        name: [] for name in ("ds-full", "ds-empty", "ref-full", "ref-empty")
    }
    for trial in range(5):
        costs["ds-empty"] += write_cost(os.path.join(root, f"ds-empty-{trial}"), 3, f"de{trial}")
        costs["ds-full"] += write_cost(path, 3, f"df{trial}")
        costs["ref-empty"] += reference_write_cost(
            os.path.join(root, f"ref-empty-{trial}"), 3, f"re{trial}"
        )
        costs["ref-full"] += reference_write_cost(path, 3, f"rf{trial}")
    m = {name: statistics.median(values) for name, values in costs.items()}
    ours, floor = m["ds-full"] / m["ds-empty"], m["ref-full"] / m["ref-empty"]
    print(f"write cost per sample, bulk writes of {WAVE:,} new keys, 5 interleaved trials")
    table(
        [
            ("figure", "measured", "target", ""),
            (
                f"DiskStore.write, store of {total:,} keys / empty",
                f"{m['ds-full']:.1f} us / {m['ds-empty']:.1f} us = {ours:.2f}x",
                "<= 1.3x",
                "ok" if ours <= 1.3 else "MISS",
            ),
            (
                "reference cache (same rows, one executemany), full / empty",
                f"{m['ref-full']:.1f} us / {m['ref-empty']:.1f} us = {floor:.2f}x",
                "(the storage's floor)",
                "",
            ),
            (
                "DiskStore.write / reference, full store",
                f"{m['ds-full'] / m['ref-full']:.2f}x",
                "",
                "",
            ),
        ]
    )


def waves(root: str, total: int) -> None:
    path = os.path.join(root, "waves")
    child = subprocess.run(
        [sys.executable, __file__, "--waves-child", path, "--total", str(total)],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line.split("\t") for line in child.stdout.splitlines() if line.startswith("block")]
    blocks = [float(parts[2]) for parts in lines]
    cpus = [float(parts[3]) for parts in lines]
    rss = float(child.stdout.split("rss\t")[1].split()[0])
    empty = os.path.join(root, "empty")
    full_costs: list[float] = []
    empty_costs: list[float] = []
    for trial in range(5):
        # fresh empty store each trial; the full store grows by 2,000 keys a batch (negligible)
        empty_costs += write_cost(f"{empty}-{trial}", 3, f"e{trial}")
        full_costs += write_cost(path, 3, f"f{trial}")
    first, last = blocks[0], blocks[-1]
    cost = statistics.median(full_costs) / statistics.median(empty_costs)
    print(f"{total:,} fresh requests in waves of {WAVE:,} (one pipeline, one disk store)")
    table(
        [
            ("figure", "measured", "target", ""),
            (
                "first 100k requests / last 100k",
                f"{first:.1f} s / {last:.1f} s = {last / first:.2f}x",
                "<= 1.2x",
                "ok" if last / first <= 1.2 else "MISS",
            ),
            (
                "the same in CPU time of the process (both threads)",
                f"{cpus[0]:.1f} s / {cpus[-1]:.1f} s = {cpus[-1] / cpus[0]:.2f}x",
                "",
                "",
            ),
            ("every 100k block, wall (s)", " ".join(f"{b:.1f}" for b in blocks), "", ""),
            ("every 100k block, CPU (s)", " ".join(f"{c:.1f}" for c in cpus), "", ""),
            ("peak RSS", f"{rss:.0f} MB", "< 250 MB", "ok" if rss < 250 else "MISS"),
            (
                f"write cost per sample, store of {total:,} keys / empty",
                f"{statistics.median(full_costs):.1f} us / {statistics.median(empty_costs):.1f}"
                f" us = {cost:.2f}x",
                "<= 1.3x",
                "ok" if cost <= 1.3 else "MISS",
            ),
        ]
    )


# -- Redis against disk ----------------------------------------------------------------------


def cached_gather(spec: str, requests: list[Request]) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all threads) of one cached ``gather`` run."""

    async def go() -> tuple[float, float]:
        async with OnlineAPI(Echo(), cache=spec, batch_size=100, timeout=0.01) as api:
            await api.request(Request("warm-up: opens the store", namespace="warm-up"))
            start, cpu = time.perf_counter(), time.process_time()
            responses = await asyncio.gather(*(api.request(r) for r in requests))
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        if not all(all(r.cached or []) for r in responses):
            raise SystemExit(f"{spec}: expected every request cached")
        return seconds, cpu_seconds

    gc.collect()
    return asyncio.run(go())


def _server_cpu(url: str) -> float:
    """CPU seconds the Redis server at ``url`` has used (main thread and helpers)."""
    from bench_admin import redis_cpu

    return redis_cpu(url)()


def _private_redis(root: str) -> tuple[str, subprocess.Popen[bytes] | None]:
    """A Redis server of the benchmark's own (its CPU is then ours alone), else the shared one.

    Started from ``redis-server`` on the PATH on a free loopback port, keeping nothing on
    disk; without the binary, ``CACHESAVER_TEST_REDIS_URL`` (or db 9 of the local server).
    """
    import socket

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        return os.environ.get("CACHESAVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/9"), None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            root,
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
            return url, server
        except redis.RedisError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit(f"could not start a private redis-server on port {port}") from None
            time.sleep(0.05)


def redis_vs_disk(root: str, trials: int) -> None:
    import redis

    url, server = _private_redis(root)
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        print(f"Redis warm hits: skipped, Redis at {url} unreachable: {exc}")
        return
    warnings.filterwarnings("ignore", message=".*without AOF")  # the bench keeps nothing
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    spec = f"{url}?prefix={prefix}"
    disk = os.path.join(root, "redis-vs-disk")
    requests = [Request(f"question {i}", n=1, namespace="bench") for i in range(WAVE)]
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    times: dict[str, list[float]] = {"redis": [], "disk": []}
    cpus: dict[str, list[float]] = {"redis": [], "disk": []}
    try:
        asyncio.run(_fill(spec, requests))
        asyncio.run(_fill(disk, requests))
        for trial in range(trials):
            pair: dict[str, tuple[float, float]] = {}
            for name in ("redis", "disk") if trial % 2 == 0 else ("disk", "redis"):
                if name == "redis":
                    before = _server_cpu(url)
                    wall, cpu = cached_gather(spec, requests)
                    cpu += _server_cpu(url) - before if server is not None else 0.0
                else:
                    wall, cpu = cached_gather(disk, requests)
                pair[name] = (wall, cpu)
                times[name].append(wall)
                cpus[name].append(cpu)
            ratios.append(pair["redis"][0] / pair["disk"][0])
            cpu_ratios.append(pair["redis"][1] / pair["disk"][1])
    finally:
        client = redis.Redis.from_url(url)
        names = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if names:
            client.delete(*names)
        client.close()
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    ratio = statistics.median(ratios)
    cpu_ratio = statistics.median(cpu_ratios)
    where = "a private redis-server" if server is not None else url
    print(f"{WAVE:,} cached requests (gather, new run), {trials} interleaved trials, {where}")
    table(
        [
            ("figure", "measured", "target", ""),
            (
                "Redis (loopback) / disk, wall",
                f"{statistics.median(times['redis']) * 1000:.0f} ms / "
                f"{statistics.median(times['disk']) * 1000:.0f} ms = {ratio:.2f}x "
                f"[{min(ratios):.2f}-{max(ratios):.2f}]",
                "<= 1.3x",
                "ok" if ratio <= 1.3 else "MISS",
            ),
            (
                "the same in CPU (client, plus the server when private)",
                f"{statistics.median(cpus['redis']) * 1000:.0f} ms / "
                f"{statistics.median(cpus['disk']) * 1000:.0f} ms = {cpu_ratio:.2f}x "
                f"[{min(cpu_ratios):.2f}-{max(cpu_ratios):.2f}]",
                "",
                "",
            ),
        ]
    )


async def _fill(spec: str, requests: list[Request]) -> None:
    async with OnlineAPI(Echo(), cache=spec, batch_size=100, timeout=0.01) as api:
        await asyncio.gather(*(api.request(r) for r in requests))


# -- four processes on one disk store --------------------------------------------------------


def reader(path: str, rounds: int, start: Any, results: Any) -> None:
    requests = [Request(f"question {i}", n=1, namespace="bench") for i in range(WAVE)]

    async def go() -> None:
        for _ in range(rounds):
            async with OnlineAPI(Echo(), cache=path, batch_size=100, timeout=0.01) as api:
                responses = await asyncio.gather(*(api.request(r) for r in requests))
            if not all(all(r.cached or []) for r in responses):
                raise SystemExit("expected every request cached")

    cached_gather(path, requests[:10])  # imports and first open, outside the timing
    start.wait()
    began = time.perf_counter()
    asyncio.run(go())
    results.put((began, time.perf_counter()))


def readers(path: str, count: int, rounds: int) -> float:
    """Requests per second of ``count`` processes reading ``path`` at once."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=reader, args=(path, rounds, start, results)) for _ in range(count)]
    for p in procs:
        p.start()
    time.sleep(3)  # every process imported and opened the store (not timed)
    start.set()
    spans = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    wall = max(end for _, end in spans) - min(begin for begin, _ in spans)
    return float(count * rounds * WAVE / wall)


def processes(root: str, trials: int, rounds: int) -> None:
    path = os.path.join(root, "shared")
    requests = [Request(f"question {i}", n=1, namespace="bench") for i in range(WAVE)]
    asyncio.run(_fill(path, requests))
    one: list[float] = []
    four: list[float] = []
    for trial in range(trials):
        for count in (1, 4) if trial % 2 == 0 else (4, 1):
            (one if count == 1 else four).append(readers(path, count, rounds))
    scaling = [b / a for a, b in zip(one, four, strict=True)]
    ratio = statistics.median(scaling)
    print(f"cached reads of one disk store, {trials} interleaved trials, {os.cpu_count()} cores")
    table(
        [
            ("figure", "measured", "target", ""),
            ("one process", f"{statistics.median(one):,.0f} req/s", "", ""),
            ("four processes together", f"{statistics.median(four):,.0f} req/s", "", ""),
            (
                "scaling (four / one)",
                f"{ratio:.2f}x [{min(scaling):.2f}-{max(scaling):.2f}]",
                ">= 1.8x",
                "ok" if ratio >= 1.8 else "MISS",
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waves", action="store_true", help="1M requests in waves (minutes)")
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--writes", action="store_true", help="write cost at --total keys")
    parser.add_argument("--redis", action="store_true", help="Redis warm hits against disk")
    parser.add_argument("--processes", action="store_true", help="four readers of one store")
    parser.add_argument("--all", action="store_true", help="all of the above")
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--waves-child", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.waves_child:
        waves_child(args.waves_child, args.total)
        return
    if args.total % 100_000 or args.total < 200_000:
        parser.error("--total must be a multiple of 100,000, at least 200,000")
    if not (args.waves or args.writes or args.redis or args.processes or args.all):
        parser.error("choose --waves, --writes, --redis, --processes or --all (minutes each)")
    root = tempfile.mkdtemp(prefix="cachesaver-bench-growth-")
    try:
        if args.redis or args.all:
            redis_vs_disk(root, args.trials)
        if args.processes or args.all:
            processes(root, args.trials, args.rounds)
        if args.waves or args.all:
            waves(root, args.total)
        if args.writes:
            writes(root, args.total)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
