"""The store contract: per-sample entries, index-addressed, first writer wins.

A store keeps, for each key, a list of samples (JSON text made by `cachesaver.codec`)
and the key's canonical request content. Sample ``i`` of a key is fixed once written.
All operations are bulk, so a pipeline makes one round trip (one thread hop, one
transaction, one Redis pipeline) per batch of reads or writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
    "AdminStore",
    "IdentityTotals",
    "KeyRecord",
    "LeaseRequest",
    "Reservation",
    "SampleRead",
    "SampleWrite",
    "SharedStore",
    "StatsStore",
    "Store",
    "Unreservation",
    "WriteResult",
]


class SampleRead(NamedTuple):
    """Which sample indices of one key to read."""

    key: str
    indices: Sequence[int]


class SampleWrite(NamedTuple):
    """Samples for one key at target indices, plus the key's canonical content."""

    key: str
    content: str
    samples: Mapping[int, str]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write left at its targets.

    ``stored[i]`` is the text now at target index ``i``: the written sample, or the one
    another writer stored there first. ``appended`` lists where samples that lost such a
    race were appended instead (nothing paid for is dropped).
    """

    stored: Mapping[int, str]
    appended: Sequence[int] = ()


@runtime_checkable
class Store(Protocol):
    """What a pipeline needs from a store; every method is safe across processes."""

    @property
    def location(self) -> str:
        """A string naming the underlying storage (one per directory, database, ...)."""
        ...

    def read(self, reads: Sequence[SampleRead]) -> Awaitable[list[dict[int, str]]]:
        """Return, for each read, the stored texts of the wanted indices that exist.

        An ``async def`` method fits; so does a method returning an ``asyncio.Future``
        (which the pipeline follows with a callback instead of a task).
        """
        ...

    def write(self, writes: Sequence[SampleWrite]) -> Awaitable[list[WriteResult]]:
        """Store each write's samples where their index is free, atomically per call.

        A sample whose index is taken is appended past the key's last index instead.
        The content is stored once per key. Returns one `WriteResult` per write.
        """
        ...

    async def aclose(self) -> None:
        """Release what the store opened itself (never what the user passed in)."""
        ...


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """Everything a store holds for one key: its content and its samples by index.

    ``updated`` is when the key last received a sample (seconds since the epoch), when
    the store knows it; it is not part of the record's value (records compare equal
    without it).
    """

    key: str
    content: str
    samples: Mapping[int, str]
    updated: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class IdentityTotals:
    """What a store holds for some keys of one model identity.

    ``example`` is one of the keys' content (its identity is theirs); ``bytes`` counts the
    UTF-8 bytes of the contents and samples; the token counts sum what the samples report.
    """

    example: str
    keys: int
    samples: int
    bytes: int
    prompt_tokens: int
    completion_tokens: int


@runtime_checkable
class AdminStore(Store, Protocol):
    """Whole-store operations for tools (stats, show, export, import, copy, verify, prune)."""

    async def keys(self) -> list[str]:
        """Return every key that has request content in the store."""
        ...

    async def records(self, keys: Sequence[str]) -> list[KeyRecord]:
        """Return the content and every stored sample of each key (missing keys skipped)."""
        ...

    async def import_records(self, records: Sequence[KeyRecord]) -> int:
        """Store the records all at once, or nothing at all; return samples written.

        Samples already stored with the same text are skipped; a different text at an
        existing index raises `ImportConflictError` and leaves the store unchanged.
        """
        ...

    async def delete(self, keys: Sequence[str]) -> int:
        """Remove the keys (content and samples); return how many keys existed."""
        ...


@runtime_checkable
class StatsStore(Protocol):
    """A store that adds up its own statistics (faster than reading every record)."""

    async def identity_totals(
        self, progress: Callable[[int], object] | None = None
    ) -> list[IdentityTotals]:
        """Totals of every key, in groups of one identity each (several may share one).

        ``progress`` is called with how many more keys were counted.
        """
        ...


@dataclass(frozen=True, slots=True)
class Reservation:
    """Reserve ``n`` sample indices of ``key`` for ``namespace`` in shared run ``run_id``."""

    run_id: str
    namespace: str
    key: str
    n: int


@dataclass(frozen=True, slots=True)
class Unreservation:
    """Hand ``indices`` back to ``namespace`` of shared run ``run_id`` (they failed)."""

    run_id: str
    namespace: str
    key: str
    indices: Sequence[int]


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """Mark ``indices`` of ``key`` as being generated by ``owner`` for ``ttl`` seconds."""

    key: str
    indices: Sequence[int]
    owner: str
    ttl: float


@runtime_checkable
class SharedStore(Store, Protocol):
    """A store that can hold the state of shared runs: namespace positions and leases.

    Every call is atomic per item and handles items in order, so reservations submitted
    in issue order are granted in issue order.
    """

    async def reserve(self, reservations: Sequence[Reservation]) -> list[list[int]]:
        """Grant each reservation its indices: returned ones first (lowest first), then new."""
        ...

    async def unreserve(self, items: Sequence[Unreservation]) -> list[None]:
        """Return indices to their namespace so they are handed out again first."""
        ...

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[list[int]]:
        """Take (or extend) leases; return the indices each request now holds.

        An index is granted when it has no stored sample and nobody else holds a live
        lease on it (or the requester already does); a lease held by another owner is
        left alone until it expires.
        """
        ...

    async def unlease(self, requests: Sequence[LeaseRequest]) -> list[None]:
        """Drop the leases that ``owner`` holds on the indices."""
        ...
