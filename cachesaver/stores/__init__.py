"""Stores: where samples live. `DiskStore` is the embedded default."""

from __future__ import annotations

import os
from typing import Union

import diskcache

from cachesaver.stores._locate import (
    Access,
    is_redis_url,
    is_url,
    open_admin_store,
    redact,
)
from cachesaver.stores.base import (
    AdminStore,
    KeyRecord,
    SampleRead,
    SampleWrite,
    Store,
    WriteResult,
)
from cachesaver.stores.disk import DiskStore

__all__ = [
    "Access",
    "AdminStore",
    "CacheLike",
    "DiskStore",
    "KeyRecord",
    "SampleRead",
    "SampleWrite",
    "Store",
    "WriteResult",
    "is_redis_url",
    "is_url",
    "open_admin_store",
    "open_store",
    "redact",
]

CacheLike = Union[str, "os.PathLike[str]", diskcache.Cache, Store]


def open_store(cache: CacheLike) -> tuple[Store, bool]:
    """Return the store for ``cache`` and whether the caller opened it (and must close it).

    A path opens a `DiskStore` there; a ``redis://`` (``rediss://``, ``unix://``) URL
    opens a `RedisStore`; a ``diskcache.Cache`` is used as it is (and stays open); any
    object with the `Store` methods is used as it is.
    """
    if isinstance(cache, str) and is_redis_url(cache):
        from cachesaver.stores.redis import RedisStore

        return RedisStore(cache), True
    if isinstance(cache, diskcache.Cache):
        return DiskStore(cache), True  # the wrapper is ours; it leaves the Cache open
    if isinstance(cache, (str, os.PathLike)):
        return DiskStore(cache), True
    if isinstance(cache, Store):
        return cache, False
    raise TypeError(
        f"cache must be a directory path, a diskcache.Cache or a cachesaver Store, got "
        f"{type(cache).__name__}; for example cache='caches/my-experiment'"
    )
