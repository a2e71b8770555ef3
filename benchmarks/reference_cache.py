"""A deliberately minimal cache on cachesaver's diskcache rows: the yardstick of bench_reference.

It writes exactly the rows `DiskStore` writes (``cs:<key>:<i>`` per sample and
``cs:<key>:request`` per key, JSON text, ``raw=1, mode=1``), with the same key (SHA-256
of ``{"request":{"prompt":...}}`` in canonical JSON), so either can read the other's
store. What it leaves out is everything cachesaver adds on top: no stages (no batcher,
no deduplicator), no claims between concurrent requests, no memo, no give-back on
failure, no checks of row format or request fields, no manifest, no leases. It serves
plain `Request` objects with a ``str`` prompt only.

How it serves, in the fewest steps that keep the I/O off the event loop:
- ``request()``: the first caller of a group becomes its leader, yields once (so every
  coroutine ``asyncio.gather`` started joins the group), then runs the whole group: one
  bulk read on the store thread, one model call per request that misses samples (all
  concurrently), one bulk write, and hands out the responses;
- ``batch_request()``: the same for a list, without the leader step.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import diskcache

from cachesaver import Request, Response

__all__ = ["ReferenceCache"]

_INSERT_NEW = (
    "INSERT OR IGNORE INTO Cache(key, raw, store_time, expire_time, access_time,"
    " access_count, tag, size, mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, 0,"
    " 1, NULL, ?)"
)
_CHUNK = 500
_dumps = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode

Job = tuple[Request, str, str, list[int]]  # request, key, content, indices


class ReferenceCache:
    """Namespace-aware per-sample cache over a diskcache directory; see the module doc."""

    def __init__(self, model: Any, directory: str) -> None:
        self._model = model
        self._directory = directory
        self._cache: diskcache.Cache | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="reference-disk")
        self._next: dict[tuple[str, str], int] = {}
        self._group: list[tuple[Request, asyncio.Future[Response]]] | None = None

    async def __aenter__(self) -> ReferenceCache:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        if self._cache is not None:
            await loop.run_in_executor(self._executor, self._cache.close)
        self._executor.shutdown(wait=True)

    # -- store thread ----------------------------------------------------------------------

    def _con(self) -> Any:
        if self._cache is None:
            self._cache = diskcache.Cache(self._directory, eviction_policy="none")
        return self._cache._con

    def _read(self, entries: list[str]) -> dict[str, str]:
        con = self._con()
        found: dict[str, str] = {}
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start : start + _CHUNK]
            sql = f"SELECT key, value FROM Cache WHERE key IN ({','.join('?' * len(chunk))})"
            found.update(con.execute(sql, chunk).fetchall())
        return found

    def _write(self, rows: list[tuple[str, float, float, str]]) -> None:
        con = self._con()
        assert self._cache is not None
        with self._cache.transact():
            con.executemany(_INSERT_NEW, rows)

    # -- event loop --------------------------------------------------------------------------

    def _job(self, request: Request) -> Job:
        content = _dumps({"prompt": request.prompt})
        key = hashlib.sha256(('{"request":' + content + "}").encode()).hexdigest()
        slot = (request.namespace, key)
        start = self._next.get(slot, 0)
        self._next[slot] = start + request.n
        return request, key, content, list(range(start, start + request.n))

    async def _serve(self, jobs: Sequence[Job]) -> list[Response]:
        loop = asyncio.get_running_loop()
        entries = [f"cs:{key}:{i}" for _, key, _, indices in jobs for i in indices]
        found = await loop.run_in_executor(self._executor, self._read, entries)
        texts: list[list[str | None]] = [
            [found.get(f"cs:{key}:{i}") for i in indices] for _, key, _, indices in jobs
        ]
        misses = [j for j, got in enumerate(texts) if None in got]
        if misses:
            asked = [
                Request(jobs[j][0].prompt, n=texts[j].count(None), namespace=jobs[j][0].namespace)
                for j in misses
            ]
            answers = await asyncio.gather(*(self._model.request(r) for r in asked))
            now = time.time()
            rows: list[tuple[str, float, float, str]] = []
            for j, answer in zip(misses, answers, strict=True):
                _, key, content, indices = jobs[j]
                rows.append((f"cs:{key}:request", now, now, content))
                new = iter(answer.data)
                got = texts[j]
                for position, index in enumerate(indices):
                    if got[position] is None:
                        text = _dumps(next(new))
                        got[position] = text
                        rows.append((f"cs:{key}:{index}", now, now, text))
            await loop.run_in_executor(self._executor, self._write, rows)
        out: list[Response] = []
        missed = set(misses)
        for j, got in enumerate(texts):
            data = [json.loads(text) for text in got if text is not None]
            out.append(Response(data=data, cached=[j not in missed] * len(data)))
        return out

    async def batch_request(self, requests: Sequence[Request]) -> list[Response]:
        return await self._serve([self._job(r) for r in requests])

    async def request(self, request: Request) -> Response:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Response] = loop.create_future()
        if self._group is not None:
            self._group.append((request, future))
            return await future
        group = self._group = [(request, future)]
        await asyncio.sleep(0)  # every coroutine started with this one joins the group
        self._group = None
        try:
            responses = await self._serve([self._job(r) for r, _ in group])
        except BaseException as exc:
            for _, waiter in group[1:]:
                if not waiter.done():
                    waiter.set_exception(exc)
            raise
        for (_, waiter), response in zip(group[1:], responses[1:], strict=True):
            waiter.set_result(response)
        return responses[0]
