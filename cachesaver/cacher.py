"""Where a request gets its samples: the cache stage.

For each request the cacher (1) reserves the namespace's next sample indices of the
request's key, synchronously, so issue order alone decides who gets which samples;
(2) claims the indices nobody in this process is producing, and waits for the others;
(3) reads its claimed indices from the store in one bulk read per loop iteration;
(4) asks the model below only for the indices still missing, and stores what comes back
before answering. A request that fails or is cancelled hands its indices back to its
namespace; samples a model returned are stored even if their requester is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any, Literal

from cachesaver._canonical import canonical_json, digest
from cachesaver._coordination import Claim, Coordinator, Memo, Run, coordinator, seen
from cachesaver._models import Outcome, describe, first_error
from cachesaver._stage import Stage
from cachesaver._tasks import Coalescer
from cachesaver.codec import decode_sample, encode_sample
from cachesaver.errors import (
    CacheMissError,
    CacheSaverError,
    DamagedSampleError,
    ModelContractError,
    ModelTimeoutError,
    UnknownTypeTagError,
    UnstorableSampleError,
)
from cachesaver.manifest import RunManifest
from cachesaver.stores import CacheLike, open_store
from cachesaver.stores.base import (
    LeaseRequest,
    Reservation,
    SampleRead,
    SampleWrite,
    SharedStore,
    Store,
    Unreservation,
    WriteResult,
)
from cachesaver.typedefs import Batch, Request, Response, request_content, with_n

__all__ = ["AsyncCacher"]

Mode = Literal["readwrite", "replay"]

_NOTHING: list[int] = []  # "no index left to poll for" (never mutated)

# (value, cached, duplicated) of one sample as the requester will see it.
_Served = tuple[Any, bool, bool]


def _decoded(text: str, key: str, index: int) -> Any:
    """Decode a stored sample; an error names the key and index it came from."""
    try:
        return decode_sample(text)
    except (DamagedSampleError, UnknownTypeTagError) as exc:
        raise type(exc)(f"{exc} [key={key[:12]}, index {index}]") from None


class AsyncCacher(Stage):
    """Serve requests from a persistent, namespace-aware, per-sample cache.

    ``cache`` is a directory path, a ``diskcache.Cache`` or a `Store`. Within a
    namespace every draw is fresh; across namespaces the same samples are reused; a new
    `AsyncCacher` (a new run) over the same cache replays everything.

    ``mode="replay"`` never calls the model (a miss raises `CacheMissError`);
    ``manifest`` (a path or a `RunManifest`) records the indices each request received.

    ``run_id`` makes this a worker of a shared run: namespace positions live in the
    store, so workers of one run (any processes, any machines) draw disjoint samples, and
    a worker generating a sample holds a lease on it (renewed every ``lease_ttl / 3``
    seconds) so other workers wait for it instead of paying twice; a worker that dies
    blocks the others no longer than ``lease_ttl``.
    """

    def __init__(
        self,
        model: object,
        cache: CacheLike,
        *,
        mode: Mode = "readwrite",
        manifest: str | os.PathLike[str] | RunManifest | None = None,
        run_id: str | None = None,
        lease_ttl: float = 30.0,
    ) -> None:
        super().__init__(model)
        if mode not in ("readwrite", "replay"):
            raise ValueError(
                f"mode must be 'readwrite' (the default) or 'replay' (never call the model), "
                f"got {mode!r}"
            )
        self.mode: Mode = mode
        if manifest is None or isinstance(manifest, RunManifest):
            self._manifest = manifest
            self._owns_manifest = False
        else:
            self._manifest = RunManifest(manifest)
            self._owns_manifest = True
        self._store, self._owns_store = open_store(cache)
        self.run_id = run_id
        self.lease_ttl = lease_ttl
        self._shared: SharedStore | None = None
        if run_id is not None:
            if not isinstance(run_id, str) or not run_id:
                raise ValueError(f"run_id must be a non-empty str, got {run_id!r}")
            if not isinstance(self._store, SharedStore):
                raise TypeError(
                    f"run_id={run_id!r} needs a store that can hold shared runs (DiskStore or "
                    f"RedisStore); {self._store!r} cannot"
                )
            if not (isinstance(lease_ttl, (int, float)) and 0 < lease_ttl < math.inf):
                raise ValueError(
                    f"lease_ttl must be a positive number of seconds, got {lease_ttl!r}"
                )
            self._shared = self._store
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        identity = self._inner.identity
        self._identity = None if identity is None else canonical_json(identity, "identity")
        self._memo = Memo()
        self._dedup = self._inner._cs_dedup  # the chain below is fixed from here on
        self._run = Run()
        self._coord: Coordinator | None = None
        self._reads: Coalescer[SampleRead, dict[int, str]] | None = None
        self._writes: Coalescer[SampleWrite, WriteResult] | None = None
        self._jobs = 0
        self._serving = 0
        self._idle: asyncio.Future[None] | None = None
        self._reserves: Coalescer[Reservation, list[int]] | None = None
        self._unreserves: Coalescer[Unreservation, None] | None = None
        self._leases: Coalescer[LeaseRequest, list[int]] | None = None
        self._unleases: Coalescer[LeaseRequest, None] | None = None
        self._active_leases: dict[int, LeaseRequest] = {}
        self._keeper_wake: asyncio.Event | None = None
        self._keeper_running = False

    @property
    def store(self) -> Store:
        """The store this stage reads and writes."""
        return self._store

    def _new_loop(self) -> None:
        self._jobs = 0
        self._serving = 0
        self._idle = None
        self._coord = coordinator(self._store.location)
        self._reads = Coalescer(self._store.read, self._tasks)
        self._writes = Coalescer(self._store.write, self._tasks)
        if self._shared is not None:
            self._reserves = Coalescer(self._shared.reserve, self._tasks)
            self._unreserves = Coalescer(self._shared.unreserve, self._tasks)
            self._leases = Coalescer(self._shared.lease, self._tasks)
            self._unleases = Coalescer(self._shared.unlease, self._tasks)
            self._active_leases = {}
            self._keeper_wake = asyncio.Event()
            self._keeper_running = False

    def key_of(self, request: Request) -> str:
        """Return the key of ``request``: its content plus this model's identity."""
        return self._key(request)[0]

    def _key(self, request: Request) -> tuple[str, str]:
        content = request_content(request)
        if self._identity is None:
            full = '{"request":' + content + "}"
        else:
            full = '{"identity":' + self._identity + ',"request":' + content + "}"
        return digest(full), full

    # -- requests ------------------------------------------------------------------------

    async def request(self, request: Request) -> Response:
        self._enter()
        key, content = self._key(request)
        self._serving += 1  # aclose() waits for this request
        try:
            if self._reserves is None:
                indices = self._run.reserve(request.namespace, key, request.n)
            else:
                (indices,) = await self._reserve_shared([(request, key)])
            try:
                served: dict[int, _Served] = {}
                mine, claim, waits = self._take(key, indices, served)
                if claim is not None and self._leases is None:
                    # The common case, inline (no extra coroutine per request): one bulk
                    # read, then at most one generation.
                    await self._read_and_generate(request, key, content, mine, claim, served)
                    claim = None
                if claim is not None:
                    response = await self._serve(
                        request, key, content, indices, served, taken=(mine, claim, waits)
                    )
                elif waits is not None:
                    retry = await self._wait_for_others(key, waits, served)
                    response = await self._serve(request, key, content, indices, served, retry)
                else:
                    response = self._respond(indices, served)
            except BaseException:
                self._give_back(request.namespace, key, indices)
                raise
        finally:
            self._serving -= 1
            if self._idle is not None:
                self._maybe_idle()
        self._tally(response)
        if self._manifest is not None:
            self._manifest.record(key, request.namespace, request.request_id, indices)
        return response

    async def batch_request(self, batch: Batch) -> list[Response]:
        """Return one response per request, in order; all or nothing.

        If any request fails, its error is raised and no request of the batch consumes
        anything: the samples already stored are handed out again, as cached, next time.
        """
        outcomes = await self._batch(batch, all_or_nothing=True)
        error = first_error(outcomes)
        if error is not None:
            raise error
        return outcomes  # type: ignore[return-value]

    async def _cs_batch_each(self, batch: Batch) -> list[Outcome]:
        # Seen from a stage above: every request stands alone (a failure consumes
        # nothing of its own, and the others keep what they received).
        return await self._batch(batch, all_or_nothing=False)

    async def _batch(self, batch: Batch, all_or_nothing: bool) -> list[Outcome]:
        self._enter()
        keyed = [(request, *self._key(request)) for request in batch.requests]
        self._serving += 1  # aclose() waits for this batch
        try:
            if self._reserves is None:
                reserved = [self._run.reserve(r.namespace, key, r.n) for r, key, _ in keyed]
            else:
                reserved = await self._reserve_shared([(r, key) for r, key, _ in keyed])
            try:
                if self._leases is None:
                    outcomes = await self._serve_all(keyed, reserved)
                else:
                    outcomes = list(
                        await asyncio.gather(
                            *(
                                self._serve(r, key, content, indices)
                                for (r, key, content), indices in zip(keyed, reserved, strict=True)
                            ),
                            return_exceptions=True,
                        )
                    )
            except BaseException:
                for (r, key, _), indices in zip(keyed, reserved, strict=True):
                    self._give_back(r.namespace, key, indices)
                raise
        finally:
            self._serving -= 1
            self._maybe_idle()
        failed = any(isinstance(o, BaseException) for o in outcomes)
        for (r, key, _), indices, outcome in zip(keyed, reserved, outcomes, strict=True):
            if isinstance(outcome, BaseException) or (failed and all_or_nothing):
                self._give_back(r.namespace, key, indices)
        if failed and all_or_nothing:
            return outcomes
        for (r, key, _), indices, outcome in zip(keyed, reserved, outcomes, strict=True):
            if isinstance(outcome, Response):
                self._tally(outcome)
                if self._manifest is not None:
                    self._manifest.record(key, r.namespace, r.request_id, indices)
        return outcomes

    async def _reserve_shared(self, items: list[tuple[Request, str]]) -> list[list[int]]:
        """Reserve in the store, in issue order; a cancelled caller gives the indices back."""
        assert self._reserves is not None
        futures = [
            self._reserves.submit(Reservation(self.run_id or "", r.namespace, key, r.n))
            for r, key in items
        ]
        try:
            return list(await asyncio.shield(asyncio.gather(*futures)))
        except asyncio.CancelledError:
            for (r, key), future in zip(items, futures, strict=True):
                future.add_done_callback(self._give_back_later(r.namespace, key))
            raise

    def _give_back_later(
        self, namespace: str, key: str
    ) -> Callable[[asyncio.Future[list[int]]], None]:
        """A callback that returns a reservation granted after its requester left."""

        def give_back(done: asyncio.Future[list[int]]) -> None:
            if not done.cancelled() and done.exception() is None:
                self._give_back(namespace, key, done.result())

        return give_back

    def _unlease_later(self, asked: LeaseRequest) -> Callable[[asyncio.Future[list[int]]], None]:
        """A callback that drops leases granted after their requester left."""

        def unlease(done: asyncio.Future[list[int]]) -> None:
            if done.cancelled() or done.exception() is not None or not done.result():
                return
            assert self._unleases is not None
            self._unleases.submit(asked).add_done_callback(seen)

        return unlease

    def _give_back(self, namespace: str, key: str, indices: list[int]) -> None:
        """Return a failed request's indices to its namespace (rule 5)."""
        if self._unreserves is None:
            self._run.release(namespace, key, indices)
            return
        # Sent with the next bulk call (an owned task that close() waits for). If the
        # store is down, the indices stay unused: a gap in this run, never a wrong sample.
        future = self._unreserves.submit(Unreservation(self.run_id or "", namespace, key, indices))
        future.add_done_callback(seen)

    async def _serve(
        self,
        request: Request,
        key: str,
        content: str,
        indices: list[int],
        served: dict[int, _Served] | None = None,
        todo: list[int] | None = None,
        taken: tuple[list[int], Claim | None, dict[Claim, list[int]] | None] | None = None,
    ) -> Response:
        """Return the samples at ``indices`` of ``key``: stored, waited for, or generated.

        ``served`` may already hold some indices (then ``todo`` lists the others, or
        ``taken`` is what `_take` already did for them).
        """
        if served is None:
            served = {}
        todo = indices if todo is None else todo
        delay = 0.02
        while todo or taken is not None:
            mine, claim, waits = taken if taken is not None else self._take(key, todo, served)
            taken = None
            remote: list[int] = []
            if claim is not None:
                remote = await self._produce(request, key, content, mine, claim, served)
            todo = remote
            if waits is not None:
                todo = remote + await self._wait_for_others(key, waits, served)
            if remote:  # held by another worker's lease: poll until stored or expired
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
        return self._respond(indices, served)

    def _respond(self, indices: list[int], served: dict[int, _Served]) -> Response:
        if len(indices) == 1:
            value, cached, duplicated = served[indices[0]]
            return Response([value], [cached], [duplicated] if self._dedup else None)
        rows = [served[index] for index in indices]
        return Response(
            [row[0] for row in rows],
            [row[1] for row in rows],
            [row[2] for row in rows] if self._dedup else None,
        )

    def _take(
        self, key: str, todo: list[int], served: dict[int, _Served]
    ) -> tuple[list[int], Claim | None, dict[Claim, list[int]] | None]:
        """Serve remembered samples, claim the free indices, group the rest by claim.

        Synchronous: it runs before the request's first await, so nobody in this
        process reads or generates an index twice.
        """
        assert self._coord is not None
        hits = self._memo.get(key, todo)
        if hits:  # remembered texts of stored samples: no store round trip
            for index, text in hits.items():
                served[index] = (_decoded(text, key, index), True, False)
            if len(hits) == len(todo):
                return _NOTHING, None, None
            todo = [index for index in todo if index not in hits]
        owned = self._coord.claims.get(key)
        if owned is None:
            owned = self._coord.claims[key] = {}
        mine: list[int] = []
        waits: dict[Claim, list[int]] | None = None
        for index in todo:
            other = owned.get(index)
            if other is None:
                mine.append(index)
            else:
                if waits is None:
                    waits = {}
                waits.setdefault(other, []).append(index)
        if not mine:
            return mine, None, waits
        claim = Claim()
        for index in mine:
            owned[index] = claim
        return mine, claim, waits

    async def _wait_for_others(
        self, key: str, waits: dict[Claim, list[int]], served: dict[int, _Served]
    ) -> list[int]:
        """Wait for indices other requests claimed; return those whose producer failed."""
        retry: list[int] = []
        for other, wanted in waits.items():
            await other.wait(produced=False)
            if any(index not in other.values for index in wanted):
                await other.wait(produced=True)
            for index in wanted:
                if index in other.values:
                    served[index] = (_decoded(other.values[index], key, index), True, False)
                else:
                    retry.append(index)
        return retry

    def _found(
        self,
        request: Request,
        key: str,
        mine: list[int],
        claim: Claim,
        found: dict[int, str],
        served: dict[int, _Served],
    ) -> list[int]:
        """Take in what a read found; return the claimed indices still missing."""
        assert self._coord is not None
        for index, text in found.items():
            served[index] = (_decoded(text, key, index), True, False)
            self._memo.put(key, index, text)  # only texts that decode are remembered
            claim.values[index] = text
        if len(found) == len(mine):
            self._coord.release(key, mine, claim)
            claim.finish()
            return _NOTHING
        claim.mark_checked()
        if found:
            self._coord.release(key, list(found), claim)
        missing = [index for index in mine if index not in found]
        if self.mode == "replay":
            raise CacheMissError(
                f"replay mode: {len(missing)} of the {request.n} samples of "
                f"({describe(request, key)}) are not in the cache {self._store!r}; "
                "run once with mode='readwrite' (or import the run's cache) first"
            )
        return missing

    async def _read_and_generate(
        self,
        request: Request,
        key: str,
        content: str,
        mine: list[int],
        claim: Claim,
        served: dict[int, _Served],
    ) -> None:
        """`_produce` without leases: read the claimed indices, generate what is missing."""
        assert self._reads is not None
        future = None
        try:
            found = await self._reads.submit(SampleRead(key, mine))
            missing = self._found(request, key, mine, claim, found, served)
            if missing:
                future = _Generation(self, request, key, content, missing, claim).start()
        except BaseException:
            self._abandon(key, mine, claim)
            raise
        if future is not None:
            for index, value, dup in await future:
                served[index] = (value, False, dup)

    def _abandon(self, key: str, mine: list[int], claim: Claim) -> None:
        """Free a claim nobody will finish (its request failed or was cancelled)."""
        assert self._coord is not None
        self._coord.release(key, mine, claim)
        claim.finish()

    async def _produce(
        self,
        request: Request,
        key: str,
        content: str,
        mine: list[int],
        claim: Claim,
        served: dict[int, _Served],
    ) -> list[int]:
        """Read the claimed indices, generate what is missing; return indices to poll for.

        Until a generation takes the claim over, any failure or cancellation releases it,
        so no request of this process waits on a claim nobody will finish.
        """
        assert self._coord is not None and self._reads is not None
        lease: LeaseRequest | None = None
        try:
            found = await self._reads.submit(SampleRead(key, mine))
            missing = self._found(request, key, mine, claim, found, served)
            if not missing:
                return _NOTHING
            remote: list[int] = []
            if self._leases is not None:
                # Another worker may be generating some of these right now: wait for
                # those (polling) instead of paying for them twice.
                asked = LeaseRequest(key, missing, self._owner, self.lease_ttl)
                granted = self._leases.submit(asked)
                try:
                    held = set(await asyncio.shield(granted))
                except asyncio.CancelledError:
                    granted.add_done_callback(self._unlease_later(asked))
                    raise
                remote = [index for index in missing if index not in held]
                missing = [index for index in missing if index in held]
                lease = LeaseRequest(key, missing, self._owner, self.lease_ttl)
                if remote:
                    self._coord.release(key, remote, claim)
            if not missing:
                claim.finish()
                return remote
            future = _Generation(self, request, key, content, missing, claim, lease).start()
        except BaseException:
            self._abandon(key, mine, claim)
            if lease is not None and lease.indices and self._unleases is not None:
                self._unleases.submit(lease).add_done_callback(seen)
            raise
        # The model call and the write are driven by callbacks, not by this coroutine:
        # if this requester is cancelled they still finish, the samples are stored, and
        # waiters on the claim still get them.
        for index, value, dup in await future:
            served[index] = (value, False, dup)
        return remote

    async def _serve_all(
        self, keyed: list[tuple[Request, str, str]], reserved: list[list[int]]
    ) -> list[Outcome]:
        """Serve a whole batch with one bulk read and no task per request.

        Requests that must wait for indices other requests are producing finish through
        `_serve`; everything else is one read, then the generations, awaited together.
        """
        assert self._reads is not None
        count = len(keyed)
        served: list[dict[int, _Served]] = [{} for _ in range(count)]
        outcomes: list[Outcome | None] = [None] * count
        waiting: list[dict[Claim, list[int]] | None] = [None] * count
        claimed: list[tuple[int, list[int], Claim]] = []
        for i, ((_, key, _), indices) in enumerate(zip(keyed, reserved, strict=True)):
            mine, claim, waiting[i] = self._take(key, indices, served[i])
            if claim is not None:
                claimed.append((i, mine, claim))
        if claimed:
            reads = [SampleRead(keyed[i][1], mine) for i, mine, _ in claimed]
            try:
                results = await self._reads.submit_all(reads)
            except BaseException as exc:
                for i, mine, claim in claimed:
                    self._abandon(keyed[i][1], mine, claim)
                    outcomes[i] = exc
                if not isinstance(exc, Exception):
                    raise
                results = []
            jobs: list[tuple[int, asyncio.Future[list[tuple[int, Any, bool]]]]] = []
            for (i, mine, claim), found in zip(claimed, results, strict=False):
                request, key, content = keyed[i]
                try:
                    missing = self._found(request, key, mine, claim, found, served[i])
                except Exception as exc:
                    self._abandon(key, mine, claim)
                    outcomes[i] = exc
                    continue
                if missing:
                    job = _Generation(self, request, key, content, missing, claim)
                    jobs.append((i, job.start()))
            if jobs:
                done = await asyncio.gather(*(future for _, future in jobs), return_exceptions=True)
                for (i, _), result in zip(jobs, done, strict=True):
                    if isinstance(result, BaseException):
                        outcomes[i] = result
                    else:
                        for index, value, dup in result:
                            served[i][index] = (value, False, dup)
        rest = [i for i in range(count) if outcomes[i] is None and waiting[i] is not None]
        if rest:
            finished = await asyncio.gather(
                *(
                    self._serve(
                        keyed[i][0],
                        keyed[i][1],
                        keyed[i][2],
                        reserved[i],
                        served[i],
                        [index for index in reserved[i] if index not in served[i]],
                    )
                    for i in rest
                ),
                return_exceptions=True,
            )
            for i, outcome in zip(rest, finished, strict=True):
                outcomes[i] = outcome
        return [
            outcome if outcome is not None else self._respond(indices, served[i])
            for i, (outcome, indices) in enumerate(zip(outcomes, reserved, strict=True))
        ]

    def _hold_lease(self, job_id: int, lease: LeaseRequest) -> None:
        self._active_leases[job_id] = lease
        if not self._keeper_running:
            self._keeper_running = True
            self._tasks.spawn(self._keep_leases())

    def _drop_lease(self, job_id: int) -> None:
        lease = self._active_leases.pop(job_id, None)
        if lease is None:
            return
        assert self._unleases is not None and self._keeper_wake is not None
        self._unleases.submit(lease).add_done_callback(seen)
        if not self._active_leases:
            self._keeper_wake.set()

    async def _keep_leases(self) -> None:
        """Renew the leases of generations in flight until none is left."""
        assert self._shared is not None and self._keeper_wake is not None
        try:
            while self._active_leases:
                self._keeper_wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._keeper_wake.wait(), self.lease_ttl / 3)
                if self._active_leases:
                    with contextlib.suppress(CacheSaverError):
                        await self._shared.lease(list(self._active_leases.values()))
        finally:
            self._keeper_running = False

    def _busy(self) -> bool:
        return bool(self._jobs or self._serving or self._tasks)

    def _job_done(self) -> None:
        self._jobs -= 1
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        idle = self._idle
        if self._jobs == 0 and self._serving == 0 and idle is not None and not idle.done():
            idle.set_result(None)

    async def _drain(self) -> None:
        """Wait for every request still being served and every generation in flight."""
        while self._jobs or self._serving:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle

    async def aclose(self) -> None:
        """Finish in-flight work, close the stages below, and the store if it opened it."""
        if self._closed:
            return
        await super().aclose()
        if self._owns_manifest and self._manifest is not None:
            await self._manifest.aclose()
        if self._owns_store:
            await self._store.aclose()


class _Generation:
    """One model call for the missing indices of one claim, then one store write.

    Driven by callbacks on the lower layer's future and on the write's future, so it
    completes (and stores what the model returned) even if its requester is cancelled.
    """

    __slots__ = (
        "cacher",
        "claim",
        "content",
        "data",
        "dups",
        "future",
        "key",
        "lease",
        "missing",
        "request",
        "texts",
    )

    def __init__(
        self,
        cacher: AsyncCacher,
        request: Request,
        key: str,
        content: str,
        missing: list[int],
        claim: Claim,
        lease: LeaseRequest | None = None,
    ) -> None:
        self.cacher = cacher
        self.lease = lease
        self.request = request
        self.key = key
        self.content = content
        self.missing = missing
        self.claim = claim
        self.future: asyncio.Future[list[tuple[int, Any, bool]]] = (
            asyncio.get_running_loop().create_future()
        )
        self.data: list[Any] = []
        self.texts: list[str] = []
        self.dups: list[bool] | None = None

    def start(self) -> asyncio.Future[list[tuple[int, Any, bool]]]:
        self.cacher._jobs += 1
        if self.lease is not None:
            self.cacher._hold_lease(id(self), self.lease)
        try:
            asked = with_n(self.request, len(self.missing))
            self.cacher._inner._cs_submit_then(asked, self._on_model)
        except BaseException as exc:
            self._fail(exc)
        return self.future

    def _on_model(self, outcome: Outcome) -> None:
        try:
            if isinstance(outcome, (ModelContractError, ModelTimeoutError)) and "key=" not in str(
                outcome
            ):
                raise type(outcome)(f"{outcome} [key={self.key[:12]}]") from None
            if isinstance(outcome, BaseException):
                raise outcome
            data = outcome.data
            if len(data) != len(self.missing):
                raise ModelContractError(
                    f"the model returned {len(data)} samples for "
                    f"({describe(self.request, self.key)}) that asked for n={len(self.missing)}"
                )
            try:
                self.texts = [encode_sample(value) for value in data]
            except UnstorableSampleError as exc:
                raise UnstorableSampleError(f"{exc} ({describe(self.request, self.key)})") from None
            self.data = data
            self.dups = outcome.duplicated
            assert self.cacher._writes is not None
            write = SampleWrite(
                self.key, self.content, dict(zip(self.missing, self.texts, strict=True))
            )
            self.cacher._writes.submit_then(write, self._on_written)
        except BaseException as exc:
            self._fail(exc)

    def _on_written(self, result: WriteResult | BaseException) -> None:
        try:
            if isinstance(result, BaseException):
                raise result
            out: list[tuple[int, Any, bool]] = []
            dups = self.dups
            for j, index in enumerate(self.missing):
                stored = result.stored[index]
                # Another process may have stored this index first: serve what is
                # stored (ours was appended), so every reader sees one order.
                value = (
                    self.data[j] if stored == self.texts[j] else _decoded(stored, self.key, index)
                )
                self.cacher._memo.put(self.key, index, stored)
                self.claim.values[index] = stored
                out.append((index, value, bool(dups[j]) if dups is not None else False))
        except BaseException as exc:
            self._fail(exc)
            return
        self._end()
        if not self.future.done():
            self.future.set_result(out)

    def _fail(self, exc: BaseException) -> None:
        self._end()
        if not self.future.done():
            if isinstance(exc, asyncio.CancelledError):
                self.future.cancel()
            else:
                self.future.set_exception(exc)

    def _end(self) -> None:
        if self.lease is not None:
            self.cacher._drop_lease(id(self))
        assert self.cacher._coord is not None
        self.cacher._coord.release(self.key, self.missing, self.claim)
        self.claim.finish()
        self.cacher._job_done()
