"""Use cachesaver from synchronous code: one event loop on a background thread.

cachesaver is async inside. `BackgroundLoop` owns one event loop on a daemon thread and
runs coroutines on it from any thread (each call a task on the loop; anyio's blocking
portal owns the loop's life), so the same
objects serve many calls, from plain scripts, from threads, and from Jupyter (whose own
loop is already running). The sync drop-in clients (`cachesaver.models.openai.OpenAI`,
`cachesaver.models.together.Together`) are built on it. A pipeline from sync code::

    from cachesaver import OnlineAPI, Request
    from cachesaver.sync import BackgroundLoop

    with BackgroundLoop() as loop:
        pipeline = loop.call(OnlineAPI, model, cache="caches/exp1")
        response = loop.call(pipeline.request, Request("2+2?", n=3))
        loop.call(pipeline.aclose)

Everything a loop serves must be created and closed on it (``loop.call(OnlineAPI, ...)``,
``loop.call(pipeline.aclose)``). ``close()`` (or leaving ``with``) stops the loop; a
loop never closed stops with the interpreter (the thread is a daemon).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from anyio import run as anyio_run
from anyio.from_thread import BlockingPortal

from cachesaver.errors import PipelineClosedError

__all__ = ["BackgroundLoop"]

T = TypeVar("T")
_START_TIMEOUT = 30.0
_CHECK_EVERY = 1.0  # seconds: how often a waiting caller checks that the loop still runs


class _Call:
    """One `BackgroundLoop.call`: a task on the loop, a lock the calling thread waits on.

    The task hands its outcome over as soon as it has one, and then needs no done
    callback (no extra loop iteration); the callback covers a task cancelled before it
    ran or while it waited.
    """

    __slots__ = ("args", "done", "func", "kwargs", "outcome", "task")

    def __init__(self, func: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.done = threading.Lock()
        self.done.acquire()
        self.outcome: tuple[bool, Any] | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        task = self.task = loop.create_task(self._run())
        task.add_done_callback(self._ended)

    async def _run(self) -> None:
        try:
            result = self.func(*self.args, **self.kwargs)
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            raise  # the task ends cancelled; _ended reports it
        except Exception as exc:
            self._handed((False, exc))
            return
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: the loop's too
            self._finish((False, exc))
            raise
        self._handed((True, result))

    def _handed(self, outcome: tuple[bool, Any]) -> None:
        # The task ends normally: its done callback (one more loop iteration before the
        # loop sleeps again) is not needed.
        if self.task is not None:
            self.task.remove_done_callback(self._ended)
        self._finish(outcome)

    def _finish(self, outcome: tuple[bool, Any]) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self.done.release()

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self._finish((False, asyncio.CancelledError()))
        else:
            error = task.exception()  # read, so asyncio does not report it as lost
            self._finish((False, error) if error is not None else (True, None))

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


class BackgroundLoop:
    """An event loop on a daemon thread; ``call`` runs work on it and waits for it."""

    def __init__(self, name: str = "cachesaver-loop") -> None:
        self._portal: BlockingPortal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):  # pragma: no cover - a bug, said loudly
            raise RuntimeError(f"the background event loop did not start in {_START_TIMEOUT} s")
        if self._failure is not None:  # pragma: no cover
            raise RuntimeError("the background event loop failed to start") from self._failure

    def _main(self) -> None:
        try:
            anyio_run(self._serve)
        except BaseException as exc:  # pragma: no cover - reported to the constructor
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with BlockingPortal() as portal:
            self._portal = portal
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await portal.sleep_until_stopped()

    @property
    def closed(self) -> bool:
        return self._closed

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` on the loop; await its result if awaitable.

        Returns the result (or raises its exception) in the calling thread. Calling it
        from the loop's own thread is an error (it would wait for itself).
        """
        if self._closed or self._portal is None:
            raise PipelineClosedError("this BackgroundLoop is closed; create a new one")
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "BackgroundLoop.call was called from the loop's own thread; await the "
                "coroutine instead"
            )

        # The portal owns the loop's life; a call is one task on the loop and a lock the
        # caller waits on (lighter than run_coroutine_threadsafe's future and condition:
        # a call's round trip is most of what a cache hit costs from sync code).
        loop = self._loop
        assert loop is not None
        call = _Call(func, args, kwargs)
        try:
            loop.call_soon_threadsafe(call.start, loop)
            # The wait is bounded by the loop's life: a loop that stops before running the
            # call (closed from another thread at that moment) ends the wait with an error.
            while not call.done.acquire(timeout=_CHECK_EVERY):
                if not self._thread.is_alive() and not call.done.acquire(blocking=False):
                    raise PipelineClosedError(
                        "the BackgroundLoop stopped before this call ended (it was closed "
                        "from another thread); create a new one"
                    )
        except BaseException:  # interrupted (KeyboardInterrupt): the call is cancelled
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(call.cancel)
            raise
        outcome = call.outcome
        assert outcome is not None
        if outcome[0]:
            return outcome[1]
        raise outcome[1]

    def bind(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` as a blocking function that runs on this loop."""

        @functools.wraps(func)
        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self.call(func, *args, **kwargs)

        return blocking

    def close(self) -> None:
        """Stop the loop (after the calls running on it) and join its thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        portal = self._portal
        if portal is not None and threading.current_thread() is not self._thread:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                portal.call(portal.stop)
            self._thread.join(timeout=30)

    def __enter__(self) -> BackgroundLoop:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BackgroundLoop({'closed' if self._closed else 'running'})"
