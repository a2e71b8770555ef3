"""Task ownership: every task a stage starts is tracked and awaited on close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

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
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
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
    """

    def __init__(self, run: Callable[[list[_In]], Awaitable[list[_Out]]], tasks: TaskOwner) -> None:
        self._run = run
        self._tasks = tasks
        self._items: list[_In] = []
        self._futures: list[asyncio.Future[_Out]] = []
        self._scheduled = False
        self._busy = False

    def submit(self, item: _In) -> asyncio.Future[_Out]:
        """Queue ``item`` for the next bulk call; the future holds its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Out] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if not self._scheduled and not self._busy:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        if self._busy or not self._items:
            return
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        self._busy = True
        self._tasks.spawn(self._deliver(items, futures))

    async def _deliver(self, items: list[_In], futures: list[asyncio.Future[_Out]]) -> None:
        try:
            results = await self._run(items)
        except BaseException as exc:
            for future in futures:
                if not future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()
                    else:
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for future, result in zip(futures, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._busy = False
            if self._items:
                self._flush()
