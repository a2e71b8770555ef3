"""In-process bookkeeping of the cacher: claims and remembered texts.

(Namespace positions of an in-process run are in `_positions`.)

- `Claim` / `Coordinator`: which indices a request of this process is reading or
  producing right now, so nobody reads or generates them twice;
- `Memo`: sample texts a pipeline has already read or written.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

__all__ = ["Claim", "Coordinator", "Memo", "coordinator", "seen"]

_getsizeof = sys.getsizeof
_ENTRY_BYTES = 400  # `Memo.ENTRY_BYTES`: what an entry costs beyond its text


class Claim:
    """Indices of one key that one request is reading or producing in this process.

    Waiters see the values in two steps: after the store read (``checked``) and after
    the model call (``produced``). A value still missing once ``produced`` is set means
    the claim failed or was abandoned, and the waiter produces it itself.
    """

    __slots__ = ("_waiters", "checked", "held", "produced", "values")

    def __init__(self, held: list[int]) -> None:
        # The indices it holds, while it is its key's only claim (see `Coordinator`).
        self.held = held
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
        if self._waiters is not None:
            self._wake()

    def finish(self) -> None:
        self.checked = self.produced = True
        if self._waiters is not None:
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

    ENTRY_BYTES = _ENTRY_BYTES

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
        cost = _getsizeof(text) + _ENTRY_BYTES
        held = self._bytes + cost
        if held > self.max_bytes:
            if cost > self.max_bytes:
                return
            order = self._order
            while held > self.max_bytes:
                held -= _getsizeof(texts.pop(order.popleft())) + _ENTRY_BYTES
        texts[slot] = text
        self._order.append(slot)
        self._bytes = held


class Coordinator:
    """The claims of every key of one store, shared by all pipelines of this loop.

    ``claims[key]`` is the key's only claim (the usual case: one request at a time per
    key; the claim's ``held`` lists its indices), or, from the moment a second request
    claims indices of the same key until none of the key's indices is claimed, a dict
    of each claimed index to its claim.
    """

    def __init__(self) -> None:
        self.claims: dict[str, Claim | dict[int, Claim]] = {}

    def by_index(self, key: str, only: Claim) -> dict[int, Claim]:
        """Turn ``key``'s only claim into the by-index form (a second claim comes)."""
        owned = self.claims[key] = dict.fromkeys(only.held, only)
        return owned

    def release(self, key: str, indices: Sequence[int], claim: Claim) -> None:
        """``claim`` gives up ``indices`` of ``key`` (those it still holds)."""
        owned = self.claims.get(key)
        if owned is None:
            return
        if type(owned) is Claim:
            if owned is not claim:
                return  # it holds nothing of this key any more
            held = claim.held
            if indices is not held:
                drop = indices if len(indices) < 8 else set(indices)
                rest = [index for index in held if index not in drop]
                if rest:
                    claim.held = rest
                    return
            del self.claims[key]
            return
        assert isinstance(owned, dict)
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
