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

from cachesaver.stores._keyindex import KeyIndex, KeyIndexFileError, entry_hash, sample_hash

APPEND = (
    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag,"
    " size, mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, 1, NULL, ?)"
)
CHUNK = 500
Row = tuple[str, float, float, str]
Write = tuple[str, str, dict[int, str]]  # key, content, samples


def make_log(directory: str) -> None:
    """A diskcache directory (diskcache's schema and settings) without the key index."""
    diskcache.Cache(directory, eviction_policy="none").close()
    con = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
    con.execute("DROP INDEX Cache_key_raw")
    for (trigger,) in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    ).fetchall():
        con.execute(f"DROP TRIGGER {trigger}")  # row by row; the log counts per transaction
    con.execute("CREATE TABLE IF NOT EXISTS Epoch(id INTEGER PRIMARY KEY, epoch INTEGER)")
    con.execute("INSERT OR IGNORE INTO Epoch VALUES (0, 0)")
    con.close()


class LogTable:
    """The prototype: one process's view of a log directory (see the module's text)."""

    def __init__(self, directory: str) -> None:
        self.con = sqlite3.connect(
            os.path.join(directory, "cache.db"), isolation_level=None, timeout=60
        )
        for pragma in ("synchronous = 1", "cache_size = 8192", "mmap_size = 0"):
            self.con.execute(f"PRAGMA {pragma}")
        self.saved_index = os.path.join(directory, "keyindex")
        self.last: str | None = None  # the entry of row ``seen``
        self.rebuild()

    def rebuild(self) -> None:
        """Load the saved index if it holds this store's rows up to some rowid, and catch
        up from there; or build the index from every row."""
        con = self.con
        con.execute("BEGIN")
        self.epoch = con.execute("SELECT epoch FROM Epoch").fetchone()[0]
        try:
            index, meta = KeyIndex.load(self.saved_index)
        except KeyIndexFileError:
            meta = {}
        seen = meta.get("seen")
        found = con.execute("SELECT key FROM Cache WHERE rowid = ?", (seen,)).fetchone()
        if meta.get("epoch") == self.epoch and (found and found[0]) == meta.get("last"):
            self.index, self.seen, self.last = index, int(seen or 0), found and found[0]
        else:
            top = con.execute("SELECT max(rowid) FROM Cache").fetchone()[0] or 0
            self.index, self.seen, self.last = KeyIndex(expected=top), 0, None
        self.catch_up()
        con.execute("COMMIT")

    def save(self) -> None:
        """Save the index for the next process that opens the store."""
        meta = {"epoch": self.epoch, "seen": self.seen, "last": self.last or ""}
        self.index.save(self.saved_index, meta)

    def catch_up(self) -> int:
        """Index the rows appended since the last look (inside a transaction)."""
        if self.con.execute("SELECT epoch FROM Epoch").fetchone()[0] != self.epoch:
            self.con.execute("COMMIT")
            self.rebuild()
            self.con.execute("BEGIN")
            return -1
        cursor = self.con.execute("SELECT rowid, key FROM Cache WHERE rowid > ?", (self.seen,))
        count = 0
        while chunk := cursor.fetchmany(4000):
            self.index.add([(entry_hash(entry), rowid) for rowid, entry in chunk])
            self.seen, self.last = chunk[-1]
            count += len(chunk)
        return count

    def _rows(
        self, entries: Sequence[str], columns: str, hashes: Sequence[int] | None = None
    ) -> dict[str, tuple[int, str]]:
        """The stored rows of ``entries``: entry -> (rowid, ``columns``' value)."""
        if hashes is None:
            hashes = [entry_hash(entry) for entry in entries]
        wanted: dict[int, str] = {}
        candidates = self.index.candidates
        for entry, entry_hash_ in zip(entries, hashes, strict=False):
            for rowid in candidates(entry_hash_):
                wanted[rowid] = entry
        found: dict[str, tuple[int, str]] = {}
        ids = list(wanted)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT rowid, key, {columns} FROM Cache WHERE rowid IN ({marks})"
            for rowid, entry, value in self.con.execute(sql, chunk):
                if wanted[rowid] == entry:  # a hash collision names another row
                    found[entry] = (rowid, value)
        return found

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
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        self.catch_up()
        if any(self.index.candidates(h) for h in hashes):
            taken = self._rows([entry for entry, *_ in new], "NULL", hashes)
            keep = [row[0] not in taken for row in new]
            new = [row for row, fresh in zip(new, keep, strict=False) if fresh]
            hashes = [h for h, fresh in zip(hashes, keep, strict=False) if fresh]
        con.executemany(APPEND, new)
        con.execute("UPDATE Settings SET value = value + ? WHERE key = 'count'", (len(new),))
        # Holding the write lock after a catch-up, the new rows got the rowids just past
        # the last seen one, in order (SQLite's rule while the largest rowid < 2**63 - 1):
        # check that, and index them from their hashes; if not, read them back.
        first = self.seen + 1
        top, count = con.execute(
            "SELECT max(rowid), count(*) FROM Cache WHERE rowid >= ?", (first,)
        ).fetchone()
        if count == len(new) and top == self.seen + len(new):
            self.index.add(zip(hashes, range(first, first + len(new)), strict=False))
            self.seen = top
        else:
            self.catch_up()
        con.execute("COMMIT")
        return len(new)

    def read(self, reads: Sequence[tuple[str, Sequence[int]]]) -> dict[str, str]:
        """The stored samples of (key, indices) pairs: entry -> text."""
        entries = [f"cs:{key}:{i}" for key, indices in reads for i in indices]
        hashes = [sample_hash(key, i) for key, indices in reads for i in indices]
        self.con.execute("BEGIN")
        self.catch_up()
        found = self._rows(entries, "value", hashes)
        self.con.execute("COMMIT")
        return {entry: value for entry, (_, value) in found.items()}

    def delete(self, entries: Sequence[str]) -> int:
        self.con.execute("BEGIN IMMEDIATE")
        self.catch_up()
        found = self._rows(entries, "NULL")
        ids = [rowid for rowid, _ in found.values()]
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            self.con.execute(
                f"DELETE FROM Cache WHERE rowid IN ({','.join('?' * len(chunk))})", chunk
            )
        self.con.execute("UPDATE Settings SET value = value - ? WHERE key = 'count'", (len(ids),))
        self.con.execute("UPDATE Epoch SET epoch = epoch + 1")
        self.epoch += 1
        for entry, (rowid, _) in found.items():
            self.index.remove(entry_hash(entry), rowid)
        # rowids past the new largest one may be given out again: look from there
        top = self.con.execute("SELECT max(rowid), key FROM Cache").fetchone()
        if (top[0] or 0) < self.seen:
            self.seen, self.last = top[0] or 0, top[1]
        self.con.execute("COMMIT")
        self.save()  # so the other processes load it instead of rebuilding from every row
        return len(found)

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
    saved = os.path.join(directory, "keyindex")
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
