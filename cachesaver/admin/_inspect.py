"""Read-only administration: statistics, verification and search of a store."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cachesaver.admin._records import (
    Progress,
    identity_label,
    iter_records,
    parse_content,
    prompt_preview,
    record_bytes,
)
from cachesaver.export import record_problems
from cachesaver.savings import Price
from cachesaver.stores._tally import IdentityCounter, token_counts
from cachesaver.stores.base import AdminStore, IdentityTotals, StatsStore

__all__ = [
    "BrokenKey",
    "IdentityStats",
    "KeySummary",
    "StoreStats",
    "VerifyReport",
    "search",
    "store_stats",
    "verify_store",
]


@dataclass(frozen=True, slots=True)
class IdentityStats:
    """What a store holds for one model identity.

    ``prompt_tokens`` / ``completion_tokens`` sum the token counts the provider reported
    for the stored samples (the built-in adapters store them); ``dollars`` is what those
    tokens cost at the given price, None without one.
    """

    identity: Any
    label: str
    keys: int
    samples: int
    bytes: int
    prompt_tokens: int
    completion_tokens: int
    dollars: float | None


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Keys, samples and bytes of a whole store, and per model identity (most keys first)."""

    location: str
    keys: int
    samples: int
    bytes: int
    identities: tuple[IdentityStats, ...]


async def _record_totals(store: AdminStore, progress: Progress | None) -> list[IdentityTotals]:
    """Totals per identity from every record (for stores that cannot add up their own)."""
    counter = IdentityCounter()
    async for records in iter_records(store, progress=progress):
        for r in records:
            prompt = completion = 0
            for text in r.samples.values():
                p, c = token_counts(text)
                prompt += p
                completion += c
            counter.add_content(r.content, len(r.samples), record_bytes(r), prompt, completion)
    return counter.totals()


def _model_name(identity: Any) -> str | None:
    model = identity.get("model") if isinstance(identity, dict) else None
    return model if isinstance(model, str) else None


async def store_stats(
    store: AdminStore,
    *,
    prices: Mapping[str, Price] | None = None,
    progress: Progress | None = None,
) -> StoreStats:
    """Count keys, samples, bytes and reported tokens, overall and per model identity.

    One ordered pass over the store. ``prices`` maps a model name (the ``model`` field of
    an identity) to its `Price`, to value the stored tokens in dollars.
    """
    if isinstance(store, StatsStore):
        totals = await store.identity_totals(progress=progress)
    else:
        totals = await _record_totals(store, progress)
    tallies: dict[str, list[int]] = {}
    identities: dict[str, Any] = {}
    for part in totals:
        label = identity_label(part.example)
        tally = tallies.get(label)
        if tally is None:
            tally = tallies[label] = [0, 0, 0, 0, 0]
            data = parse_content(part.example)
            identities[label] = data.get("identity") if data is not None else None
        tally[0] += part.keys
        tally[1] += part.samples
        tally[2] += part.bytes
        tally[3] += part.prompt_tokens
        tally[4] += part.completion_tokens
    rows: list[IdentityStats] = []
    for label, t in sorted(tallies.items(), key=lambda item: (-item[1][0], item[0])):
        identity = identities[label]
        name = _model_name(identity)
        price = prices.get(name) if prices is not None and name is not None else None
        rows.append(
            IdentityStats(
                identity=identity,
                label=label,
                keys=t[0],
                samples=t[1],
                bytes=t[2],
                prompt_tokens=t[3],
                completion_tokens=t[4],
                dollars=None if price is None else price.cost(t[3], t[4]),
            )
        )
    return StoreStats(
        location=store.location,
        keys=sum(r.keys for r in rows),
        samples=sum(r.samples for r in rows),
        bytes=sum(r.bytes for r in rows),
        identities=tuple(rows),
    )


@dataclass(frozen=True, slots=True)
class BrokenKey:
    """A key that fails verification, and every problem found with it."""

    key: str
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of checking every key of a store."""

    location: str
    keys: int
    samples: int
    broken: tuple[BrokenKey, ...]

    @property
    def ok(self) -> bool:
        return not self.broken


async def verify_store(store: AdminStore, *, progress: Progress | None = None) -> VerifyReport:
    """Check every key: content hash, sample JSON and tags, depth, text, contiguous lists.

    A store passes exactly when an export of it would import.
    """
    broken: list[BrokenKey] = []
    keys = samples = 0
    async for records in iter_records(store, progress=progress):
        for record in records:
            keys += 1
            samples += len(record.samples)
            problems = record_problems(record)
            if problems:
                broken.append(BrokenKey(record.key, tuple(problems)))
    return VerifyReport(store.location, keys, samples, tuple(broken))


@dataclass(frozen=True, slots=True)
class KeySummary:
    """One line of `search`: a key, the start of its prompt, its model and sample count."""

    key: str
    prompt: str
    identity: Any
    label: str
    samples: int
    updated: float | None

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the key last received a sample (None when the store cannot say)."""
        if self.updated is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.updated)


def identity_matches(identity: Any, provider: str | None, model: str | None) -> bool:
    """Whether an identity has the given ``provider`` and ``model`` fields (None: any)."""
    if provider is None and model is None:
        return True
    if not isinstance(identity, dict):
        return False
    return (provider is None or identity.get("provider") == provider) and (
        model is None or identity.get("model") == model
    )


async def search(
    store: AdminStore,
    *,
    grep: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    progress: Progress | None = None,
) -> list[KeySummary]:
    """Keys whose request contains ``grep`` (case-insensitive) and whose identity matches.

    Newest first (keys of unknown age last), then by key.
    """
    needle = grep.casefold() if grep else None
    found: list[KeySummary] = []
    async for records in iter_records(store, progress=progress):
        for record in records:
            data = parse_content(record.content)
            identity = data.get("identity") if data is not None else None
            if not identity_matches(identity, provider, model):
                continue
            if needle is not None:
                request = data.get("request") if data is not None else record.content
                haystack = json.dumps(request, ensure_ascii=False)
                if needle not in haystack.casefold():
                    continue
            found.append(
                KeySummary(
                    key=record.key,
                    prompt=prompt_preview(record.content),
                    identity=identity,
                    label=identity_label(record.content),
                    samples=len(record.samples),
                    updated=record.updated,
                )
            )
    found.sort(key=lambda s: (s.updated is None, -(s.updated or 0.0), s.key))
    return found
