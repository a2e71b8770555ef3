"""BackgroundLoop: who runs the loop, hand-overs between threads, Ctrl-C, closing."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from cachesaver import PipelineClosedError
from cachesaver import sync as sync_module
from cachesaver.sync import BackgroundLoop

WAIT = 10.0  # seconds: a bound for every wait of these tests


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handler, even where the test runner was started with SIGINT
    ignored (a background job of a non-interactive shell)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _thread(target: Any, results: dict[str, Any], name: str) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = target()
        except BaseException as exc:
            results[name] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def test_a_call_with_no_other_call_in_flight_runs_in_the_calling_thread() -> None:
    """A lone caller runs the loop itself: its work runs in its own thread, no hand-off."""

    async def where() -> int:
        await asyncio.sleep(0)
        return threading.get_ident()

    with BackgroundLoop() as loop:
        assert loop.call(where) == threading.get_ident()
        results: dict[str, Any] = {}
        other = _thread(lambda: loop.call(where), results, "other")
        other.join(WAIT)
        assert results["other"] == other.ident


def test_a_caller_whose_call_ends_hands_the_loop_to_a_waiting_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the thread running the loop is done, a waiting caller's call still ends."""
    monkeypatch.setattr(sync_module, "_CHECK_EVERY", 600.0)  # only the hand-over can help
    first_running, second_running = threading.Event(), threading.Event()
    results: dict[str, Any] = {}
    with BackgroundLoop() as loop:
        go = loop.call(asyncio.Event)

        async def first() -> str:
            first_running.set()
            await go.wait()
            return "first"

        async def second() -> str:
            second_running.set()
            await go.wait()
            for _ in range(20):  # work left after the first caller's call has ended
                await asyncio.sleep(0.001)
            return "second"

        one = _thread(lambda: loop.call(first), results, "first")
        assert first_running.wait(WAIT)
        two = _thread(lambda: loop.call(second), results, "second")
        assert second_running.wait(WAIT)
        loop.call(go.set)
        one.join(WAIT)
        two.join(WAIT)
    assert results == {"first": "first", "second": "second"}


def test_many_threads_calling_at_once_all_get_their_own_results() -> None:
    """Eight threads, each making many calls that overlap: every call returns its own value."""
    results: dict[str, Any] = {}

    async def echo(value: int) -> int:
        for _ in range(value % 3):
            await asyncio.sleep(0)
        return value

    with BackgroundLoop() as loop:

        def many(offset: int) -> list[int]:
            return [loop.call(echo, offset + i) for i in range(300)]

        threads = [_thread(lambda o=o: many(o * 1000), results, f"t{o}") for o in range(8)]
        for thread in threads:
            thread.join(WAIT * 3)
    assert results == {f"t{o}": [o * 1000 + i for i in range(300)] for o in range(8)}


def test_ctrl_c_in_the_thread_running_the_loop_cancels_only_its_own_call(ctrl_c: None) -> None:
    """Ctrl-C cancels the main thread's call; another thread's call on the loop goes on."""
    assert threading.current_thread() is threading.main_thread()
    cancelled = threading.Event()
    main_running = threading.Event()
    results: dict[str, Any] = {}
    with BackgroundLoop() as loop:
        other_started = loop.call(asyncio.Event)

        async def interrupted() -> None:
            main_running.set()
            await other_started.wait()
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async def other() -> str:
            other_started.set()
            for _ in range(50):
                await asyncio.sleep(0.001)
            return "other finished"

        def start_other() -> None:
            assert main_running.wait(WAIT)
            results["other"] = loop.call(other)

        starter = threading.Thread(target=start_other, daemon=True)
        starter.start()
        with pytest.raises(KeyboardInterrupt):
            loop.call(interrupted)
        assert cancelled.is_set()
        starter.join(WAIT)
        assert results == {"other": "other finished"}
        assert loop.call(asyncio.sleep, 0, "still serving") == "still serving"


def test_close_from_another_thread_waits_for_the_call_in_flight() -> None:
    """close() refuses new calls at once and returns when the call in flight has ended."""
    release, running = threading.Event(), threading.Event()
    results: dict[str, Any] = {}
    loop = BackgroundLoop()

    async def slow() -> str:
        running.set()
        await asyncio.to_thread(release.wait, WAIT)
        return "done"

    caller = _thread(lambda: loop.call(slow), results, "caller")
    assert running.wait(WAIT)
    closer = _thread(loop.close, results, "closer")
    while not loop.closed:  # close() marks the loop closed before it waits
        closer.join(0.01)
    with pytest.raises(PipelineClosedError, match="closed"):
        loop.call(asyncio.sleep, 0)
    assert closer.is_alive()  # still waiting for the call in flight
    release.set()
    caller.join(WAIT)
    closer.join(WAIT)
    assert results == {"caller": "done", "closer": None}


def test_closing_cancels_leftover_work_and_ends_async_generators() -> None:
    """Work a call left on the loop is cancelled at close, async generators are finalized."""
    ended: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ended.append("task cancelled")
            raise

    async def numbers() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            ended.append("generator closed")

    leftovers: list[Any] = []

    async def leave_work() -> int:
        leftovers.append(asyncio.ensure_future(forever()))
        await asyncio.sleep(0)  # the task starts waiting
        generator = numbers()
        leftovers.append(generator)
        return await generator.__anext__()

    with BackgroundLoop() as loop:
        assert loop.call(leave_work) == 1
    assert sorted(ended) == ["generator closed", "task cancelled"]


def test_close_from_inside_a_call_closes_the_loop_when_the_call_ends() -> None:
    """A call that closes its own loop does not wait for itself; the loop closes after it."""
    ended = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    left: list[asyncio.Future[None]] = []

    async def close_inside(loop: BackgroundLoop) -> str:
        left.append(asyncio.ensure_future(forever()))
        await asyncio.sleep(0)
        loop.close()
        return "returned"

    loop = BackgroundLoop()
    assert loop.call(close_inside, loop) == "returned"
    assert ended.is_set() and loop.closed
    with pytest.raises(PipelineClosedError):
        loop.call(asyncio.sleep, 0)


async def test_a_thread_running_its_own_loop_is_served_by_a_helper_thread() -> None:
    """From async code (as in Jupyter) calls run on a helper thread; close() still cleans up."""
    ended = threading.Event()

    async def where() -> int:
        await asyncio.sleep(0)
        return threading.get_ident()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    left: list[asyncio.Future[None]] = []

    async def start() -> None:
        left.append(asyncio.ensure_future(forever()))
        await asyncio.sleep(0)  # the task starts waiting

    loop = BackgroundLoop()
    assert loop.call(where) != threading.get_ident()
    loop.call(start)
    loop.close()
    assert ended.is_set()
    with pytest.raises(PipelineClosedError):
        loop.call(where)


def test_a_loop_never_closed_is_cleaned_up_when_the_interpreter_exits(tmp_path: Any) -> None:
    """A script that never closes its loop exits cleanly, its leftover work cancelled."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio
            from cachesaver.sync import BackgroundLoop

            async def forever():
                try:
                    await asyncio.Event().wait()
                finally:
                    print("cleaned up", flush=True)

            async def start():
                asyncio.ensure_future(forever())
                await asyncio.sleep(0)
                return "started"

            loop = BackgroundLoop()
            print(loop.call(start), flush=True)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["started", "cleaned", "up"]
    assert done.stderr == ""


def test_a_second_ctrl_c_interrupts_at_once_and_the_loop_still_serves(ctrl_c: None) -> None:
    """Two Ctrl-C in a row raise KeyboardInterrupt at once; the loop serves and closes after."""
    assert threading.current_thread() is threading.main_thread()
    main = threading.main_thread().ident or 0

    async def stubborn() -> None:
        signal.pthread_kill(main, signal.SIGINT)  # the first: cancels this call
        signal.pthread_kill(main, signal.SIGINT)  # the second: raises here and now
        await asyncio.Event().wait()

    with BackgroundLoop() as loop:
        with pytest.raises(KeyboardInterrupt):
            loop.call(stubborn)
        assert loop.call(asyncio.sleep, 0, "after") == "after"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
