"""A design probe for issue 15's write growth: one key index, or one index per segment?

Run: python benchmarks/bench_segments.py [--total 1000000] [--segment 100000] [--trials 3]

No cachesaver code runs here. Two diskcache directories get ``--total`` one-sample keys
each (cachesaver's rows: ``cs:<sha256>:request`` and ``cs:<sha256>:0``), by bulk SQL:

- ``one table``: all rows in diskcache's ``Cache`` table, as the disk store keeps them
  today (one unique ``(key, raw)`` index over every row);
- ``segments``: the same rows in tables of ``--segment`` keys each, every table with
  diskcache's own schema and indexes (``Cache`` renamed), in the same SQLite file. New
  keys go to the newest segment only, so a write never touches a big index.

Then, interleaved, per key: bulk writes of 2,000 new keys (one ``executemany`` in one
transaction, as the disk store writes) into an empty store, into the full one table,
into a full newest segment (the worst case of the segmented layout: the segment
just before a new one starts), and into a table with diskcache's columns but no key
index at all, nor diskcache's row-count triggers (an append-only log in the full
segmented file: what a layout that keeps its key index in memory, rebuilt when a store
opens, would write); and bulk reads of
2,000 stored keys (``key IN (...)``, 500 at a time, as the disk store reads) from the
one table, from the segments probing every one of them, and from the segments probing
only the segment that holds the keys (what a per-segment filter of the keys, e.g. a
Bloom filter, would allow). Last, the time to read every key of the one table once (what
opening a store whose key index lives in memory would read), and what such an index
costs itself: inserts into an in-memory SQLite table of entry hashes, and into a
pure-Python open-addressing table over arrays, empty and at two entries per key (a
sample and the key's content).

It prints microseconds per key. Issue 15 asks for writes at 1M keys within 1.3x of an
empty store; the one table's ratio is the floor today's layout sets (bench_storage.py).
"""

from __future__ import annotations

import argparse
import array
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time

import diskcache
from bench_storage import INSERT, WAVE, rows

READ_CHUNK = 500


def segment_names(total: int, segment: int) -> list[str]:
    return [f"Seg{i}" for i in range(max(1, -(-total // segment)))]


def make_segments(con: sqlite3.Connection, names: list[str]) -> None:
    """Tables, indexes and triggers with diskcache's own schema for ``Cache``, renamed
    (the triggers keep diskcache's row count, as they do for ``Cache``)."""
    schema = con.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'Cache' AND sql IS NOT NULL"
    ).fetchall()
    for table in names:
        for kind, name, sql in schema:
            renamed = sql.replace(" Cache", f" {table}").replace("Cache_", f"{table}_")
            if kind == "trigger":
                renamed = renamed.replace(name, f"{name}_{table}", 1)
            head = f"CREATE {kind.upper()} "
            if renamed.startswith(head):
                renamed = f"{head}IF NOT EXISTS " + renamed[len(head) :]
            renamed = renamed.replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX IF NOT EXISTS ")
            con.execute(renamed)


def insert(con: sqlite3.Connection, table: str, new: list[tuple[str, float, float, str]]) -> float:
    """Seconds to write ``new`` into ``table`` in one transaction."""
    sql = INSERT.replace("INTO Cache", f"INTO {table}")
    start = time.perf_counter()
    con.execute("BEGIN")
    con.executemany(sql, new)
    con.execute("COMMIT")
    return time.perf_counter() - start


def read(con: sqlite3.Connection, tables: list[str], entries: list[str]) -> float:
    """Seconds to find ``entries`` (each must be found) probing ``tables`` in order."""
    start = time.perf_counter()
    found = 0
    for first in range(0, len(entries), READ_CHUNK):
        chunk = entries[first : first + READ_CHUNK]
        marks = ",".join("?" * len(chunk))
        for table in tables:
            sql = f"SELECT key, value FROM {table} WHERE key IN ({marks})"
            found += len(con.execute(sql, chunk).fetchall())
    seconds = time.perf_counter() - start
    if found != len(entries):
        raise SystemExit(f"read found {found} of {len(entries)} entries")
    return seconds


def fill(con: sqlite3.Connection, tables: list[str], keys_each: int, tag: str) -> list[str]:
    """Write ``keys_each`` keys into each table; return the sample entries of one wave
    of the last table (the keys a read looks for)."""
    last: list[str] = []
    for t, table in enumerate(tables):
        for batch in range(max(1, keys_each // WAVE)):
            new = rows(f"{tag}{t}", batch)
            insert(con, table, new)
            last = [entry for entry, *_ in new if not entry.endswith(":request")]
    return last


def memory_index(entries: int) -> tuple[float, float, float]:
    """A key index kept in memory instead (an in-memory SQLite table of 63-bit entry
    hashes to rowids): microseconds per insert into an empty index and into one of
    ``entries`` entries (bulk, 4,000 at a time), and the MB the full index holds."""
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE idx(h INTEGER PRIMARY KEY, r INTEGER)")
    draw = random.Random(15)

    def insert_batch(first: int) -> float:
        new = [(draw.getrandbits(63), first + i) for i in range(4000)]
        start = time.perf_counter()
        con.execute("BEGIN")
        con.executemany("INSERT OR IGNORE INTO idx VALUES (?, ?)", new)
        con.execute("COMMIT")
        return (time.perf_counter() - start) / len(new) * 1e6

    empty = statistics.median(insert_batch(k * 4000) for k in range(3))
    while con.execute("SELECT count(*) FROM idx").fetchone()[0] < entries:
        insert_batch(0)
    full = statistics.median(insert_batch(0) for _ in range(3))
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    return empty, full, pages * size / 2**20


class ArrayIndex:
    """A pure-Python open-addressing table of entry hashes (never 0) to rowids, over
    two arrays, kept at most half full (it doubles, rehashing every entry, when not).
    No dict: a dict costs about 110 bytes an entry."""

    def __init__(self, least: int = 1 << 16) -> None:
        slots = 1 << max(least - 1, 1).bit_length()  # a power of two (slots & mask)
        self.hashes = array.array("q", bytes(8 * slots))
        self.rowids = array.array("q", bytes(8 * slots))
        self.count = 0

    @property
    def mb(self) -> float:
        return 16 * len(self.hashes) / 2**20

    def add(self, pairs: list[tuple[int, int]]) -> None:
        if 2 * (self.count + len(pairs)) > len(self.hashes):
            self.grow(2 * (self.count + len(pairs)))
        hashes, rowids, mask = self.hashes, self.rowids, len(self.hashes) - 1
        added = 0
        for entry_hash, rowid in pairs:
            slot = entry_hash & mask
            while True:
                held = hashes[slot]
                if held == 0:
                    hashes[slot] = entry_hash
                    rowids[slot] = rowid
                    added += 1
                    break
                if held == entry_hash:
                    break
                slot = (slot + 1) & mask
        self.count += added

    def grow(self, least: int) -> None:
        slots = len(self.hashes)
        while slots < least:
            slots *= 2
        old = [(h, r) for h, r in zip(self.hashes, self.rowids, strict=True) if h]
        self.hashes = array.array("q", bytes(8 * slots))
        self.rowids = array.array("q", bytes(8 * slots))
        self.count = 0
        self.add(old)


def entry_hash(entry: str) -> int:
    """The index's hash of an entry name (this process's str hash, never 0)."""
    return (hash(entry) & (2**62 - 1)) | 1


def python_index(entries: int, con: sqlite3.Connection) -> dict[str, float]:
    """The same index as an `ArrayIndex`: microseconds per insert (4,000 at a time) into
    an empty one and into one of ``entries``, its MB, the seconds one doubling takes at
    that size, and the seconds to build it from every row of ``con``'s ``Cache`` (what
    opening a store would cost)."""
    draw = random.Random(15)
    index = ArrayIndex(2 * entries)

    def insert_batch() -> float:
        new = [(draw.getrandbits(62) | 1, 1) for _ in range(4000)]
        start = time.perf_counter()
        index.add(new)
        return (time.perf_counter() - start) / len(new) * 1e6

    empty = statistics.median(insert_batch() for _ in range(3))
    while index.count < entries:
        insert_batch()
    full = statistics.median(insert_batch() for _ in range(3))
    mb = index.mb
    start = time.perf_counter()
    index.grow(2 * len(index.hashes))
    doubling = time.perf_counter() - start
    index = ArrayIndex()  # (lets the full one go)
    start = time.perf_counter()
    built = ArrayIndex()
    rows = con.execute("SELECT rowid, key FROM Cache")
    while chunk := rows.fetchmany(4000):
        built.add([(entry_hash(entry), rowid) for rowid, entry in chunk])
    opening = time.perf_counter() - start
    return {"empty": empty, "full": full, "mb": mb, "doubling": doubling, "open": opening}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--segment", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="cachesaver-bench-segments-")
    caches: list[diskcache.Cache] = []
    try:
        one = diskcache.Cache(os.path.join(root, "one"), eviction_policy="none")
        seg = diskcache.Cache(os.path.join(root, "segments"), eviction_policy="none")
        caches += [one, seg]
        names = segment_names(args.total, args.segment)
        make_segments(seg._con, names)
        create = seg._con.execute("SELECT sql FROM sqlite_master WHERE name = 'Cache'")
        seg._con.execute(create.fetchone()[0].replace("TABLE Cache", "TABLE Log", 1))
        started = time.perf_counter()
        wanted_one = fill(one._con, ["Cache"], args.total, "one")
        wanted_seg = fill(seg._con, names, args.segment, "seg")
        print(
            f"filled {args.total:,} keys twice (one table; {len(names)} segments of "
            f"{args.segment:,}) in {time.perf_counter() - started:.0f} s"
        )
        cost: dict[str, list[float]] = {}
        for trial in range(args.trials):
            empty = diskcache.Cache(os.path.join(root, f"empty{trial}"), eviction_policy="none")
            for batch in range(4):
                for label, con, table in (
                    ("write: empty store", empty._con, "Cache"),
                    ("write: one table", one._con, "Cache"),
                    ("write: full newest segment", seg._con, names[-1]),
                    ("write: log, no key index", seg._con, "Log"),
                ):
                    new = rows(f"t{trial}{label}", batch)
                    cost.setdefault(label, []).append(insert(con, table, new) / WAVE * 1e6)
            empty.close()
            for label, con, tables, wanted in (
                ("read: one table", one._con, ["Cache"], wanted_one),
                ("read: segments, probe all", seg._con, names, wanted_seg),
                ("read: segments, probe one", seg._con, names[-1:], wanted_seg),
            ):
                cost.setdefault(label, []).append(read(con, tables, wanted) / len(wanted) * 1e6)
        started = time.perf_counter()
        scanned = sum(1 for _ in one._con.execute("SELECT key FROM Cache"))
        scan = time.perf_counter() - started
        base = statistics.median(cost["write: empty store"])
        print(f"{'figure':32}  {'us per key':>10}  vs empty-store write")
        for label, values in cost.items():
            median = statistics.median(values)
            ratio = f"{median / base:.2f}x" if label.startswith("write") else ""
            print(f"{label:32}  {median:10.1f}  {ratio}")
        print(f"read every key of the one table: {scanned:,} rows in {scan:.2f} s")
        empty_index, full_index, index_mb = memory_index(2 * args.total)
        print(
            f"in-memory key index instead: insert {empty_index:.2f} us (empty) / "
            f"{full_index:.2f} us ({2 * args.total:,} entries) = "
            f"{full_index / empty_index:.2f}x, {index_mb:.0f} MB"
        )
        found = python_index(2 * args.total, one._con)
        print(
            f"the same in pure Python (open addressing): insert {found['empty']:.2f} us "
            f"(empty) / {found['full']:.2f} us = {found['full'] / found['empty']:.2f}x, "
            f"{found['mb']:.0f} MB; doubling it at that size {found['doubling']:.2f} s; "
            f"building it from every row of the one table {found['open']:.2f} s"
        )
    finally:
        for cache in caches:
            cache.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
