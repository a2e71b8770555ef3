"""The disk store's log layout: diskcache's table with its key index in memory.

The rows are the indexed layout's (`_disk_format`), in diskcache's ``Cache`` table, but
the table has no unique key index: rows are appended, and each process finds them
through a `RowLog` (an in-memory `KeyIndex` of entry hashes to rowids, and a `TopIndex`
of each key's highest sample index), caught up at the start of every read and write. A
write costs the same in a store of a million keys as in an empty one
(`benchmarks/bench_growth.py --waves`, `benchmarks/bench_keyindex.py`).

Every write is one transaction: ``BEGIN IMMEDIATE`` (one writer at a time), catch up,
SQL by rowid, ``COMMIT``; a failed one is rolled back and the index is built again at
the next (`RowLog.forget`). A read catches up (one statement) and reads rows by rowid
with no transaction: every row found is checked by name, and rows are only appended
or deleted, so a read finds what was stored (a row stored meanwhile may be missed, as
if the read came first). Shared-run state (namespace positions, leases), which changes
in place, lives in a table of its own, ``CachesaverState``, so the log only grows (a
delete starts a new epoch: `RowLog`).

Walking the store in key order (`scan`, `keys`) reads every row name once per walk
and sorts the keys in memory (about 110 bytes a key); the records of a page are then
read by rowid.
"""

from __future__ import annotations

import bisect
import sqlite3
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

from cachesaver.errors import ImportConflictError, StoreError
from cachesaver.stores._disk_format import (
    _CHUNK,
    _COLUMNS,
    _INSERT,
    _PREFIX,
    Row,
    RowChecks,
    content_entry,
    key_of,
    sample_entry,
)
from cachesaver.stores._disk_log_keys import every_row, key_rows, names, records_of, sorted_keys
from cachesaver.stores._disk_stats import StatsChunk
from cachesaver.stores._entryhash import key_hashes, samples_hashes
from cachesaver.stores._rowlog import DuplicateRow, RowLog
from cachesaver.stores.base import KeyRecord, SampleRead, SampleWrite, WriteResult

__all__ = ["STATE_TABLE", "LogRows"]

STATE_TABLE = "CachesaverState"
# (text, or NULL for a row not in cachesaver's form): what a read needs of a row
_FORM = (
    "CASE WHEN raw = 1 AND mode = 1 AND filename IS NULL AND typeof(value) = 'text' THEN value END"
)


class LogRows(RowChecks):
    """The row SQL of a store in the log layout (runs on the store's thread)."""

    def __init__(self, directory: str, *, writable: bool) -> None:
        super().__init__(directory)
        self._writable = writable
        self._log: RowLog | None = None
        self._walk: list[str] | None = None  # the sorted keys of the walk under way

    # -- transactions ---------------------------------------------------------------------

    def _log_for(self, con: sqlite3.Connection) -> RowLog:
        log = self._log
        if log is None or log.con is not con:
            log = self._log = RowLog(con, self._directory)
        return log

    @contextmanager
    def _transaction(self, con: sqlite3.Connection, begin: str | None) -> Iterator[RowLog]:
        log = self._log_for(con)
        if begin is not None:
            con.execute(begin)
        try:
            log.catch_up()
            yield log
        except DuplicateRow as duplicate:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise self._duplicate(con, duplicate) from None
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            if begin is not None:  # a write may have indexed rows the rollback removed
                log.forget()
            raise
        if begin is not None:
            con.execute("COMMIT")

    def reading(self, con: sqlite3.Connection) -> AbstractContextManager[RowLog]:
        """A catch-up, then reads: no transaction is needed (`RowLog.catch_up`), as every
        row found is checked by name, and rows are only appended or deleted."""
        return self._transaction(con, None)

    def transact(self, con: sqlite3.Connection) -> AbstractContextManager[RowLog]:
        """A write transaction (one writer at a time), caught up."""
        if not self._writable:
            raise StoreError(f"the disk store {self._directory!r} was opened read-only")
        return self._transaction(con, "BEGIN IMMEDIATE")

    # -- samples --------------------------------------------------------------------------

    def _duplicate(self, con: sqlite3.Connection, duplicate: DuplicateRow) -> StoreError:
        """The error for a second row of one name: its damage if it is not in cachesaver's
        form, else that it is there at all."""
        row = con.execute(f"SELECT {_COLUMNS} FROM Cache WHERE rowid = ?", (duplicate.rowid,))
        whole = row.fetchone()
        if whole is None or not (
            whole[1] == 1 and whole[2] == 1 and whole[3] is None and whole[4] == "text"
        ):
            return self._damaged(whole or (duplicate.entry, None, None, None, "no"))
        key = key_of(duplicate.entry)
        return StoreError(
            f"disk cache {self._directory!r}: two rows hold {duplicate.entry[:120]!r} of key "
            f"{key[:70]!r}; cachesaver never writes a second one, so something else did. "
            f"Delete the key (`cachesaver delete CACHE {key[:64]}`) or restore the cache "
            "from a backup"
        )

    def _whole(self, con: sqlite3.Connection, rowid: int) -> StoreError:
        """The damage error for row ``rowid``, read whole."""
        row = con.execute(f"SELECT {_COLUMNS} FROM Cache WHERE rowid = ?", (rowid,)).fetchone()
        if row is None:  # deleted meanwhile by another process
            return StoreError(
                f"disk cache {self._directory!r}: a row not in cachesaver's form (rowid "
                f"{rowid}) was deleted while it was read; read again"
            )
        return self._damaged(row)

    def read(self, con: sqlite3.Connection, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
        entries = [f"{_PREFIX}{r.key}:{i}" for r in reads for i in r.indices]
        hashes = samples_hashes((r.key, r.indices) for r in reads)
        with self.reading(con) as log:
            found = log.find(entries, hashes, _FORM)
            for rowid, text in found.values():
                if text is None:
                    raise self._whole(con, rowid)
        out: list[dict[int, str]] = []
        names = iter(entries)
        for r in reads:
            got: dict[int, str] = {}
            for i in r.indices:
                row = found.get(next(names))
                if row is not None:
                    got[i] = row[1]
            out.append(got)
        return out

    def write(self, con: sqlite3.Connection, writes: Sequence[SampleWrite]) -> list[WriteResult]:
        now = time.time()
        rows: list[Row] = []
        hashes: list[int] = []
        keys: list[tuple[int, int]] = []  # (key hash, highest index + 1)
        for w in writes:
            content_hash, sample_hashes = key_hashes(w.key, w.samples)
            rows.append((f"{_PREFIX}{w.key}:request", now, None, now, w.content))
            hashes.append(content_hash)
            rows += [(f"{_PREFIX}{w.key}:{i}", now, None, now, t) for i, t in w.samples.items()]
            hashes += sample_hashes
            if w.samples:
                keys.append((content_hash, max(w.samples) + 1))
        with self.transact(con) as log:
            # Usually no name is stored yet: a name's hash that is in the index (a stored
            # name, or now and then another name's mark) costs a read of its candidate
            # rows, and only a name really stored (or named twice here) takes the slow way.
            if len(set(hashes)) == len(hashes) and not (
                log.index.lookup(hashes) and log.find([row[0] for row in rows], hashes, "NULL")
            ):
                log.append(rows, hashes, _INSERT, keys)
                return [WriteResult(w.samples) for w in writes]
            return self._write_taken(con, log, writes, rows, hashes)

    def _write_taken(
        self,
        con: sqlite3.Connection,
        log: RowLog,
        writes: Sequence[SampleWrite],
        rows: list[Row],
        hashes: list[int],
    ) -> list[WriteResult]:
        """Some entries are stored, or named twice in the batch: writes are taken in
        order, the first text of an index wins, and each losing text is appended after
        the key's last sample (stored, or written by this batch)."""
        taken = log.find([row[0] for row in rows], hashes, _FORM)
        have: dict[str, str] = {}  # entry -> its text, stored or written by this batch
        for entry, (rowid, text) in taken.items():
            if text is None:
                raise self._whole(con, rowid)
            have[entry] = text
        after: dict[str, int] = {}  # key -> the next index after the batch's own
        for w in writes:
            if w.samples:
                after[w.key] = max(after.get(w.key, 0), max(w.samples) + 1)
        new: list[Row] = []
        new_hashes: list[int] = []
        keys: list[tuple[int, int]] = []
        for row, h in zip(rows, hashes, strict=True):
            if row[0].endswith(":request") and row[0] not in have:
                have[row[0]] = row[4]
                new.append(row)
                new_hashes.append(h)
        results: list[WriteResult] = []
        now = rows[0][1]
        for w in writes:
            stored: dict[int, str] = {}
            losers: list[str] = []
            _, sample_hashes = key_hashes(w.key, w.samples)
            for (i, text), h in zip(w.samples.items(), sample_hashes, strict=True):
                entry = sample_entry(w.key, i)
                found = have.get(entry)
                if found is None:
                    have[entry] = stored[i] = text
                    new.append((entry, now, None, now, text))
                    new_hashes.append(h)
                else:
                    stored[i] = found
                    losers.append(text)
            appended: list[int] = []
            content_hash, _ = key_hashes(w.key, ())
            if w.samples:
                keys.append((content_hash, max(w.samples) + 1))
            if losers:
                nxt = max(log.tops.top(content_hash), after[w.key])
                _, loser_hashes = key_hashes(w.key, range(nxt, nxt + len(losers)))
                for text, h in zip(losers, loser_hashes, strict=True):
                    entry = sample_entry(w.key, nxt)
                    have[entry] = text
                    new.append((entry, now, None, now, text))
                    new_hashes.append(h)
                    appended.append(nxt)
                    nxt += 1
                after[w.key] = nxt
                keys.append((content_hash, nxt))
            results.append(WriteResult(stored, appended))
        log.append(new, new_hashes, _INSERT, keys)
        return results

    # -- whole keys, for tools --------------------------------------------------------------

    def records(self, con: sqlite3.Connection, keys: Sequence[str]) -> list[KeyRecord]:
        with self.reading(con) as log:
            rows = key_rows(log, keys)
        return records_of(self, keys, rows)

    def keys(self, con: sqlite3.Connection) -> list[str]:
        """Every key with content, sorted (one read of every row name)."""
        with self.reading(con) as log:
            return sorted_keys(self, con, log)

    def scan(self, con: sqlite3.Connection, after: str | None, limit: int) -> list[KeyRecord]:
        """Up to ``limit`` records in key order after key ``after``. A walk that goes on
        from the last key returned uses the key list sorted when it started (``after``
        None), so keys written since are not seen, as with any walk over a store being
        written."""
        with self.reading(con) as log:
            if after is None or self._walk is None:
                self._walk = sorted_keys(self, con, log)
            keys = self._walk
            start = 0 if after is None else bisect.bisect_right(keys, after)
            page = keys[start : start + limit]
            rows = key_rows(log, page)
        if not page:
            self._walk = None
        return records_of(self, page, rows)

    def import_records(self, con: sqlite3.Connection, records: Sequence[KeyRecord]) -> int:
        now = time.time()
        with self.transact(con) as log:
            found = key_rows(log, [r.key for r in records])
            existing = {row[0]: self._text(row) for rows in found.values() for _, row in rows}
            new: list[Row] = []
            hashes: list[int] = []
            keys: list[tuple[int, int]] = []
            written = 0
            for record in records:
                content_hash, sample_hashes = key_hashes(record.key, record.samples)
                pairs = [(content_entry(record.key), record.content, content_hash, 0)]
                pairs += [
                    (sample_entry(record.key, i), text, h, 1)
                    for (i, text), h in zip(record.samples.items(), sample_hashes, strict=True)
                ]
                for entry, text, h, sample in pairs:
                    have = existing.get(entry)
                    if have is None:
                        existing[entry] = text
                        new.append((entry, now, None, now, text))
                        hashes.append(h)
                        written += sample
                    elif have != text:
                        raise ImportConflictError(
                            f"{entry} already holds a different value in {self._directory!r}; "
                            "a stored sample is never changed, so nothing was imported"
                        )
                if record.samples:
                    keys.append((content_hash, max(record.samples) + 1))
            log.append(new, hashes, _INSERT, keys)
        return written

    def delete(self, con: sqlite3.Connection, keys: Sequence[str]) -> int:
        """Delete every row of ``keys`` (a damaged second row of a name too)."""
        with self.transact(con) as log:
            entries, hashes, sparse = names(log, keys)
            doomed = log.matches(entries, hashes)
            doomed += [
                (rowid, row[0]) for rows in every_row(log, sparse).values() for rowid, row in rows
            ]
            log.delete(doomed)
        self.save(log)
        return len({row_name[len(_PREFIX) :].rpartition(":")[0] for _, row_name in doomed})

    def stats_chunk(self, con: sqlite3.Connection, low: str | None) -> StatsChunk:
        """Totals per identity of the whole store, in one chunk (`_disk_log_stats`)."""
        from cachesaver.stores._disk_log_stats import log_stats

        return log_stats(self, con)

    # -- shared-run state (its own table) ---------------------------------------------------

    def state(
        self, con: sqlite3.Connection, names: Sequence[str]
    ) -> dict[str, tuple[str, float | None]]:
        """The value and expiry time of each state entry found."""
        out: dict[str, tuple[str, float | None]] = {}
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = (
                f"SELECT name, value, typeof(value), expire_time FROM {STATE_TABLE} "
                f"WHERE name IN ({marks})"
            )
            for name, value, kind, expire in con.execute(sql, chunk):
                if kind != "text":
                    raise StoreError(
                        f"disk cache {self._directory!r}: the shared-run entry {name[:120]!r} "
                        f"holds a {kind} value, not cachesaver's text: something else wrote "
                        "it. It was not read; start the run with a new run_id"
                    )
                out[name] = (value, expire)
        return out

    def put_state(
        self, con: sqlite3.Connection, name: str, value: str, expire: float | None
    ) -> None:
        con.execute(
            f"INSERT OR REPLACE INTO {STATE_TABLE}(name, value, expire_time) VALUES (?, ?, ?)",
            (name, value, expire),
        )

    def drop_state(self, con: sqlite3.Connection, names: Sequence[str]) -> None:
        con.executemany(f"DELETE FROM {STATE_TABLE} WHERE name = ?", [(n,) for n in names])

    def stored_indices(self, con: sqlite3.Connection, key: str, indices: Sequence[int]) -> set[int]:
        """Which of ``indices`` of ``key`` are stored (inside `transact`)."""
        log = self._log_for(con)
        entries = [sample_entry(key, i) for i in indices]
        found = log.find(entries, key_hashes(key, indices)[1], "NULL")
        return {i for i, entry in zip(indices, entries, strict=True) if entry in found}

    # -- closing ----------------------------------------------------------------------------

    def save(self, log: RowLog | None = None) -> None:
        """Save the index for the next process (a warning, not an error, if it cannot:
        the next process then builds it from every row)."""
        log = log or self._log
        if log is None or not self._writable:
            return
        try:
            log.save()
        except StoreError as exc:
            warnings.warn(
                f"{exc}; the next open reads every row instead", RuntimeWarning, stacklevel=2
            )

    def close(self) -> None:
        if self._log is not None and self._log.worth_saving:
            self.save()
