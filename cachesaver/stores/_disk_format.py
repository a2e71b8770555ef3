"""The disk store's row format, shared by its two layouts (see `cachesaver.stores.disk`).

Every cachesaver row is a diskcache ``Cache`` row with a str key and an inline text
value (``raw=1, mode=1``, no file); any other row is damage, reported by name
(`RowChecks`), never unpickled or opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from cachesaver.errors import StoreError
from cachesaver.stores.base import KeyRecord, SampleRead, SampleWrite, WriteResult

if TYPE_CHECKING:
    from cachesaver.stores._disk_stats import StatsChunk

_PREFIX = "cs:"
_END = "cs;"  # the first text after every "cs:..." entry
_MARKER = _PREFIX + "store"
_MARKER_TEXT = '{"format":"cachesaver","version":1}'
_DB = "cache.db"
_CHUNK = 500  # SQLite host parameters per statement, well under every build's limit
_COLUMNS = "key, raw, mode, filename, typeof(value), value, expire_time, store_time"
_INSERT = (
    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count,"
    " tag, size, mode, filename, value) VALUES (?, 1, ?, ?, ?, 0, NULL, 0, 1, NULL, ?)"
)
_INSERT_NEW = _INSERT.replace("INSERT INTO", "INSERT OR IGNORE INTO")
_REPLACE = _INSERT.replace("INSERT INTO", "INSERT OR REPLACE INTO")


def _read_sql(count: int) -> str:
    """A read of ``count`` entries: (entry, text), text NULL for a row not in our form."""
    return (
        "SELECT key, CASE WHEN raw = 1 AND mode = 1 AND filename IS NULL AND "
        "typeof(value) = 'text' THEN value END FROM Cache WHERE key IN "
        f"({','.join('?' * count)})"
    )


_READ = _read_sql(_CHUNK)
_DISKCACHE_COLUMNS = frozenset(
    {"key", "raw", "store_time", "expire_time", "mode", "filename", "value"}
)

Row = tuple[Any, ...]


def sample_entry(key: str, index: int) -> str:
    """Return the diskcache key of sample ``index`` of ``key``."""
    return f"{_PREFIX}{key}:{index}"


def content_entry(key: str) -> str:
    """Return the diskcache key of the request content of ``key``."""
    return f"{_PREFIX}{key}:request"


def key_of(entry: str) -> str:
    """The cachesaver key an entry belongs to (for messages)."""
    body = entry[len(_PREFIX) :] if entry.startswith(_PREFIX) else entry
    for kind in ("lease:", "run:"):
        if body.startswith(kind):
            return body
    return body.rsplit(":", 1)[0]


class Layout(Protocol):
    """A disk store's row SQL (`IndexedRows` or `LogRows`); every method runs on the
    store's thread with its connection."""

    @property
    def directory(self) -> str: ...

    def read(
        self, con: sqlite3.Connection, reads: Sequence[SampleRead]
    ) -> list[dict[int, str]]: ...

    def write(
        self, con: sqlite3.Connection, writes: Sequence[SampleWrite]
    ) -> list[WriteResult]: ...

    def keys(self, con: sqlite3.Connection) -> list[str]: ...

    def scan(self, con: sqlite3.Connection, after: str | None, limit: int) -> list[KeyRecord]: ...

    def records(self, con: sqlite3.Connection, keys: Sequence[str]) -> list[KeyRecord]: ...

    def import_records(self, con: sqlite3.Connection, records: Sequence[KeyRecord]) -> int: ...

    def delete(self, con: sqlite3.Connection, keys: Sequence[str]) -> int: ...

    def stats_chunk(self, con: sqlite3.Connection, low: str | None) -> StatsChunk: ...

    def transact(self, con: sqlite3.Connection) -> AbstractContextManager[Any]: ...

    def state(
        self, con: sqlite3.Connection, names: Sequence[str]
    ) -> dict[str, tuple[str, float | None]]: ...

    def put_state(
        self, con: sqlite3.Connection, name: str, value: str, expire: float | None
    ) -> None: ...

    def drop_state(self, con: sqlite3.Connection, names: Sequence[str]) -> None: ...

    def stored_indices(
        self, con: sqlite3.Connection, key: str, indices: Sequence[int]
    ) -> set[int]: ...

    def close(self) -> None: ...


class RowChecks:
    """What both layouts do with one row: check its form, name the damage, build records."""

    def __init__(self, directory: str) -> None:
        self._directory = directory

    @property
    def directory(self) -> str:
        return self._directory

    def _damaged(self, row: Row) -> StoreError:
        entry, raw, mode, filename, kind = row[:5]
        shown = entry if isinstance(entry, str) else repr(entry)
        key = key_of(shown)
        return StoreError(
            f"disk cache {self._directory!r}: the entry {shown[:120]!r} of key {key[:70]!r} is "
            f"not in cachesaver's format (raw={raw!r}, mode={mode!r}, file={filename!r}, "
            f"{kind} value): something else wrote it. It was neither unpickled nor opened; "
            f"delete the key (`cachesaver delete CACHE {key[:64]}`) or restore the cache "
            "from a backup"
        )

    def _text(self, row: Row) -> str:
        """The text of one row, or `StoreError` if the row is not in our format."""
        if row[1] == 1 and row[2] == 1 and row[3] is None and row[4] == "text":
            text: str = row[5]
            return text
        raise self._damaged(row)

    def record(self, key: str, rows: Sequence[Row]) -> KeyRecord | None:
        low = f"{_PREFIX}{key}:"
        content: str | None = None
        samples: dict[int, str] = {}
        updated: float | None = None
        for row in rows:
            suffix = row[0][len(low) :]
            if suffix == "request":
                content = self._text(row)
            elif suffix.isdigit():
                samples[int(suffix)] = self._text(row)
            else:
                raise self._damaged(row)
            if isinstance(row[7], (int, float)) and (updated is None or row[7] > updated):
                updated = float(row[7])
        if content is None:
            return None
        return KeyRecord(key, content, dict(sorted(samples.items())), updated)
