"""Use cachesaver from synchronous code: one event loop, run by the threads that call it.

cachesaver is async inside. `BackgroundLoop` owns one event loop and runs coroutines on
it from any thread, so the same objects serve many calls, from plain scripts, from
threads, and from Jupyter (whose own loop is already running). The sync drop-in clients
(`cachesaver.models.openai.OpenAI`, `cachesaver.models.together.Together`) are built on
it. A pipeline from sync code::

    from cachesaver import OnlineAPI, Request
    from cachesaver.sync import BackgroundLoop

    with BackgroundLoop() as loop:
        pipeline = loop.call(OnlineAPI, model, cache="caches/exp1")
        response = loop.call(pipeline.request, Request("2+2?", n=3))
        loop.call(pipeline.aclose)

Everything a loop serves must be created and closed on it (``loop.call(OnlineAPI, ...)``,
``loop.call(pipeline.aclose)``). ``close()`` (or leaving ``with``) waits for the calls in
flight, then cancels what is left on the loop and closes it; a loop never closed is
closed when the interpreter exits.

Who runs the loop: a call made while no other call is in flight runs the loop in the
calling thread until its own work is done (no thread hand-off, so a cache hit from sync
code costs little more than from async code). A call made while another thread runs the
loop is handed to that thread's loop and waits; when the running thread's own call ends,
it hands the loop to a waiting caller, which runs it from then on. Between calls nothing
runs: work a call leaves behind (a stream not read to its end) goes on at the next call.
A thread that already runs another event loop (Jupyter, or async code calling a sync
client) cannot run this one as well; its calls are driven by a helper thread. In the main
thread, Ctrl-C during a call cancels that call's work on the loop and raises
``KeyboardInterrupt``; other threads' calls go on.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import importlib
import logging
import signal
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from types import FrameType, TracebackType
from typing import Any

from cachesaver._loop_call import Call, end_leftovers
from cachesaver.errors import PipelineClosedError

logger = logging.getLogger("cachesaver")

__all__ = ["BackgroundLoop"]

# The C functions under `signal` (which wraps every value in an enum, 10x the cost):
# a call from the main thread swaps the Ctrl-C handler twice.
try:
    _signals: Any = importlib.import_module("_signal")
except ImportError:  # pragma: no cover - another Python implementation
    _signals = signal
_SIGINT = int(signal.SIGINT)

_CHECK_EVERY = 1.0  # seconds: how often a waiting caller checks that the loop is served
_CLOSE_WAIT = 30.0  # seconds close() waits for the calls in flight
_FINAL_WAIT = 30.0  # seconds the cancelled leftovers and the executor get to end
_AT_EXIT_WAIT = 2.0  # seconds an exiting interpreter waits for calls still in flight


class BackgroundLoop:
    """An event loop for sync code; ``call`` runs work on it and returns the result."""

    def __init__(self, name: str = "cachesaver-loop") -> None:
        self._name = name
        self._loop = asyncio.new_event_loop()
        self._mutex = threading.Lock()
        self._runner: int | None = None  # the thread running the loop now, if any
        self._waiting: dict[Call, None] = {}  # calls whose callers wait, in order
        self._closed = False
        self._finished = False  # the loop itself is closed
        self._idle: threading.Event | None = None  # set when a closed loop is finished
        self._helper: ThreadPoolExecutor | None = None
        _open.add(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` on the loop; await its result if awaitable.

        Returns the result (or raises its exception) in the calling thread. Calling it
        from a coroutine running on this loop is an error (it would wait for itself).
        """
        running = asyncio._get_running_loop()
        if running is self._loop:
            raise RuntimeError(
                "BackgroundLoop.call was called from the loop's own thread; await the "
                "coroutine instead"
            )
        call = Call(self, func, args, kwargs)
        if running is not None:  # this thread runs another loop: a helper drives the call
            self._drive_elsewhere(call)
        else:
            self._drive(call)
        outcome = call.outcome
        assert outcome is not None
        if outcome[0]:
            return outcome[1]
        raise outcome[1]

    # -- who runs the loop ------------------------------------------------------------

    def _drive(self, call: Call) -> None:
        """Run the loop for ``call`` if nobody does, or wait for the thread that does."""
        me = threading.get_ident()
        with self._mutex:
            if self._closed:
                raise PipelineClosedError("this BackgroundLoop is closed; create a new one")
            if self._runner is None:
                self._runner = me
                call.drives = True
            else:
                call.signal = threading.Lock()
                call.signal.acquire()
                call.scheduled = True
                self._waiting[call] = None
                self._loop.call_soon_threadsafe(call.start, self._loop)
        if call.drives:
            self._run_for(call)
            return
        try:
            self._wait(call, me)
        except BaseException:  # interrupted (KeyboardInterrupt): the call is cancelled
            self._abandon(call)
            raise

    def _abandon(self, call: Call) -> None:
        """A waiting caller gives up: its work is cancelled, the loop handed on."""
        with self._mutex:
            self._waiting.pop(call, None)
            if call.outcome is None and not self._finished:
                with contextlib.suppress(RuntimeError):  # the loop is closed already
                    self._loop.call_soon_threadsafe(call.cancel)
            # It may have been handed the loop: pass it on (or close the loop).
            last_out = self._runner is None and self._idle_and_closed()
        if last_out:
            self._finish_loop()

    def _wait(self, call: Call, me: int) -> None:
        signal_ = call.signal
        assert signal_ is not None
        while True:
            woken = signal_.acquire(timeout=_CHECK_EVERY)
            with self._mutex:
                if woken:
                    call.signalled = False
                if call.outcome is not None:
                    return
                if self._finished:
                    raise PipelineClosedError(
                        "the BackgroundLoop was closed before this call ended; create a new one"
                    )
                if self._runner is not None:
                    continue  # another thread runs the loop, this call included
                # Handed the loop (or nobody runs it): this thread runs it from now on.
                self._runner = me
                call.drives = True
                self._waiting.pop(call, None)
            self._run_for(call)
            return

    def _run_for(self, call: Call) -> None:
        """Run the loop in this thread (it holds the runner's place) until ``call`` ends."""
        loop = self._loop
        interrupted: list[bool] = []
        restore = self._trap_interrupt(call, interrupted)
        try:
            if not call.scheduled:
                call.start(loop)
            while call.outcome is None:
                loop.run_forever()  # stopped by the call's end (see _finish)
        except BaseException:
            if call.outcome is None:
                call.cancel()  # the loop stopped under it; the task ends at the next run
            raise
        finally:
            if restore is not None:
                _signals.signal(_SIGINT, restore)
            call.drives = False  # its end (if still to come) must not stop another run
            self._leave()
        if interrupted:
            raise KeyboardInterrupt

    def _trap_interrupt(self, call: Call, interrupted: list[bool]) -> Any:
        """In the main thread, make Ctrl-C cancel ``call`` instead of raising mid-loop.

        A ``KeyboardInterrupt`` raised inside the loop could land in another thread's
        call; the first Ctrl-C cancels this call instead (a second one raises at once).
        Returns the handler to put back, or None when nothing was changed.
        """
        if threading.current_thread() is not threading.main_thread():
            return None
        if _signals.getsignal(_SIGINT) is not signal.default_int_handler:
            return None  # the program handles Ctrl-C itself

        def on_interrupt(signum: int, frame: FrameType | None) -> None:
            if interrupted or call.outcome is not None:
                raise KeyboardInterrupt
            interrupted.append(True)
            self._loop.call_soon_threadsafe(call.cancel)

        return _signals.signal(_SIGINT, on_interrupt)

    def _finish(self, call: Call, outcome: tuple[bool, Any]) -> None:
        """Record ``call``'s end (on the loop) and tell its caller."""
        with self._mutex:
            if call.outcome is not None:
                return
            call.outcome = outcome
            self._waiting.pop(call, None)
            if call.drives:
                self._loop.stop()  # the thread running the loop for this call returns
            elif call.signal is not None and not call.signalled:
                call.signalled = True
                call.signal.release()

    def _leave(self) -> None:
        """Give up the runner's place: hand the loop to a waiting caller, or finish it."""
        with self._mutex:
            self._runner = None
            last_out = self._idle_and_closed()
        if last_out:
            self._finish_loop()

    def _idle_and_closed(self) -> bool:
        """Nobody runs the loop (the mutex is held): wake a waiting caller to run it, or,
        with none left on a closed loop, take the runner's place to close it."""
        if self._hand_over() or not self._closed or self._finished:
            return False
        self._runner = threading.get_ident()  # the last one out closes the loop
        return True

    def _hand_over(self) -> bool:
        """Wake the first waiting caller to run the loop (the mutex is held)."""
        for waiting in self._waiting:
            if not waiting.signalled and waiting.signal is not None:
                waiting.signalled = True
                waiting.signal.release()
            return True
        return False

    def _drive_elsewhere(self, call: Call) -> None:
        """Drive ``call`` from a helper thread (this thread runs another event loop)."""
        with self._mutex:
            if self._closed:
                raise PipelineClosedError("this BackgroundLoop is closed; create a new one")
            helper = self._helper_locked()
        done = helper.submit(self._drive, call)
        try:
            while True:
                try:
                    done.result(timeout=_CHECK_EVERY)
                    return
                except FutureTimeout:
                    continue
        except BaseException:  # interrupted: the call is cancelled on the loop
            with self._mutex:
                if call.outcome is None and not self._finished:
                    with contextlib.suppress(RuntimeError):
                        self._loop.call_soon_threadsafe(call.cancel)
            raise

    def _helper_locked(self) -> ThreadPoolExecutor:
        if self._helper is None:
            self._helper = ThreadPoolExecutor(8, thread_name_prefix=self._name)
        return self._helper

    # -- closing ------------------------------------------------------------------------

    def bind(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` as a blocking function that runs on this loop."""

        @functools.wraps(func)
        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self.call(func, *args, **kwargs)

        return blocking

    def close(self, wait: float = _CLOSE_WAIT) -> None:
        """Refuse new calls, wait (up to ``wait`` s) for the calls in flight, close the loop.

        Work left on the loop (a stream never read to its end) is cancelled. Calls still
        running after ``wait`` keep running; the last of them closes the loop as it ends.
        """
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            busy = self._runner is not None or bool(self._waiting)
            idle = self._idle = threading.Event()
            running = asyncio._get_running_loop()
            if busy:
                pass  # the last call to end closes the loop
            elif running is None:
                self._runner = threading.get_ident()
            else:  # this thread runs another loop: a helper closes this one
                self._runner = -1
                self._helper_locked().submit(self._finish_loop)
        if not busy and running is None:
            self._finish_loop()
        elif running is not self._loop:  # not from inside a call: wait for the end
            idle.wait(wait)

    def _finish_loop(self) -> None:
        """Cancel what is left, end async generators and the executor, close the loop."""
        loop = self._loop
        try:
            end_leftovers(loop, _FINAL_WAIT)
        except Exception:  # closing goes on: the loop is closed below
            logger.warning("closing a BackgroundLoop's leftovers failed", exc_info=True)
        finally:
            with self._mutex:
                self._finished = True
                self._runner = None
                idle, helper = self._idle, self._helper
            loop.close()
            _open.discard(self)
            if helper is not None:
                helper.shutdown(wait=False)
            if idle is not None:
                idle.set()

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
        return f"BackgroundLoop({'closed' if self._closed else 'open'})"


# Loops never closed are closed when the interpreter exits, so what they hold (network
# connections, Redis clients) is released and no pending task is reported as lost.
_open: weakref.WeakSet[BackgroundLoop] = weakref.WeakSet()


@atexit.register
def _close_open_loops() -> None:
    for loop in list(_open):
        with contextlib.suppress(Exception):
            loop.close(wait=_AT_EXIT_WAIT)
