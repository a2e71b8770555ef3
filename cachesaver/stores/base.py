"""The store contract: per-sample entries, index-addressed, first writer wins.

A store keeps, for each key, a list of samples (JSON text made by `cachesaver.codec`)
and the key's canonical request content. Sample ``i`` of a key is fixed once written.
All operations are bulk, so a pipeline makes one round trip (one thread hop, one
transaction, one Redis pipeline) per batch of reads or writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "AdminStore",
    "KeyRecord",
    "SampleRead",
    "SampleWrite",
    "Store",
    "WriteResult",
]


@dataclass(frozen=True, slots=True)
class SampleRead:
    """Which sample indices of one key to read."""

    key: str
    indices: Sequence[int]


@dataclass(frozen=True, slots=True)
class SampleWrite:
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

    async def read(self, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
        """Return, for each read, the stored texts of the wanted indices that exist."""
        ...

    async def write(self, writes: Sequence[SampleWrite]) -> list[WriteResult]:
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
    """Everything a store holds for one key: its content and its samples by index."""

    key: str
    content: str
    samples: Mapping[int, str]


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
