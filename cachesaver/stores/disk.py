"""The embedded store: a diskcache directory, safe for many processes at once.

Layout inside the diskcache ``Cache`` table (plain string keys and JSON text values, so
``diskcache`` itself can read every entry and nothing is ever pickled):

- ``cs:<key>:<i>``: sample ``i`` of ``<key>``;
- ``cs:<key>:request``: the canonical request content of ``<key>``, written once;
- ``cs:store``: a marker saying the directory is a cachesaver store;
- ``cs:run:...`` and ``cs:lease:<key>:<i>``: the state of shared runs.

Every entry is read and written by SQL, in cachesaver's own row format only (a str key,
an inline text value: ``raw=1, mode=1``, no file). A row in any other form (a pickle, a
value in a file, a blob) is damage: it raises `StoreError` naming the key and is never
unpickled or opened; diskcache's own ``get``/``set`` (which would do both) are never
called. Reads and writes of a whole batch go through one SQLite statement group inside
one ``Cache.transact()`` (``BEGIN IMMEDIATE``), so concurrent processes see one
consistent order of every sample list. All I/O runs on one worker thread, never on the
event loop. Eviction is switched off on the cache: diskcache's default size limit would
otherwise silently drop samples.

``DiskStore(path, read_only=True)`` (what the read-only commands use) opens the SQLite
file read-only with plain ``sqlite3`` (diskcache would create tables and change
settings), refuses anything that is not a cachesaver store, and never creates a
directory or a table.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote

import diskcache

from cachesaver.errors import ImportConflictError, NotACacheError, StoreError
from cachesaver.stores.base import (
    IdentityTotals,
    KeyRecord,
    LeaseRequest,
    Reservation,
    SampleRead,
    SampleWrite,
    Unreservation,
    WriteResult,
)

__all__ = ["DiskStore", "content_entry", "sample_entry"]

_T = TypeVar("_T")
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


def _key_of(entry: str) -> str:
    """The cachesaver key an entry belongs to (for messages)."""
    body = entry[len(_PREFIX) :] if entry.startswith(_PREFIX) else entry
    for kind in ("lease:", "run:"):
        if body.startswith(kind):
            return body
    return body.rsplit(":", 1)[0]


class DiskStore:
    """A `Store` in a diskcache directory (``path``) or an open ``diskcache.Cache``.

    A store opened from a path is closed by `aclose`; a ``Cache`` passed in stays open.
    With ``read_only=True`` (a path only) the store never writes, never creates the
    directory, and refuses a directory that is not a cachesaver store (`NotACacheError`).
    """

    def __init__(
        self, cache: str | os.PathLike[str] | diskcache.Cache, *, read_only: bool = False
    ) -> None:
        if isinstance(cache, diskcache.Cache):
            if read_only:
                raise TypeError("read_only=True needs a directory path, not an open Cache")
            self._cache: diskcache.Cache | None = cache
            self._directory = str(cache.directory)
            self._owned = False
        elif isinstance(cache, (str, os.PathLike)):
            self._cache = None
            self._directory = os.fspath(cache)
            self._owned = True
        else:
            raise TypeError(
                f"DiskStore needs a directory path or a diskcache.Cache, got {type(cache).__name__}"
            )
        self._read_only = read_only
        self._ro: sqlite3.Connection | None = None
        self._location = "disk:" + os.path.realpath(self._directory)
        self._executor: ThreadPoolExecutor | None = None
        self._prepared = False
        self._unmapped: sqlite3.Connection | None = None
        self._closed = False

    @property
    def location(self) -> str:
        return self._location

    @property
    def directory(self) -> str:
        return self._directory

    @property
    def read_only(self) -> bool:
        return self._read_only

    def __repr__(self) -> str:
        return f"DiskStore({self._directory!r})"

    # -- thread side: opening ------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self._read_only:
            if self._ro is None:
                self._ro = open_read_only(self._directory)
            return self._ro
        if self._cache is None:
            try:
                self._cache = diskcache.Cache(self._directory, eviction_policy="none")
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(
                    f"cannot open the disk cache at {self._directory!r}: {exc}; check that "
                    "the path is a writable directory (or a diskcache directory)"
                ) from exc
        cache = self._cache
        con: sqlite3.Connection = cache._con  # this thread's connection (diskcache's)
        if con is not self._unmapped:
            # diskcache memory-maps the first 64 MB of the file on each connection, and
            # every page read through the map stays in the process's RSS; without the map
            # SQLite reads into its page cache (bounded by cache_size), which measured as
            # fast or faster for cachesaver's reads. Only this connection is changed.
            con.execute("PRAGMA mmap_size = 0")
            self._unmapped = con
        if not self._prepared:
            if cache.eviction_policy != "none":
                cache.reset("eviction_policy", "none")
            with cache.transact():
                now = time.time()
                cache._con.execute(_INSERT_NEW, (_MARKER, now, None, now, _MARKER_TEXT))
            self._prepared = True
        return con

    def _transact(self) -> Any:
        if self._cache is None:
            raise StoreError(f"{self!r} was opened read-only; it cannot be changed")
        return self._cache.transact()

    def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return fn(self._open())
        except (sqlite3.Error, diskcache.Timeout, OSError) as exc:
            raise StoreError(f"disk cache {self._directory!r} failed: {exc!r}") from exc

    # -- thread side: rows in our own format only ------------------------------------------

    def _damaged(self, row: Row) -> StoreError:
        entry, raw, mode, filename, kind = row[:5]
        shown = entry if isinstance(entry, str) else repr(entry)
        key = _key_of(shown)
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

    def _rows(self, con: sqlite3.Connection, entries: Sequence[str]) -> list[Row]:
        rows: list[Row] = []
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {_COLUMNS} FROM Cache WHERE key IN ({marks})"
            rows += con.execute(sql, chunk).fetchall()
        return rows

    def _select(self, con: sqlite3.Connection, entries: Sequence[str]) -> dict[str, str]:
        return {row[0]: self._text(row) for row in self._rows(con, entries)}

    def _rows_of(self, con: sqlite3.Connection, key: str) -> list[Row]:
        """Every row of ``key`` (content and samples) in entry order."""
        low, high = f"{_PREFIX}{key}:", f"{_PREFIX}{key};"
        sql = f"SELECT {_COLUMNS} FROM Cache WHERE key >= ? AND key < ? ORDER BY key"
        return con.execute(sql, (low, high)).fetchall()

    def _read(self, con: sqlite3.Connection, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
        # The hot path: SQLite checks each row's form and hands back (entry, text), with
        # NULL for a row not in our form (a text value is never NULL), so Python builds
        # one dict from the rows and looks at no other column.
        entries = [f"{_PREFIX}{r.key}:{i}" for r in reads for i in r.indices]
        found: dict[str, str | None] = {}
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start : start + _CHUNK]
            sql = _READ if len(chunk) == _CHUNK else _read_sql(len(chunk))
            found.update(con.execute(sql, chunk).fetchall())
        if None in found.values():
            damaged = [entry for entry, text in found.items() if text is None]
            raise self._damaged(self._rows(con, damaged[:1])[0])
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

    def _last_index(self, con: sqlite3.Connection, key: str) -> int:
        low, high = f"{_PREFIX}{key}:", f"{_PREFIX}{key};"
        rows = con.execute("SELECT key FROM Cache WHERE key >= ? AND key < ?", (low, high))
        indices = [int(k[len(low) :]) for (k,) in rows if k[len(low) :].isdigit()]
        return max(indices, default=-1)

    def _write(self, con: sqlite3.Connection, writes: Sequence[SampleWrite]) -> list[WriteResult]:
        now = time.time()
        with self._transact():
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
        existing = self._select(con, [sample_entry(w.key, i) for i in w.samples])
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
            nxt = max(self._last_index(con, w.key), *w.samples) + 1
            rows = []
            for text in losers:
                rows.append((sample_entry(w.key, nxt), now, None, now, text))
                appended.append(nxt)
                nxt += 1
            con.executemany(_INSERT, rows)
        return WriteResult(stored, appended)

    # -- whole-store operations for tools -------------------------------------------------

    def _keys(self, con: sqlite3.Connection) -> list[str]:
        rows = con.execute(
            "SELECT key FROM Cache WHERE key >= ? AND key < ? AND key LIKE ? ORDER BY key",
            (_PREFIX, _END, "%:request"),
        )
        return [entry[len(_PREFIX) : -len(":request")] for (entry,) in rows]

    def _record(self, key: str, rows: Sequence[Row]) -> KeyRecord | None:
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

    def _records(self, con: sqlite3.Connection, keys: Sequence[str]) -> list[KeyRecord]:
        out: list[KeyRecord] = []
        for key in keys:
            record = self._record(key, self._rows_of(con, key))
            if record is not None:
                out.append(record)
        return out

    def _scan(self, con: sqlite3.Connection, after: str | None, limit: int) -> list[KeyRecord]:
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
                    record = self._record(current, rows)
                    if record is not None:
                        out.append(record)
                        if len(out) >= limit:
                            return out
                current, rows = key, []
            rows.append(row)
        if current is not None:
            record = self._record(current, rows)
            if record is not None:
                out.append(record)
        return out

    def _import(self, con: sqlite3.Connection, records: Sequence[KeyRecord]) -> int:
        now = time.time()
        written = 0
        with self._transact():
            entries = [content_entry(r.key) for r in records]
            entries += [sample_entry(r.key, i) for r in records for i in r.samples]
            existing = self._select(con, entries)
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

    def _delete(self, con: sqlite3.Connection, keys: Sequence[str]) -> int:
        found = 0
        with self._transact():
            for key in keys:
                low, high = f"{_PREFIX}{key}:", f"{_PREFIX}{key};"
                # Rows only: a file a foreign row names is never touched.
                deleted = con.execute(
                    "DELETE FROM Cache WHERE key >= ? AND key < ?", (low, high)
                ).rowcount
                found += deleted > 0
        return found

    def iter_keys(self) -> Iterator[str]:
        """Yield every key that has request content (synchronous, for scripts)."""
        yield from self._call(self._keys)

    # -- event-loop side ---------------------------------------------------------------

    def _submit(self, fn: Callable[[sqlite3.Connection], _T]) -> asyncio.Future[_T]:
        """Start ``fn`` on the store's thread; the future holds its result."""
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="cachesaver-disk")
        return asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._submit(fn)

    # The hot pair returns the thread's future itself (still awaitable): a caller that
    # batches calls (the cacher) follows it with a callback instead of a task.
    def read(self, reads: Sequence[SampleRead]) -> Awaitable[list[dict[int, str]]]:
        return self._submit(lambda con: self._read(con, reads))

    def write(self, writes: Sequence[SampleWrite]) -> Awaitable[list[WriteResult]]:
        return self._submit(lambda con: self._write(con, writes))

    async def keys(self) -> list[str]:
        return await self._run(self._keys)

    async def scan(self, after: str | None = None, limit: int = 500) -> list[KeyRecord]:
        """Return up to ``limit`` records in key order after key ``after`` (one range scan)."""
        return await self._run(lambda con: self._scan(con, after, limit))

    async def identity_totals(
        self, progress: Callable[[int], object] | None = None
    ) -> list[IdentityTotals]:
        """Totals per model identity in one ordered pass, a chunk at a time.

        ``progress`` is called with the number of keys of each chunk (see `_disk_stats`).
        """
        from cachesaver.stores._disk_stats import stats_chunk

        out: list[IdentityTotals] = []
        low: str | None = None
        while True:
            chunk = await self._run(functools.partial(stats_chunk, self, low=low))
            out += chunk.totals
            if progress is not None:
                progress(chunk.keys)
            if chunk.next is None:
                return out
            low = chunk.next

    async def reserve(self, reservations: Sequence[Reservation]) -> list[list[int]]:
        from cachesaver.stores import _disk_shared

        return await self._run(lambda con: _disk_shared.reserve(self, con, reservations))

    async def unreserve(self, items: Sequence[Unreservation]) -> list[None]:
        from cachesaver.stores import _disk_shared

        return await self._run(lambda con: _disk_shared.unreserve(self, con, items))

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[list[int]]:
        from cachesaver.stores import _disk_shared

        return await self._run(lambda con: _disk_shared.lease(self, con, requests))

    async def unlease(self, requests: Sequence[LeaseRequest]) -> list[None]:
        from cachesaver.stores import _disk_shared

        return await self._run(lambda con: _disk_shared.unlease(self, con, requests))

    async def records(self, keys: Sequence[str]) -> list[KeyRecord]:
        return await self._run(lambda con: self._records(con, keys))

    async def import_records(self, records: Sequence[KeyRecord]) -> int:
        return await self._run(lambda con: self._import(con, records))

    async def delete(self, keys: Sequence[str]) -> int:
        return await self._run(lambda con: self._delete(con, keys))

    def _close(self) -> None:
        if self._ro is not None:
            self._ro.close()
            self._ro = None
        if self._owned and self._cache is not None:
            self._cache.close()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._close)
            executor.shutdown(wait=False)
        else:
            self._close()


def open_read_only(directory: str) -> sqlite3.Connection:
    """Open the SQLite file of a cachesaver disk store read-only, or raise `NotACacheError`.

    Never creates the directory, the file or a table, and never changes a setting.
    """
    path = os.path.join(directory, _DB)
    if not os.path.isdir(directory):
        if os.path.lexists(directory):
            raise NotACacheError(f"{directory} is not a directory, so not a cachesaver cache")
        raise NotACacheError(
            f"{directory}: no such cache directory (check the path; reading never creates a cache)"
        )
    if not os.path.isfile(path):
        raise NotACacheError(
            f"{directory} is a directory but not a cachesaver cache (no {_DB} inside)"
        )
    uri = "file:" + quote(os.path.abspath(path)) + "?mode=ro"
    con = sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False)
    try:
        columns = {row[1] for row in con.execute("PRAGMA table_info(Cache)")}
        if not columns >= _DISKCACHE_COLUMNS:
            raise NotACacheError(
                f"{directory} holds a SQLite {_DB} that is not a diskcache (no Cache table "
                "with diskcache's columns): not a cachesaver cache; it was not changed"
            )
        ours = con.execute(
            "SELECT 1 FROM Cache WHERE key >= ? AND key < ? LIMIT 1", (_PREFIX, _END)
        ).fetchone()
        if ours is None:
            raise NotACacheError(
                f"{directory} is a diskcache with no cachesaver entries: not a cachesaver "
                "cache (another program's cache, or an empty one); it was not changed"
            )
    except sqlite3.DatabaseError as exc:
        con.close()
        raise NotACacheError(
            f"{directory}: {path} is not a readable SQLite database ({exc}): not a cachesaver cache"
        ) from None
    except BaseException:
        con.close()
        raise
    return con
