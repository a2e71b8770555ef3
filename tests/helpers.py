"""Small helpers shared by the tests (not fixtures)."""

from __future__ import annotations

from typing import Any

from cachesaver.codec import decode_sample
from cachesaver.stores.base import SampleRead, Store


async def stored(store: Store, key: str, count: int) -> list[Any]:
    """Return samples 0..count-1 of ``key`` (None where an index is empty)."""
    (found,) = await store.read([SampleRead(key, list(range(count)))])
    return [decode_sample(found[i]) if i in found else None for i in range(count)]


def make_indexed_store(directory: str) -> None:
    """An empty disk store in the indexed layout, as cachesaver made stores before the
    log layout (diskcache's table and unique key index, and the marker row)."""
    import time

    import diskcache

    with diskcache.Cache(directory, eviction_policy="none") as cache:
        now = time.time()
        with cache.transact():
            cache._con.execute(
                "INSERT OR IGNORE INTO Cache(key, raw, store_time, expire_time, access_time,"
                " access_count, tag, size, mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0,"
                " NULL, 0, 1, NULL, ?)",
                ("cs:store", now, now, '{"format":"cachesaver","version":1}'),
            )


def schema(directory: str) -> set[str]:
    """The names of the tables, indexes and triggers in a disk store's ``cache.db``."""
    import os
    import sqlite3

    con = sqlite3.connect(os.path.join(directory, "cache.db"))
    try:
        return {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
    finally:
        con.close()
