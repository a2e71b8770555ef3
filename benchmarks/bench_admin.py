"""Store administration at scale. Run: python benchmarks/bench_admin.py [--samples N] [--repeat R]

Builds a disk cache of N samples (default 1,000,000: 100,000 keys of 10 short samples,
about what a large sweep leaves behind), then times `cachesaver stats` (the console
script, end to end: process start, open read-only, one ordered scan, print), the
library's `store_stats`, `verify_store` and `search`, and for comparison the old way of
reading records (one range query per key). Each figure is the median of R runs (best in
brackets). Target: `stats` on 1M samples in under 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), min(runs)


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
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="cs-bench-admin-")
    path = os.path.join(folder, "cache")
    try:
        start = time.perf_counter()
        build(path, args.samples, args.per_key)
        built = time.perf_counter() - start
        script = str(Path(sys.executable).parent / "cachesaver")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        def cli_stats() -> None:
            subprocess.run([script, "stats", path], check=True, capture_output=True, env=env)

        rows = [
            ("cachesaver stats (console script, end to end)", timed(cli_stats, args.repeat), 5.0),
            (
                "admin.store_stats (one ordered scan)",
                timed(library(path, admin.store_stats), args.repeat),
                None,
            ),
            ("admin.verify_store", timed(library(path, admin.verify_store), args.repeat), None),
            (
                "admin.search --grep (ls)",
                timed(library(path, lambda s: admin.search(s, grep="puzzle 7")), args.repeat),
                None,
            ),
            ("old stats reads: a range query per key", timed(per_key_reads(path), 1), None),
        ]
        size = os.path.getsize(os.path.join(path, "cache.db"))
        print(
            f"{args.samples:,} samples in {args.samples // args.per_key:,} keys "
            f"({size / 2**20:.0f} MiB cache.db, built in {built:.1f} s), median of {args.repeat}"
        )
        print(f"{'operation':<48}  {'seconds':>18}  target")
        print("-" * 80)
        for name, (median, best), target in rows:
            verdict = (
                ""
                if target is None
                else f"< {target:.0f} s  " + ("ok" if median < target else "MISS")
            )
            print(f"{name:<48}  {median:>7.2f} (best {best:.2f})  {verdict}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
