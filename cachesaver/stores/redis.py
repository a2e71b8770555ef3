"""The networked store: Redis, shared by many processes on many machines.

Layout (every name starts with ``prefix``, so one Redis can hold several caches):

- ``{prefix}:s:{key}``: a hash, sample index -> sample text (JSON made by the codec);
- ``{prefix}:c:{key}``: the key's canonical request content, written once;
- ``{prefix}:keys``: the set of all keys;
- ``{prefix}:t``: a hash, key -> when it last received a sample (seconds since epoch);
- ``{prefix}:run:{run_id}`` / ``{prefix}:free:...``: namespace positions of shared runs;
- ``{prefix}:lease:{key}:{i}``: who is generating sample ``i`` right now (expires).

Writes are Lua scripts, so "first writer wins, the loser is appended" is atomic across
machines; every batch of writes is one pipelined round trip, and a batch of reads is one
script call per 1,000 keys or 10,000 indices (the server walks the keys, so the client
packs one command).
Nothing ever expires except leases. On its first connection the store checks the server: a
``maxmemory-policy`` other than ``noeviction`` (Redis could delete samples on its own) is
refused unless ``allow_eviction=True``; without AOF a `DurabilityWarning` says that a
restart loses samples already returned. Connection problems become `StoreError`
naming the server (never the password) and what failed; the client reconnects on the
next call once Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from cachesaver.errors import DurabilityWarning, ImportConflictError, StoreError
from cachesaver.stores._locate import redact
from cachesaver.stores._redis_scripts import (
    IMPORT,
    LEASE,
    READ,
    READ_ARGS,
    READ_KEYS,
    RESERVE,
    UNLEASE,
    WRITE,
)
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

__all__ = ["RedisStore"]

_T = TypeVar("_T")

_OPTIONS = ("prefix", "allow_eviction")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _split_options(url: str, prefix: str, allow_eviction: bool) -> tuple[str, str, bool]:
    """Take cachesaver's own query parameters out of the URL and check its database.

    ``?prefix=NAME`` names keys and ``?allow_eviction=1`` is the opt-in of `RedisStore`;
    neither is a connection option. A database that is not a number (``/l1``) is an
    error here: redis-py would silently use database 0.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(name, value) for name, value in query if name not in _OPTIONS]
    for name, value in query:
        if name == "prefix":
            prefix = value
        elif name == "allow_eviction":
            if value.lower() not in _TRUE + _FALSE:
                raise ValueError(f"allow_eviction={value!r} in the URL must be 1/true or 0/false")
            allow_eviction = value.lower() in _TRUE
        elif name == "db" and not value.isdigit():
            raise ValueError(f"db={value!r} in the Redis URL is not a database number")
    if parts.scheme != "unix" and parts.path not in ("", "/"):
        db = parts.path[1:]
        if not (db.isdigit() and db.isascii()):
            raise ValueError(
                f"{db!r} in the Redis URL is not a database number (redis-py would silently "
                "use database 0); write redis://host:6379/0 and ?prefix=NAME to name a cache"
            )
    return urlunsplit(parts._replace(query=urlencode(kept))), prefix, allow_eviction


class RedisStore:
    """A `Store` (and `AdminStore`, `SharedStore`) in Redis, via redis-py's asyncio client.

    ``url`` is a Redis URL (``redis://[:password@]host:6379/0``, ``rediss://`` for TLS,
    ``unix://``); password and TLS options come through it. ``prefix`` (or a
    ``?prefix=NAME`` query parameter in the URL) separates caches that share one Redis.
    ``allow_eviction=True`` (or ``?allow_eviction=1``) accepts a server whose
    ``maxmemory-policy`` may evict keys (refused by default: evicted samples change what
    a replay returns).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "cachesaver",
        *,
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        allow_eviction: bool = False,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"RedisStore needs a redis://, rediss:// or unix:// URL, got {url!r}; "
                "for example redis://127.0.0.1:6379/0"
            )
        url, prefix, allow_eviction = _split_options(url, prefix, allow_eviction)
        if not prefix or not isinstance(prefix, str):
            raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
        self.url = url
        self.prefix = prefix
        self.allow_eviction = allow_eviction
        self._checked = False
        self._shown = redact(url)
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "decode_responses": True,
        }
        # Connections belong to one event loop: one client per loop, closed when that
        # loop shuts down (see _client), so a store made outside a loop serves several
        # consecutive asyncio.run() calls. Scripts are loaded through each client.
        self._clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self._closers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}
        template = aioredis.Redis.from_url(url, **self._options)
        self._read_script = template.register_script(READ)
        self._write_script = template.register_script(WRITE)
        self._reserve_script = template.register_script(RESERVE)
        self._lease_script = template.register_script(LEASE)
        self._unlease_script = template.register_script(UNLEASE)
        self._import_script = template.register_script(IMPORT)
        self._closed = False

    @property
    def location(self) -> str:
        return f"redis:{self._shown}#{self.prefix}"

    def __repr__(self) -> str:
        return f"RedisStore({self._shown!r}, prefix={self.prefix!r})"

    def _samples(self, key: str) -> str:
        return f"{self.prefix}:s:{key}"

    def _content(self, key: str) -> str:
        return f"{self.prefix}:c:{key}"

    @property
    def _times(self) -> str:
        return f"{self.prefix}:t"

    def _lease_name(self, key: str, index: int) -> str:
        return f"{self.prefix}:lease:{key}:{index}"

    async def _client(self) -> aioredis.Redis:
        """The client of the running event loop (made on first use in that loop)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for old in [other for other in self._clients if other.is_closed()]:
                del self._clients[old]  # closed with its loop already
                self._closers.pop(old, None)
            client = self._clients[loop] = aioredis.Redis.from_url(self.url, **self._options)
            # asyncio.run() finalizes async generators before closing its loop; this one
            # closes the loop's client then, so no connection outlives its loop.
            closer = _close_at_shutdown(client)
            await closer.__anext__()
            self._closers[loop] = closer
        if not self._checked:
            await self._check_server(client)
        return client

    async def _check_server(self, client: aioredis.Redis) -> None:
        """Refuse a Redis that may evict keys; warn when a restart can lose samples."""
        try:
            memory = await client.info("memory")
            persistence = await client.info("persistence")
        except ResponseError as exc:
            if self.allow_eviction:
                self._checked = True
                return
            raise StoreError(
                f"Redis at {self._shown} refused INFO ({exc}), so cachesaver cannot check "
                "that it never evicts keys. If you know its maxmemory-policy is noeviction, "
                "pass allow_eviction=True (or ?allow_eviction=1 in the URL)"
            ) from None
        policy = str(memory.get("maxmemory_policy", "unknown"))
        if policy != "noeviction" and not self.allow_eviction:
            raise StoreError(
                f"Redis at {self._shown} has maxmemory-policy {policy}: it may delete stored "
                "samples on its own, so a replay would silently get different samples and a "
                "shared run could hand one sample out twice. Run `CONFIG SET maxmemory-policy "
                "noeviction` (and set it in redis.conf), or pass allow_eviction=True (or "
                "?allow_eviction=1 in the URL) to accept that"
            )
        if str(persistence.get("aof_enabled", "0")) != "1":
            warnings.warn(
                f"Redis at {self._shown} runs without AOF (appendonly no): a Redis restart "
                "loses every sample stored since its last snapshot, including samples already "
                "returned to callers. Enable it with `CONFIG SET appendonly yes` (and in "
                "redis.conf); see docs/scaling-out.md",
                DurabilityWarning,
                stacklevel=2,
            )
        self._checked = True

    async def _guard(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        try:
            return await call()
        except StoreError:
            raise
        except ResponseError as exc:
            if str(exc).startswith("CONFLICT"):
                raise ImportConflictError(
                    f"{exc} in {self!r}: a stored sample is never changed, so nothing was imported"
                ) from None
            raise StoreError(f"Redis at {self._shown} refused to {what}: {exc}") from exc
        except (RedisError, OSError, RuntimeError) as exc:
            raise StoreError(
                f"Redis at {self._shown} failed to {what}: {exc!r}; check that Redis is "
                "running and reachable (the pipeline reconnects once it is back)"
            ) from exc

    async def _pipelined(self, what: str, queue: Callable[[Any], Awaitable[None]]) -> list[Any]:
        async def run() -> list[Any]:
            client = await self._client()
            async with client.pipeline(transaction=False) as pipe:
                await queue(pipe)
                return list(await pipe.execute())

        return await self._guard(what, run)

    # -- samples ---------------------------------------------------------------------------

    async def read(self, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
        async def run() -> list[Any]:
            client = await self._client()
            values: list[Any] = []
            names: list[str] = []
            args: list[Any] = []
            for number, r in enumerate(reads, 1):
                names.append(self._samples(r.key))
                args.append(len(r.indices))
                args.extend(r.indices)
                if number == len(reads) or len(names) >= READ_KEYS or len(args) >= READ_ARGS:
                    if len(args) > len(names):  # some index is asked of some key
                        values.extend(await self._read_script(keys=names, args=args, client=client))
                    names, args = [], []
            return values

        values = await self._guard("read samples", run)
        out: list[dict[int, str]] = []
        position = 0
        for r in reads:
            found: dict[int, str] = {}
            for i in r.indices:
                value = values[position]
                position += 1
                if value is not None:
                    found[i] = value
            out.append(found)
        return out

    async def write(self, writes: Sequence[SampleWrite]) -> list[WriteResult]:
        keys_set = f"{self.prefix}:keys"

        now = time.time()

        async def queue(pipe: Any) -> None:
            for w in writes:
                args: list[Any] = [w.key, w.content]
                for index, text in w.samples.items():
                    args += [index, text]
                await self._write_script(
                    keys=[self._samples(w.key), self._content(w.key), keys_set],
                    args=args,
                    client=pipe,
                )
            # When each key last received a sample (for `cachesaver ls` and `prune`).
            if writes:
                pipe.hset(self._times, mapping={w.key: now for w in writes})

        rows = (await self._pipelined("write samples", queue))[: len(writes)]
        results: list[WriteResult] = []
        for w, (flags, appended) in zip(writes, rows, strict=True):
            stored = {
                index: (text if flag == 1 else flag)
                for (index, text), flag in zip(w.samples.items(), flags, strict=True)
            }
            results.append(WriteResult(stored, [int(i) for i in appended]))
        return results

    # -- shared runs and leases ----------------------------------------------------------

    async def reserve(self, reservations: Sequence[Reservation]) -> list[list[int]]:
        async def queue(pipe: Any) -> None:
            for r in reservations:
                field = json.dumps([r.namespace, r.key])
                free = f"{self.prefix}:free:{r.run_id}:{field}"
                await self._reserve_script(
                    keys=[f"{self.prefix}:run:{r.run_id}", free], args=[field, r.n], client=pipe
                )

        rows = await self._pipelined("reserve sample indices", queue)
        return [[int(i) for i in row] for row in rows]

    async def unreserve(self, items: Sequence[Unreservation]) -> list[None]:
        async def queue(pipe: Any) -> None:
            for u in items:
                field = json.dumps([u.namespace, u.key])
                pipe.zadd(f"{self.prefix}:free:{u.run_id}:{field}", {str(i): i for i in u.indices})

        await self._pipelined("return sample indices", queue)
        return [None] * len(items)

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[list[int]]:
        async def queue(pipe: Any) -> None:
            for q in requests:
                await self._lease_script(
                    keys=[self._samples(q.key)] + [self._lease_name(q.key, i) for i in q.indices],
                    args=[q.owner, max(1, int(q.ttl * 1000)), *q.indices],
                    client=pipe,
                )

        rows = await self._pipelined("take leases", queue)
        return [[q.indices[int(p)] for p in row] for q, row in zip(requests, rows, strict=True)]

    async def unlease(self, requests: Sequence[LeaseRequest]) -> list[None]:
        async def queue(pipe: Any) -> None:
            for q in requests:
                await self._unlease_script(
                    keys=[self._lease_name(q.key, i) for i in q.indices],
                    args=[q.owner],
                    client=pipe,
                )

        await self._pipelined("drop leases", queue)
        return [None] * len(requests)

    # -- whole-store operations for tools ------------------------------------------------

    async def keys(self) -> list[str]:
        async def run() -> list[str]:
            client = await self._client()
            return sorted(str(k) for k in await client.smembers(f"{self.prefix}:keys"))

        return await self._guard("list keys", run)

    async def records(self, keys: Sequence[str]) -> list[KeyRecord]:
        if not keys:
            return []

        async def queue(pipe: Any) -> None:
            for key in keys:
                pipe.get(self._content(key))
                pipe.hgetall(self._samples(key))
            pipe.hmget(self._times, list(keys))

        rows = await self._pipelined("read records", queue)
        times = rows[-1]
        out: list[KeyRecord] = []
        for n, key in enumerate(keys):
            content, samples = rows[2 * n], rows[2 * n + 1]
            updated: float | None = None
            try:
                updated = float(times[n]) if times[n] is not None else None
            except ValueError:
                updated = None
            if content is not None:
                foreign = [field for field in samples if not str(field).isdigit()]
                if foreign:
                    raise StoreError(
                        f"{self!r}: hash {self._samples(key)} has non-index fields "
                        f"{foreign[:3]!r}; something other than cachesaver wrote to it"
                    )
                ordered = dict(sorted((int(i), text) for i, text in samples.items()))
                out.append(KeyRecord(key, content, ordered, updated))
        return out

    async def identity_totals(
        self, progress: Callable[[int], object] | None = None
    ) -> list[IdentityTotals]:
        """Totals per model identity, added up inside Redis a page of keys at a time."""
        from cachesaver.stores._redis_stats import identity_totals

        return await self._guard("count keys", lambda: identity_totals(self, progress))

    async def import_records(self, records: Sequence[KeyRecord]) -> int:
        if not records:
            return 0
        keys: list[str] = []
        for record in records:
            keys += [self._samples(record.key), self._content(record.key)]
        keys.append(f"{self.prefix}:keys")
        payload = json.dumps(
            [[r.key, r.content, [x for i, t in r.samples.items() for x in (i, t)]] for r in records]
        )

        async def run() -> int:
            client = await self._client()
            written = int(await self._import_script(keys=keys, args=[payload], client=client))
            now = time.time()
            touched: dict[Any, Any] = {r.key: now for r in records if r.samples}
            if touched:
                await client.hset(self._times, mapping=touched)
            return written

        return await self._guard("import records", run)

    async def delete(self, keys: Sequence[str]) -> int:
        async def queue(pipe: Any) -> None:
            for key in keys:
                pipe.delete(self._content(key), self._samples(key))
                pipe.srem(f"{self.prefix}:keys", key)
            if keys:
                pipe.hdel(self._times, *keys)

        rows = await self._pipelined("delete keys", queue)
        return sum(1 for n in range(len(keys)) if rows[2 * n] > 0)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        closer = self._closers.pop(asyncio.get_running_loop(), None)
        self._clients.pop(asyncio.get_running_loop(), None)
        if closer is not None:
            await closer.aclose()


async def _close_at_shutdown(client: aioredis.Redis) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()
