"""Small helpers shared by the tests (not fixtures)."""

from __future__ import annotations

from typing import Any

from cachesaver.codec import decode_sample
from cachesaver.stores.base import SampleRead, Store


async def stored(store: Store, key: str, count: int) -> list[Any]:
    """Return samples 0..count-1 of ``key`` (None where an index is empty)."""
    (found,) = await store.read([SampleRead(key, list(range(count)))])
    return [decode_sample(found[i]) if i in found else None for i in range(count)]
