"""The disk store's indexed layout: diskcache's table with its unique key index.

Every lookup is SQL on diskcache's ``(key, raw)`` index: sample ``i`` of a key is the
row ``cs:<key>:<i>``, its content ``cs:<key>:request``, and a key's rows are one range
of the index. This is the layout of stores made before the log layout (`_disk_log`);
in a big store each new key dirties its own index page, so writes slow down with size.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from cachesaver.errors import ImportConflictError, StoreError
from cachesaver.stores import _disk_stats
from cachesaver.stores._disk_format import (
    _CHUNK,
    _COLUMNS,
    _END,
    _INSERT,
    _INSERT_NEW,
    _MARKER,
    _PREFIX,
    _READ,
    _REPLACE,
    Row,
    RowChecks,
    _read_sql,
    content_entry,
    sample_entry,
)
from cachesaver.stores._disk_stats import StatsChunk
from cachesaver.stores.base import KeyRecord, SampleRead, SampleWrite, WriteResult

__all__ = ["IndexedRows"]

_MIGRATED = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'CachesaverLog'"


class IndexedRows(RowChecks):
    """The row SQL of a store in the indexed layout (runs on the store's thread).

    ``transact`` opens a write transaction (diskcache's ``Cache.transact``).
    """

    def __init__(self, directory: str, transact: Callable[[], AbstractContextManager[Any]]) -> None:
        super().__init__(directory)
        self._transact = transact
        self._checked = -1.0  # when `_still_indexed` last looked (time.monotonic())

    def transact(self, con: sqlite3.Connection) -> AbstractContextManager[Any]:
        return self._transact()

    def _still_indexed(self, con: sqlite3.Connection) -> None:
        """Refuse to go on if the store was migrated to the log layout since it opened:
        without its key index every lookup here would read the whole table, and writes
        would no longer be checked for a stored name."""
        self._checked = time.monotonic()
        if con.execute(_MIGRATED).fetchone() is not None:
            raise StoreError(
                f"the disk store {self._directory!r} was migrated to the log layout while "
                "this pipeline used it; open it again (start the run again) to use it"
            )

    def stats_chunk(self, con: sqlite3.Connection, low: str | None) -> StatsChunk:
        """Totals per identity of the chunk of the key range from ``low`` (`_disk_stats`)."""
        return _disk_stats.stats_chunk(self, con, low)

    def close(self) -> None:
        """Nothing to keep: the key index is SQLite's."""

    # -- shared-run state: ``cs:run:...`` and ``cs:lease:...`` rows -------------------------

    def state(
        self, con: sqlite3.Connection, names: Sequence[str]
    ) -> dict[str, tuple[str, float | None]]:
        """The value and expiry time of each state entry found."""
        return {row[0]: (self._text(row), row[6]) for row in self.rows(con, names)}

    def put_state(
        self, con: sqlite3.Connection, name: str, value: str, expire: float | None
    ) -> None:
        now = time.time()
        con.execute(_REPLACE, (name, now, expire, now, value))

    def drop_state(self, con: sqlite3.Connection, names: Sequence[str]) -> None:
        con.executemany("DELETE FROM Cache WHERE key = ? AND raw = 1", [(n,) for n in names])

    def stored_indices(self, con: sqlite3.Connection, key: str, indices: Sequence[int]) -> set[int]:
        """Which of ``indices`` of ``key`` are stored."""
        present = self.select(con, [sample_entry(key, i) for i in indices])
        return {i for i in indices if sample_entry(key, i) in present}

    def rows(self, con: sqlite3.Connection, entries: Sequence[str]) -> list[Row]:
        rows: list[Row] = []
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {_COLUMNS} FROM Cache WHERE key IN ({marks})"
            rows += con.execute(sql, chunk).fetchall()
        return rows

    def select(self, con: sqlite3.Connection, entries: Sequence[str]) -> dict[str, str]:
        return {row[0]: self._text(row) for row in self.rows(con, entries)}

    def rows_of(self, con: sqlite3.Connection, key: str) -> list[Row]:
        """Every row of ``key`` (content and samples) in entry order."""
        low, high = f"{_PREFIX}{key}:", f"{_PREFIX}{key};"
        sql = f"SELECT {_COLUMNS} FROM Cache WHERE key >= ? AND key < ? ORDER BY key"
        return con.execute(sql, (low, high)).fetchall()

    def read(self, con: sqlite3.Connection, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
        # The hot path: SQLite checks each row's form and hands back (entry, text), with
        # NULL for a row not in our form (a text value is never NULL), so Python builds
        # one dict from the rows and looks at no other column.
        if time.monotonic() > self._checked + 1.0:  # (a write checks every time)
            self._still_indexed(con)
        entries = [f"{_PREFIX}{r.key}:{i}" for r in reads for i in r.indices]
        found: dict[str, str | None] = {}
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start : start + _CHUNK]
            sql = _READ if len(chunk) == _CHUNK else _read_sql(len(chunk))
            found.update(con.execute(sql, chunk).fetchall())
        if None in found.values():
            damaged = [entry for entry, text in found.items() if text is None]
            raise self._damaged(self.rows(con, damaged[:1])[0])
        get = found.get
        names = iter(entries)
        out: list[dict[int, str]] = []
        for r in reads:
            got: dict[int, str] = {}
            for i in r.indices:
                text = get(next(names))
                if text is not None:
                    got[i] = text
            out.append(got)
        return out

    def last_index(self, con: sqlite3.Connection, key: str) -> int:
        low, high = f"{_PREFIX}{key}:", f"{_PREFIX}{key};"
        rows = con.execute("SELECT key FROM Cache WHERE key >= ? AND key < ?", (low, high))
        indices = [int(k[len(low) :]) for (k,) in rows if k[len(low) :].isdigit()]
        return max(indices, default=-1)

    def write(self, con: sqlite3.Connection, writes: Sequence[SampleWrite]) -> list[WriteResult]:
        now = time.time()
        with self._transact():
            self._still_indexed(con)
            # The content of a key is the same for every writer: keep the first.
            con.executemany(
                _INSERT_NEW,
                [(f"{_PREFIX}{w.key}:request", now, None, now, w.content) for w in writes],
            )
            rows = [
                (f"{_PREFIX}{w.key}:{i}", now, None, now, text)
                for w in writes
                for i, text in w.samples.items()
            ]
            con.execute("SAVEPOINT cachesaver_write")
            if con.executemany(_INSERT_NEW, rows).rowcount == len(rows):
                con.execute("RELEASE cachesaver_write")
                return [WriteResult(w.samples) for w in writes]
            # Another process stored some of these indices first: start over carefully.
            con.execute("ROLLBACK TO cachesaver_write")
            con.execute("RELEASE cachesaver_write")
            return [self._write_one(con, w, now) for w in writes]

    def _write_one(self, con: sqlite3.Connection, w: SampleWrite, now: float) -> WriteResult:
        existing = self.select(con, [sample_entry(w.key, i) for i in w.samples])
        rows: list[tuple[str, float, None, float, str]] = []
        stored: dict[int, str] = {}
        losers: list[str] = []
        for i, text in w.samples.items():
            taken = existing.get(sample_entry(w.key, i))
            if taken is None:
                rows.append((sample_entry(w.key, i), now, None, now, text))
                stored[i] = text
            else:
                stored[i] = taken
                losers.append(text)
        con.executemany(_INSERT, rows)
        appended: list[int] = []
        if losers:
            nxt = max(self.last_index(con, w.key), *w.samples) + 1
            rows = []
            for text in losers:
                rows.append((sample_entry(w.key, nxt), now, None, now, text))
                appended.append(nxt)
                nxt += 1
            con.executemany(_INSERT, rows)
        return WriteResult(stored, appended)

    # -- whole-store operations for tools -------------------------------------------------

    def keys(self, con: sqlite3.Connection) -> list[str]:
        rows = con.execute(
            "SELECT key FROM Cache WHERE key >= ? AND key < ? AND key LIKE ? ORDER BY key",
            (_PREFIX, _END, "%:request"),
        )
        return [entry[len(_PREFIX) : -len(":request")] for (entry,) in rows]

    def records(self, con: sqlite3.Connection, keys: Sequence[str]) -> list[KeyRecord]:
        out: list[KeyRecord] = []
        for key in keys:
            record = self.record(key, self.rows_of(con, key))
            if record is not None:
                out.append(record)
        return out

    def scan(self, con: sqlite3.Connection, after: str | None, limit: int) -> list[KeyRecord]:
        """Up to ``limit`` records in key order, starting after key ``after``: one range scan."""
        low = _PREFIX if after is None else f"{_PREFIX}{after};"
        out: list[KeyRecord] = []
        current: str | None = None
        rows: list[Row] = []
        sql = f"SELECT {_COLUMNS} FROM Cache WHERE key >= ? AND key < ? ORDER BY key"
        for row in con.execute(sql, (low, _END)):
            entry = row[0]
            if entry == _MARKER or entry.startswith((_PREFIX + "run:", _PREFIX + "lease:")):
                continue
            key = entry[len(_PREFIX) :].rsplit(":", 1)[0]
            if key != current:
                if current is not None:
                    record = self.record(current, rows)
                    if record is not None:
                        out.append(record)
                        if len(out) >= limit:
                            return out
                current, rows = key, []
            rows.append(row)
        if current is not None:
            record = self.record(current, rows)
            if record is not None:
                out.append(record)
        return out

    def import_records(self, con: sqlite3.Connection, records: Sequence[KeyRecord]) -> int:
        now = time.time()
        written = 0
        with self._transact():
            self._still_indexed(con)
            entries = [content_entry(r.key) for r in records]
            entries += [sample_entry(r.key, i) for r in records for i in r.samples]
            existing = self.select(con, entries)
            rows: list[tuple[str, float, None, float, str]] = []
            for record in records:
                pairs = [(content_entry(record.key), record.content)]
                pairs += [(sample_entry(record.key, i), t) for i, t in record.samples.items()]
                for entry, text in pairs:
                    have = existing.get(entry)
                    if have is None:
                        existing[entry] = text
                        rows.append((entry, now, None, now, text))
                        written += not entry.endswith(":request")
                    elif have != text:
                        raise ImportConflictError(
                            f"{entry} already holds a different value in {self._directory!r}; "
                            "a stored sample is never changed, so nothing was imported"
                        )
            con.executemany(_INSERT, rows)
        return written

    def delete(self, con: sqlite3.Connection, keys: Sequence[str]) -> int:
        found = 0
        with self._transact():
            self._still_indexed(con)
            for key in keys:
                low, high = f"{_PREFIX}{key}:", f"{_PREFIX}{key};"
                # Rows only: a file a foreign row names is never touched.
                deleted = con.execute(
                    "DELETE FROM Cache WHERE key >= ? AND key < ?", (low, high)
                ).rowcount
                found += deleted > 0
        return found
