"""Naming stores: what a spec string (a directory or a URL) opens, and how it is shown.

This is the one place that parses store specs: `open_store` (pipelines), the admin
library and the ``cachesaver`` command all come here.
"""

from __future__ import annotations

import os
import re
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from cachesaver.errors import NotACacheError
from cachesaver.stores._disk_open import open_read_only
from cachesaver.stores.base import AdminStore
from cachesaver.stores.disk import DiskStore

__all__ = ["Access", "is_redis_url", "is_url", "open_admin_store", "redact"]

REDIS_SCHEMES = ("redis", "rediss", "unix")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

Access = Literal["read", "write", "create"]


def is_url(spec: str) -> bool:
    """Whether ``spec`` looks like a URL (``scheme://...``) rather than a path."""
    return _URL.match(spec) is not None


def is_redis_url(spec: str) -> bool:
    """Whether ``spec`` is a Redis URL (``redis://``, ``rediss://``, ``unix://``)."""
    return is_url(spec) and spec.split("://", 1)[0].lower() in REDIS_SCHEMES


def redact(spec: str) -> str:
    """Return ``spec`` fit for output: a password in a URL is replaced by ``***``."""
    if not is_url(spec):
        return spec
    parts = urlsplit(spec)
    if parts.password is None:
        return spec
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def open_admin_store(spec: str, *, access: Access = "read") -> AdminStore:
    """Open the store ``spec`` names (a diskcache directory or a Redis URL) for tools.

    ``access="read"`` opens a disk store read-only: it must already be a cachesaver
    store. ``"write"`` needs an existing cachesaver store too. ``"create"`` (a
    destination) also accepts a path that does not exist or an empty directory, where
    the store is created on first use; an existing file, a non-empty directory that is
    not a cachesaver store, or another program's diskcache is refused, so a typo never
    turns a random folder into a cache. Raises `NotACacheError` (a `StoreError`) for a
    path that is not a store and `ValueError` for a URL that cannot name one.
    """
    if is_url(spec):
        if not is_redis_url(spec):
            scheme = spec.split("://", 1)[0].lower()
            raise ValueError(
                f"{redact(spec)}: unsupported store URL scheme {scheme!r}; use a directory "
                "path or a redis://, rediss:// or unix:// URL"
            )
        from cachesaver.stores.redis import RedisStore  # redis-py loads only when needed

        return RedisStore(spec)
    fresh = access == "create" and (
        not os.path.lexists(spec) or (os.path.isdir(spec) and not os.listdir(spec))
    )
    if not fresh:
        try:
            # Checks that this is a cachesaver store; reading it changes nothing.
            open_read_only(spec).close()
        except NotACacheError as exc:
            if access == "create":
                raise NotACacheError(f"{exc}; refusing to write into it") from None
            raise
    return DiskStore(spec, read_only=access == "read")
