"""The bulk-call queue under the cacher: a store's future is followed by a callback."""

from __future__ import annotations

import asyncio

import pytest

from cachesaver import OnlineAPI, Request, Response
from cachesaver._tasks import Coalescer, TaskOwner
from cachesaver.errors import StoreError
from cachesaver.stores import DiskStore


class FutureStore:
    """A bulk call that hands back a future the test settles (as the disk store's thread)."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.pending: list[asyncio.Future[list[int]]] = []
        self.refuse: BaseException | None = None

    def run(self, items: list[int]) -> asyncio.Future[list[int]]:
        if self.refuse is not None:
            raise self.refuse
        self.calls.append(items)
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return future


class Echo:
    async def request(self, request: Request) -> Response:
        return Response(data=[f"{request.prompt} {k}" for k in range(request.n)])


async def _one_iteration() -> None:
    await asyncio.sleep(0)


async def test_a_future_from_the_bulk_call_is_followed_without_a_task() -> None:
    """Items queued together make one call; its future's result reaches each item, no task."""
    store, owner = FutureStore(), TaskOwner()
    queue: Coalescer[int, int] = Coalescer(store.run, owner)
    tasks_before = len(asyncio.all_tasks())
    futures = [queue.submit(i) for i in range(3)]
    await _one_iteration()
    assert store.calls == [[0, 1, 2]]
    assert len(asyncio.all_tasks()) == tasks_before  # no task drives the call
    assert len(owner) == 1  # but it is owned: close waits for it
    store.pending[0].set_result([10, 11, 12])
    assert await asyncio.gather(*futures) == [10, 11, 12]
    assert len(owner) == 0


async def test_items_queued_during_a_call_go_in_the_next_one() -> None:
    """While a call runs, new items wait and are sent together when it ends."""
    store, owner = FutureStore(), TaskOwner()
    queue: Coalescer[int, int] = Coalescer(store.run, owner)
    first = queue.submit(1)
    await _one_iteration()
    later = [queue.submit(2), queue.submit(3)]
    await _one_iteration()
    assert store.calls == [[1]]
    store.pending[0].set_result([1])
    assert await first == 1
    await _one_iteration()
    assert store.calls == [[1], [2, 3]]
    store.pending[1].set_result([2, 3])
    assert await asyncio.gather(*later) == [2, 3]


async def test_an_error_reaches_every_item_and_the_queue_keeps_working() -> None:
    """A failed future, a call that raises at once, a wrong count: every item gets the error."""
    store, owner = FutureStore(), TaskOwner()
    queue: Coalescer[int, int] = Coalescer(store.run, owner)
    futures = [queue.submit(i) for i in range(2)]
    await _one_iteration()
    store.pending[0].set_exception(StoreError("disk gone"))
    for future in futures:
        with pytest.raises(StoreError, match="disk gone"):
            await future
    store.refuse = StoreError("closed")
    refused = queue.submit(5)
    with pytest.raises(StoreError, match="closed"):
        await refused
    store.refuse = None
    short = queue.submit(6), queue.submit(7)
    await _one_iteration()
    store.pending[-1].set_result([6])
    for future in short:
        with pytest.raises(StoreError, match="returned 1 results for 2 items"):
            await future
    again = queue.submit(8)
    await _one_iteration()
    store.pending[-1].set_result([8])
    assert await again == 8


async def test_closing_waits_for_a_call_in_flight() -> None:
    """TaskOwner.wait returns only once a followed future has finished."""
    store, owner = FutureStore(), TaskOwner()
    queue: Coalescer[int, int] = Coalescer(store.run, owner)
    item = queue.submit(1)
    await _one_iteration()
    waiting = asyncio.ensure_future(owner.wait())
    await _one_iteration()
    assert not waiting.done()
    store.pending[0].set_result([1])
    await asyncio.wait_for(waiting, 5)
    assert await item == 1


async def test_the_disk_store_hands_back_its_threads_future(cache_dir: str) -> None:
    """DiskStore.read/write return awaitable futures; a pipeline over it serves as before."""
    store = DiskStore(cache_dir)
    try:
        pending = store.read([])
        assert isinstance(pending, asyncio.Future)
        assert await pending == []
    finally:
        await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        store.read([])

    async with OnlineAPI(Echo(), cache=cache_dir) as api:
        fresh = await asyncio.gather(*(api.request(Request(f"q{i}", n=2)) for i in range(20)))
    async with OnlineAPI(Echo(), cache=cache_dir) as api:
        again = await asyncio.gather(*(api.request(Request(f"q{i}", n=2)) for i in range(20)))
    assert [r.data for r in again] == [r.data for r in fresh]
    assert all(r.cached == [True, True] for r in again)
