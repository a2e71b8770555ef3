"""One request being served (`Job`) and one serving round (`Round`) of `_serving.Server`.

A `Round` is the sink of a round's bulk read: it takes in what was found, starts the
generations of the missing samples and completes its future when all are done, so the
requester wakes once.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cachesaver._coordination import Claim
from cachesaver._generation import Latch, LoopState, Served
from cachesaver.typedefs import Request

if TYPE_CHECKING:
    from cachesaver._serving import Server

__all__ = ["NOTHING", "NO_JOBS", "Job", "Round"]

NOTHING: list[int] = []  # "no index left" (never mutated)
_get_loop = asyncio.get_running_loop
_Future = asyncio.Future


class Job:
    """One request being served: its indices, what it has so far, what is left."""

    __slots__ = (
        "claim",
        "content",
        "error",
        "indices",
        "key",
        "mine",
        "polling",
        "request",
        "served",
        "todo",
        "waits",
    )

    def __init__(self, request: Request, key: str, content: str) -> None:
        self.request = request
        self.key = key
        self.content = content
        self.served: dict[int, Served] = {}
        self.indices: list[int] | None = None  # what the allocator granted
        self.todo = NOTHING  # indices still to serve
        self.mine = NOTHING  # indices it reads (then: generates) under ``claim``
        self.claim: Claim | None = None
        self.waits: dict[Claim, list[int]] | None = None  # indices others produce
        self.polling = False  # todo holds indices another worker is generating
        self.error: BaseException | None = None


NO_JOBS: list[Job] = []  # "no job" (never mutated)


class Round(Latch):
    """One round's bulk read and, with an exclusive allocator, its generations.

    The read's callback takes in what was found and starts the generations at once,
    so the requester wakes once, when all are done (its ``future``); the read holds
    one count of the latch until then. With an allocator that is not exclusive the
    callback stops after the read: ``asking`` holds the jobs to lease for. If the
    requester left (cancelled) before the read came back, the claims are freed.
    """

    __slots__ = ("asking", "claimed", "server", "state")

    def __init__(self, server: Server, state: LoopState, claimed: list[Job]) -> None:
        # (Latch.__init__, inline; an asyncio Future made directly, not via create_future)
        self.future = _Future(loop=_get_loop())
        self.left = 1
        self.server = server
        self.state = state
        self.claimed = claimed
        self.asking = NO_JOBS

    def __call__(self, outcome: list[dict[int, str]] | dict[int, str] | BaseException) -> None:
        """The read's callback: one job's found texts, a list of them, or the error."""
        server, state, claimed = self.server, self.state, self.claimed
        future = self.future
        try:
            if future.done():  # the requester was cancelled: nobody will finish these
                outcome = asyncio.CancelledError()
            if isinstance(outcome, BaseException):
                for job in claimed:
                    server.abandon(state, job, outcome)
                if not isinstance(outcome, Exception):
                    _fail(future, outcome)
                    return
            else:
                if isinstance(outcome, dict):  # the read of a round of one job
                    asking = claimed if server.take_in(state, claimed[0], outcome) else NO_JOBS
                else:
                    asking = server.take_in_all(state, claimed, outcome)
                self.asking = asking
                if asking and server.allocator.exclusive:
                    server.start_generations(state, asking, None, self)
        except BaseException as exc:  # a callback must not raise: the requester gets it
            for job in claimed:
                server.abandon(state, job, exc)
            _fail(future, exc)
            return
        self.left -= 1  # the read's count (`done_one`, inline)
        if self.left == 0 and not future.done():
            future.set_result(None)


def _fail(future: asyncio.Future[None], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)
