"""Where a request gets its samples: the cache stage.

One serving path, for a request alone or a whole batch, whatever kind of run it is:

1. **reserve**: the allocator (`_allocation.py`) gives each request its sample indices,
   synchronously and in issue order (rule 2): the run's namespace positions in memory,
   the store's (a shared run), or the indices a recorded run gave it (rule 8);
2. **claim** the indices nobody in this process is reading or producing, and wait for
   the others (rule 4); texts this pipeline already read or wrote are served at once;
3. **read** the claimed indices: one bulk store read per event-loop iteration;
4. **lease**: the allocator says which missing indices this process may generate now
   (in a shared run another worker may be generating the others: they are polled for);
5. **generate** what is missing (`_generation.Generation`: one model call, one write),
   and answer with the flags; record the manifest line if asked.

A request that fails or is cancelled hands its indices back to the allocator (rule 5);
samples a model returned are stored even if their requester is gone.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from cachesaver._allocation import Allocator, Grant, InProcessAllocator, SharedAllocator
from cachesaver._canonical import canonical_json, digest
from cachesaver._coordination import Claim, Memo
from cachesaver._generation import Generation, LoopState, Produced, decoded
from cachesaver._models import Outcome, describe, first_error
from cachesaver._reproduce import Record, ReproduceAllocator
from cachesaver._stage import Stage
from cachesaver.errors import CacheMissError
from cachesaver.manifest import RunManifest
from cachesaver.savings import Price, Savings, SavingsCounter
from cachesaver.stores import CacheLike, open_store
from cachesaver.stores.base import SampleRead, SharedStore, Store
from cachesaver.typedefs import Batch, Request, Response, request_content

logger = logging.getLogger("cachesaver")

__all__ = ["AsyncCacher"]

Mode = Literal["readwrite", "replay"]

_new = object.__new__
_NOTHING: list[int] = []  # "no index left to serve" (never mutated)
_NO_JOBS: list[_Job] = []  # (never mutated)

# (value, cached, duplicated) of one sample as the requester will see it.
_Served = tuple[Any, bool, bool]


def _same_file(one: str, other: str) -> bool:
    return os.path.realpath(one) == os.path.realpath(other)


def _served(job: _Job, produced: Produced) -> None:
    served = job.served
    for index, value, duplicated in produced:
        served[index] = (value, False, duplicated)


class _Job:
    """One request being served: its indices, what it has so far, what is left."""

    __slots__ = (
        "claim",
        "content",
        "error",
        "future",
        "indices",
        "key",
        "mine",
        "polling",
        "request",
        "served",
        "todo",
        "waits",
    )

    def __init__(self, request: Request, key: str, content: str) -> None:
        self.request = request
        self.key = key
        self.content = content
        self.served: dict[int, _Served] = {}
        self.polling = False  # todo holds indices another worker is generating
        self.mine = _NOTHING  # indices this job reads (then: generates) under ``claim``
        self.claim: Claim | None = None
        self.waits: dict[Claim, list[int]] | None = None  # indices others produce
        self.future: asyncio.Future[Produced] | None = None  # its generation
        self.indices: list[int] | None = None
        self.error: BaseException | None = None
        self.todo = _NOTHING

    def grant(self, grant: Grant) -> None:
        if isinstance(grant, BaseException):
            self.error = grant
        else:
            self.indices = self.todo = grant


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

    ``reproduce`` (a manifest path or a `RunManifest`, read once here) reproduces a
    recorded run whatever the timing (SEMANTICS rule 8): a request matching a recorded
    one (namespace, request_id, key; k-th to k-th) gets exactly its recorded indices;
    others get new indices after the record's, or `CacheMissError` in replay mode.

    ``savings()`` says what the run paid and saved (tokens from the samples' provider
    usage; dollars for models named in ``prices``, a mapping of model name to `Price`).
    ``explain_misses=True``: a `CacheMissError` in replay mode names the nearest stored
    keys and exactly how they differ from the request (also logged at WARNING).
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
        reproduce: str | os.PathLike[str] | RunManifest | None = None,
        prices: Mapping[str, Price] | None = None,
        savings: SavingsCounter | None = None,
        explain_misses: bool = False,
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
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._allocator: Allocator = self._choose_allocator(run_id, lease_ttl, reproduce)
        identity = self._inner.identity
        self._identity = None if identity is None else canonical_json(identity, "identity")
        self._savings = savings if savings is not None else SavingsCounter(prices)
        self._priced_as = identity.get("model") if isinstance(identity, dict) else None
        self._savings.watch(self, self._priced_as)
        self._explain_misses = explain_misses
        self._memo = Memo()
        self._dedup = self._inner._cs_dedup  # the chain below is fixed from here on
        self._state: LoopState | None = None

    def _choose_allocator(
        self,
        run_id: str | None,
        lease_ttl: float,
        reproduce: str | os.PathLike[str] | RunManifest | None,
    ) -> Allocator:
        if reproduce is not None:
            if run_id is not None:
                raise ValueError(
                    "reproduce= and run_id= cannot be combined: reproduce a shared run from "
                    "one process (its manifests concatenated), without run_id"
                )
            record = Record.load(reproduce)
            if self._manifest is not None and _same_file(self._manifest.path, record.source):
                raise ValueError(
                    f"manifest= and reproduce= name the same file {record.source!r}; record "
                    "the new run in another file"
                )
            return ReproduceAllocator(record, replay=self.mode == "replay")
        if run_id is None:
            return InProcessAllocator()
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id must be a non-empty str, got {run_id!r}")
        if not isinstance(self._store, SharedStore):
            raise TypeError(
                f"run_id={run_id!r} needs a store that can hold shared runs (DiskStore or "
                f"RedisStore); {self._store!r} cannot"
            )
        if not (isinstance(lease_ttl, (int, float)) and 0 < lease_ttl < math.inf):
            raise ValueError(f"lease_ttl must be a positive number of seconds, got {lease_ttl!r}")
        return SharedAllocator(self._store, run_id, self._owner, lease_ttl)

    @property
    def store(self) -> Store:
        """The store this stage reads and writes."""
        return self._store

    def _new_loop(self) -> None:
        self._state = LoopState(self._store, self._tasks)
        self._allocator.start_loop(self._tasks)

    def _busy(self) -> bool:
        return bool(self._tasks) or (self._state is not None and self._state.busy())

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

    # -- what the run paid and saved, and why a request missed ------------------------

    def savings(self) -> Savings:
        """What this run paid and what the cache saved: samples, calls, prompt and
        completion tokens (where the samples carry the provider's usage) and dollars
        (where ``prices=`` names the model)."""
        return self._savings.summary()

    async def _explain(self, request: Request, error: CacheMissError) -> None:
        """``explain_misses=True``: log why a replayed request missed, and say it in the
        error: the nearest stored keys and exactly how they differ."""
        from cachesaver.admin import explain

        store: Any = self._store
        if not callable(getattr(store, "keys", None)):
            return  # a store that cannot be listed cannot be searched
        try:
            found = await explain(store, request, identity=self._inner.identity)
        except Exception as exc:  # the explanation must never hide the miss itself
            logger.warning("cachesaver: could not explain the miss of %s: %s", request, exc)
            return
        lines = [f"key {found.key[:12]} is not stored"]
        for near in found.nearest:
            lines.append(f"nearest stored key {near.key[:12]} ({near.samples} samples) differs:")
            lines.extend(f"  {difference}" for difference in near.differences)
        if not found.nearest:
            lines.append("the store holds no key to compare with")
        text = "\n".join(lines)
        logger.warning("cachesaver: replay miss explained:\n%s", text)
        error.args = (f"{error.args[0] if error.args else ''}\n{text}",)

    # -- requests ------------------------------------------------------------------------

    async def request(self, request: Request) -> Response:
        self._enter()
        job = _Job(request, *self._key(request))
        await self._answer((job,))
        outcome = self._settle(job, False)
        if isinstance(outcome, BaseException):
            if self._explain_misses and isinstance(outcome, CacheMissError):
                await self._explain(job.request, outcome)
            raise outcome
        return outcome

    async def batch_request(self, batch: Batch) -> list[Response]:
        """Return one response per request, in order; all or nothing.

        If any request fails, its error is raised and no request of the batch consumes
        anything: the samples already stored are handed out again, as cached, next time.
        """
        self._enter()
        jobs = [_Job(r, *self._key(r)) for r in batch.requests]
        await self._answer(jobs)
        outcomes = self._finish(jobs, all_or_nothing=True)
        error = first_error(outcomes)
        if error is not None:
            if self._explain_misses and isinstance(error, CacheMissError):
                job = next(j for j, o in zip(jobs, outcomes, strict=True) if o is error)
                await self._explain(job.request, error)
            raise error
        return outcomes  # type: ignore[return-value]

    async def _cs_batch_each(self, batch: Batch) -> list[Outcome]:
        # Seen from a stage above: every request stands alone (a failure consumes
        # nothing of its own, and the others keep what they received).
        self._enter()
        jobs = [_Job(r, *self._key(r)) for r in batch.requests]
        await self._answer(jobs)
        return self._finish(jobs, all_or_nothing=False)

    async def _answer(self, jobs: Sequence[_Job]) -> None:
        """The one serving path: reserve and serve ``jobs`` (then `_finish` answers).

        Each round claims what it can (`_take`), reads the claims in one bulk read, asks
        the allocator which missing indices may be generated here (unless it is the only
        generator), starts a generation per job (`_start`), then waits for indices other
        requests of this process are producing. An index whose producer failed, or that
        another worker holds a lease on, goes into the next round (the latter after a
        growing pause: it is polled for in the store). Until a generation takes a claim
        over, any failure or cancellation releases the claim, so nobody waits on a claim
        nobody will finish.
        """
        state = self._state
        assert state is not None
        allocator = self._allocator
        state.serving += 1  # aclose() waits for these requests
        try:
            grants = allocator.reserve(jobs)
            if not isinstance(grants, list):
                grants = await grants
            for job, grant in zip(jobs, grants, strict=True):
                job.grant(grant)
            try:
                active = jobs
                delay = 0.02
                while active:
                    claimed: list[_Job] = []
                    waiting: list[_Job] | None = None
                    for job in active:
                        if job.error is None:
                            self._take(state, job)
                            if job.claim is not None:
                                claimed.append(job)
                            if job.waits is not None:
                                if waiting is None:
                                    waiting = []
                                waiting.append(job)
                    if claimed:
                        held: list[list[int]] | None = None  # None: every missing index
                        try:
                            if len(claimed) == 1:
                                job = claimed[0]
                                found = [await state.reads.submit(SampleRead(job.key, job.mine))]
                            else:
                                reads = [SampleRead(job.key, job.mine) for job in claimed]
                                found = await state.reads.submit_all(reads)
                            asking = self._found_all(state, claimed, found)
                            if asking and not allocator.exclusive:
                                leased = allocator.lease([(job.key, job.mine) for job in asking])
                                held = leased if isinstance(leased, list) else await leased
                        except BaseException as exc:
                            for job in claimed:
                                self._abandon(state, job, exc)
                            if not isinstance(exc, Exception):
                                raise
                            asking = []
                        started = self._start(state, asking, held) if asking else _NO_JOBS
                        if len(started) == 1:
                            job = started[0]
                            assert job.future is not None
                            try:
                                _served(job, await job.future)
                            except Exception as exc:
                                job.error = exc
                        elif started:
                            outcomes = await asyncio.gather(
                                *(job.future for job in started if job.future is not None),
                                return_exceptions=True,
                            )
                            for job, outcome in zip(started, outcomes, strict=True):
                                if not isinstance(outcome, BaseException):
                                    _served(job, outcome)
                                elif isinstance(outcome, Exception):
                                    job.error = outcome
                                else:
                                    raise outcome
                    for job in waiting or ():
                        waits, job.waits = job.waits, None
                        if job.error is None and waits is not None:
                            retry = await self._wait_for_others(job.key, waits, job.served)
                            if retry:
                                job.todo = job.todo + retry
                    if len(active) == 1:
                        job = active[0]
                        if job.error is not None or not job.todo:
                            return
                        polling = job.polling
                    else:
                        active = [job for job in active if job.error is None and job.todo]
                        polling = any(job.polling for job in active)
                    if polling:
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 0.5)
            except BaseException:
                for job in jobs:
                    if job.indices is not None:
                        allocator.give_back(job.request, job.key, job.indices)
                raise
        finally:
            state.serving -= 1
            state.maybe_idle()

    def _finish(self, jobs: list[_Job], all_or_nothing: bool) -> list[Outcome]:
        """Answer each job; with ``all_or_nothing`` one failure fails them all."""
        failed = all_or_nothing and any(job.error is not None for job in jobs)
        return [self._settle(job, failed) for job in jobs]

    def _settle(self, job: _Job, failed: bool) -> Outcome:
        """A job's answer (tallied, recorded); a failed job gives back what it reserved."""
        indices = job.indices
        if job.error is not None:
            if indices is not None:
                self._allocator.give_back(job.request, job.key, indices)
            return job.error
        assert indices is not None
        if failed:  # the batch fails: nothing of it is consumed
            self._allocator.give_back(job.request, job.key, indices)
            return self._respond(indices, job.served)
        response = self._respond(indices, job.served)
        # The tally (what `stats()` and a watching `SavingsCounter` count), inline: one
        # response per request makes this the hottest bookkeeping of all.
        data = response.data
        self._requests += 1
        self._samples += len(data)
        self._cached += sum(response.cached)  # type: ignore[arg-type]
        if self._dedup:
            self._duplicated += sum(response.duplicated)  # type: ignore[arg-type]
        for value in data:
            if isinstance(value, dict):  # samples that may report tokens
                self._savings.add_tokens(response, self._priced_as)
                break
        if self._manifest is not None:
            self._manifest.record(job.key, job.request.namespace, job.request.request_id, indices)
        return response

    def _cs_counts(self) -> tuple[int, int, int]:
        return self._samples, self._cached, self._duplicated

    def _respond(self, indices: list[int], served: dict[int, _Served]) -> Response:
        response = _new(Response)  # the fields set directly: no frozen __setattr__ per field
        fields = response.__dict__
        if len(indices) == 1:
            value, cached, duplicated = served[indices[0]]
            fields["data"] = [value]
            fields["cached"] = [cached]
            fields["duplicated"] = [duplicated] if self._dedup else None
            return response
        rows = [served[index] for index in indices]
        fields["data"] = [row[0] for row in rows]
        fields["cached"] = [row[1] for row in rows]
        fields["duplicated"] = [row[2] for row in rows] if self._dedup else None
        return response

    def _take(self, state: LoopState, job: _Job) -> None:
        """Serve remembered samples, claim the free indices, group the rest by claim.

        Takes the job's ``todo`` and sets its ``mine`` and ``claim`` (indices it reads or
        produces) and ``waits`` (indices other requests are producing, by claim).
        Synchronous: it runs before the request's next await, so nobody in this process
        reads or generates an index twice.
        """
        key = job.key
        todo, job.todo, job.polling = job.todo, _NOTHING, False
        hits = self._memo.get(key, todo)
        if hits:  # remembered texts of stored samples: no store round trip
            served = job.served
            try:
                for index, text in hits.items():
                    served[index] = (decoded(text, key, index), True, False)
            except Exception as exc:  # a remembered text that no longer decodes
                job.error = exc
                return
            if len(hits) == len(todo):
                return
            todo = [index for index in todo if index not in hits]
        claims = state.coord.claims
        owned = claims.get(key)
        if owned is None:
            owned = claims[key] = {}
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
        job.waits = waits
        if mine:
            claim = job.claim = Claim()
            job.mine = mine
            for index in mine:
                owned[index] = claim

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
                    served[index] = (decoded(other.values[index], key, index), True, False)
                else:
                    retry.append(index)
        return retry

    def _found_all(
        self, state: LoopState, claimed: list[_Job], results: list[dict[int, str]]
    ) -> list[_Job]:
        """Take in what the bulk read found; return the jobs with indices still missing.

        A job's ``mine`` becomes its missing indices; a job with nothing missing, or
        failing (replay mode, a damaged sample), has its claim finished or abandoned.
        """
        asking = 0
        for job, found in zip(claimed, results, strict=True):
            try:
                missing = self._found(state, job, found)
            except Exception as exc:
                self._abandon(state, job, exc)
                continue
            if missing:
                job.mine = missing
                asking += 1
            else:
                job.claim = None
        if asking == len(claimed):
            return claimed
        return [job for job in claimed if job.claim is not None]

    def _start(
        self, state: LoopState, asking: list[_Job], held: list[list[int]] | None
    ) -> list[_Job]:
        """Start one generation per job for the missing indices it may generate.

        The model call and the write are driven by callbacks, not by the requester: if
        it is cancelled they still finish and the samples are stored.
        """
        started = 0
        for position, job in enumerate(asking):
            claim = job.claim
            assert claim is not None
            missing = job.mine
            job.claim = None  # from here on the generation (or nobody) finishes it
            granted = missing if held is None else held[position]
            if len(granted) < len(missing):  # another worker is generating the others
                holding = set(granted)
                remote = [index for index in missing if index not in holding]
                missing = [index for index in missing if index in holding]
                state.coord.release(job.key, remote, claim)
                job.todo = job.todo + remote
                job.polling = True
            if not missing:
                claim.finish()
                job.future = None
                continue
            generation = Generation(
                state,
                self._memo,
                self._allocator,
                self._inner,
                job.request,
                job.key,
                job.content,
                missing,
                claim,
            )
            job.future = generation.start()
            started += 1
        if started == len(asking):
            return asking
        return [job for job in asking if job.future is not None]

    def _found(self, state: LoopState, job: _Job, found: dict[int, str]) -> list[int]:
        """Take in what a read of the job's claim found; return the indices still missing."""
        key = job.key
        served = job.served
        mine = job.mine
        claim = job.claim
        assert claim is not None
        for index, text in found.items():
            served[index] = (decoded(text, key, index), True, False)
            self._memo.put(key, index, text)  # only texts that decode are remembered
            claim.values[index] = text
        if len(found) == len(mine):
            state.coord.release(key, mine, claim)
            claim.finish()
            return _NOTHING
        claim.mark_checked()
        if found:
            state.coord.release(key, list(found), claim)
        missing = [index for index in mine if index not in found]
        if self.mode == "replay":
            raise CacheMissError(
                f"replay mode: {len(missing)} of the {job.request.n} samples of "
                f"({describe(job.request, key)}) are not in the cache {self._store!r}; "
                "run once with mode='readwrite' (or import the run's cache) first"
            )
        return missing

    def _abandon(self, state: LoopState, job: _Job, exc: BaseException) -> None:
        """Free the claim of a job that failed or was cancelled before generating."""
        claim = job.claim
        if claim is None:  # nothing claimed, or its samples were all found
            return
        job.claim = None
        state.coord.release(job.key, job.mine, claim)
        claim.finish()
        if job.error is None and isinstance(exc, Exception):
            job.error = exc

    async def _drain(self) -> None:
        if self._state is not None:
            await self._state.drain()

    async def aclose(self) -> None:
        """Finish in-flight work, close the stages below, and the store if it opened it."""
        if self._closed:
            return
        await super().aclose()
        if self._owns_manifest and self._manifest is not None:
            await self._manifest.aclose()
        if self._owns_store:
            await self._store.aclose()
