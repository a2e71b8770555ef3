"""One call of a `cachesaver.sync.BackgroundLoop`, and the end of its event loop.

`Call` is the task a sync call runs on the loop and how its caller learns the outcome;
`end_leftovers` is what closing the loop does before ``loop.close()``.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Call", "Owner", "end_leftovers"]


class Owner(Protocol):
    """The loop a call belongs to: told once, when the call ends, with its outcome."""

    def _finish(self, call: Call, outcome: tuple[bool, Any]) -> None: ...


class Call:
    """One `BackgroundLoop.call`: a task on the loop and how its caller learns the end.

    The thread that runs the loop for this call (``drives``) is stopped when the call
    ends; any other caller waits on ``signal``, which is released once, when the call
    ends or when the caller is handed the loop (``signalled`` says it was released).
    """

    __slots__ = (
        "args",
        "drives",
        "func",
        "kwargs",
        "outcome",
        "owner",
        "scheduled",
        "signal",
        "signalled",
        "task",
    )

    def __init__(self, owner: Owner, func: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self.owner = owner
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.outcome: tuple[bool, Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self.scheduled = False
        self.drives = False
        self.signal: threading.Lock | None = None
        self.signalled = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.task is None and self.outcome is None:
            task = self.task = loop.create_task(self._run())
            task.add_done_callback(self._ended)

    async def _run(self) -> None:
        try:
            result = self.func(*self.args, **self.kwargs)
            if inspect.isawaitable(result):
                result = await result
        except (asyncio.CancelledError, GeneratorExit):
            raise  # the task ends cancelled (_ended reports it), or its coroutine is closed
        except BaseException as exc:  # handed to the caller, whatever it is
            self._handed((False, exc))
            return
        self._handed((True, result))

    def _handed(self, outcome: tuple[bool, Any]) -> None:
        # The task ends normally: its done callback (one more loop iteration) is not
        # needed; it stays for a task cancelled before it ran or while it waited.
        if self.task is not None:
            self.task.remove_done_callback(self._ended)
        self.owner._finish(self, outcome)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self.owner._finish(self, (False, asyncio.CancelledError()))
        else:
            error = task.exception()  # read, so asyncio does not report it as lost
            if error is not None:
                self.owner._finish(self, (False, error))

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
        elif self.outcome is None:  # never started: it ends cancelled without running
            self.owner._finish(self, (False, asyncio.CancelledError()))


def end_leftovers(loop: asyncio.AbstractEventLoop, wait: float) -> None:
    """Run what is scheduled, cancel the tasks left (in up to three passes, since a
    cancelled task may start others), end async generators and the default executor;
    each wait is bounded by ``wait`` seconds. The loop stays open."""
    loop.run_until_complete(asyncio.sleep(0))  # callbacks already scheduled run
    for _ in range(3):
        leftovers = asyncio.all_tasks(loop)
        if not leftovers:
            break
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.wait(leftovers, timeout=wait))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), wait))
