"""In-process bookkeeping of the cacher: namespace positions, claims, remembered texts.

- `Run`: which index each namespace draws next, per key (one run, in memory);
- `Claim` / `Coordinator`: which indices a request of this process is reading or
  producing right now, so nobody reads or generates them twice;
- `Memo`: sample texts a pipeline has already read or written.
"""

from __future__ import annotations

import asyncio
import heapq
import sys
import weakref
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cachesaver.typedefs import Request

__all__ = ["Claim", "Coordinator", "Item", "Memo", "Run", "coordinator", "seen"]


class Item(Protocol):
    """A request to reserve indices for, with its key."""

    @property
    def request(self) -> Request: ...

    @property
    def key(self) -> str: ...


class Run:
    """Namespace positions of one run: which index each namespace draws next, per key.

    ``floors`` gives (namespace, key) a first index other than 0 (a reproduced run
    allocates new draws after every index its record used).
    """

    def __init__(self, floors: dict[tuple[str, str], int] | None = None) -> None:
        self._next: dict[str, dict[str, int]] = {}
        self._returned: dict[tuple[str, str], list[int]] = {}
        self._floors = floors or {}

    def reserve(self, namespace: str, key: str, n: int) -> list[int]:
        taken: list[int] = []
        if self._returned:
            heap = self._returned.get((namespace, key))
            if heap:
                while heap and len(taken) < n:
                    taken.append(heapq.heappop(heap))
                if not heap:
                    del self._returned[(namespace, key)]
                if len(taken) == n:
                    return taken
        positions = self._next.get(namespace)
        if positions is None:
            positions = self._next[namespace] = {}
        start = positions.get(key)
        if start is None:
            start = self._floors.get((namespace, key), 0) if self._floors else 0
        fresh = n - len(taken)
        positions[key] = start + fresh
        if not taken:
            return list(range(start, start + fresh))
        return taken + list(range(start, start + fresh))

    def reserve_all(self, items: Sequence[Item]) -> list[list[int]]:
        """`reserve` for each item's request (its namespace and n) and key, in order."""
        if self._returned or self._floors:
            return [self.reserve(i.request.namespace, i.key, i.request.n) for i in items]
        out: list[list[int]] = []
        nxt = self._next
        for item in items:  # nothing given back, no floors: the plain case
            request = item.request
            namespace, key, n = request.namespace, item.key, request.n
            positions = nxt.get(namespace)
            if positions is None:
                positions = nxt[namespace] = {}
            start = positions.get(key, 0)
            positions[key] = start + n
            out.append([start] if n == 1 else list(range(start, start + n)))
        return out

    def release(self, namespace: str, key: str, indices: Sequence[int]) -> None:
        heap = self._returned.setdefault((namespace, key), [])
        for index in indices:
            heapq.heappush(heap, index)


class Claim:
    """Indices of one key that one request is reading or producing in this process.

    Waiters see the values in two steps: after the store read (``checked``) and after
    the model call (``produced``). A value still missing once ``produced`` is set means
    the claim failed or was abandoned, and the waiter produces it itself.
    """

    __slots__ = ("_waiters", "checked", "produced", "values")

    def __init__(self) -> None:
        # Stored texts (every waiter decodes its own copy); made by the first waiter,
        # so a claim nobody waits for never fills one.
        self.values: dict[int, str] | None = None
        self.checked = False
        self.produced = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def mark_checked(self) -> None:
        self.checked = True
        self._wake()

    def finish(self) -> None:
        self.checked = self.produced = True
        self._wake()

    async def wait(self, produced: bool) -> None:
        while not (self.produced if produced else self.checked):
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter


def seen(future: asyncio.Future[Any]) -> None:
    """Mark a background store call's error as seen (it has no caller to raise to)."""
    if not future.cancelled():
        future.exception()


class Memo:
    """Sample texts a pipeline has read or written (bounded in real bytes, oldest out).

    Stored samples never change, so a remembered text saves the store round trip for
    later hits in the same run, whatever other processes write meanwhile. It lives only
    as long as its pipeline, so a new run always sees what the store holds then (keys
    pruned meanwhile included). Texts, not decoded values, are kept, so no caller can
    see another caller's mutations.

    ``max_bytes`` bounds the memory the memo really holds: each entry is charged the
    size of its text object plus `ENTRY_BYTES` for its key string, slot tuple, index and
    its share of the dict and queue (an upper bound: keys shared between entries are
    charged to each). Eviction pops the oldest entry from a queue: O(1) at any size.
    """

    ENTRY_BYTES = 400

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._texts: dict[tuple[str, int], str] = {}
        self._order: deque[tuple[str, int]] = deque()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        """The bytes charged for the entries held now (never more than ``max_bytes``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._texts)

    def get(self, key: str, indices: Sequence[int]) -> dict[int, str] | None:
        """Return the remembered texts among ``indices``, or None if there is none."""
        texts = self._texts
        if not texts:
            return None
        found: dict[int, str] | None = None
        for index in indices:
            text = texts.get((key, index))
            if text is not None:
                if found is None:
                    found = {}
                found[index] = text
        return found

    def put(self, key: str, index: int, text: str) -> None:
        slot = (key, index)
        texts = self._texts
        if slot in texts:
            return
        cost = sys.getsizeof(text) + self.ENTRY_BYTES
        if cost > self.max_bytes:
            return
        texts[slot] = text
        self._order.append(slot)
        self._bytes += cost
        while self._bytes > self.max_bytes:
            oldest = texts.pop(self._order.popleft())
            self._bytes -= sys.getsizeof(oldest) + self.ENTRY_BYTES


class Coordinator:
    """The claims of every key of one store, shared by all pipelines of this loop."""

    def __init__(self) -> None:
        self.claims: dict[str, dict[int, Claim]] = {}

    def release(self, key: str, indices: Sequence[int], claim: Claim) -> None:
        owned = self.claims.get(key)
        if owned is None:
            return
        for index in indices:
            if owned.get(index) is claim:
                del owned[index]
        if not owned:
            del self.claims[key]


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Coordinator]] = (
    weakref.WeakKeyDictionary()
)


def coordinator(location: str) -> Coordinator:
    loop = asyncio.get_running_loop()
    per_loop = _per_loop.get(loop)
    if per_loop is None:
        per_loop = _per_loop[loop] = {}
    found = per_loop.get(location)
    if found is None:
        found = per_loop[location] = Coordinator()
    return found
