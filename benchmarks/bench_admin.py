"""Store administration at scale. Run: python benchmarks/bench_admin.py [--samples N] [--all]

Builds a disk cache of N samples (default 1,000,000: 100,000 keys of 10 short samples,
about what a large sweep leaves behind), then times `cachesaver stats` (the console
script, end to end: process start, open read-only, aggregate scans, print), and the
library's `store_stats` for one identity (aggregate SQL) and, forced, the per-key scan
used when a store holds several identities. `--all` adds `verify_store`, `search` and
the old way of reading records (a range query per key). Each figure is the median of R
runs, wall clock and CPU seconds: on this shared 2-core machine the CPU time is what a
quiet machine's wall clock would be. Target: `stats` on 1M samples in under 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cachesaver import admin
from cachesaver._canonical import canonical_json, digest
from cachesaver.stores import open_admin_store
from cachesaver.stores.base import KeyRecord
from cachesaver.stores.disk import DiskStore

IDENTITY = {"provider": "openai", "model": "gpt-4o-mini", "endpoint": "https://api.openai.com/v1"}
ROOT = Path(__file__).resolve().parent.parent


def build(path: str, samples: int, per_key: int) -> None:
    async def go() -> None:
        store = DiskStore(path)
        try:
            keys = samples // per_key
            for start in range(0, keys, 2000):
                batch = []
                for k in range(start, min(keys, start + 2000)):
                    content = canonical_json(
                        {"identity": IDENTITY, "request": {"prompt": f"puzzle {k}: 4 6 8 9"}}
                    )
                    texts = {i: f'"answer {k}.{i}: (9 - 6) * 8 / 4 = 6"' for i in range(per_key)}
                    batch.append(KeyRecord(digest(content), content, texts))
                await store.import_records(batch)
        finally:
            await store.aclose()

    asyncio.run(go())


def _cpu() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median wall-clock seconds and median CPU seconds (this process and its children)."""
    walls, cpus = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), _cpu()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def per_identity_scan(path: str) -> Callable[[], Any]:
    """store_stats as for a store of several identities (the per-key scan)."""

    async def call(store: Any) -> Any:
        async def none() -> None:
            return None

        store.identity_totals = none
        return await admin.store_stats(store)

    return library(path, call)


def library(path: str, call: Callable[[Any], Any]) -> Callable[[], Any]:
    def run() -> Any:
        async def go() -> Any:
            store = open_admin_store(path)
            try:
                return await call(store)
            finally:
                await store.aclose()

        return asyncio.run(go())

    return run


def per_key_reads(path: str) -> Callable[[], Any]:
    """The old stats: list keys, then read records 500 keys at a time (a query per key)."""

    async def call(store: Any) -> int:
        keys = sorted(await store.keys())
        n = 0
        for start in range(0, len(keys), 500):
            n += sum(len(r.samples) for r in await store.records(keys[start : start + 500]))
        return n

    return library(path, call)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--per-key", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--all", action="store_true", help="also verify, search, old reads")
    parser.add_argument("--reuse", metavar="DIR", help="a cache this script built before")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="cs-bench-admin-")
    path = args.reuse or os.path.join(folder, "cache")
    try:
        start = time.perf_counter()
        if not args.reuse:
            build(path, args.samples, args.per_key)
        built = time.perf_counter() - start
        script = str(Path(sys.executable).parent / "cachesaver")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        def cli_stats() -> None:
            subprocess.run([script, "stats", path], check=True, capture_output=True, env=env)

        rows = [
            ("cachesaver stats (console script, end to end)", timed(cli_stats, args.repeat), 5.0),
            (
                "admin.store_stats, one identity (aggregate SQL)",
                timed(library(path, admin.store_stats), args.repeat),
                None,
            ),
            (
                "admin.store_stats, several identities (per key)",
                timed(per_identity_scan(path), args.repeat),
                None,
            ),
        ]
        if args.all:
            rows += [
                ("admin.verify_store", timed(library(path, admin.verify_store), 1), None),
                (
                    "admin.search --grep (ls)",
                    timed(library(path, lambda s: admin.search(s, grep="puzzle 7")), 1),
                    None,
                ),
                ("old stats reads: a range query per key", timed(per_key_reads(path), 1), None),
            ]
        size = os.path.getsize(os.path.join(path, "cache.db"))
        built_note = "" if args.reuse else f", built in {built:.1f} s"
        print(
            f"{args.samples:,} samples in {args.samples // args.per_key:,} keys "
            f"({size / 2**20:.0f} MiB cache.db{built_note}), median of "
            f"{args.repeat}; load average {os.getloadavg()[0]:.1f}"
        )
        print(f"{'operation':<50}  {'wall s':>7}  {'CPU s':>6}  target (CPU)")
        print("-" * 84)
        for name, (wall, cpu), target in rows:
            verdict = (
                "" if target is None else f"< {target:.0f} s  " + ("ok" if cpu < target else "MISS")
            )
            print(f"{name:<50}  {wall:>7.2f}  {cpu:>6.2f}  {verdict}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
