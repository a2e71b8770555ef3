"""The batching stage: requests are collected into batches by size and timeout.

``batch_size`` bounds the samples in one batch (the sum of ``n``). By default a request
is never split (an API takes any ``n``): a request with ``n > batch_size`` goes alone.
With ``split=True`` (`LocalAPI`: the batch size is a hardware limit) such a request is
sent as several requests of at most ``batch_size`` samples, in separate model calls,
and its samples come back in order. A batch is sent when it is full
or ``timeout`` seconds after its first request arrived (monotonic clock, so no
configuration makes a request wait forever). Batches run concurrently: a slow batch does
not hold back the next one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import overload

from cachesaver._models import Outcome
from cachesaver._stage import Stage
from cachesaver.errors import ModelContractError
from cachesaver.typedefs import Batch, Request, Response, with_n

__all__ = ["AsyncBatcher"]


_Sink = asyncio.Future[Outcome] | Callable[[Outcome], None]


@dataclass(eq=False)
class _Pending:
    requests: list[Request] = field(default_factory=list)
    sinks: list[_Sink] = field(default_factory=list)
    samples: int = 0
    timer: asyncio.Handle | None = None


class AsyncBatcher(Stage):
    """Collect requests into batches of at most ``batch_size`` samples."""

    def __init__(
        self, model: object, batch_size: float = 16, timeout: float = 0.05, split: bool = False
    ) -> None:
        super().__init__(model)
        if isinstance(batch_size, bool) or not (
            (isinstance(batch_size, int) and batch_size >= 1) or batch_size == math.inf
        ):
            raise ValueError(
                f"batch_size must be a positive int (samples per batch), got {batch_size!r}"
            )
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout < 0
        ):
            raise ValueError(
                f"timeout must be a finite number of seconds >= 0, got {timeout!r}; "
                "it bounds how long a request waits for its batch to fill"
            )
        self.batch_size = batch_size
        self.timeout = float(timeout)
        self.split = bool(split)
        self._pending = _Pending()
        self._closing = False

    def _new_loop(self) -> None:
        self._pending = _Pending()

    def _busy(self) -> bool:
        return bool(self._pending.requests or self._tasks)

    async def request(self, request: Request) -> Response:
        self._enter()
        outcome = await self._enqueue(request)
        if isinstance(outcome, BaseException):
            raise outcome
        self._tally(outcome)
        return outcome

    async def _cs_batch_each(self, batch: Batch) -> list[Outcome]:
        self._enter()
        futures = [self._enqueue(request) for request in batch.requests]
        outcomes: list[Outcome] = list(await asyncio.gather(*futures))
        for outcome in outcomes:
            if isinstance(outcome, Response):
                self._tally(outcome)
        return outcomes

    def _cs_submit(self, request: Request) -> asyncio.Future[Outcome]:
        self._enter()
        return self._enqueue(request)

    def _cs_submit_then(self, request: Request, callback: Callable[[Outcome], None]) -> None:
        self._enter()
        self._enqueue(request, callback)

    @overload
    def _enqueue(self, request: Request) -> asyncio.Future[Outcome]: ...

    @overload
    def _enqueue(self, request: Request, sink: Callable[[Outcome], None]) -> None: ...

    def _enqueue(
        self, request: Request, sink: Callable[[Outcome], None] | None = None
    ) -> asyncio.Future[Outcome] | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] | None = None
        if sink is None:
            future = loop.create_future()
        target: _Sink = future if future is not None else sink  # type: ignore[assignment]
        n = request.n
        if n > self.batch_size:
            if self.split:
                self._enqueue_parts(request, target)
            else:
                self._dispatch(_Pending([request], [target], n))
            return future
        pending = self._pending
        if pending.requests and pending.samples + n > self.batch_size:
            self._flush()
            pending = self._pending
        pending.requests.append(request)
        pending.sinks.append(target)
        pending.samples += n
        if pending.samples >= self.batch_size or self._closing:
            self._flush()
        elif pending.timer is None:
            if self.timeout == 0:
                pending.timer = loop.call_soon(self._flush_if, pending)
            else:
                pending.timer = loop.call_later(self.timeout, self._flush_if, pending)
        return future

    def _enqueue_parts(self, request: Request, sink: _Sink) -> None:
        """Send ``request`` as parts of at most ``batch_size`` samples, joined in order."""
        size = int(self.batch_size)
        counts = [size] * (request.n // size)
        if request.n % size:
            counts.append(request.n % size)
        joiner = _Joiner(len(counts), sink)
        for position, count in enumerate(counts):
            self._enqueue(with_n(request, count), joiner.part(position))

    def _flush_if(self, pending: _Pending) -> None:
        if pending is self._pending:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, _Pending()
        if pending.timer is not None:
            pending.timer.cancel()
        if pending.requests:
            self._dispatch(pending)

    def _dispatch(self, pending: _Pending) -> None:
        self._batches += 1
        self._tasks.spawn(self._send(pending))

    async def _send(self, pending: _Pending) -> None:
        # A caller awaiting a future may have gone (cancelled): its request is not sent.
        live = [
            i
            for i, sink in enumerate(pending.sinks)
            if not (isinstance(sink, asyncio.Future) and sink.done())
        ]
        if not live:
            return
        requests = [pending.requests[i] for i in live]
        try:
            outcomes: list[Outcome] = await self._inner._cs_batch_each(Batch(requests))
            if len(outcomes) != len(requests):
                raise ModelContractError(
                    f"the layer below returned {len(outcomes)} outcomes for a batch of "
                    f"{len(requests)}; it must return one per request"
                )
        except BaseException as exc:
            outcomes = [exc] * len(live)
            if not isinstance(exc, Exception):
                for i in live:
                    _deliver(pending.sinks[i], exc)
                raise
        for i, outcome in zip(live, outcomes, strict=True):
            _deliver(pending.sinks[i], outcome)

    def _cs_closing(self) -> None:
        self._closing = True
        if self._loop is not None and self._pending.requests:
            self._flush()
        self._inner._cs_closing()


class _Joiner:
    """Joins the outcomes of a split request's parts into one, in order."""

    def __init__(self, parts: int, sink: _Sink) -> None:
        self.outcomes: list[Outcome | None] = [None] * parts
        self.left = parts
        self.sink = sink

    def part(self, position: int) -> Callable[[Outcome], None]:
        def done(outcome: Outcome) -> None:
            self.outcomes[position] = outcome
            self.left -= 1
            if self.left == 0:
                _deliver(self.sink, self._joined())

        return done

    def _joined(self) -> Outcome:
        responses: list[Response] = []
        for outcome in self.outcomes:
            if not isinstance(outcome, Response):
                assert outcome is not None
                return outcome
            responses.append(outcome)
        cached = [r.cached for r in responses]
        duplicated = [r.duplicated for r in responses]
        return Response(
            data=[value for r in responses for value in r.data],
            cached=None if None in cached else [f for flags in cached if flags for f in flags],
            duplicated=(
                None if None in duplicated else [f for flags in duplicated if flags for f in flags]
            ),
        )


def _deliver(sink: _Sink, outcome: Outcome) -> None:
    if not isinstance(sink, asyncio.Future):
        sink(outcome)  # callbacks of our own stages never raise
    elif not sink.done():
        sink.set_result(outcome)
