"""The embedded store: a diskcache directory, safe for many processes at once.

Layout inside the diskcache ``Cache`` table (plain string keys and JSON text values, so
``diskcache`` itself can read every entry and nothing is ever pickled):

- ``cs:<key>:<i>``: sample ``i`` of ``<key>``;
- ``cs:<key>:request``: the canonical request content of ``<key>``, written once.

Reads and writes of a whole batch go through one SQLite statement group inside one
``Cache.transact()`` (``BEGIN IMMEDIATE``), so concurrent processes see one consistent
order of every sample list. All I/O runs on one worker thread, never on the event loop.
Eviction is switched off on the cache: diskcache's default size limit would otherwise
silently drop samples.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import diskcache

from cachesaver.errors import ImportConflictError, StoreError
from cachesaver.stores.base import (
    KeyRecord,
    LeaseRequest,
    Reservation,
    SampleRead,
    SampleWrite,
    Unreservation,
    WriteResult,
)

__all__ = ["DiskStore"]

_T = TypeVar("_T")
_PREFIX = "cs:"
_CHUNK = 500  # SQLite host parameters per statement, well under every build's limit
_MODE_RAW = 1  # diskcache's mode for values kept inline in the row
_INSERT = (
    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count,"
    " tag, size, mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, 1, NULL, ?)"
)
_INSERT_NEW = _INSERT.replace("INSERT INTO", "INSERT OR IGNORE INTO")


def sample_entry(key: str, index: int) -> str:
    """Return the diskcache key of sample ``index`` of ``key``."""
    return f"{_PREFIX}{key}:{index}"


def content_entry(key: str) -> str:
    """Return the diskcache key of the request content of ``key``."""
    return f"{_PREFIX}{key}:request"


class DiskStore:
    """A `Store` in a diskcache directory (``path``) or an open ``diskcache.Cache``.

    A store opened from a path is closed by `aclose`; a ``Cache`` passed in stays open.
    """

    def __init__(self, cache: str | os.PathLike[str] | diskcache.Cache) -> None:
        if isinstance(cache, diskcache.Cache):
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
        self._location = "disk:" + os.path.realpath(self._directory)
        self._executor: ThreadPoolExecutor | None = None
        self._prepared = False
        self._closed = False

    @property
    def location(self) -> str:
        return self._location

    @property
    def directory(self) -> str:
        return self._directory

    def __repr__(self) -> str:
        return f"DiskStore({self._directory!r})"

    # -- thread side -------------------------------------------------------------------

    def _open(self) -> diskcache.Cache:
        if self._cache is None:
            try:
                self._cache = diskcache.Cache(self._directory, eviction_policy="none")
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(
                    f"cannot open the disk cache at {self._directory!r}: {exc}; check that "
                    "the path is a writable directory (or a diskcache directory)"
                ) from exc
        cache = self._cache
        if not self._prepared:
            if cache.eviction_policy != "none":
                cache.reset("eviction_policy", "none")
            self._prepared = True
        return cache

    def _call(self, fn: Callable[[diskcache.Cache], _T]) -> _T:
        cache = self._open()
        try:
            return fn(cache)
        except (sqlite3.Error, diskcache.Timeout, OSError) as exc:
            raise StoreError(f"disk cache {self._directory!r} failed: {exc!r}") from exc

    def _select(self, cache: diskcache.Cache, entries: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        sql = cache._sql
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = sql(
                f"SELECT key, value, mode FROM Cache WHERE raw = 1 AND key IN ({marks})",
                chunk,
            ).fetchall()
            for entry, value, mode in rows:
                # Entries written through diskcache's own API may live in files.
                found[entry] = value if mode == _MODE_RAW else cache.get(entry)
        return found

    def _read(self, cache: diskcache.Cache, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
        entries = [sample_entry(r.key, i) for r in reads for i in r.indices]
        found = self._select(cache, entries)
        out: list[dict[int, str]] = []
        for r in reads:
            got: dict[int, str] = {}
            for i in r.indices:
                text = found.get(sample_entry(r.key, i))
                if text is not None:
                    got[i] = text
            out.append(got)
        return out

    def _last_index(self, cache: diskcache.Cache, key: str) -> int:
        low, high = f"{_PREFIX}{key}:", f"{_PREFIX}{key};"
        rows = cache._sql(
            "SELECT key FROM Cache WHERE raw = 1 AND key >= ? AND key < ?", (low, high)
        ).fetchall()
        indices = [int(k[len(low) :]) for (k,) in rows if k[len(low) :].isdigit()]
        return max(indices, default=-1)

    def _write(self, cache: diskcache.Cache, writes: Sequence[SampleWrite]) -> list[WriteResult]:
        now = time.time()
        con = cache._con
        with cache.transact():
            # The content of a key is the same for every writer: keep the first.
            con.executemany(
                _INSERT_NEW,
                [(content_entry(w.key), now, now, w.content) for w in writes],
            )
            rows = [
                (sample_entry(w.key, i), now, now, text)
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
            return [self._write_one(cache, w, now) for w in writes]

    def _write_one(self, cache: diskcache.Cache, w: SampleWrite, now: float) -> WriteResult:
        existing = self._select(cache, [sample_entry(w.key, i) for i in w.samples])
        rows: list[tuple[str, float, float, str]] = []
        stored: dict[int, str] = {}
        losers: list[str] = []
        for i, text in w.samples.items():
            taken = existing.get(sample_entry(w.key, i))
            if taken is None:
                rows.append((sample_entry(w.key, i), now, now, text))
                stored[i] = text
            else:
                stored[i] = taken
                losers.append(text)
        cache._con.executemany(_INSERT, rows)
        appended: list[int] = []
        if losers:
            nxt = max(self._last_index(cache, w.key), *w.samples) + 1
            rows = []
            for text in losers:
                rows.append((sample_entry(w.key, nxt), now, now, text))
                appended.append(nxt)
                nxt += 1
            cache._con.executemany(_INSERT, rows)
        return WriteResult(stored, appended)

    # -- whole-store operations for tools -------------------------------------------------

    def _keys(self, cache: diskcache.Cache) -> list[str]:
        rows = cache._sql(
            "SELECT key FROM Cache WHERE raw = 1 AND key >= ? AND key < ? AND key LIKE ?",
            (_PREFIX, _PREFIX[:-1] + ";", "%:request"),
        ).fetchall()
        return [entry[len(_PREFIX) : -len(":request")] for (entry,) in rows]

    def _samples_of(self, cache: diskcache.Cache, key: str) -> dict[int, str]:
        low, high = f"{_PREFIX}{key}:", f"{_PREFIX}{key};"
        rows = cache._sql(
            "SELECT key, value, mode FROM Cache WHERE raw = 1 AND key >= ? AND key < ?",
            (low, high),
        ).fetchall()
        samples: dict[int, str] = {}
        for entry, value, mode in rows:
            suffix = entry[len(low) :]
            if suffix.isdigit():
                samples[int(suffix)] = value if mode == _MODE_RAW else cache.get(entry)
        return dict(sorted(samples.items()))

    def _records(self, cache: diskcache.Cache, keys: Sequence[str]) -> list[KeyRecord]:
        contents = self._select(cache, [content_entry(k) for k in keys])
        out: list[KeyRecord] = []
        for key in keys:
            content = contents.get(content_entry(key))
            if content is not None:
                out.append(KeyRecord(key, content, self._samples_of(cache, key)))
        return out

    def _import(self, cache: diskcache.Cache, records: Sequence[KeyRecord]) -> int:
        now = time.time()
        written = 0
        with cache.transact(retry=True):
            entries = [content_entry(r.key) for r in records]
            entries += [sample_entry(r.key, i) for r in records for i in r.samples]
            existing = self._select(cache, entries)
            rows: list[tuple[str, float, float, str]] = []
            for record in records:
                pairs = [(content_entry(record.key), record.content)]
                pairs += [(sample_entry(record.key, i), t) for i, t in record.samples.items()]
                for entry, text in pairs:
                    have = existing.get(entry)
                    if have is None:
                        existing[entry] = text
                        rows.append((entry, now, now, text))
                        written += not entry.endswith(":request")
                    elif have != text:
                        raise ImportConflictError(
                            f"{entry} already holds a different value in {self._directory!r}; "
                            "a stored sample is never changed, so nothing was imported"
                        )
            cache._con.executemany(_INSERT, rows)
        return written

    def _delete(self, cache: diskcache.Cache, keys: Sequence[str]) -> int:
        found = 0
        with cache.transact(retry=True):
            for key in keys:
                low, high = f"{_PREFIX}{key}:", f"{_PREFIX}{key};"
                deleted = cache._sql(
                    "DELETE FROM Cache WHERE raw = 1 AND key >= ? AND key < ?", (low, high)
                ).rowcount
                found += deleted > 0
        return found

    # -- shared runs and leases ----------------------------------------------------------

    def _reserve(self, cache: diskcache.Cache, items: Sequence[Reservation]) -> list[list[int]]:
        out: list[list[int]] = []
        with cache.transact(retry=True):
            for r in items:
                entry = _PREFIX + "run:" + json.dumps([r.run_id, r.namespace, r.key])
                state = json.loads(cache.get(entry, '{"next": 0, "free": []}'))
                free: list[int] = sorted(state["free"])
                taken = free[: r.n]
                fresh = r.n - len(taken)
                start = state["next"]
                state = {"next": start + fresh, "free": free[len(taken) :]}
                cache.set(entry, json.dumps(state))
                out.append(taken + list(range(start, start + fresh)))
        return out

    def _unreserve(self, cache: diskcache.Cache, items: Sequence[Unreservation]) -> list[None]:
        with cache.transact(retry=True):
            for u in items:
                entry = _PREFIX + "run:" + json.dumps([u.run_id, u.namespace, u.key])
                state = json.loads(cache.get(entry, '{"next": 0, "free": []}'))
                state["free"] = sorted(set(state["free"]) | set(u.indices))
                cache.set(entry, json.dumps(state))
        return [None] * len(items)

    def _lease(self, cache: diskcache.Cache, requests: Sequence[LeaseRequest]) -> list[list[int]]:
        out: list[list[int]] = []
        with cache.transact(retry=True):
            for q in requests:
                held: list[int] = []
                # A sample already stored is never leased: its writer may have finished
                # between the caller's read and now.
                present = self._select(cache, [sample_entry(q.key, i) for i in q.indices])
                for index in q.indices:
                    if sample_entry(q.key, index) in present:
                        continue
                    entry = f"{_PREFIX}lease:{q.key}:{index}"
                    owner = cache.get(entry)  # an expired lease reads as absent
                    if owner is None or owner == q.owner:
                        cache.set(entry, q.owner, expire=q.ttl)
                        held.append(index)
                out.append(held)
        return out

    def _unlease(self, cache: diskcache.Cache, requests: Sequence[LeaseRequest]) -> list[None]:
        with cache.transact(retry=True):
            for q in requests:
                for index in q.indices:
                    entry = f"{_PREFIX}lease:{q.key}:{index}"
                    if cache.get(entry) == q.owner:
                        cache.delete(entry)
        return [None] * len(requests)

    def iter_keys(self) -> Iterator[str]:
        """Yield every key that has request content (synchronous, for scripts)."""
        yield from self._call(self._keys)

    # -- event-loop side ---------------------------------------------------------------

    async def _run(self, fn: Callable[[diskcache.Cache], _T]) -> _T:
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="cachesaver-disk")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    async def read(self, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
        return await self._run(lambda cache: self._read(cache, reads))

    async def write(self, writes: Sequence[SampleWrite]) -> list[WriteResult]:
        return await self._run(lambda cache: self._write(cache, writes))

    async def keys(self) -> list[str]:
        return await self._run(self._keys)

    async def reserve(self, reservations: Sequence[Reservation]) -> list[list[int]]:
        return await self._run(lambda cache: self._reserve(cache, reservations))

    async def unreserve(self, items: Sequence[Unreservation]) -> list[None]:
        return await self._run(lambda cache: self._unreserve(cache, items))

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[list[int]]:
        return await self._run(lambda cache: self._lease(cache, requests))

    async def unlease(self, requests: Sequence[LeaseRequest]) -> list[None]:
        return await self._run(lambda cache: self._unlease(cache, requests))

    async def records(self, keys: Sequence[str]) -> list[KeyRecord]:
        return await self._run(lambda cache: self._records(cache, keys))

    async def import_records(self, records: Sequence[KeyRecord]) -> int:
        return await self._run(lambda cache: self._import(cache, records))

    async def delete(self, keys: Sequence[str]) -> int:
        return await self._run(lambda cache: self._delete(cache, keys))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            loop = asyncio.get_running_loop()
            if self._owned and self._cache is not None:
                await loop.run_in_executor(executor, self._cache.close)
            executor.shutdown(wait=False)
        elif self._owned and self._cache is not None:
            self._cache.close()
