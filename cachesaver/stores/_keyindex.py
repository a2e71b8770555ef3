"""An in-memory index of a table's entry names: a stable 63-bit hash to candidate rowids.

A disk store in the log layout (`_disk_log`) keeps its key index here, in memory, instead
of in an on-disk B-tree (where every new hashed key dirties a page of its own, so writes
slow down 5-6x by a million keys); `_rowlog.RowLog` keeps it in step with the table.

The index never decides on its own that an entry exists: it only names the rowids whose
entry has the same hash, and the caller reads those rows and compares their names. So a
hash collision costs one extra row read, never a wrong answer. The hashes
(`_entryhash`) are stable across processes and runs, so an index can be saved and
loaded (`KeyIndex.save`, `KeyIndex.load`). `TopIndex` keeps one value per key instead:
its highest sample index.

Layout: open addressing with linear probing over two ``array('I')``: one of marks (the
top 32 bits of an entry's hash, which also choose its first slot), one of rowids (0: an
empty slot; 2**32 - 1: a removed entry, which probes walk past). At most half the slots
are used; an index sized for a store starts at 0.4. It grows in steps: when a table
gets half full, one twice the size is made and every later `add` moves a few slots of
the old table into it, so no single call places every entry again; until the move ends,
lookups look in both. 8 bytes a slot, 16 to 20 an entry, against about 110 for a dict.
A mark shared by two entries (about one lookup in 2,000 at two million entries) costs
one more row read.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import TypeVar

from cachesaver.errors import StoreError

__all__ = ["KeyIndex", "KeyIndexFileError", "TopIndex"]

_EMPTY = 0
_REMOVED = 0xFFFFFFFF
_LARGEST = _REMOVED - 1  # the largest rowid a slot can hold
_MOVE = 8  # old slots moved per entry added while growing (4 would be just enough)
_LEAST = 1 << 10
_K = TypeVar("_K", bound="KeyIndex")
_FORMAT = "cachesaver-keyindex"
_VERSION = 1


class KeyIndexFileError(StoreError):
    """A saved key index cannot be trusted (the message names the file and the fault)."""


def _size_for(entries: int) -> int:
    """Slots for ``entries`` at load 0.4 (room to grow by a quarter before a growth)."""
    return max(_LEAST, entries * 5 // 2 + 1)


class _Table:
    """One open-addressing table (no growth of its own).

    Each slot holds a rowid (``_EMPTY``, ``_REMOVED`` or a row) and the 32-bit mark of
    the entry (the top bits of its hash); a mark's first slot is ``mark % size``, so a
    growth can place every entry again from its mark alone.
    """

    __slots__ = ("marks", "rowids", "size", "used")

    def __init__(self, size: int) -> None:
        self.marks = array.array("I", bytes(4 * size))
        self.rowids = array.array("I", bytes(4 * size))
        self.size = size
        self.used = 0  # slots holding an entry or a removal mark

    def put(self, mark: int, rowid: int) -> bool:
        """Store (mark, rowid) unless it is there; True if it was added."""
        marks, rowids, size = self.marks, self.rowids, self.size
        slot = mark % size
        while True:
            held = rowids[slot]
            if held == _EMPTY:
                marks[slot] = mark
                rowids[slot] = rowid
                self.used += 1
                return True
            if held == rowid and marks[slot] == mark:
                return False
            slot += 1
            if slot == size:
                slot = 0

    def raise_to(self, mark: int, value: int) -> bool:
        """Keep the largest value given for ``mark`` (one slot per mark); True if the
        mark took a new slot."""
        marks, rowids, size = self.marks, self.rowids, self.size
        slot = mark % size
        while True:
            held = rowids[slot]
            if held == _EMPTY:
                marks[slot] = mark
                rowids[slot] = value
                self.used += 1
                return True
            if held != _REMOVED and marks[slot] == mark:
                if value > held:
                    rowids[slot] = value
                return False
            slot += 1
            if slot == size:
                slot = 0

    def find(self, mark: int, out: list[int]) -> None:
        marks, rowids, size = self.marks, self.rowids, self.size
        slot = mark % size
        while (held := rowids[slot]) != _EMPTY:
            if held != _REMOVED and marks[slot] == mark:
                out.append(held)
            slot += 1
            if slot == size:
                slot = 0

    def remove(self, mark: int, rowid: int) -> bool:
        marks, rowids, size = self.marks, self.rowids, self.size
        slot = mark % size
        while (held := rowids[slot]) != _EMPTY:
            if held == rowid and marks[slot] == mark:
                rowids[slot] = _REMOVED
                return True
            slot += 1
            if slot == size:
                slot = 0
        return False


class KeyIndex:
    """Entry hash -> the rowids of the rows with that hash (see the module's text).

    ``expected`` sizes the first table (e.g. a store's row count at open), so an index
    built from a store does not grow while it is built.
    """

    _dedupe = True  # a pair in the old table while growing is not added again

    def __init__(self, expected: int = 0) -> None:
        self._table = _Table(_size_for(expected))
        self._old: _Table | None = None  # the table being moved out of, while growing
        self._cursor = 0  # the next slot of ``_old`` to move
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (both tables while growing)."""
        size = 8 * self._table.size
        return size if self._old is None else size + 8 * self._old.size

    @property
    def growing(self) -> bool:
        return self._old is not None

    def add(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Add (entry hash, rowid) pairs; a pair already present is not added twice."""
        table = self._table
        added = 0
        for entry_hash, rowid in pairs:
            mark = entry_hash >> 31
            if not 0 < rowid <= _LARGEST:
                raise ValueError(f"the key index holds rowids 1 to {_LARGEST}, not {rowid}")
            if 2 * (table.used + 1) > table.size:
                self._count += added
                added = 0
                self._start_growing()
                table = self._table
            if self._old is not None:
                if self._dedupe and self._has(self._old, mark, rowid):
                    continue
                self._move(_MOVE)
            added += self._place(table, mark, rowid)
        self._count += added

    def candidates(self, entry_hash: int) -> list[int]:
        """The rowids stored under ``entry_hash``'s mark (its top 32 bits): every row with
        that hash, and rarely one with another hash and the same mark."""
        out: list[int] = []
        mark = entry_hash >> 31
        self._table.find(mark, out)
        if self._old is not None:
            self._old.find(mark, out)
        return out

    def lookup(self, hashes: Iterable[int]) -> list[int]:
        """The rowids stored under any of ``hashes`` (`candidates` of each, in one loop)."""
        out: list[int] = []
        append = out.append
        tables = [self._table] if self._old is None else [self._table, self._old]
        hashes = hashes if len(tables) == 1 else list(hashes)
        for table in tables:
            marks, rowids, size = table.marks, table.rowids, table.size
            for entry_hash in hashes:
                mark = entry_hash >> 31
                slot = mark % size
                while (held := rowids[slot]) != _EMPTY:
                    if held != _REMOVED and marks[slot] == mark:
                        append(held)
                    slot += 1
                    if slot == size:
                        slot = 0
        return out

    def remove(self, entry_hash: int, rowid: int) -> bool:
        """Forget one (hash, rowid) pair; False if it was not there."""
        mark = entry_hash >> 31
        removed = self._table.remove(mark, rowid)
        if not removed and self._old is not None:
            removed = self._old.remove(mark, rowid)
        self._count -= removed
        return removed

    def _place(self, table: _Table, mark: int, rowid: int) -> bool:
        return table.put(mark, rowid)

    def _has(self, table: _Table, mark: int, rowid: int) -> bool:
        found: list[int] = []
        table.find(mark, found)
        return rowid in found

    def _start_growing(self) -> None:
        if self._old is not None:  # (not reached at _MOVE >= 4) finish the last move first
            self._move(self._old.size)
        live = self._count
        self._old = self._table
        self._cursor = 0
        # Twice the size, or more if removal marks made the old table look fuller.
        self._table = _Table(max(2 * self._old.size, _size_for(live)))

    def _move(self, slots: int) -> None:
        old = self._old
        assert old is not None
        table = self._table
        end = min(self._cursor + slots, old.size)
        marks, rowids = old.marks, old.rowids
        for slot in range(self._cursor, end):
            rowid = rowids[slot]
            if rowid != _EMPTY and rowid != _REMOVED:
                self._place(table, marks[slot], rowid)
                rowids[slot] = _REMOVED  # found in the new table from now on
        self._cursor = end
        if end == old.size:
            self._old = None

    # -- saving and loading ------------------------------------------------------------

    def save(self, path: str, meta: Mapping[str, int | str]) -> None:
        """Write the index and ``meta`` (what the caller needs to trust it: which store,
        up to which rowid) to ``path``, atomically: a reader sees the old file or this one.

        A growth in progress is finished first, so the file holds one table.
        """
        if self._old is not None:
            self._move(self._old.size)
        table = self._table
        header = json.dumps(
            {
                "format": _FORMAT,
                "version": _VERSION,
                "byteorder": sys.byteorder,
                "size": table.size,
                "used": table.used,
                "count": self._count,
                "meta": dict(meta),
            }
        ).encode()
        digest = hashlib.blake2b(digest_size=32)
        parts: list[bytes | array.array[int]] = [
            len(header).to_bytes(8, "little"),
            header,
            table.marks,
            table.rowids,
        ]
        for part in parts:
            digest.update(part)
        temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(temporary, "wb") as out:
                for part in parts:
                    out.write(part)
                out.write(digest.digest())
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)

    @classmethod
    def load(cls: type[_K], path: str) -> tuple[_K, dict[str, int | str]]:
        """Read an index `save` wrote, and its ``meta``.

        Raises `KeyIndexFileError` naming the path and the fault for a file that is
        missing, cut short, changed after it was written, or from another format or
        machine; such a file is never partly trusted (the caller builds the index again).
        """
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as exc:
            raise KeyIndexFileError(f"{path}: cannot read the saved key index ({exc})") from exc
        if len(data) < 40:
            raise KeyIndexFileError(f"{path}: a saved key index is longer ({len(data)} bytes)")
        body, stored = data[:-32], data[-32:]
        if hashlib.blake2b(body, digest_size=32).digest() != stored:
            raise KeyIndexFileError(
                f"{path}: the saved key index does not match its checksum (cut short or "
                "changed after it was written)"
            )
        length = int.from_bytes(body[:8], "little")
        try:
            header = json.loads(body[8 : 8 + length])
            size, used, count = (int(header[name]) for name in ("size", "used", "count"))
            meta = header["meta"]
            expected = (header["format"], header["version"], header["byteorder"])
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyIndexFileError(f"{path}: the saved key index's header is damaged") from exc
        if expected != (_FORMAT, _VERSION, sys.byteorder) or not isinstance(meta, dict):
            raise KeyIndexFileError(
                f"{path}: not a key index this version of cachesaver saved on this machine "
                f"({expected!r})"
            )
        arrays = body[8 + length :]
        if not (0 <= count <= used <= size // 2 + 1) or size < 1 or len(arrays) != 8 * size:
            raise KeyIndexFileError(f"{path}: the saved key index's sizes do not add up")
        index = cls()
        table = _Table(0)
        table.marks.frombytes(arrays[: 4 * size])
        table.rowids.frombytes(arrays[4 * size :])
        if size - table.rowids.count(_EMPTY) != used:  # (no empty slot: lookups would loop)
            raise KeyIndexFileError(f"{path}: the saved key index's slots do not add up")
        table.size, table.used = size, used
        index._table, index._count = table, count
        return index, meta


class TopIndex(KeyIndex):
    """Key hash -> the largest value given for it (a key's highest sample index + 1).

    One slot per mark; keys sharing a mark share their largest value, so `top` may be
    larger than a key's own (never smaller): a caller that places a sample after it
    may leave a gap, never takes an index that is stored. ``add`` takes (key hash,
    value) pairs, values 1 to 2**32 - 2.
    """

    _dedupe = False

    def _place(self, table: _Table, mark: int, rowid: int) -> bool:
        return table.raise_to(mark, rowid)

    def top(self, key_hash: int) -> int:
        """The largest value given for ``key_hash`` (0 if none)."""
        return max(self.candidates(key_hash), default=0)
