"""The log layout's reads of whole keys: every row of a key, and the store's keys sorted.

A key's rows are its content and its samples 0 to its highest index (`TopIndex`), found
by name through the key index; a key whose highest index passes `PROBED` (only an import
or another program makes one) is read by one pass over every row, for all such keys at
once, so the cost never follows a huge index. The sorted key list is one read of every
row name. `LogRows` (`_disk_log`) builds records, walks, imports and deletes on these.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cachesaver.stores._disk_format import (
    _COLUMNS,
    _MARKER,
    _PREFIX,
    Row,
    RowChecks,
    content_entry,
    sample_entry,
)
from cachesaver.stores._entryhash import key_hashes
from cachesaver.stores._rowlog import DuplicateRow, RowLog
from cachesaver.stores.base import KeyRecord

if TYPE_CHECKING:
    from cachesaver.stores._disk_log import LogRows

__all__ = ["PROBED", "every_row", "key_rows", "names", "records_of", "sorted_keys"]

PROBED = 1 << 16  # a key with more sample indices is read by a pass over the rows
_SHARED = (_PREFIX + "run:", _PREFIX + "lease:")
_ROW = _COLUMNS.replace("key, ", "", 1)  # a whole row, after its rowid and name


def _index(entry: str) -> int:
    """A row's place among its key's: the content (-1), then samples by index."""
    suffix = entry.rpartition(":")[2]
    return int(suffix) if suffix.isdigit() else -1


def names(log: RowLog, keys: Sequence[str]) -> tuple[list[str], list[int], list[str]]:
    """The entry names and hashes of every row of ``keys`` that the index can name
    (content, and samples 0 to the highest index), and the keys with a gap.

    A key is read by name, samples 0 to its highest index (missing ones cost a lookup
    in memory); a key whose highest index passes `_PROBED` (only an import or another
    program makes one) by a pass over every row, for all such keys at once, so the
    cost never follows a huge index.
    """
    entries: list[str] = []
    hashes: list[int] = []
    sparse: list[str] = []
    for key in keys:
        content_hash, _ = key_hashes(key, ())
        top = log.tops.top(content_hash)
        if top > PROBED:
            sparse.append(key)
            top = 0
        entries += [content_entry(key), *(sample_entry(key, i) for i in range(top))]
        hashes += [content_hash, *key_hashes(key, range(top))[1]]
    return entries, hashes, sparse


def key_rows(log: RowLog, keys: Sequence[str]) -> dict[str, list[tuple[int, Row]]]:
    """Every row of each key (its content and its samples) as (rowid, whole row), in
    entry order: what `record` builds a `KeyRecord` from."""
    entries, hashes, sparse = names(log, keys)
    found = log.find(entries, hashes, _ROW)
    out: dict[str, list[tuple[int, Row]]] = {key: [] for key in keys}
    for entry in entries:
        row = found.get(entry)
        if row is not None:
            key = entry[len(_PREFIX) :].rpartition(":")[0]
            out[key].append((row[0], (entry, *row[1:])))
    for key, every in every_row(log, sparse).items():
        named: set[str] = set()
        for rowid, row in every:
            if row[0] in named:
                raise DuplicateRow(row[0], rowid)
            named.add(row[0])
        out[key] = sorted(every, key=lambda r: _index(r[1][0]))
    return out


def every_row(log: RowLog, keys: Sequence[str]) -> dict[str, list[tuple[int, Row]]]:
    """Every row of ``keys`` (content and samples, duplicates too), by one pass over
    the table in rowid order."""
    if not keys:
        return {}
    out: dict[str, list[tuple[int, Row]]] = {key: [] for key in keys}
    for rowid, *row in log.con.execute(f"SELECT rowid, {_COLUMNS} FROM Cache"):
        entry = row[0]
        if isinstance(entry, str) and entry.startswith(_PREFIX):
            key, _, suffix = entry[len(_PREFIX) :].rpartition(":")
            if key in out and (suffix == "request" or suffix.isdigit()):
                out[key].append((rowid, tuple(row)))
    return out


def records_of(
    checks: RowChecks, keys: Sequence[str], found: dict[str, list[tuple[int, Row]]]
) -> list[KeyRecord]:
    """The records of ``keys`` from their rows (keys with no content are left out)."""
    out: list[KeyRecord] = []
    for key in keys:
        record = checks.record(key, [row for _, row in found[key]])
        if record is not None:
            out.append(record)
    return out


def sorted_keys(rows: LogRows, con: sqlite3.Connection, log: RowLog) -> list[str]:
    out: list[str] = []
    for rowid, entry in con.execute("SELECT rowid, key FROM Cache"):
        if not isinstance(entry, str) or not entry.startswith(_PREFIX):
            continue  # not cachesaver's (the indexed layout skips these too)
        body = entry[len(_PREFIX) :]
        key, _, suffix = body.rpartition(":")
        if suffix == "request":
            out.append(key)
        elif not (suffix.isdigit() or entry == _MARKER or entry.startswith(_SHARED)):
            raise rows._whole(con, rowid)  # a name only another program writes
    out.sort()
    return out
