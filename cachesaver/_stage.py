"""What every stage shares: wrapping the next layer, closing, counting, loop binding."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from cachesaver._models import Layer, Outcome, Stats, as_layer, first_error, then
from cachesaver._tasks import TaskOwner
from cachesaver.errors import PipelineClosedError, PipelineLoopError
from cachesaver.typedefs import Batch, Request, Response

__all__ = ["Stage"]

_S = TypeVar("_S", bound="Stage")


class Stage:
    """A layer that holds the next layer and is itself a model (``request``/``batch_request``).

    Stages compose in any order; a pipeline is a chain of them ending in the user's model.
    ``aclose()`` closes the stages below it but never the user's model or anything else
    the user passed in.
    """

    _cs_stage = True

    def __init__(self, model: object) -> None:
        self._inner: Layer = as_layer(model)
        self._tasks = TaskOwner()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requests = 0
        self._samples = 0
        self._cached = 0
        self._duplicated = 0
        self._batches = 0

    # -- identity and composition --------------------------------------------------------

    @property
    def identity(self) -> Any:
        """The identity of the model at the end of the chain (part of every key)."""
        return self._inner.identity

    @property
    def _cs_dedup(self) -> bool:
        return self._inner._cs_dedup

    # -- lifecycle -----------------------------------------------------------------------

    def _enter(self) -> None:
        """Check the stage is open and bind per-loop state to the running loop."""
        if self._closed:
            raise PipelineClosedError(
                f"{type(self).__name__} is closed; create a new pipeline to send more requests"
            )
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._check_loop(loop)
            self._loop = loop
            self._new_loop()

    def _check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Refuse ``loop`` while the stage is active in another loop (one loop at a time).

        A loop that is closed, or stopped with nothing in flight here, has let go of the
        stage: consecutive ``asyncio.run()`` calls reuse one pipeline.
        """
        old = self._loop
        if old is None or old is loop or old.is_closed():
            return
        if old.is_running() or self._busy():
            raise PipelineLoopError(
                f"{type(self).__name__} is active in another event loop (another thread or "
                "asyncio.run that has not finished); a pipeline serves one event loop at a "
                "time: create one pipeline per thread, or use it from the other loop"
            )

    def _busy(self) -> bool:
        """Whether work of this stage is still in flight (in its loop)."""
        return bool(self._tasks)

    def _new_loop(self) -> None:
        """Reset state that belongs to one event loop (a new ``asyncio.run``)."""

    def _cs_closing(self) -> None:
        """The pipeline is closing: send waiting work now and stop delaying new work."""
        self._inner._cs_closing()

    async def _drain(self) -> None:
        """Wait for this stage's own in-flight work (its tasks are awaited after)."""

    async def aclose(self) -> None:
        """Send what is waiting, wait for what is in flight, then close the stages below."""
        if self._closed:
            return
        running = asyncio.get_running_loop()
        if self._loop is not running:
            self._check_loop(running)
        self._closed = True
        self._cs_closing()
        if self._loop is not None and self._loop is running:
            await self._drain()
            await self._tasks.wait()
        await self._inner.aclose()

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- requests ------------------------------------------------------------------------

    async def request(self, request: Request) -> Response:
        """Return the response to one request."""
        outcome = (await self._cs_batch_each(Batch([request])))[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def batch_request(self, batch: Batch) -> list[Response]:
        """Return one response per request of ``batch``, in order.

        If any request fails, its error is raised (the first in batch order).
        """
        outcomes = await self._cs_batch_each(batch)
        error = first_error(outcomes)
        if error is not None:
            raise error
        return outcomes  # type: ignore[return-value]

    async def _cs_batch_each(self, batch: Batch) -> list[Outcome]:
        raise NotImplementedError

    def _cs_submit(self, request: Request) -> asyncio.Future[Outcome]:
        """Start one request without awaiting it; the future holds its outcome."""
        return self._tasks.spawn(self._first(request))

    async def _first(self, request: Request) -> Outcome:
        return (await self._cs_batch_each(Batch([request])))[0]

    def _cs_submit_then(self, request: Request, callback: Callable[[Outcome], None]) -> None:
        """Start one request; ``callback`` gets its outcome (it must not raise)."""
        then(self._cs_submit(request), callback)

    # -- statistics ----------------------------------------------------------------------

    def _tally(self, response: Response) -> None:
        self._requests += 1
        self._samples += len(response.data)
        if response.cached is not None:
            self._cached += sum(response.cached)
        if response.duplicated is not None:
            self._duplicated += sum(response.duplicated)

    def _cs_stats(self) -> Stats:
        inner = self._inner._cs_stats()
        return Stats(
            requests=self._requests,
            samples=self._samples,
            cached=self._cached,
            duplicated=self._duplicated,
            generated=inner.generated,
            model_calls=inner.model_calls,
            batches=self._batches + inner.batches,
        )

    def stats(self) -> Stats:
        """Return the counters of this stage and the layers below it (a frozen value)."""
        return self._cs_stats()
