"""Namespace positions of one in-process run: which index each namespace draws next, per key.

Recent keys live in plain dicts, one per namespace (the hot path: one lookup per
request). A run of a million keys would keep a million key strings alive that way
(about 170 bytes a key with the dict), so once the dicts hold more than
`Run.HOT_KEYS` keys, all of them move into a packed table (`Packed`): one bytearray
of 44-byte records (the key's 32-byte SHA-256 digest, the namespace's 4-byte number,
the next index as 8 bytes), in 16,384 hash buckets, about 45 bytes a key in all, plus
a 2 MB bit filter that tells most keys never packed at once. A key is in the dicts or
in the table, never both: a key drawn again is taken out of the table (`Packed.pop`)
and lives in the dicts until the next packing.

The table is exact, not probabilistic: a record holds the whole digest, and a key is
packed only when it is exactly 64 lowercase hex digits (a SHA-256 hexdigest, as every
cacher key is), so digest and key determine each other; any other key stays in the
dicts. A record is found by a byte search of its bucket for digest and namespace
number, and a match counts only at a record boundary. (The filter can only say "maybe
packed" wrongly, never "not packed": its bits are set on packing and never cleared.)
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cachesaver.typedefs import Request

__all__ = ["Item", "Packed", "Run"]

_MASK = 0x3FFF  # 16,384 buckets
_BITS = 2**24 - 1  # a filter of 16M bits (2 MB): most absent keys are told at once
_NEEDLE = 36  # digest (32 bytes) and namespace number (4 bytes)
_RECORD = _NEEDLE + 8  # then the next index, 8 bytes little-endian


class Item(Protocol):
    """A request to reserve indices for, with its key."""

    @property
    def request(self) -> Request: ...

    @property
    def key(self) -> str: ...


def digest_of(key: str) -> bytes | None:
    """The 32 bytes ``key`` spells, or None if it is not 64 lowercase hex digits."""
    if len(key) != 64:
        return None
    try:
        digest = bytes.fromhex(key)
    except ValueError:
        return None
    return digest if digest.hex() == key else None  # no upper case, no spaces


class Packed:
    """Next indices of many (namespace, key) pairs in one bytearray (see the module).

    The table holds the buckets side by side, in bucket order: bucket ``b`` has the
    room from ``starts[b]`` to ``starts[b + 1]``, of which its first ``used[b]`` bytes
    are records. The table only grows (a taken-out record leaves room its bucket
    reuses), and in place: adding records moves buckets up inside the one bytearray,
    so no old copy or freed hole is left behind for the allocator to keep.
    """

    def __init__(self) -> None:
        # All empty until the first packing (most runs never pack).
        self.table = bytearray()
        self.starts = array("q")  # where each bucket's room begins, then the table's end
        self.used = array("q")  # bytes of records in each bucket
        self.count = 0  # records held
        self.seen = bytearray()  # bit set: a record with this hash was added
        self._numbers: dict[str, bytes] = {}  # namespace -> its 4-byte number

    def __len__(self) -> int:
        return self.count

    def add(self, positions: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        """Pack every (namespace, key) of ``positions``; return those that stay unpacked."""
        if not self.starts:
            self.starts = array("q", bytes(8 * (_MASK + 2)))
            self.used = array("q", bytes(8 * (_MASK + 1)))
            self.seen = bytearray(_BITS // 8 + 1)
        numbers = self._numbers
        added = array("q", bytes(8 * (_MASK + 1)))  # bytes each bucket receives
        for namespace, keys in positions.items():
            if namespace not in numbers:
                numbers[namespace] = len(numbers).to_bytes(4, "little")
            salt = hash(namespace)
            for key in keys:
                added[(hash(key) ^ salt) & _MASK] += _RECORD
        table, starts, used = self.table, self.starts, self.used
        grow = array("q", bytes(8 * (_MASK + 1)))  # room each bucket lacks
        for bucket in range(_MASK + 1):
            lack = used[bucket] + added[bucket] - (starts[bucket + 1] - starts[bucket])
            if lack > 0:
                grow[bucket] = lack
        shift = sum(grow)
        if shift:
            table += bytes(shift)
            starts[_MASK + 1] = len(table)
            for bucket in range(_MASK, -1, -1):  # highest first: moves only go up
                shift -= grow[bucket]
                if shift:
                    start, size = starts[bucket], used[bucket]
                    if size:
                        table[start + shift : start + shift + size] = table[start : start + size]
                    starts[bucket] = start + shift
        seen = self.seen
        kept: dict[str, dict[str, int]] = {}
        count = 0
        for namespace, keys in positions.items():
            number, salt = numbers[namespace], hash(namespace)
            for key, position in keys.items():
                digest = digest_of(key)
                if digest is None or position >= 2**64:  # it leaves unused room: harmless
                    kept.setdefault(namespace, {})[key] = position
                    continue
                mixed = hash(key) ^ salt
                bucket = mixed & _MASK
                at = starts[bucket] + used[bucket]
                table[at : at + _RECORD] = digest + number + position.to_bytes(8, "little")
                used[bucket] += _RECORD
                bit = (mixed >> 16) & _BITS
                seen[bit >> 3] |= 1 << (bit & 7)
                count += 1
        self.count += count
        return kept

    def pop(self, namespace: str, key: str) -> int | None:
        """Take out and return the next index of (namespace, key), or None if not held."""
        if not self.count:
            return None
        mixed = hash(key) ^ hash(namespace)
        bit = (mixed >> 16) & _BITS
        if not self.seen[bit >> 3] >> (bit & 7) & 1:
            return None  # never added (the common case for a new key)
        bucket = mixed & _MASK
        size = self.used[bucket]
        if not size:
            return None
        number = self._numbers.get(namespace)
        digest = digest_of(key)
        if number is None or digest is None:
            return None
        needle = digest + number
        table = self.table
        start = self.starts[bucket]
        end = start + size
        at = table.find(needle, start, end)
        while at >= 0 and (at - start) % _RECORD:  # a match straddling two records
            at = table.find(needle, at + 1, end)
        if at < 0:
            return None
        position = int.from_bytes(table[at + _NEEDLE : at + _RECORD], "little")
        last = end - _RECORD
        if at != last:  # the bucket's last record fills the hole
            table[at : at + _RECORD] = table[last:end]
        self.used[bucket] = size - _RECORD
        self.count -= 1
        return position


class Run:
    """Namespace positions of one run: which index each namespace draws next, per key.

    ``floors`` gives (namespace, key) a first index other than 0 (a reproduced run
    allocates new draws after every index its record used). Keys are cacher keys
    (SHA-256 hexdigests); past ``hot_keys`` keys in the dicts, they are packed (see
    the module).
    """

    HOT_KEYS = 2**16

    def __init__(
        self, floors: dict[tuple[str, str], int] | None = None, hot_keys: int | None = None
    ) -> None:
        self._next: dict[str, dict[str, int]] = {}
        self._packed = Packed()
        self._returned: dict[tuple[str, str], list[int]] = {}
        self._floors = floors or {}
        self._hot_keys = self.HOT_KEYS if hot_keys is None else hot_keys
        self._unchecked = 0  # reservations since the dicts' size was last checked
        # While no index is given back, no floor set and nothing packed (the plain
        # case), `reserve_all` counts down here instead: the reservations it may still
        # make before the dicts' size is checked. -1 off the plain case.
        self._budget = -1
        self._settle()

    def reserve(self, namespace: str, key: str, n: int) -> list[int]:
        self._leave_plain()
        taken: list[int] = []
        if self._returned:
            heap = self._returned.get((namespace, key))
            if heap:
                while heap and len(taken) < n:
                    taken.append(heapq.heappop(heap))
                if not heap:
                    del self._returned[(namespace, key)]
                if len(taken) == n:
                    self._settle()
                    return taken
        positions = self._next.get(namespace)
        if positions is None:
            positions = self._next[namespace] = {}
        start = positions.get(key)
        if start is None:
            start = self._packed.pop(namespace, key)
            if start is None:
                start = self._floors.get((namespace, key), 0) if self._floors else 0
        fresh = n - len(taken)
        positions[key] = start + fresh
        self._count(1)
        self._settle()
        if not taken:
            return list(range(start, start + fresh))
        return taken + list(range(start, start + fresh))

    def reserve_all(self, items: Sequence[Item]) -> list[list[int]]:
        """`reserve` for each item's request (its namespace and n) and key, in order."""
        budget = self._budget - len(items)
        if budget < 0:
            return self._reserve_each(items)
        self._budget = budget
        out: list[list[int]] = []
        nxt = self._next
        for item in items:  # nothing given back, no floors, nothing packed: the plain case
            request = item.request
            namespace, key, n = request.namespace, item.key, request.n
            positions = nxt.get(namespace)
            if positions is None:
                positions = nxt[namespace] = {}
            start = positions.get(key, 0)
            positions[key] = start + n
            out.append([start] if n == 1 else list(range(start, start + n)))
        return out

    def _reserve_each(self, items: Sequence[Item]) -> list[list[int]]:
        """`reserve_all` off the plain case, or when its budget has run out."""
        self._leave_plain()
        if self._returned or self._floors:
            return [self.reserve(i.request.namespace, i.key, i.request.n) for i in items]
        out: list[list[int]] = []
        nxt = self._next
        pop = self._packed.pop
        for item in items:  # as in the plain case, but a key may be packed
            request = item.request
            namespace, key, n = request.namespace, item.key, request.n
            positions = nxt.get(namespace)
            if positions is None:
                positions = nxt[namespace] = {}
            start = positions.get(key)
            if start is None:
                start = pop(namespace, key) or 0  # a packed index is at least 1
            positions[key] = start + n
            out.append([start] if n == 1 else list(range(start, start + n)))
        self._count(len(items))
        self._settle()
        return out

    def release(self, namespace: str, key: str, indices: Sequence[int]) -> None:
        if not indices:
            return
        self._leave_plain()
        heap = self._returned.setdefault((namespace, key), [])
        for index in indices:
            heapq.heappush(heap, index)

    def _leave_plain(self) -> None:
        """Stop counting in ``_budget`` (what it counted moves to ``_unchecked``)."""
        if self._budget >= 0:
            self._unchecked = self._hot_keys - self._budget
            self._budget = -1

    def _settle(self) -> None:
        """Count in ``_budget`` again if the run is back in the plain case."""
        if self._budget < 0 and not (self._returned or self._floors or self._packed.count):
            self._budget = max(self._hot_keys - self._unchecked, 0)

    def _count(self, reserved: int) -> None:
        """Count reservations off the plain case; pack the dicts once they hold too many."""
        self._unchecked += reserved
        if self._unchecked > self._hot_keys:
            self._unchecked = 0
            if sum(map(len, self._next.values())) > self._hot_keys:
                self._next = self._packed.add(self._next)
