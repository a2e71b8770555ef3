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
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import diskcache

from cachesaver.errors import StoreError
from cachesaver.stores._disk_format import (
    Layout,
    content_entry,
    sample_entry,
)
from cachesaver.stores._disk_indexed import IndexedRows
from cachesaver.stores._disk_log import LogRows
from cachesaver.stores._disk_open import connect_log, log_file, open_read_only, settle_layout
from cachesaver.stores._disk_stats import StatsChunk
from cachesaver.stores._rowlog import diskcache_was_here, is_log_layout, make_log_layout
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
        self._location = "disk:" + os.path.realpath(self._directory)
        self._executor: ThreadPoolExecutor | None = None
        self._con: sqlite3.Connection | None = None  # the store thread's, once open
        self._closed = False
        # which layout the file is in is known once it is open (`_open`)
        self._layout: Layout = IndexedRows(self._directory, self._transact)

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
        if self._con is not None:
            return self._con
        if self._read_only:
            ro = open_read_only(self._directory)
            self._layout = self._layout_for(ro, log=is_log_layout(ro))
            self._con = ro
            return ro
        if self._cache is None and log_file(self._directory):
            return self._open_log()
        try:
            cache = self._diskcache()
        except StoreError:
            # Another process made this new store a log while diskcache was opening it
            # (diskcache builds its key index again, which a log's rows need not allow).
            if self._cache is None and log_file(self._directory):
                return self._open_log()
            raise
        con: sqlite3.Connection = cache._con  # the store thread's (diskcache's)
        # diskcache memory-maps the first 64 MB of the file on each connection, and every
        # page read through the map stays in the process's RSS; without the map SQLite
        # reads into its page cache (bounded by cache_size), which measured as fast or
        # faster for cachesaver's reads. Only this connection is changed.
        con.execute("PRAGMA mmap_size = 0")
        if cache.eviction_policy != "none":
            cache.reset("eviction_policy", "none")
        if settle_layout(con, new_stores_log=self._owned) and self._owned:
            # A new store: from now on it is opened as a log, not through diskcache.
            cache.close()
            self._cache = None
            return self._open_log()
        self._layout = self._layout_for(con, log=is_log_layout(con))
        self._con = con
        return con

    def _open_log(self) -> sqlite3.Connection:
        con = connect_log(self._directory)
        try:
            if diskcache_was_here(con):
                # diskcache opened the store since: it built its key index and count
                # triggers again; drop them (and count the rows once).
                make_log_layout(con)
        except BaseException:
            con.close()
            raise
        self._con = con
        self._layout = LogRows(self._directory, writable=True)
        return con

    def _diskcache(self) -> diskcache.Cache:
        if self._cache is None:
            try:
                self._cache = diskcache.Cache(self._directory, eviction_policy="none")
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(
                    f"cannot open the disk cache at {self._directory!r}: {exc}; check that "
                    "the path is a writable directory (or a diskcache directory)"
                ) from exc
        return self._cache

    def _layout_for(self, con: sqlite3.Connection, *, log: bool) -> Layout:
        if log:
            return LogRows(self._directory, writable=not self._read_only)
        return IndexedRows(self._directory, self._transact)

    def _transact(self) -> Any:
        if self._cache is None:
            raise StoreError(f"{self!r} was opened read-only; it cannot be changed")
        return self._cache.transact()

    def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return fn(self._open())
        except (sqlite3.Error, diskcache.Timeout, OSError) as exc:
            raise StoreError(f"disk cache {self._directory!r} failed: {exc!r}") from exc

    def iter_keys(self) -> Iterator[str]:
        """Yield every key that has request content (synchronous, for scripts; not while
        an event loop of this thread uses the store)."""
        yield from self._pool().submit(self._call, lambda con: self._layout.keys(con)).result()

    # -- event-loop side ---------------------------------------------------------------

    def _submit(self, fn: Callable[[sqlite3.Connection], _T]) -> asyncio.Future[_T]:
        """Start ``fn`` on the store's thread; the future holds its result."""
        return asyncio.get_running_loop().run_in_executor(self._pool(), self._call, fn)

    def _pool(self) -> ThreadPoolExecutor:
        """The store's one thread: all its SQLite work runs there, on one connection."""
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="cachesaver-disk")
        return self._executor

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return await self._submit(fn)

    # The hot pair returns the thread's future itself (still awaitable): a caller that
    # batches calls (the cacher) follows it with a callback instead of a task.
    def read(self, reads: Sequence[SampleRead]) -> Awaitable[list[dict[int, str]]]:
        return self._submit(lambda con: self._layout.read(con, reads))

    def write(self, writes: Sequence[SampleWrite]) -> Awaitable[list[WriteResult]]:
        return self._submit(lambda con: self._layout.write(con, writes))

    async def keys(self) -> list[str]:
        return await self._run(lambda con: self._layout.keys(con))

    async def scan(self, after: str | None = None, limit: int = 500) -> list[KeyRecord]:
        """Return up to ``limit`` records in key order after key ``after`` (one range scan)."""
        return await self._run(lambda con: self._layout.scan(con, after, limit))

    async def identity_totals(
        self, progress: Callable[[int], object] | None = None
    ) -> list[IdentityTotals]:
        """Totals per model identity in one ordered pass, a chunk at a time.

        ``progress`` is called with the number of keys of each chunk (see `_disk_stats`).
        """
        out: list[IdentityTotals] = []
        low: str | None = None
        while True:
            chunk = await self._run(functools.partial(self._stats_chunk, low=low))
            out += chunk.totals
            if progress is not None:
                progress(chunk.keys)
            if chunk.next is None:
                return out
            low = chunk.next

    async def reserve(self, reservations: Sequence[Reservation]) -> list[list[int]]:
        from cachesaver.stores import _disk_shared

        return await self._run(lambda con: _disk_shared.reserve(self._layout, con, reservations))

    async def unreserve(self, items: Sequence[Unreservation]) -> list[None]:
        from cachesaver.stores import _disk_shared

        return await self._run(lambda con: _disk_shared.unreserve(self._layout, con, items))

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[list[int]]:
        from cachesaver.stores import _disk_shared

        return await self._run(lambda con: _disk_shared.lease(self._layout, con, requests))

    async def unlease(self, requests: Sequence[LeaseRequest]) -> list[None]:
        from cachesaver.stores import _disk_shared

        return await self._run(lambda con: _disk_shared.unlease(self._layout, con, requests))

    async def records(self, keys: Sequence[str]) -> list[KeyRecord]:
        return await self._run(lambda con: self._layout.records(con, keys))

    async def import_records(self, records: Sequence[KeyRecord]) -> int:
        return await self._run(lambda con: self._layout.import_records(con, records))

    async def delete(self, keys: Sequence[str]) -> int:
        return await self._run(lambda con: self._layout.delete(con, keys))

    def _stats_chunk(self, con: sqlite3.Connection, low: str | None) -> StatsChunk:
        return self._layout.stats_chunk(con, low)

    def _close(self) -> None:
        try:
            if self._con is not None:
                self._layout.close()  # a log saves its key index for the next process
        finally:
            con, self._con = self._con, None
            if self._cache is not None:
                if self._owned:
                    self._cache.close()
            elif con is not None:
                con.close()

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
