"""The errors of the drop-in clients (both are `CacheSaverError` s)."""

from __future__ import annotations

from cachesaver.errors import CacheSaverError

__all__ = ["DropInOptionError", "UncachedPathError"]


class UncachedPathError(CacheSaverError, AttributeError):
    """A drop-in client attribute that would reach the API uncached.

    The message names the path, what cachesaver serves instead, and the explicit way to
    call the SDK uncached (``client.sdk.<path>``).
    """


class DropInOptionError(CacheSaverError, ValueError, TypeError):
    """A drop-in client option (``cache``, ``mode``, ``manifest``, ...) is invalid."""
