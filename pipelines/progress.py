"""tqdm progress bars driven from async code without blocking the event loop.

A bar writes to stderr when it is created, advanced and closed; here each of those runs
on a worker thread (one at a time per bar), so the event loop itself never writes.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from tqdm import tqdm

__all__ = ["Progress"]


class Progress:
    """An optional tqdm bar (``None`` when progress is switched off)."""

    def __init__(self, bar: tqdm[Any] | None) -> None:
        self._bar = bar
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, enabled: bool, **options: Any) -> Progress:
        """Create a bar on stderr with tqdm ``options`` (no bar if not ``enabled``)."""
        if not enabled:
            return cls(None)
        options.setdefault("file", sys.stderr)
        options.setdefault("dynamic_ncols", True)
        return cls(await asyncio.to_thread(tqdm, **options))

    async def advance(self, count: int = 1) -> None:
        if self._bar is not None:
            async with self._lock:
                await asyncio.to_thread(self._bar.update, count)

    async def close(self) -> None:
        if self._bar is not None:
            async with self._lock:
                await asyncio.to_thread(self._bar.close)
