"""Where a request's sample indices come from: one allocator per kind of run.

- `InProcessAllocator`: this pipeline is the run; namespace positions live in memory.
- `SharedAllocator`: a shared run (``run_id=``); positions and leases live in the store,
  so workers in many processes draw disjoint indices and generate each sample once.
- `ReproduceAllocator`: a recorded run (``reproduce=``, SEMANTICS rule 8); a request
  that matches a recorded one gets exactly its recorded indices, whatever the timing.

Every allocator does the same three jobs for the cacher, which never asks which one it
has: **reserve** (synchronously, in issue order: rule 2), **give back** (a failed or
cancelled request's indices go back to its namespace first: rule 5) and **lease** (which
missing indices this process may generate now; another worker generates the others, and
the cacher polls the store for them). ``hold``/``drop`` bracket one generation's leases.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from cachesaver._coordination import seen
from cachesaver._positions import Item, Run
from cachesaver._tasks import Coalescer, TaskOwner
from cachesaver.errors import CacheSaverError
from cachesaver.stores.base import LeaseRequest, Reservation, SharedStore, Unreservation
from cachesaver.typedefs import Request

__all__ = ["Allocator", "Grant", "InProcessAllocator", "Item", "SharedAllocator"]

# The indices a reservation granted, or the error that request gets instead.
Grant = list[int] | BaseException


class Allocator(Protocol):
    """What the cacher needs from an allocator (see the module docstring).

    ``exclusive`` says no other worker generates samples for this run, so every missing
    index may be generated here and `lease` need not be asked; an exclusive allocator's
    `reserve` also answers at once (a list, never an awaitable: `Server.begin` relies
    on it).
    """

    exclusive: bool

    def start_loop(self, tasks: TaskOwner) -> None:
        """Bind per-loop parts to the running loop (a new ``asyncio.run``)."""

    def reserve(self, items: Sequence[Item]) -> list[Grant] | Awaitable[list[Grant]]:
        """Grant each (request, key) its indices, in order; called before any await."""
        ...

    def give_back(self, request: Request, key: str, indices: list[int]) -> None:
        """Return a failed or cancelled request's indices (handed out again first)."""

    def lease(
        self, asks: Sequence[tuple[str, list[int]]]
    ) -> list[list[int]] | Awaitable[list[list[int]]]:
        """For each (key, missing indices), the indices this process may generate now."""
        ...

    def hold(self, key: str, indices: list[int]) -> object:
        """A generation of ``indices`` starts: keep their leases alive; return a token."""

    def drop(self, token: object) -> None:
        """The generation with ``token`` ended: release its leases."""


class InProcessAllocator:
    """This pipeline is the run: namespace positions in memory, and no other worker."""

    exclusive = True

    def __init__(self, run: Run | None = None) -> None:
        self.run = run if run is not None else Run()
        # One call less per request: the run's own method serves `reserve`.
        self.reserve = self.run.reserve_all  # type: ignore[method-assign,assignment]

    def start_loop(self, tasks: TaskOwner) -> None:
        return None

    def reserve(self, items: Sequence[Item]) -> list[Grant]:
        return self.run.reserve_all(items)  # type: ignore[return-value]

    def give_back(self, request: Request, key: str, indices: list[int]) -> None:
        self.run.release(request.namespace, key, indices)

    def lease(self, asks: Sequence[tuple[str, list[int]]]) -> list[list[int]]:
        return [missing for _, missing in asks]

    def hold(self, key: str, indices: list[int]) -> object:
        return None

    def drop(self, token: object) -> None:
        return None


class SharedAllocator:
    """A shared run in the store: reservations and leases are bulk store calls.

    Reservations are submitted synchronously in issue order and granted in that order.
    A worker generating a sample holds a lease on it, renewed every ``lease_ttl / 3``
    seconds until the generation ends; a worker that dies blocks the others no longer
    than ``lease_ttl``.
    """

    exclusive = False

    def __init__(self, store: SharedStore, run_id: str, owner: str, lease_ttl: float) -> None:
        self.store = store
        self.run_id = run_id
        self.owner = owner
        self.lease_ttl = lease_ttl
        self._tasks = TaskOwner()
        self._active: dict[int, LeaseRequest] = {}
        self._wake: asyncio.Event | None = None
        self._keeper_running = False
        self._reserves: Coalescer[Reservation, list[int]] | None = None
        self._unreserves: Coalescer[Unreservation, None] | None = None
        self._leases: Coalescer[LeaseRequest, list[int]] | None = None
        self._unleases: Coalescer[LeaseRequest, None] | None = None

    def start_loop(self, tasks: TaskOwner) -> None:
        self._tasks = tasks
        self._reserves = Coalescer(self.store.reserve, tasks)
        self._unreserves = Coalescer(self.store.unreserve, tasks)
        self._leases = Coalescer(self.store.lease, tasks)
        self._unleases = Coalescer(self.store.unlease, tasks)
        self._active = {}
        self._wake = asyncio.Event()
        self._keeper_running = False

    # -- reserve and give back -----------------------------------------------------------

    def reserve(self, items: Sequence[Item]) -> Awaitable[list[Grant]]:
        assert self._reserves is not None
        futures = [
            self._reserves.submit(
                Reservation(self.run_id, item.request.namespace, item.key, item.request.n)
            )
            for item in items
        ]  # submitted now, in issue order; granted in that order
        return self._granted(items, futures)

    async def _granted(
        self, items: Sequence[Item], futures: list[asyncio.Future[list[int]]]
    ) -> list[Grant]:
        try:
            return list(await asyncio.shield(asyncio.gather(*futures)))
        except asyncio.CancelledError:
            # The requester left: whatever is granted later goes straight back.
            for item, future in zip(items, futures, strict=True):
                future.add_done_callback(self._give_back_later(item.request, item.key))
            raise

    def _give_back_later(
        self, request: Request, key: str
    ) -> Callable[[asyncio.Future[list[int]]], None]:
        def give_back(done: asyncio.Future[list[int]]) -> None:
            if not done.cancelled() and done.exception() is None:
                self.give_back(request, key, done.result())

        return give_back

    def give_back(self, request: Request, key: str, indices: list[int]) -> None:
        # Sent with the next bulk call (an owned task that close() waits for). If the
        # store is down, the indices stay unused: a gap in this run, never a wrong sample.
        assert self._unreserves is not None
        item = Unreservation(self.run_id, request.namespace, key, indices)
        self._unreserves.submit(item).add_done_callback(seen)

    # -- leases --------------------------------------------------------------------------

    def lease(self, asks: Sequence[tuple[str, list[int]]]) -> Awaitable[list[list[int]]]:
        assert self._leases is not None
        wanted = [LeaseRequest(key, missing, self.owner, self.lease_ttl) for key, missing in asks]
        return self._leased(wanted, [self._leases.submit(asked) for asked in wanted])

    async def _leased(
        self, wanted: list[LeaseRequest], futures: list[asyncio.Future[list[int]]]
    ) -> list[list[int]]:
        try:
            return list(await asyncio.shield(asyncio.gather(*futures)))
        except BaseException:  # the requester left: leases granted later are dropped
            for asked, future in zip(wanted, futures, strict=True):
                future.add_done_callback(self._unlease_later(asked))
            raise

    def _unlease_later(self, asked: LeaseRequest) -> Callable[[asyncio.Future[list[int]]], None]:
        """A callback that drops leases granted after their requester left."""

        def unlease(done: asyncio.Future[list[int]]) -> None:
            if done.cancelled() or done.exception() is not None or not done.result():
                return
            assert self._unleases is not None
            self._unleases.submit(asked).add_done_callback(seen)

        return unlease

    def hold(self, key: str, indices: list[int]) -> object:
        token = LeaseRequest(key, indices, self.owner, self.lease_ttl)
        self._active[id(token)] = token
        if not self._keeper_running:
            self._keeper_running = True
            self._tasks.spawn(self._keep_leases())
        return token

    def drop(self, token: object) -> None:
        lease = self._active.pop(id(token), None)
        if lease is None:
            return
        assert self._unleases is not None and self._wake is not None
        self._unleases.submit(lease).add_done_callback(seen)
        if not self._active:
            self._wake.set()

    async def _keep_leases(self) -> None:
        """Renew the leases of generations in flight until none is left."""
        wake = self._wake
        assert wake is not None
        try:
            while self._active:
                wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.lease_ttl / 3)
                if self._active:
                    with contextlib.suppress(CacheSaverError):
                        await self.store.lease(list(self._active.values()))
        finally:
            self._keeper_running = False
