"""Where a request gets its samples: the cache stage.

One serving path, for a request alone or a whole batch, whatever kind of run it is:
`AsyncCacher` makes a `Job` per request (its key and content), hands the list to its
`Server` (`_serving.py`: reserve, claim, read, lease, generate, wait; a request alone
that needs one round only, the usual case, takes those steps through `Server.begin`
without a coroutine of their own), then answers each job (`_settle`: the response with
its flags, the tally, the manifest line; a failed job gives its indices back to the
allocator, rule 5). Which indices a request gets is the allocator's job
(`_allocation.py`: the run's positions in memory, the store's in a shared run, or a
recorded run's, rule 8).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from cachesaver._allocation import Allocator, InProcessAllocator, SharedAllocator
from cachesaver._canonical import canonical_json
from cachesaver._coordination import Memo
from cachesaver._generation import LoopState
from cachesaver._models import Outcome, first_error
from cachesaver._reproduce import Record, ReproduceAllocator
from cachesaver._serving import Job, Server
from cachesaver._stage import Stage
from cachesaver.errors import CacheMissError
from cachesaver.manifest import RunManifest
from cachesaver.savings import Price, Savings, SavingsCounter
from cachesaver.stores import CacheLike, open_store
from cachesaver.stores.base import SharedStore, Store
from cachesaver.typedefs import Batch, Request, Response, request_content

logger = logging.getLogger("cachesaver")

__all__ = ["AsyncCacher"]

Mode = Literal["readwrite", "replay"]

_new = object.__new__
_get_loop = asyncio.get_running_loop
_sha256 = hashlib.sha256  # the key's digest, as `_canonical.digest` makes it


def _same_file(one: str, other: str) -> bool:
    return os.path.realpath(one) == os.path.realpath(other)


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
        self._server = Server(
            self._memo, self._allocator, self._inner, mode == "replay", self._store
        )

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
        return self._job(request).key

    def _job(self, request: Request) -> Job:
        """A job for ``request``, with its key and the content its key is made of."""
        content = request_content(request)
        if self._identity is None:
            full = '{"request":' + content + "}"
        else:
            full = '{"identity":' + self._identity + ',"request":' + content + "}"
        return Job(request, _sha256(full.encode("utf-8")).hexdigest(), full)

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
        if self._closed or _get_loop() is not self._loop:
            self._enter()
        job = self._job(request)
        state = self._state
        assert state is not None  # (set by _enter)
        server = self._server
        step = server.begin(state, job)  # the usual case, without a coroutine of its own
        if step is None:
            await server.serve(state, [job])
        elif not isinstance(step, Job):  # a round to wait for (else: no round needed)
            try:
                await step.future
            except BaseException:
                server.ended(state, job, failed=True)
                raise
            server.ended(state, job, failed=False)
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
        jobs = [self._job(r) for r in batch.requests]
        await self._server.serve(self._state, jobs)  # type: ignore[arg-type]
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
        jobs = [self._job(r) for r in batch.requests]
        await self._server.serve(self._state, jobs)  # type: ignore[arg-type]
        return self._finish(jobs, all_or_nothing=False)

    def _finish(self, jobs: list[Job], all_or_nothing: bool) -> list[Outcome]:
        """Answer each job; with ``all_or_nothing`` one failure fails them all."""
        failed = all_or_nothing and any(job.error is not None for job in jobs)
        return [self._settle(job, failed) for job in jobs]

    def _settle(self, job: Job, failed: bool) -> Outcome:
        """A job's answer (tallied, recorded); a failed job gives back what it reserved."""
        indices = job.indices
        if job.error is not None:
            if indices is not None:
                self._allocator.give_back(job.request, job.key, indices)
            return job.error
        assert indices is not None
        # The response's fields are set directly (no frozen __setattr__ per field), and
        # the tally (what `stats()` and a watching `SavingsCounter` count) is inline:
        # this is the hottest bookkeeping of all, once per request.
        response = _new(Response)
        fields = response.__dict__
        served = job.served
        cached: int
        duplicated: int
        if len(indices) == 1:
            value, cached, duplicated = served[indices[0]]
            data = fields["data"] = [value]
            fields["cached"] = [cached]
            fields["duplicated"] = [duplicated] if self._dedup else None
        else:
            # One loop, not a comprehension per column (each is a function call here).
            data = []
            cached_flags: list[bool] = []
            dup_flags: list[bool] = []
            cached = duplicated = 0
            for index in indices:
                value, was_cached, was_dup = served[index]
                data.append(value)
                cached_flags.append(was_cached)
                dup_flags.append(was_dup)
                cached += was_cached
                duplicated += was_dup
            fields["data"] = data
            fields["cached"] = cached_flags
            fields["duplicated"] = dup_flags if self._dedup else None
        if failed:  # the batch fails: nothing of it is consumed
            self._allocator.give_back(job.request, job.key, indices)
            return response
        self._requests += 1
        self._samples += len(data)
        self._cached += cached
        if self._dedup:
            self._duplicated += duplicated
        for value in data:
            if isinstance(value, dict):  # samples that may report tokens
                self._savings.add_tokens(response, self._priced_as)
                break
        if self._manifest is not None:
            self._manifest.record(job.key, job.request.namespace, job.request.request_id, indices)
        return response

    def _cs_counts(self) -> tuple[int, int, int]:
        return self._samples, self._cached, self._duplicated

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
