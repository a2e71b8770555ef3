"""Store administration at scale. Run: python benchmarks/bench_admin.py [--samples N] [--redis]

Builds a disk cache of N samples (default 1,000,000: 100,000 keys of 10 short samples,
about what a large sweep leaves behind) whose keys belong to several model identities
(``--identities``, default 3, round robin; ``--tokens``: samples shaped like the chat
adapters', with the provider's token counts), then times `cachesaver stats` (the console
script, end to end: process start, open read-only, count, print), the same with a
progress bar on a terminal (a pseudo-terminal: the bar needs a total, so the keys are
listed first), and the library's `store_stats`. ``--redis [URL]`` builds the same store
in Redis (default database 15 of 127.0.0.1:6379, under a key prefix of its own that is
deleted afterwards) and times the same. `--all` adds `verify_store`, `search` and the
old way of reading records (a range query per key). Each figure is the median of R
runs, wall clock and CPU seconds (this process and its children, and for Redis the
server's own CPU time too): on this shared 2-core machine the CPU time is what a quiet
machine's wall clock would be. Target: `stats` on 1M samples in under 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import re
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from cachesaver import admin
from cachesaver._canonical import canonical_json, digest
from cachesaver.codec import encode_sample
from cachesaver.errors import DurabilityWarning
from cachesaver.stores import open_admin_store
from cachesaver.stores.base import KeyRecord

MODELS = ("gpt-4o-mini", "gpt-4o", "o3-mini", "gpt-4.1", "gpt-4.1-mini")
ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/15"


def identity(k: int, identities: int) -> dict[str, str]:
    model = MODELS[k % identities % len(MODELS)]
    return {"provider": "openai", "model": model, "endpoint": "https://api.openai.com/v1"}


def sample_text(k: int, i: int, tokens: bool) -> str:
    answer = f"answer {k}.{i}: (9 - 6) * 8 / 4 = 6"
    if not tokens:
        return canonical_json(answer)
    # Shaped like a chat adapter's sample: the provider's token counts at the top level.
    return encode_sample(
        {
            "choice": {"message": {"content": answer}},
            "prompt_tokens": 25 + k % 7,
            "completion_tokens": 12 + i,
            "model": "gpt-4o-mini",
            "id": f"chatcmpl-{k}-{i}",
            "created": 0,
            "system_fingerprint": None,
        }
    )


def build(spec: str, samples: int, per_key: int, identities: int, tokens: bool) -> None:
    async def go() -> None:
        store = open_admin_store(spec, access="create")
        try:
            keys = samples // per_key
            for start in range(0, keys, 500):
                batch = []
                for k in range(start, min(keys, start + 500)):
                    content = canonical_json(
                        {
                            "identity": identity(k, identities),
                            "request": {"prompt": f"puzzle {k}: 4 6 8 9"},
                        }
                    )
                    texts = {i: sample_text(k, i, tokens) for i in range(per_key)}
                    batch.append(KeyRecord(digest(content), content, texts))
                await store.import_records(batch)
        finally:
            await store.aclose()

    asyncio.run(go())


def drop_redis(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (SCAN and UNLINK in batches, never KEYS)."""
    client = redis.Redis.from_url(url)
    try:
        batch: list[Any] = []
        for name in client.scan_iter(match=f"{prefix}:*", count=5000):
            batch.append(name)
            if len(batch) >= 5000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


def _cpu() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def redis_cpu(url: str) -> Callable[[], float]:
    """The Redis server's own CPU seconds so far (its share of a measured call)."""

    def read() -> float:
        client = redis.Redis.from_url(url)
        try:
            info = client.info("cpu")
        finally:
            client.close()
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    return read


def timed(
    fn: Callable[[], Any], repeat: int, server: Callable[[], float] | None = None
) -> tuple[float, float]:
    """Median wall-clock seconds and median CPU seconds (this process, its children and
    the ``server``'s CPU time, when given)."""

    def cpu() -> float:
        return _cpu() + (server() if server is not None else 0.0)

    walls, cpus = [], []
    for _ in range(repeat):
        start, used = time.perf_counter(), cpu()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu() - used)
    return statistics.median(walls), statistics.median(cpus)


def library(spec: str, call: Callable[[Any], Any]) -> Callable[[], Any]:
    def run() -> Any:
        async def go() -> Any:
            store = open_admin_store(spec)
            try:
                return await call(store)
            finally:
                await store.aclose()

        return asyncio.run(go())

    return run


def per_key_reads(spec: str) -> Callable[[], Any]:
    """The old stats: list keys, then read records 500 keys at a time (a query per key)."""

    async def call(store: Any) -> int:
        keys = sorted(await store.keys())
        n = 0
        for start in range(0, len(keys), 500):
            n += sum(len(r.samples) for r in await store.records(keys[start : start + 500]))
        return n

    return library(spec, call)


def console(spec: str, *, terminal: bool = False) -> Callable[[], None]:
    """`cachesaver stats SPEC`; with ``terminal``, stderr is a pseudo-terminal (a bar)."""
    script = str(Path(sys.executable).parent / "cachesaver")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run() -> None:
        if not terminal:
            subprocess.run([script, "stats", spec], check=True, capture_output=True, env=env)
            return
        main, side = pty.openpty()
        # 120 columns: a terminal of width 0 (a new pseudo-terminal's) gets an empty bar.
        fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        drawn: list[bytes] = []

        def drain() -> None:  # a full pseudo-terminal would block the bar's writes
            while True:
                try:
                    chunk = os.read(main, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                drawn.append(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        try:
            subprocess.run(
                [script, "stats", spec], check=True, stdout=subprocess.DEVNULL, stderr=side, env=env
            )
        finally:
            os.close(side)
            reader.join(timeout=30)
            os.close(main)
        if not re.search(rb"\d+/\d+ \[", b"".join(drawn)):  # "50000/100000 [00:01<00:01"
            raise SystemExit("no progress bar with a total was drawn on the terminal")

    return run


def measure(
    spec: str, args: argparse.Namespace, what: str, server: Callable[[], float] | None = None
) -> list[tuple[str, tuple[float, float], float | None]]:
    repeat = args.repeat
    rows: list[tuple[str, tuple[float, float], float | None]] = [
        (f"{what}: cachesaver stats (console script)", timed(console(spec), repeat, server), 5.0),
        (
            f"{what}: cachesaver stats, progress bar on a tty",
            timed(console(spec, terminal=True), repeat, server),
            5.0,
        ),
        (
            f"{what}: admin.store_stats",
            timed(library(spec, admin.store_stats), repeat, server),
            None,
        ),
    ]
    if args.all:
        rows += [
            (f"{what}: admin.verify_store", timed(library(spec, admin.verify_store), 1), None),
            (
                f"{what}: admin.search --grep (ls)",
                timed(library(spec, lambda s: admin.search(s, grep="puzzle 7")), 1),
                None,
            ),
            (f"{what}: old stats, a range query per key", timed(per_key_reads(spec), 1), None),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--per-key", type=int, default=10)
    parser.add_argument("--identities", type=int, default=3, help="model identities (1-5)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--tokens", action="store_true", help="samples shaped like a chat adapter's, with usage"
    )
    parser.add_argument("--all", action="store_true", help="also verify, search, old reads")
    parser.add_argument("--reuse", metavar="DIR", help="a disk cache this script built before")
    parser.add_argument("--no-disk", action="store_true", help="measure Redis only")
    parser.add_argument(
        "--redis", nargs="?", const=REDIS_URL, metavar="URL", help=f"also Redis ({REDIS_URL})"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", DurabilityWarning)  # a benchmark Redis needs no AOF
    folder = tempfile.mkdtemp(prefix="cs-bench-admin-")
    path = args.reuse or os.path.join(folder, "cache")
    prefix = f"cs-bench-admin-{os.getpid()}"
    notes: list[str] = []
    rows: list[tuple[str, tuple[float, float], float | None]] = []
    try:
        if not args.no_disk:
            start = time.perf_counter()
            if not args.reuse:
                build(path, args.samples, args.per_key, args.identities, args.tokens)
                notes.append(f"disk built in {time.perf_counter() - start:.0f} s")
            size = os.path.getsize(os.path.join(path, "cache.db"))
            notes.append(f"{size / 2**20:.0f} MiB cache.db")
            rows += measure(path, args, "disk")
        if args.redis:
            spec = f"{args.redis}{'&' if '?' in args.redis else '?'}prefix={prefix}"
            start = time.perf_counter()
            build(spec, args.samples, args.per_key, args.identities, args.tokens)
            client = redis.Redis.from_url(args.redis)
            used = client.info("memory")["used_memory"]
            client.close()
            notes.append(
                f"Redis built in {time.perf_counter() - start:.0f} s ({used / 2**20:.0f} MiB used)"
            )
            rows += measure(spec, args, "redis", redis_cpu(args.redis))
        print(
            f"{args.samples:,} samples in {args.samples // args.per_key:,} keys of "
            f"{args.identities} identities{', token counts' if args.tokens else ''} "
            f"({', '.join(notes)}), median of {args.repeat}; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        print(f"{'operation':<52}  {'wall s':>7}  {'CPU s':>6}  target (CPU)")
        print("-" * 86)
        for name, (wall, cpu), target in rows:
            verdict = (
                "" if target is None else f"< {target:.0f} s  " + ("ok" if cpu < target else "MISS")
            )
            print(f"{name:<52}  {wall:>7.2f}  {cpu:>6.2f}  {verdict}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if args.redis:
            drop_redis(args.redis, prefix)


if __name__ == "__main__":
    main()
