"""One model call for the missing indices of one claim, then one store write.

A `Generation` is driven by callbacks on the lower layer's future and on the write's
future, so it completes (and stores what the model returned) even if its requester is
cancelled. It talks to the cacher only through `LoopState` (the cacher's per-loop state)
and the allocator's ``hold``/``drop`` (leases while it runs).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from cachesaver._allocation import Allocator
from cachesaver._coordination import Claim, Coordinator, Memo, coordinator
from cachesaver._models import Layer, Outcome, describe
from cachesaver._tasks import Coalescer, TaskOwner
from cachesaver.codec import decode_sample, encode_sample
from cachesaver.errors import (
    DamagedSampleError,
    ModelContractError,
    ModelTimeoutError,
    UnknownTypeTagError,
    UnstorableSampleError,
)
from cachesaver.stores.base import SampleRead, SampleWrite, Store, WriteResult
from cachesaver.typedefs import Request, with_n

__all__ = ["Generation", "Latch", "LoopState", "Served", "Sink", "decoded"]

_new_tuple = tuple.__new__  # a `SampleWrite` without its Python-level __new__
_NO_DATA: list[Any] = []  # (never mutated)

# (value, cached, duplicated) of one sample as the requester will see it.
Served = tuple[Any, bool, bool]


def decoded(text: str, key: str, index: int) -> Any:
    """Decode a stored sample; an error names the key and index it came from."""
    try:
        return decode_sample(text)
    except (DamagedSampleError, UnknownTypeTagError) as exc:
        raise type(exc)(f"{exc} [key={key[:12]}, index {index}]") from None


class LoopState:
    """Everything of one cacher that belongs to one event loop, in one object.

    The claims of the store (shared by every pipeline of this loop), the bulk read and
    write queues, and the counts `aclose()` waits on: requests being served and
    generations in flight.
    """

    __slots__ = ("coord", "idle", "jobs", "reads", "serving", "writes")

    def __init__(self, store: Store, tasks: TaskOwner) -> None:
        self.coord: Coordinator = coordinator(store.location)
        self.reads: Coalescer[SampleRead, dict[int, str]] = Coalescer(store.read, tasks)
        self.writes: Coalescer[SampleWrite, WriteResult] = Coalescer(store.write, tasks)
        self.jobs = 0
        self.serving = 0
        self.idle: asyncio.Future[None] | None = None

    def busy(self) -> bool:
        return bool(self.jobs or self.serving)

    def job_done(self) -> None:
        self.jobs -= 1
        self.maybe_idle()

    def maybe_idle(self) -> None:
        idle = self.idle
        if self.jobs == 0 and self.serving == 0 and idle is not None and not idle.done():
            idle.set_result(None)

    async def drain(self) -> None:
        """Wait for every request still being served and every generation in flight."""
        while self.jobs or self.serving:
            self.idle = asyncio.get_running_loop().create_future()
            await self.idle


class Latch:
    """Counts the generations of one serving round; ``future`` is done when all ended.

    It starts with one count held by whoever starts the generations (released with
    `done_one` once all are started), so a generation that fails at once cannot set it.
    """

    __slots__ = ("future", "left")

    def __init__(self) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.left = 1

    def done_one(self) -> None:
        self.left -= 1
        if self.left == 0 and not self.future.done():
            self.future.set_result(None)


class Sink(Protocol):
    """The request a generation serves: what it asks, and where its samples go."""

    request: Request
    key: str
    content: str
    served: dict[int, Served]
    error: BaseException | None


class Generation:
    """Ask the layer below for ``missing`` samples of a job's key, store them, serve them.

    The samples go into the job's ``served`` (or its ``error`` is set), then the
    round's `Latch` is counted down. The generation is itself the callback of both
    steps (the model's outcome, then the write's result): no bound method per step.
    """

    __slots__ = (
        "allocator",
        "claim",
        "data",
        "dups",
        "inner",
        "job",
        "latch",
        "lease",
        "memo",
        "missing",
        "state",
        "written",
    )

    def __init__(
        self,
        state: LoopState,
        memo: Memo,
        allocator: Allocator,
        inner: Layer,
        job: Sink,
        missing: list[int],
        claim: Claim,
        latch: Latch,
    ) -> None:
        self.state = state
        self.memo = memo
        self.allocator = allocator
        self.inner = inner
        self.job = job
        self.missing = missing
        self.claim = claim
        self.latch = latch
        self.lease: object = None
        self.data: list[Any] = _NO_DATA
        self.dups: list[bool] | None = None
        self.written: dict[int, str] | None = None  # the texts written; None: not yet

    def start(self) -> None:
        self.state.jobs += 1
        try:
            if not self.allocator.exclusive:
                self.lease = self.allocator.hold(self.job.key, self.missing)
            request, count = self.job.request, len(self.missing)
            self.inner._cs_submit_then(
                request if request.n == count else with_n(request, count), self
            )
        except BaseException as exc:
            self._fail(exc)

    def __call__(self, outcome: Any) -> None:
        """The model's outcome, then (once the samples are written) the write's result."""
        if self.written is None:
            self._on_model(outcome)
        else:
            self._on_written(outcome)

    def _on_model(self, outcome: Outcome) -> None:
        job = self.job
        missing = self.missing
        try:
            if isinstance(outcome, BaseException):
                if isinstance(outcome, (ModelContractError, ModelTimeoutError)) and (
                    "key=" not in str(outcome)
                ):
                    raise type(outcome)(f"{outcome} [key={job.key[:12]}]") from None
                raise outcome
            data = outcome.data
            if len(data) != len(missing):
                raise ModelContractError(
                    f"the model returned {len(data)} samples for "
                    f"({describe(job.request, job.key)}) that asked for n={len(missing)}"
                )
            try:
                if len(missing) == 1:
                    written = {missing[0]: encode_sample(data[0])}
                else:
                    written = {
                        index: encode_sample(value)
                        for index, value in zip(missing, data, strict=True)
                    }
            except UnstorableSampleError as exc:
                raise UnstorableSampleError(f"{exc} ({describe(job.request, job.key)})") from None
            self.data = data
            self.dups = outcome.duplicated
            self.written = written
            write = _new_tuple(SampleWrite, (job.key, job.content, written))
            self.state.writes.submit_then(write, self)
        except BaseException as exc:
            self._fail(exc)

    def _on_written(self, result: WriteResult | BaseException) -> None:
        key = self.job.key
        served = self.job.served
        try:
            if isinstance(result, BaseException):
                raise result
            dups = self.dups
            stored_at = result.stored
            written = self.written
            assert written is not None
            values = self.claim.values
            put = self.memo.put
            for j, index in enumerate(self.missing):
                stored = stored_at[index]
                # Another process may have stored this index first: serve what is
                # stored (ours was appended), so every reader sees one order.
                value = self.data[j] if stored == written[index] else decoded(stored, key, index)
                put(key, index, stored)
                if values is not None:  # someone waits for this claim
                    values[index] = stored
                served[index] = (value, False, bool(dups[j]) if dups is not None else False)
        except BaseException as exc:
            self._fail(exc)
            return
        self._end()

    def _fail(self, exc: BaseException) -> None:
        if self.job.error is None:
            self.job.error = exc
        self._end()

    def _end(self) -> None:
        if self.lease is not None:
            self.allocator.drop(self.lease)
        self.state.coord.release(self.job.key, self.missing, self.claim)
        self.claim.finish()
        self.state.job_done()
        self.latch.done_one()
