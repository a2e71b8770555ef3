"""Reproducing a recorded run (SEMANTICS rule 8): the record, indexed once, and its allocator.

A run that records a manifest notes, for every request it answered, its namespace,
request_id, key and indices. A run given that record (``reproduce=``) gives each request
that matches a recorded one (same namespace, request_id and key; the k-th such request
matches the k-th recorded one) exactly the recorded indices, whatever order requests are
issued in and however long each call takes. Requests the record lacks get indices after
every index the record used in their namespace and key, or, in replay mode, a
`CacheMissError`. Requests without a request_id cannot be matched: a warning says so.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from cachesaver._allocation import Grant, Item
from cachesaver._models import describe
from cachesaver._positions import Run
from cachesaver._tasks import TaskOwner
from cachesaver.errors import CacheMissError, ManifestError, UnmatchedRequestWarning
from cachesaver.manifest import ManifestEntry, RunManifest, read_manifest
from cachesaver.typedefs import Request

__all__ = ["Record", "ReproduceAllocator"]

# (namespace, request_id, key): what a recorded request is matched on.
_Identity = tuple[str, str, str]


class Record:
    """A run manifest, indexed once: recorded indices per identity, and where new ones go.

    Within one identity the recorded entries are ordered by their first index (the order
    the first run issued them in; the manifest itself lists requests as they finished).
    """

    def __init__(self, entries: Iterable[ManifestEntry], source: str) -> None:
        self.source = source
        recorded: dict[_Identity, list[tuple[int, ...]]] = {}
        floors: dict[tuple[str, str], int] = {}
        self.entries = 0
        for entry in entries:
            self.entries += 1
            if entry.indices:
                slot = (entry.namespace, entry.key)
                top = max(entry.indices) + 1
                if floors.get(slot, 0) < top:
                    floors[slot] = top
            if entry.request_id is not None:
                identity = (entry.namespace, entry.request_id, entry.key)
                recorded.setdefault(identity, []).append(entry.indices)
        for lists in recorded.values():
            lists.sort(key=lambda indices: indices[0] if indices else -1)
        self.recorded = recorded
        self.sets = {identity: frozenset(lists) for identity, lists in recorded.items()}
        self.floors = floors

    @classmethod
    def load(cls, reproduce: str | os.PathLike[str] | RunManifest) -> Record:
        """Read a manifest file (or a `RunManifest`, flushed or not) into a record."""
        if isinstance(reproduce, RunManifest):
            path = reproduce.path
            pending = [_entry(json.loads(line), path) for line in reproduce._lines]
            entries = list(read_manifest(path)) if os.path.exists(path) else []
            return cls([*entries, *pending], path)
        if not isinstance(reproduce, (str, os.PathLike)):
            raise TypeError(
                "reproduce must be a manifest path or a RunManifest, got "
                f"{type(reproduce).__name__}"
            )
        path = os.fspath(reproduce)
        if not os.path.isfile(path):
            raise ManifestError(
                f"reproduce={path!r}: no such manifest file; pass the manifest= file the "
                "recorded run wrote"
            )
        entries = list(read_manifest(path))
        for entry in entries:
            _check(entry, path)
        return cls(entries, path)


def _entry(data: Any, path: str) -> ManifestEntry:
    entry = ManifestEntry(
        key=str(data["key"]),
        namespace=str(data["namespace"]),
        request_id=data["request_id"],
        indices=tuple(int(i) for i in data["indices"]),
    )
    _check(entry, path)
    return entry


def _check(entry: ManifestEntry, path: str) -> None:
    if entry.request_id is not None and not isinstance(entry.request_id, str):
        raise ManifestError(f"{path}: request_id {entry.request_id!r} is not a str or null")
    if any(index < 0 for index in entry.indices):
        raise ManifestError(f"{path}: negative sample index in {entry.indices!r}")


class ReproduceAllocator:
    """Grants matched requests their recorded indices; everything else after the record."""

    exclusive = True

    def __init__(self, record: Record, replay: bool) -> None:
        self.record = record
        self._queues = {identity: deque(lists) for identity, lists in record.recorded.items()}
        self._run = Run(record.floors)
        self._replay = replay
        self._warned = False

    def start_loop(self, tasks: TaskOwner) -> None:
        return None

    def reserve(self, items: Sequence[Item]) -> list[Grant]:
        grants: list[Grant] = []
        for item in items:
            request, key = item.request, item.key
            indices = self._match(request, key)
            if indices is not None:
                grants.append(indices)
            elif self._replay:
                grants.append(
                    CacheMissError(
                        f"replay of the record {self.record.source!r}: ({describe(request, key)}, "
                        f"n={request.n}) is not in it (no recorded request with this namespace, "
                        "request_id, key and n left to match), so its samples are not known; "
                        "run with mode='readwrite' to draw them"
                    )
                )
            else:
                grants.append(self._run.reserve(request.namespace, key, request.n))
        return grants

    def _match(self, request: Request, key: str) -> list[int] | None:
        request_id = request.request_id
        if request_id is None:
            self._warn(request, key)
            return None
        queue = self._queues.get((request.namespace, request_id, key))
        if not queue:
            return None
        indices = queue.popleft()  # the k-th such request takes the k-th recorded one
        if len(indices) != request.n:
            return None  # not the request that was recorded: treated as new
        return list(indices)

    def _warn(self, request: Request, key: str) -> None:
        if self._warned:
            return
        self._warned = True
        warnings.warn(
            UnmatchedRequestWarning(
                f"reproduce={self.record.source!r}: requests without a request_id cannot be "
                f"matched to the record (first: {describe(request, key)}); they get new "
                "samples after the record's (in replay mode: CacheMissError). Give every "
                "request a request_id to reproduce it whatever the timing."
            ),
            stacklevel=4,
        )

    def give_back(self, request: Request, key: str, indices: list[int]) -> None:
        if request.request_id is not None:
            identity = (request.namespace, request.request_id, key)
            recorded = tuple(indices)
            if recorded in self.record.sets.get(identity, ()):
                # A failed matched request: its retry gets the recorded indices.
                self._queues.setdefault(identity, deque()).appendleft(recorded)
                return
        self._run.release(request.namespace, key, indices)

    def lease(self, asks: Sequence[tuple[str, list[int]]]) -> list[list[int]]:
        return [missing for _, missing in asks]

    def hold(self, key: str, indices: list[int]) -> object:
        return None

    def drop(self, token: object) -> None:
        return None
