"""One process's view of a disk store kept as a log (issue 15's layout).

The rows stay in diskcache's ``Cache`` table, in cachesaver's own format, but the table
has no unique ``(key, raw)`` index and no row-count triggers: a new row is appended at
the end of the table's B-tree instead of dirtying a random page of an index, so a write
into a store of a million keys costs what it costs into an empty one. The entry names
are found through a `KeyIndex` in memory (stable entry hash -> rowids) that each process
keeps, with a `TopIndex` of each key's highest sample index. `_disk_log.LogRows` is
built on it; `benchmarks/bench_keyindex.py` measures it.

How the processes sharing a file stay in step (a write runs inside a ``BEGIN IMMEDIATE``
transaction the caller opened on ``con``, so one writer at a time; a read needs none):

- `catch_up` starts every read and write: one statement reads the epoch and the rows
  appended since this process last looked (``rowid > seen``), which are indexed. Rows
  are only ever appended, except by a delete.
- A delete bumps an epoch (a table of its own). A process that sees a new epoch indexes
  the store again: from the index the deleting process saved, or from every row. (It
  does not follow deletes row by row: SQLite gives a deleted last rowid out again.)
- `find` reads the candidate rows of each entry by rowid and compares their names, so a
  hash collision costs a row read, never a wrong answer. Two rows with one name (only
  another program writes them) raise `DuplicateRow`: the caller reports the damage.
- `append` adds rows whose names the caller checked with `find` in the same
  transaction (first writer wins), and indexes them from the hashes the caller gives:
  holding the write lock after a catch-up, they got the rowids just past ``seen``, in
  order; that is checked, and if it fails they are read back instead.
- The index is saved (`save`) to a file beside the table with the epoch and the last
  row it holds; a process opening the store loads it when those still match, and
  catches up from there (0.14 s instead of 4.6 s for a million keys).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from cachesaver.errors import StoreError
from cachesaver.stores._entryhash import entry_hash, entry_parts
from cachesaver.stores._keyindex import KeyIndex, KeyIndexFileError, TopIndex

__all__ = [
    "INDEX_FILE",
    "DuplicateRow",
    "RowLog",
    "diskcache_was_here",
    "is_log_layout",
    "make_log_layout",
]

_CHUNK = 500  # SQLite host parameters per statement
_FETCH = 4000
INDEX_FILE = "cachesaver-keyindex"  # the saved index, beside cache.db
TOPS_FILE = "cachesaver-keytops"  # the saved highest sample indices, beside it
_EPOCH_TABLE = "CachesaverLog"

Row = tuple[Any, ...]
# the epoch (kind 0) and the rows past the last one seen (kind 1), in one statement
_CATCH_UP = (
    f"SELECT 0, epoch, NULL FROM {_EPOCH_TABLE} "
    "UNION ALL SELECT 1, rowid, key FROM Cache WHERE rowid > ?"
)


def make_log_layout(con: sqlite3.Connection) -> None:
    """Turn a diskcache file into the log layout: no unique key index, no row-count
    triggers (the log counts rows per transaction), and the epoch table. Idempotent;
    inside the caller's transaction if one is open, else in one of its own."""
    own = not con.in_transaction
    if own:
        con.execute("BEGIN IMMEDIATE")
    try:
        con.execute("DROP INDEX IF EXISTS Cache_key_raw")
        triggers = con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'Cache'"
            " AND name LIKE 'Settings_%'"
        ).fetchall()
        for (name,) in triggers:
            con.execute(f'DROP TRIGGER "{name}"')
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_EPOCH_TABLE}"
            "(id INTEGER PRIMARY KEY CHECK (id = 0), epoch INTEGER NOT NULL)"
        )
        con.execute(f"INSERT OR IGNORE INTO {_EPOCH_TABLE} VALUES (0, 0)")
        if triggers:  # diskcache counted rows itself until now: make the count exact
            con.execute(
                "UPDATE Settings SET value = (SELECT count(*) FROM Cache) WHERE key = 'count'"
            )
    except BaseException:
        if own:
            con.execute("ROLLBACK")
        raise
    if own:
        con.execute("COMMIT")


def diskcache_was_here(con: sqlite3.Connection) -> bool:
    """Whether diskcache's unique key index or row-count triggers are on a log's table
    (diskcache makes them again whenever it opens the directory)."""
    found = con.execute(
        "SELECT 1 FROM sqlite_master WHERE name = 'Cache_key_raw' OR (type = 'trigger' AND "
        "tbl_name = 'Cache' AND name LIKE 'Settings_%') LIMIT 1"
    ).fetchone()
    return found is not None


def is_log_layout(con: sqlite3.Connection) -> bool:
    """Whether the file ``con`` opened is in the log layout."""
    found = con.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_EPOCH_TABLE,)
    ).fetchone()
    return found is not None


class DuplicateRow(Exception):
    """Two rows hold ``entry``; ``rowid`` is the later one (the caller reports it)."""

    def __init__(self, entry: str, rowid: int) -> None:
        super().__init__(entry, rowid)
        self.entry = entry
        self.rowid = rowid


class RowLog:
    """The key index of one log-layout file and the SQL that keeps it true.

    ``directory`` holds the saved index. Call `open` once, inside a transaction.
    """

    def __init__(self, con: sqlite3.Connection, directory: str) -> None:
        self.con = con
        self.saved_index = os.path.join(directory, INDEX_FILE)
        self.saved_tops = os.path.join(directory, TOPS_FILE)
        self.index = KeyIndex()
        self.tops = TopIndex()  # key hash -> its highest sample index + 1
        self.epoch = -1
        self.seen = 0  # the largest rowid indexed
        self.last: str | None = None  # the name of row ``seen``
        self.loaded = False  # whether `open` loaded the saved index
        self._triggers = False  # whether diskcache's count triggers are on the table
        self._saved_count = 0  # entries the saved index held when loaded or saved

    def _epoch(self) -> int:
        try:
            found = self.con.execute(f"SELECT epoch FROM {_EPOCH_TABLE}").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            found = None
        if found is None:
            raise StoreError(
                f"{os.path.dirname(self.saved_index)!r} has no log epoch: it is not a disk "
                "store in the log layout"
            )
        epoch: int = found[0]
        return epoch

    def open(self) -> None:
        """Load the saved index if it still describes this file, else build the index
        from every row; then catch up."""
        con = self.con
        self.epoch = self._epoch()
        self._triggers = bool(
            con.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                ("Settings_count_insert",),
            ).fetchone()
        )
        try:
            index, meta = KeyIndex.load(self.saved_index)
            tops, tops_meta = TopIndex.load(self.saved_tops)
        except KeyIndexFileError:
            index, tops, meta, tops_meta = KeyIndex(), TopIndex(), {}, {}
        seen = meta.get("seen")
        row = con.execute("SELECT key FROM Cache WHERE rowid = ?", (seen,)).fetchone()
        self.loaded = (
            bool(row)
            and meta == tops_meta
            and meta.get("epoch") == self.epoch
            and row[0] == meta.get("last")
        )
        if self.loaded:
            self.index, self.tops = index, tops
            self.seen, self.last = int(seen or 0), row[0]
            self._saved_count = len(index)
        else:
            top = con.execute("SELECT max(rowid) FROM Cache").fetchone()[0] or 0
            self.index = KeyIndex(expected=top)
            self.tops = TopIndex(expected=top // 2)
            self.seen, self.last = 0, None
            self._saved_count = 0
        self._index_since()

    def forget(self) -> None:
        """Call after a rolled-back transaction that used this log: what it indexed may
        not exist, so the next catch-up opens the store again."""
        self.epoch = -1

    def catch_up(self) -> int:
        """Index the rows appended since the last look; -1 if the store was indexed again
        because rows were deleted. One statement reads the epoch and the new rows, so a
        read needs no transaction of its own: what it finds was stored."""
        return self._index_since(check_epoch=True)

    def _index_since(self, *, check_epoch: bool = False) -> int:
        if check_epoch:
            cursor = self.con.execute(_CATCH_UP, (self.seen,))
        else:
            cursor = self.con.execute(
                "SELECT 1, rowid, key FROM Cache WHERE rowid > ?", (self.seen,)
            )
        count = 0
        while chunk := cursor.fetchmany(_FETCH):
            pairs: list[tuple[int, int]] = []
            keys: list[tuple[int, int]] = []
            for kind, rowid, entry in chunk:
                if kind == 0:  # the epoch's row
                    if rowid != self.epoch:
                        self.open()
                        return -1
                    continue
                entry_hash_, key_hash, top = entry_parts(entry)
                pairs.append((entry_hash_, rowid))
                if top:
                    keys.append((key_hash, top))
                if rowid > self.seen:
                    self.seen, self.last = rowid, entry
            self._add(pairs, keys)
            count += len(pairs)
        return count

    def _add(self, pairs: Iterable[tuple[int, int]], keys: Iterable[tuple[int, int]]) -> None:
        try:
            self.index.add(pairs)
            self.tops.add(keys)
        except ValueError as exc:
            raise StoreError(
                f"the disk store's rowids or sample indices outgrew its key index ({exc}); "
                "copy the store into a new one (`cachesaver copy OLD NEW`)"
            ) from exc

    def find(self, entries: Sequence[str], hashes: Sequence[int], columns: str) -> dict[str, Row]:
        """The stored row of each entry found: entry -> (rowid, *``columns``).

        Raises `DuplicateRow` if two rows hold one of the names (only another program
        writes that: cachesaver never appends a name that is stored).
        """
        found: dict[str, Row] = {}
        for row in self._candidate_rows(entries, hashes, columns):
            entry = row[1]
            if entry in found:
                raise DuplicateRow(entry, row[0])
            found[entry] = (row[0], *row[2:])
        return found

    def matches(self, entries: Sequence[str], hashes: Sequence[int]) -> list[tuple[int, str]]:
        """(rowid, name) of every row holding one of ``entries``, duplicates included."""
        return [(row[0], row[1]) for row in self._candidate_rows(entries, hashes, "NULL")]

    def _candidate_rows(
        self, entries: Sequence[str], hashes: Sequence[int], columns: str
    ) -> list[Row]:
        """The rows (rowid, name, *``columns``) named in ``entries``, by rowid."""
        ids = self.index.lookup(hashes)
        if not ids:
            return []
        wanted = set(entries)
        ordered = sorted(set(ids))
        out: list[Row] = []
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT rowid, key, {columns} FROM Cache WHERE rowid IN ({marks}) ORDER BY rowid"
            # a candidate may be another entry's row (a shared hash): names decide
            out += [row for row in self.con.execute(sql, chunk) if row[1] in wanted]
        return out

    def append(
        self,
        rows: Sequence[Row],
        hashes: Sequence[int],
        insert: str,
        keys: Sequence[tuple[int, int]] = (),
    ) -> None:
        """Insert ``rows`` (their names are not stored: the caller checked with `find` in
        this write transaction) with ``insert``, and index them; ``keys`` are (key hash,
        highest sample index + 1) of the keys whose samples they are."""
        if not rows:
            return
        con = self.con
        con.executemany(insert, rows)
        self._count(len(rows))
        first = self.seen + 1
        top, count = con.execute(
            "SELECT max(rowid), count(*) FROM Cache WHERE rowid >= ?", (first,)
        ).fetchone()
        if rows and count == len(rows) and top == self.seen + len(rows):
            self._add(zip(hashes, range(first, top + 1), strict=True), keys)
            self.seen, self.last = top, rows[-1][0]
        else:
            self._index_since()

    def _count(self, change: int) -> None:
        """Keep diskcache's row count (what its ``len()`` reads), unless diskcache's own
        triggers are back (a diskcache opened the directory) and count each row."""
        if not self._triggers:
            self.con.execute("UPDATE Settings SET value = value + ? WHERE key = 'count'", (change,))

    def append_new(
        self,
        rows: Sequence[Row],
        hashes: Sequence[int],
        insert: str,
        keys: Sequence[tuple[int, int]] = (),
    ) -> list[Row]:
        """First writer wins: append the rows whose name (``row[0]``) is not stored yet,
        in a write transaction after `catch_up`; the rows appended."""
        candidates = self.index.candidates
        if any(candidates(h) for h in hashes):
            taken = self.find([row[0] for row in rows], hashes, "NULL")
            if taken:
                kept = [
                    (row, h) for row, h in zip(rows, hashes, strict=True) if row[0] not in taken
                ]
                rows, hashes = [row for row, _ in kept], [h for _, h in kept]
        self.append(rows, hashes, insert, keys)
        return list(rows)

    def delete(self, found: Sequence[tuple[int, str]]) -> int:
        """Delete rows (rowid, name), as `find` gave them, in a write transaction; how
        many were deleted. The store moves to a new epoch; this process's index follows
        in place (save it once committed, so the others load it instead of reading every
        row)."""
        con = self.con
        deleted = 0
        for start in range(0, len(found), _CHUNK):
            chunk = [rowid for rowid, _ in found[start : start + _CHUNK]]
            marks = ",".join("?" * len(chunk))
            deleted += con.execute(f"DELETE FROM Cache WHERE rowid IN ({marks})", chunk).rowcount
        if not deleted:
            return 0
        self._count(-deleted)
        con.execute(f"UPDATE {_EPOCH_TABLE} SET epoch = epoch + 1")
        self.epoch = self._epoch()
        for rowid, entry in found:
            self.index.remove(entry_hash(entry), rowid)
        # SQLite gives rowids past the largest one left out again: index from there on.
        top, name = con.execute("SELECT max(rowid), key FROM Cache").fetchone()
        if (top or 0) < self.seen:
            self.seen, self.last = top or 0, name
        return deleted

    def save(self) -> None:
        """Save the index for the next process that opens the store."""
        meta: dict[str, int | str] = {
            "epoch": self.epoch,
            "seen": self.seen,
            "last": self.last or "",
        }
        try:
            self.index.save(self.saved_index, meta)
            self.tops.save(self.saved_tops, meta)
        except OSError as exc:
            raise StoreError(f"cannot save the key index to {self.saved_index!r}: {exc}") from exc
        self._saved_count = len(self.index)

    @property
    def worth_saving(self) -> bool:
        """Whether the saved index lags enough (a tenth, at least 10,000 entries) to be
        saved again when the store closes."""
        behind = abs(len(self.index) - self._saved_count)
        return behind >= max(10_000, self._saved_count // 10)
