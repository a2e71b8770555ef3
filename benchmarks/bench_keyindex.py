"""Issue 15's storage design, measured: diskcache's table with its key index in memory.

Run: python benchmarks/bench_keyindex.py [--total 1000000] [--trials 3]

`bench_segments.py` showed that only a layout with no on-disk index of hashed keys keeps
writes at a million keys within 1.3x of an empty store. This script measures that
design end to end on a prototype, `LogTable`: diskcache's own ``Cache`` table, schema,
settings and row-count triggers, with only the unique ``(key, raw)`` index dropped. Each
process keeps a `cachesaver.stores._keyindex.KeyIndex` (stable entry hash -> rowids),
builds it when it opens the table (sized from the largest rowid), and catches up with
rows other processes appended (``rowid > last seen``) at the start of every read and
inside every write transaction. A write finds which of its entries exist (first writer
wins) by reading their candidate rows, appends the rest, and catches up with its own
rows. A delete bumps an epoch in a table of its own; a process that sees a new epoch
rebuilds its index (deletes are rare, admin-only, and a SQLite rowid can be reused after
the last rows are deleted, so following them row by row is not safe).

Printed, per key unless said (a key is one content row and one sample row, so two index
entries): bulk writes of 2,000 new keys into an empty log, into one of ``--total`` keys,
and into today's diskcache table when empty (the baseline), interleaved; bulk reads of
2,000 stored keys; catching up with rows another process appended, and a catch-up with
nothing new; deleting keys; opening (building the index) at ``--total`` keys; the
index's own costs (hash, insert, the slowest insert call through a growth).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Sequence

import diskcache
from bench_storage import WAVE, rows

from cachesaver.stores._entryhash import entry_hash, sample_hash
from cachesaver.stores._keyindex import KeyIndex
from cachesaver.stores._rowlog import INDEX_FILE, RowLog, make_log_layout

APPEND = (
    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag,"
    " size, mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, 1, NULL, ?)"
)
Row = tuple[str, float, float, str]
Write = tuple[str, str, dict[int, str]]  # key, content, samples


def make_log(directory: str) -> None:
    """A diskcache directory (diskcache's schema and settings) in the log layout."""
    diskcache.Cache(directory, eviction_policy="none").close()
    con = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
    make_log_layout(con)
    con.close()


class LogTable:
    """One process's use of a log directory through a `RowLog`, as a store would: every
    read and write in one transaction that starts with a catch-up."""

    def __init__(self, directory: str) -> None:
        self.con = sqlite3.connect(
            os.path.join(directory, "cache.db"), isolation_level=None, timeout=60
        )
        for pragma in ("synchronous = 1", "cache_size = 8192", "mmap_size = 0"):
            self.con.execute(f"PRAGMA {pragma}")
        self.log = RowLog(self.con, directory)
        self.con.execute("BEGIN")
        self.log.open()
        self.con.execute("COMMIT")

    @property
    def index(self) -> KeyIndex:
        return self.log.index

    def write(self, writes: Sequence[Write]) -> int:
        """Append the entries not stored yet (first writer wins); how many rows.

        ``writes`` are (key, content, samples), as `DiskStore.write` gets them. The new
        rows' hashes come from the key and index (`sample_hash`): no name is parsed.
        """
        now = time.time()
        new: list[Row] = []
        hashes: list[int] = []
        for key, content, samples in writes:
            new.append((f"cs:{key}:request", now, now, content))
            hashes.append(sample_hash(key, None))
            for i, text in samples.items():
                new.append((f"cs:{key}:{i}", now, now, text))
                hashes.append(sample_hash(key, i))
        self.con.execute("BEGIN IMMEDIATE")
        try:
            self.log.catch_up()
            appended = self.log.append_new(new, hashes, APPEND)
        except BaseException:
            self.con.execute("ROLLBACK")
            self.log.forget()
            raise
        self.con.execute("COMMIT")
        return len(appended)

    def read(self, reads: Sequence[tuple[str, Sequence[int]]]) -> dict[str, str]:
        """The stored samples of (key, indices) pairs: entry -> text."""
        entries = [f"cs:{key}:{i}" for key, indices in reads for i in indices]
        hashes = [sample_hash(key, i) for key, indices in reads for i in indices]
        self.con.execute("BEGIN")
        self.log.catch_up()
        found = self.log.find(entries, hashes, "value")
        self.con.execute("COMMIT")
        return {entry: row[1] for entry, row in found.items()}

    def delete(self, entries: Sequence[str]) -> int:
        """Delete entries; the index is saved for the other processes."""
        self.con.execute("BEGIN IMMEDIATE")
        self.log.catch_up()
        found = self.log.find(entries, [entry_hash(e) for e in entries], "NULL")
        deleted = self.log.delete([(row[0], entry) for entry, row in found.items()])
        self.con.execute("COMMIT")
        self.log.save()
        return deleted

    def catch_up(self) -> int:
        return self.log.catch_up()

    def save(self) -> None:
        self.log.save()

    def close(self) -> None:
        self.con.close()


def fill_log(directory: str, keys: int, tag: str) -> None:
    """Append ``keys`` one-sample keys by bulk SQL, as fast as the log allows."""
    con = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
    for batch in range(keys // WAVE):
        con.execute("BEGIN")
        con.executemany(APPEND, rows(tag, batch))
        con.execute("COMMIT")
    con.close()


def writes(tag: str, batch: int) -> list[Write]:
    """2,000 new one-sample keys as (key, content, samples): what a disk store is given."""
    made = rows(tag, batch)
    return [(c[0][3:67], c[3], {0: s[3]}) for c, s in zip(made[::2], made[1::2], strict=False)]


def append_waves(directory: str, waves: int, tag: str) -> None:
    """(In another process) write ``waves`` waves of new keys through a `LogTable`."""
    table = LogTable(directory)
    for batch in range(waves):
        table.write(writes(tag, batch))
    table.close()


def per_key(seconds: float, keys: int) -> float:
    return seconds / keys * 1e6


def timed_write(table: LogTable | diskcache.Cache, new: list[Write]) -> float:
    start = time.perf_counter()
    if isinstance(table, LogTable):
        if table.write(new) != 2 * len(new):
            raise SystemExit("a new row was taken as stored")
    else:  # as DiskStore._write does today
        now = time.time()
        with table.transact():
            insert = APPEND.replace("INSERT", "INSERT OR IGNORE")
            table._con.executemany(insert, [(f"cs:{k}:request", now, now, c) for k, c, _ in new])
            table._con.executemany(
                insert, [(f"cs:{k}:{i}", now, now, t) for k, _, s in new for i, t in s.items()]
            )
    return per_key(time.perf_counter() - start, len(new))


def index_costs(entries: int) -> dict[str, float]:
    """The index alone: hashing, inserting empty and full, the slowest add during a growth."""
    names = [entry for wave in range(5) for entry, *_ in rows("h", wave)]
    start = time.perf_counter()
    for name in names:
        entry_hash(name)
    stable = per_key(time.perf_counter() - start, len(names))
    start = time.perf_counter()
    for name in names:
        hash(name)
    salted = per_key(time.perf_counter() - start, len(names))
    index = KeyIndex()
    next_rowid = 1

    def add_batch() -> float:
        nonlocal next_rowid
        batch = [(entry_hash(f"x{next_rowid + i}"), next_rowid + i) for i in range(4000)]
        next_rowid += 4000
        start = time.perf_counter()
        index.add(batch)
        return time.perf_counter() - start

    empty = statistics.median(add_batch() for _ in range(3)) / 4000 * 1e6
    slowest = 0.0
    while len(index) < entries:
        slowest = max(slowest, add_batch())
    full = statistics.median(add_batch() for _ in range(3)) / 4000 * 1e6
    return {
        "stable": stable,
        "salted": salted,
        "empty": empty,
        "full": full,
        "slowest": slowest,
        "mb": index.nbytes / 2**20,
    }


def opening(directory: str, total: int) -> LogTable:
    """Open the full log three ways: building the index, saving it, loading it."""
    saved = os.path.join(directory, INDEX_FILE)
    with contextlib.suppress(FileNotFoundError):
        os.remove(saved)
    started = time.perf_counter()
    table = LogTable(directory)
    built = time.perf_counter() - started
    started = time.perf_counter()
    table.save()
    saving = time.perf_counter() - started
    table.close()
    started = time.perf_counter()
    table = LogTable(directory)
    loaded = time.perf_counter() - started
    print(
        f"opening a log of {total:,} keys ({len(table.index):,} index entries, "
        f"{table.index.nbytes / 2**20:.0f} MB): building the index {built:.2f} s; saving it "
        f"{saving:.2f} s ({os.path.getsize(saved) / 2**20:.0f} MB); opening from it {loaded:.2f} s"
    )
    return table


def writes_and_reads(root: str, full: LogTable, total: int, trials: int) -> None:
    """Interleaved bulk writes (empty log, full log, today's empty table) and reads."""
    at = f"{total:,} keys"
    cost: dict[str, list[float]] = {}
    for trial in range(trials):
        empty_dir = os.path.join(root, f"empty{trial}")
        make_log(empty_dir)
        empty = LogTable(empty_dir)
        today = diskcache.Cache(os.path.join(root, f"today{trial}"), eviction_policy="none")
        for batch in range(4):
            for label, table in (
                ("write: today's table, empty", today),
                ("write: log, empty", empty),
                (f"write: log, {at}", full),
            ):
                new = writes(f"t{trial}{label}", batch)
                cost.setdefault(label, []).append(timed_write(table, new))
        for label, table in (("read: log, empty", empty), (f"read: log, {at}", full)):
            wanted = [(k, [0]) for k, _, _ in writes(f"t{trial}write: {label[6:]}", 2)]
            start = time.perf_counter()
            if len(table.read(wanted)) != len(wanted):
                raise SystemExit("a stored row was not found")
            cost.setdefault(label, []).append(per_key(time.perf_counter() - start, WAVE))
        empty.close()
        today.close()
    base = statistics.median(cost["write: today's table, empty"])
    print(f"{'figure':36}  {'us per key':>10}  vs today's empty-table write")
    for label, values in cost.items():
        median = statistics.median(values)
        ratio = f"{median / base:.2f}x" if label.startswith("write") else ""
        print(f"{label:36}  {median:10.1f}  {ratio}")
    growth = statistics.median(cost[f"write: log, {at}"]) / statistics.median(
        cost["write: log, empty"]
    )
    print(f"write at {at} / write empty, both logs: {growth:.2f}x")


def other_processes(directory: str, full: LogTable) -> None:
    """Catching up with another process's rows, and a delete seen by another process."""
    process = multiprocessing.get_context("spawn").Process(
        target=append_waves, args=(directory, 50, "other")
    )
    process.start()
    process.join(600)
    if process.exitcode != 0:
        raise SystemExit(f"the appending process failed ({process.exitcode})")
    full.con.execute("BEGIN")
    start = time.perf_counter()
    caught = full.catch_up()
    catch = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(1000):
        full.catch_up()
    idle = (time.perf_counter() - start) / 1000 * 1e6
    full.con.execute("COMMIT")
    print(
        f"catching up with {caught:,} rows another process appended: "
        f"{catch / caught * 1e6:.2f} us per row; a catch-up with nothing new: {idle:.1f} us"
    )
    doomed = [entry for entry, *_ in rows("other", 0)]
    start = time.perf_counter()
    deleted = full.delete(doomed)
    deleting = time.perf_counter() - start
    start = time.perf_counter()
    LogTable(directory).close()  # another process, opening after the epoch changed
    reopen = time.perf_counter() - start
    print(
        f"deleting {deleted // 2:,} keys (and saving the index): "
        f"{per_key(deleting, deleted // 2):.1f} us per key; another process then opens "
        f"from the saved index in {reopen:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="cachesaver-bench-keyindex-")
    try:
        full_dir = os.path.join(root, "full")
        make_log(full_dir)
        started = time.perf_counter()
        fill_log(full_dir, args.total, "fill")
        print(f"filled a log with {args.total:,} keys in {time.perf_counter() - started:.0f} s")
        full = opening(full_dir, args.total)
        writes_and_reads(root, full, args.total, args.trials)
        other_processes(full_dir, full)
        full.close()
        found = index_costs(2 * args.total)
        print(
            f"the index alone: entry hash {found['stable']:.2f} us (salted hash() "
            f"{found['salted']:.2f} us); insert {found['empty']:.2f} us empty, "
            f"{found['full']:.2f} us at {2 * args.total:,} entries; slowest add of 4,000 "
            f"through its growths {found['slowest'] * 1e3:.0f} ms; {found['mb']:.0f} MB"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
