"""Run manifests: which samples every request of a run received, as JSON lines.

A manifest line is ``{"key", "namespace", "request_id", "indices"}``. With the cache, it
is enough to export exactly the samples a run used (``cachesaver export --manifest``) and
to check a replay. Lines are buffered and written on a worker thread, never on the event
loop; `aclose` writes what is left.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cachesaver._tasks import TaskOwner
from cachesaver.errors import ManifestError

__all__ = ["ManifestEntry", "RunManifest", "read_manifest"]

HEADER = {"cachesaver_manifest": 1}


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One answered request: its key, namespace, request_id and sample indices."""

    key: str
    namespace: str
    request_id: str | None
    indices: tuple[int, ...]


class RunManifest:
    """Appends one JSON line per answered request to ``path`` (created with its folder)."""

    def __init__(self, path: str | os.PathLike[str], flush_every: int = 2000) -> None:
        self.path = os.fspath(path)
        self.flush_every = flush_every
        self._lines: list[str] = []
        self._executor: ThreadPoolExecutor | None = None
        self._tasks = TaskOwner()
        self._started = False
        self.entries = 0

    def record(
        self, key: str, namespace: str, request_id: str | None, indices: Sequence[int]
    ) -> None:
        """Buffer one entry; a full buffer is written in the background (owned, awaited)."""
        self._lines.append(
            json.dumps(
                {
                    "key": key,
                    "namespace": namespace,
                    "request_id": request_id,
                    "indices": list(indices),
                },
                separators=(",", ":"),
            )
        )
        self.entries += 1
        if len(self._lines) >= self.flush_every:
            self._tasks.spawn(self._flush())

    def _write(self, lines: list[str], header: bool) -> None:
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            if header:
                handle.write(json.dumps(HEADER) + "\n")
            handle.write("\n".join(lines) + "\n" if lines else "")

    async def _flush(self) -> None:
        lines, self._lines = self._lines, []
        header = not self._started
        self._started = True
        if not lines and not header:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="cachesaver-manifest")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, lines, header)

    async def aclose(self) -> None:
        """Write every buffered entry and wait until it is on disk."""
        await self._tasks.wait()
        await self._flush()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


def read_manifest(path: str | os.PathLike[str]) -> Iterator[ManifestEntry]:
    """Yield the entries of a manifest file, checking every line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                data: Any = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{os.fspath(path)}:{number}: not JSON ({exc.msg})") from None
            if isinstance(data, dict) and "cachesaver_manifest" in data:
                continue
            try:
                yield ManifestEntry(
                    key=str(data["key"]),
                    namespace=str(data["namespace"]),
                    request_id=data["request_id"],
                    indices=tuple(int(i) for i in data["indices"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ManifestError(
                    f"{os.fspath(path)}:{number}: not a manifest entry ({exc!r})"
                ) from None
