"""Task ownership: every task a stage starts is tracked and awaited on close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from cachesaver.errors import StoreError

__all__ = ["Coalescer", "TaskOwner"]

_T = TypeVar("_T")
_In = TypeVar("_In")
_Out = TypeVar("_Out")


class TaskOwner:
    """Starts tasks, keeps them until they finish, and waits for all on `wait`.

    A task's error belongs to whoever awaits it (a caller, through ``asyncio.shield``);
    when nobody does (the caller was cancelled) the error is marked as seen so it is not
    reported twice.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def track(self, future: asyncio.Future[Any]) -> None:
        """Keep ``future`` (work started elsewhere, such as a worker thread) like a task."""
        self._tasks.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Wait until every task started so far (and any they start) has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class Coalescer(Generic[_In, _Out]):
    """Collects items submitted while the event loop is busy into one bulk call.

    The first item of a group schedules a flush for the next loop iteration, so all
    requests started together (``asyncio.gather``) share one call; while a bulk call
    runs, new items accumulate for the next one. ``run`` returns one result per item.
    A result goes to a future (`submit`) or straight to a callback (`submit_then`, which
    saves a trip through the event loop on hot paths).
    """

    def __init__(self, run: Callable[[list[_In]], Awaitable[list[_Out]]], tasks: TaskOwner) -> None:
        self._run = run
        self._tasks = tasks
        self._items: list[_In] = []
        self._sinks: list[Any] = []  # futures, callbacks, and `_Group`s of submit_all
        self._scheduled = False
        self._busy = False

    def submit(self, item: _In) -> asyncio.Future[_Out]:
        """Queue ``item`` for the next bulk call; the future holds its result."""
        future: asyncio.Future[_Out] = asyncio.get_running_loop().create_future()
        self._queue(item, future)
        return future

    def submit_all(self, items: list[_In]) -> asyncio.Future[list[_Out]]:
        """Queue several items; one future holds all their results, in order."""
        group: asyncio.Future[list[_Out]] = asyncio.get_running_loop().create_future()
        if not items:
            group.set_result([])
            return group
        self._items += items
        self._sinks.append(_Group(group, len(items)))
        self._schedule()
        return group

    def submit_all_then(
        self, items: list[_In], callback: Callable[[list[_Out] | BaseException], None]
    ) -> None:
        """Queue several items (at least one); ``callback`` gets all their results, in
        order, or the error (it must not raise)."""
        self._items += items
        self._sinks.append(_Group(callback, len(items)))
        self._schedule()

    def submit_then(self, item: _In, callback: Callable[[_Out | BaseException], None]) -> None:
        """Queue ``item``; ``callback`` gets its result or error (it must not raise)."""
        self._queue(item, callback)

    def _queue(
        self, item: _In, sink: asyncio.Future[_Out] | Callable[[_Out | BaseException], None]
    ) -> None:
        self._items.append(item)
        self._sinks.append(sink)
        if not self._scheduled and not self._busy:
            self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self._busy:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._busy or not self._items:
            return
        items, sinks = self._items, self._sinks
        self._items, self._sinks = [], []
        self._busy = True
        try:
            pending = self._run(items)
        except BaseException as exc:
            self._finish(items, sinks, exc)
            if not isinstance(exc, Exception):
                raise
            return
        if isinstance(pending, asyncio.Future):
            # A store that hands back a future (the disk store's worker thread) is
            # followed by a callback: no task and no extra loop iteration per bulk call.
            self._tasks.track(pending)
            pending.add_done_callback(lambda done: self._finished(items, sinks, done))
        else:
            self._tasks.spawn(self._deliver(items, sinks, pending))

    def _finished(
        self,
        items: list[_In],
        sinks: list[Any],
        done: asyncio.Future[list[_Out]],
    ) -> None:
        if done.cancelled():
            self._finish(items, sinks, asyncio.CancelledError())
        else:
            error = done.exception()
            self._finish(items, sinks, done.result() if error is None else error)

    async def _deliver(
        self,
        items: list[_In],
        sinks: list[Any],
        pending: Awaitable[list[_Out]],
    ) -> None:
        try:
            results = await pending
        except BaseException as exc:
            self._finish(items, sinks, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._finish(items, sinks, results)

    def _finish(
        self,
        items: list[_In],
        sinks: list[Any],
        outcome: list[_Out] | BaseException,
    ) -> None:
        """Hand every sink its result (or the error), then send what queued meanwhile."""
        try:
            if not isinstance(outcome, BaseException) and len(outcome) != len(items):
                outcome = StoreError(
                    f"{getattr(self._run, '__qualname__', self._run)} returned {len(outcome)} "
                    f"results for {len(items)} items; a store must return one per item"
                )
            if isinstance(outcome, BaseException):
                for sink in sinks:
                    _settle(sink, outcome)
            elif len(sinks) == len(outcome):  # one sink per item (a group has one too)
                for sink, result in zip(sinks, outcome, strict=True):
                    _settle(sink, result)
            else:
                position = 0
                for sink in sinks:
                    if type(sink) is _Group:
                        end = position + sink.count
                        _settle(sink.sink, outcome[position:end])
                        position = end
                    else:
                        _settle(sink, outcome[position])
                        position += 1
        finally:
            self._busy = False
            if self._items:
                self._flush()


class _Group:
    """The sink of `submit_all` / `submit_all_then`: one sink for ``count`` items in a row."""

    __slots__ = ("count", "sink")

    def __init__(self, sink: Any, count: int) -> None:
        self.sink = sink
        self.count = count

    def __call__(self, outcome: Any) -> None:
        """An error for the whole group, or the result of a group of one item."""
        _settle(self.sink, outcome if isinstance(outcome, BaseException) else [outcome])


def _settle(sink: Any, outcome: Any) -> None:
    if not isinstance(sink, asyncio.Future):
        sink(outcome)
    elif sink.done():
        return
    elif isinstance(outcome, asyncio.CancelledError):
        sink.cancel()
    elif isinstance(outcome, BaseException):
        sink.set_exception(outcome)
    else:
        sink.set_result(outcome)
