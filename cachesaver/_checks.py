"""Checks of stored text: what a sample, a request content or a key's record may hold.

Shared by import (`cachesaver.export`), `verify` and the administration commands. Nothing
here executes code: texts are parsed as plain JSON (no constants beyond JSON's own,
bounded nesting) and type tags are checked against the codec's registry shape.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from typing import Any

from cachesaver._canonical import digest
from cachesaver.codec import TAG
from cachesaver.stores.base import KeyRecord

__all__ = ["MAX_NESTING", "content_problem", "gap_problem", "record_problems", "sample_problem"]

MAX_NESTING = 256
"""Deepest JSON nesting (arrays and objects) accepted in request content and samples.

Deeper values would crash the readers that walk them (decoding, ``show``) with a
`RecursionError`, so import and verify refuse them.
"""

_KEY = re.compile(r"[0-9a-f]{64}")
_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")  # canonical decimal, below 10**9
_NON_FINITE = frozenset({"nan", "inf", "-inf"})
_SURROGATE = re.compile("[\ud800-\udfff]")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str | bytes) -> Any:
    """Strict JSON: NaN/Infinity refused; deep nesting raises ValueError, not a crash."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


# -- checks shared by import, export, copy and verify ---------------------------------------


def _shape_problem(value: Any) -> str | None:
    """Return what makes a parsed JSON value unsafe to walk or print, or None.

    Nesting deeper than `MAX_NESTING` and strings holding a lone surrogate (text that is
    not valid Unicode: printing or storing it fails) are refused.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "it holds text that is not valid Unicode (a lone surrogate)"
        elif isinstance(item, (list, dict)):
            if depth > MAX_NESTING:
                return f"it is nested deeper than {MAX_NESTING} levels"
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
    return None


def _hashable_key(key: Any) -> bool:
    """Whether a 'dict' tag key decodes to something hashable (no list or dict inside)."""
    stack = [key]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            return False
        if isinstance(item, dict):
            tag = item.get(TAG)
            if tag is None or tag == "dict":
                return False
            if tag == "tuple":
                payload = item.get("v")
                if not isinstance(payload, list):
                    return False
                stack.extend(payload)
    return True


def _tag_problem(tagged: dict[str, Any], stack: list[Any]) -> str | None:
    """Check one type-tagged object and push what the decoder would walk into."""
    tag = tagged[TAG]
    if set(tagged) != {TAG, "v"}:
        return f"a type tag object must have exactly the fields {TAG!r} and 'v'"
    if not isinstance(tag, str):
        return f"a type tag must be a string, got {_dumps(tag)[:40]}"
    payload = tagged["v"]
    if tag == "tuple":
        if not isinstance(payload, list):
            return "a 'tuple' tag needs a list"
        stack.extend(payload)
    elif tag == "dict":
        if not isinstance(payload, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in payload
        ):
            return "a 'dict' tag needs a list of [key, value] pairs"
        if not all(_hashable_key(k) for k, _ in payload):
            return "a 'dict' tag has a key that decodes to a list or dict (not hashable)"
        for pair in payload:
            stack.extend(pair)
    elif tag == "bytes":
        if not isinstance(payload, str):
            return "a 'bytes' tag needs a base64 string"
        try:
            base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return "a 'bytes' tag holds invalid base64"
    elif tag == "float":
        if payload not in _NON_FINITE:
            return "a 'float' tag needs 'nan', 'inf' or '-inf'"
    elif tag:
        # A class tag ("module:QualName", or a name given to register_type): whether the
        # class is registered is the reader's business; here the payload only has to be
        # well-formed tagged JSON.
        if isinstance(payload, dict):
            stack.extend(payload.values())
        else:
            stack.append(payload)
    else:
        return "a type tag must not be empty"
    return None


def sample_problem(text: str) -> str | None:
    """Return what is wrong with a stored sample text, or None if it decodes.

    A sample decodes when it is strict JSON whose type tags are well formed. A class tag
    counts as decodable even when its class is not registered in this process.
    """
    try:
        value = _loads(text)
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    shape = _shape_problem(value)
    if shape is not None:
        return shape
    if TAG not in text:
        return None  # decode_sample reads such a text as plain JSON
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if TAG in item:
                problem = _tag_problem(item, stack)
                if problem is not None:
                    return problem
            else:
                stack.extend(item.values())
    return None


def content_problem(key: str, content: str) -> str | None:
    """Return what is wrong with a key and its request content, or None."""
    if not _KEY.fullmatch(key):
        return "the key is not 64 lowercase hex digits"
    if digest(content) != key:
        return "the key is not the SHA-256 of its content (the content was altered)"
    try:
        data = _loads(content)
    except ValueError as exc:
        return f"the content is not valid JSON ({exc})"
    if not isinstance(data, dict) or "request" not in data:
        return "the content is not a JSON object with a 'request' field"
    shape = _shape_problem(data)
    return None if shape is None else f"the content: {shape}"


def record_problems(record: KeyRecord, *, contiguous: bool = True) -> list[str]:
    """Return every problem of one stored key: content, sample texts, and gaps."""
    problems: list[str] = []
    found = content_problem(record.key, record.content)
    if found is not None:
        problems.append(found)
    for index in sorted(record.samples):
        found = sample_problem(record.samples[index])
        if found is not None:
            problems.append(f"sample {index}: {found}")
    if contiguous:
        gaps = gap_problem(record.samples)
        if gaps is not None:
            problems.append(gaps)
    return problems


def gap_problem(indices: Iterable[int]) -> str | None:
    """Say which indices are missing when ``indices`` are not 0, 1, ..., n-1 (else None).

    Costs O(n log n) in the indices present, never in the largest index.
    """
    missing: list[str] = []
    expected = 0
    for index in sorted(indices):
        if index > expected:
            last = index - 1
            missing.append(str(expected) if last == expected else f"{expected}-{last}")
            if len(missing) > 10:
                break
        expected = index + 1
    if not missing:
        return None
    shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
    return f"the sample list has gaps: index {shown} missing"


# -- writing --------------------------------------------------------------------------------
