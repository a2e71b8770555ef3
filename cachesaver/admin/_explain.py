"""Why did a request miss? Its key, what is stored, and the nearest stored keys."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cachesaver._canonical import canonical_json, digest
from cachesaver.admin._records import Progress, iter_records, parse_content
from cachesaver.stores.base import AdminStore
from cachesaver.typedefs import Request, request_content

__all__ = ["Explanation", "NearKey", "content_of", "explain"]

_MISSING = object()
_SHOWN = 40  # characters of a value shown in a difference


def content_of(request: Request | Mapping[str, Any], identity: Any = None) -> str:
    """The canonical content (hence the key) a pipeline stores ``request`` under.

    ``request`` is a `Request` or its content fields as a mapping (``{"prompt": ...,
    "temperature": ...}``), or a stored content object (``{"request": {...},
    "identity": {...}}``, as ``cachesaver show --json`` prints it). ``identity`` is the
    model's identity (``model.identity``; built-in adapters have one), None for none.
    """
    if isinstance(request, Request):
        fields = json.loads(request_content(request))
    elif "request" in request and set(request) <= {"request", "identity"}:
        fields = request["request"]
        if identity is None:
            identity = request.get("identity")
    else:
        fields = {k: v for k, v in request.items() if v is not None}
    content: dict[str, Any] = {"request": fields}
    if identity is not None:
        content["identity"] = identity
    return canonical_json(content, "content")


@dataclass(frozen=True, slots=True)
class NearKey:
    """A stored key close to the one asked about, and exactly how they differ."""

    key: str
    samples: int
    differences: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Explanation:
    """The key of a request, whether it is stored, and (when not) the nearest stored keys."""

    key: str
    content: str
    stored: bool
    samples: int
    nearest: tuple[NearKey, ...]


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for name, item in value.items():
            _flatten(item, f"{path}.{name}" if path else str(name), out)
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            _flatten(item, f"{path}[{i}]", out)
    else:
        out[path] = value


def _leaves(content: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _flatten(content.get("request"), "", out)
    if "identity" in content:
        _flatten(content["identity"], "identity", out)
    return out


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _difference(path: str, yours: Any, stored: Any) -> str:
    if yours is _MISSING:
        return f"{path}: not in your request (stored: {_shown(stored)})"
    if stored is _MISSING:
        return f"{path}: an extra field in your request ({_shown(yours)}), not in the stored key"
    if isinstance(yours, str) and isinstance(stored, str):
        at = next(
            (i for i, (a, b) in enumerate(zip(yours, stored, strict=False)) if a != b),
            min(len(yours), len(stored)),
        )
        if len(yours) > _SHOWN or len(stored) > _SHOWN:
            return (
                f"{path}: differs at char {at} (yours {_shown(yours[at : at + 20])}, "
                f"stored {_shown(stored[at : at + 20])}; lengths {len(yours)} vs {len(stored)})"
            )
    if type(yours) is not type(stored) and not (
        isinstance(yours, (int, float)) and isinstance(stored, (int, float))
    ):
        return (
            f"{path}: {_shown(yours)} ({type(yours).__name__}) vs {_shown(stored)} "
            f"({type(stored).__name__}) (yours vs stored)"
        )
    return f"{path}: {_shown(yours)} vs {_shown(stored)} (yours vs stored)"


def _distance(x: Any, y: Any) -> int:
    """How far apart two differing values are (breaks ties between equally near keys)."""
    if not (isinstance(x, str) and isinstance(y, str)):
        return 1000
    head = next((i for i, (a, b) in enumerate(zip(x, y, strict=False)) if a != b), 0)
    tail = next(
        (i for i, (a, b) in enumerate(zip(reversed(x), reversed(y), strict=False)) if a != b), 0
    )
    return max(len(x), len(y)) - min(head + tail, min(len(x), len(y)))


def compare(yours: dict[str, Any], stored: dict[str, Any]) -> tuple[list[str], int]:
    """Every field where two contents differ (readable lines), and how far apart they are."""
    a, b = _leaves(yours), _leaves(stored)
    out: list[str] = []
    distance = 0
    for path in list(a) + [p for p in b if p not in a]:
        x, y = a.get(path, _MISSING), b.get(path, _MISSING)
        if x is _MISSING or y is _MISSING or canonical_json(x) != canonical_json(y):
            out.append(_difference(path or "request", x, y))
            distance += _distance(x, y)
    return out, distance


async def explain(
    store: AdminStore,
    request: Request | Mapping[str, Any] | str,
    *,
    identity: Any = None,
    nearest: int = 3,
    progress: Progress | None = None,
) -> Explanation:
    """Say what key ``request`` has, whether the store holds it, and if not, why.

    ``request`` is as for `content_of`, or content JSON text. When the key is missing,
    every stored key is compared field by field and the ``nearest`` ones with the fewest
    differences are returned with each difference spelled out (``temperature: 0.7 vs
    0.70001``, ``prompt[2].content: differs at char 118``, an extra ``seed``).
    """
    text = request if isinstance(request, str) else content_of(request, identity)
    key = digest(text)
    found = await store.records([key])
    if found:
        return Explanation(key, text, True, len(found[0].samples), ())
    mine = parse_content(text) or {"request": text}
    scored: list[tuple[int, int, str, NearKey]] = []
    async for records in iter_records(store, progress=progress):
        for record in records:
            theirs = parse_content(record.content)
            if theirs is None:
                continue
            diff, distance = compare(mine, theirs)
            near = NearKey(record.key, len(record.samples), tuple(diff))
            scored.append((len(diff), distance, record.key, near))
            if len(scored) > 4 * nearest:
                scored.sort(key=lambda item: item[:3])
                del scored[nearest:]
    scored.sort(key=lambda item: item[:3])
    return Explanation(key, text, False, 0, tuple(item[3] for item in scored[:nearest]))
