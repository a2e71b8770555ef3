"""Walking a store's records in key order, and reading what a record's content says."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from cachesaver.stores.base import AdminStore, KeyRecord
from cachesaver.stores.disk import DiskStore

__all__ = [
    "CHUNK_KEYS",
    "NO_IDENTITY",
    "UNREADABLE",
    "Progress",
    "identity_label",
    "identity_of",
    "iter_records",
    "parse_content",
    "prompt_preview",
    "record_bytes",
]

CHUNK_KEYS = 500
"""Keys per store call: bounds memory on big caches (one SQLite scan step, one Redis round trip)."""

NO_IDENTITY = "(no identity)"
UNREADABLE = "(unreadable content)"

Progress = Callable[[int], object]
"""Called with how many more keys were handled (drives progress bars)."""


async def iter_records(
    store: AdminStore,
    keys: Sequence[str] | None = None,
    *,
    progress: Progress | None = None,
) -> AsyncIterator[list[KeyRecord]]:
    """Yield the records of ``keys`` (default: every key, in key order), a chunk at a time.

    A whole disk store is read in one ordered range scan (not one query per key).
    """
    if keys is None and isinstance(store, DiskStore):
        after: str | None = None
        while True:
            records = await store.scan(after, CHUNK_KEYS)
            if not records:
                return
            after = records[-1].key
            if progress is not None:
                progress(len(records))
            yield records
    wanted = sorted(await store.keys()) if keys is None else list(keys)
    for start in range(0, len(wanted), CHUNK_KEYS):
        chunk = wanted[start : start + CHUNK_KEYS]
        records = await store.records(chunk)
        if progress is not None:
            progress(len(chunk))
        yield records


def parse_content(content: str) -> dict[str, Any] | None:
    """The content as a dict (``request``, maybe ``identity``), None when unreadable."""
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def identity_of(content: str) -> Any:
    """The model identity stored with a key (a JSON value), None when there is none."""
    data = parse_content(content)
    return None if data is None else data.get("identity")


def identity_label(content: str) -> str:
    """The identity as one line of canonical JSON (or a parenthesised placeholder)."""
    data = parse_content(content)
    if data is None:
        return UNREADABLE
    if "identity" not in data:
        return NO_IDENTITY
    return json.dumps(data["identity"], sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def prompt_preview(content: str, width: int = 60) -> str:
    """The start of what was asked: the prompt (or chat messages), on one line."""
    data = parse_content(content)
    request = data.get("request") if data is not None else content
    if isinstance(request, dict) and "prompt" in request:
        request = request["prompt"]
    if isinstance(request, list) and request and all(isinstance(m, dict) for m in request):
        parts = [str(m.get("content", "")) for m in request]
        text = " | ".join(p for p in parts if p)
    elif isinstance(request, str):
        text = request
    else:
        text = json.dumps(request, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def record_bytes(record: KeyRecord) -> int:
    """UTF-8 bytes of a record's content and sample texts."""
    return len(record.content.encode()) + sum(len(t.encode()) for t in record.samples.values())
