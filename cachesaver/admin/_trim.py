"""Choosing keys to delete (by prefix, age, model identity) and deleting them."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cachesaver._canonical import CanonicalError, canonical_json
from cachesaver.admin._records import CHUNK_KEYS, Progress, iter_records, parse_content
from cachesaver.stores.base import AdminStore

__all__ = ["KeyFilter", "Selection", "delete_keys", "parse_duration", "select_keys"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` (or ``1d12h``); ValueError else."""
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text.strip()):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text.strip()):
        raise ValueError(f"{text!r} is not a duration such as 30d, 12h, 90m or 45s")
    return total


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """Which keys to pick; every given condition must hold (None: no condition).

    ``prefix``: the key starts with these hex digits. ``older_than``: seconds since the
    key last received a sample (keys whose age the store does not know never match).
    ``provider`` / ``model``: fields of the model identity; ``identity``: the whole
    identity equals this JSON value; ``no_identity``: keys stored without one.
    """

    prefix: str | None = None
    older_than: float | None = None
    provider: str | None = None
    model: str | None = None
    identity: Any = None
    no_identity: bool = False

    def __post_init__(self) -> None:
        if self.prefix is not None and not re.fullmatch(r"[0-9a-f]{1,64}", self.prefix):
            raise ValueError(f"{self.prefix!r} is not a key prefix (1 to 64 lowercase hex digits)")
        if self.older_than is not None and not self.older_than >= 0:
            raise ValueError(f"older_than must be a number of seconds >= 0, not {self.older_than}")

    @property
    def empty(self) -> bool:
        """No condition at all (it would pick every key)."""
        return (
            self.prefix is None
            and self.older_than is None
            and self.provider is None
            and self.model is None
            and self.identity is None
            and not self.no_identity
        )

    def picks_identity(self, content: dict[str, Any] | None) -> bool:
        """Whether a key with this (parsed) content passes the identity conditions."""
        if content is None:
            return not self.needs_content()
        has = "identity" in content
        identity = content.get("identity")
        if self.no_identity and has:
            return False
        if self.identity is not None:
            try:
                if not has or canonical_json(identity) != canonical_json(self.identity):
                    return False
            except CanonicalError:
                return False
        if self.provider is not None or self.model is not None:
            if not isinstance(identity, dict):
                return False
            if self.provider is not None and identity.get("provider") != self.provider:
                return False
            if self.model is not None and identity.get("model") != self.model:
                return False
        return True

    def picks_age(self, updated: float | None, now: float) -> bool:
        """Whether a key last written at ``updated`` passes ``older_than`` at ``now``."""
        if self.older_than is None:
            return True
        return updated is not None and now - updated >= self.older_than

    def needs_content(self) -> bool:
        """Whether the filter looks at the model identity."""
        return (
            self.provider is not None
            or self.model is not None
            or self.identity is not None
            or self.no_identity
        )


@dataclass(frozen=True, slots=True)
class Selection:
    """The keys a `KeyFilter` picked, their sample count, and how many keys were looked at."""

    keys: tuple[str, ...]
    samples: int
    scanned: int


async def select_keys(
    store: AdminStore,
    where: KeyFilter,
    *,
    now: float | None = None,
    progress: Progress | None = None,
) -> Selection:
    """Return the keys of ``store`` that ``where`` picks (reads; changes nothing)."""
    moment = time.time() if now is None else now
    keys = sorted(await store.keys())
    candidates = keys
    if where.prefix is not None:
        candidates = [k for k in keys if k.startswith(where.prefix)]
        if progress is not None:
            progress(len(keys) - len(candidates))
    picked: list[str] = []
    samples = 0
    async for records in iter_records(store, candidates, progress=progress):
        for record in records:
            if not where.picks_age(record.updated, moment):
                continue
            if where.needs_content() and not where.picks_identity(parse_content(record.content)):
                continue
            picked.append(record.key)
            samples += len(record.samples)
    return Selection(tuple(picked), samples, len(keys))


async def delete_keys(
    store: AdminStore, keys: Sequence[str], *, progress: Progress | None = None
) -> int:
    """Delete the keys (content and every sample), 500 per call; return how many existed."""
    deleted = 0
    for start in range(0, len(keys), CHUNK_KEYS):
        chunk = keys[start : start + CHUNK_KEYS]
        deleted += await store.delete(chunk)
        if progress is not None:
            progress(len(chunk))
    return deleted


def identity_from_json(text: str) -> Any:
    """Parse ``--identity-json``; ValueError when it is not valid JSON."""
    return json.loads(text)
