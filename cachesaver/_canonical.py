"""Canonical JSON: one text per value, the same in every process, machine and Python.

Used for request keys. Rules (SEMANTICS "Keys"): lists and tuples are the same and keep
their order; dict key order does not matter; ``1 == 1.0`` encode alike while ``True`` and
``1`` do not; dict keys must be strings; NaN and infinities are refused; sets (whose order
depends on the process) are refused. Bounds keep every key encodable in every process:
at most `MAX_DEPTH` levels of nesting and integers of at most `MAX_INT_DIGITS` digits
(Python refuses to print ints past a per-process limit that can be as low as 640 digits).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

from cachesaver.errors import CacheSaverError

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "CanonicalError",
    "canonical_json",
    "digest",
    "plain_json",
    "snapshot_json",
]

MAX_DEPTH = 100
MAX_INT_DIGITS = 600
_INT_LIMIT = 10**MAX_INT_DIGITS

_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


def _encode_with(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode`` for the checked values of this module, with one C encoder made
    once (``encode`` makes a new one per call) when this Python has it."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has the C encoder
        return encoder.encode
    try:
        # No cycle check (markers=None): every value here has passed a depth-bounded walk.
        scan = make(
            None,
            encoder.default,
            json.encoder.encode_basestring,
            None,
            encoder.key_separator,
            encoder.item_separator,
            encoder.sort_keys,
            encoder.skipkeys,
            encoder.allow_nan,
        )
    except TypeError:  # pragma: no cover - a Python whose C encoder takes other arguments
        return encoder.encode
    join = "".join

    def encode(value: Any) -> str:
        return join(scan(value, 0))

    probe = {"b": [1, 2.5, "é\n", None, True], "a": {"z": -0.0, "y": 1e300}}
    return encode if encode(probe) == encoder.encode(probe) else encoder.encode


_dumps = _encode_with(_encoder)


class CanonicalError(CacheSaverError, ValueError):
    """A value has no canonical encoding; ``path`` says where inside it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def _normalize(value: Any, path: str, depth: int = 0) -> Any:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_INT_LIMIT < value < _INT_LIMIT:
            return value
        raise CanonicalError(
            path,
            f"an int of more than {MAX_INT_DIGITS} digits cannot be part of a key; "
            "pass it as a str",
        )
    if kind is float:
        if not math.isfinite(value):
            raise CanonicalError(path, f"{value!r} is not a finite number")
        return int(value) if value.is_integer() else value
    if kind is list or kind is tuple or kind is dict:
        if depth >= MAX_DEPTH:
            raise CanonicalError(
                path, f"nested more than {MAX_DEPTH} levels deep; flatten it (a str is fine)"
            )
        if kind is dict:
            out: dict[str, Any] = {}
            for k, item in value.items():
                if type(k) is not str:
                    raise CanonicalError(path, f"dict key {k!r} is a {type(k).__name__}, not a str")
                out[k] = _normalize(item, f"{path}[{k!r}]", depth + 1)
            return out
        return [_normalize(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if kind is set or kind is frozenset:
        raise CanonicalError(
            path,
            f"a {kind.__name__} cannot be part of a request key: its order differs between "
            "processes, so the same call would miss and pay again; pass a sorted list",
        )
    # Subclasses of the JSON types (IntEnum, str enums, ...) are refused on purpose: their
    # meaning is their class, which a canonical encoding would silently drop.
    raise CanonicalError(
        path,
        f"a {kind.__module__}.{kind.__qualname__} cannot be part of a request key; "
        "use str, int, float, bool, None, list, tuple or dict with str keys",
    )


class _Refused(Exception):
    """Raised by the fast walks; `_normalize` then finds and names the problem."""


def _needs_copy(value: Any, depth: int = 0) -> bool:
    """Check ``value`` without copying it; True if it holds an integral float.

    Only integral floats (``1.0``, encoded as ``1``) make the canonical text differ from
    the plain ``sort_keys`` dump of the value (tuples already encode as lists). Anything
    `_normalize` would refuse (the bounds included) raises `_Refused`.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return False
    if kind is int:
        if -_INT_LIMIT < value < _INT_LIMIT:
            return False
        raise _Refused
    if kind is float:
        if not math.isfinite(value):
            raise _Refused
        return bool(value.is_integer())
    if depth >= MAX_DEPTH:
        raise _Refused
    needs = False
    if kind is list or kind is tuple:
        for item in value:
            if type(item) is not str and _needs_copy(item, depth + 1):
                needs = True
        return needs
    if kind is dict:
        for k, item in value.items():
            if type(k) is not str:
                raise _Refused
            if type(item) is not str and _needs_copy(item, depth + 1):
                needs = True
        return needs
    raise _Refused


def _copy(value: Any) -> Any:
    """`_normalize` for a value `_needs_copy` accepted (no paths: it cannot fail)."""
    kind = type(value)
    if kind is float:
        return int(value) if value.is_integer() else value
    if kind is list or kind is tuple:
        return [_copy(item) for item in value]
    if kind is dict:
        return {k: _copy(item) for k, item in value.items()}
    return value


def _walk(
    value: Any, depth: int, convert: Callable[[Any], Any] | None, tuples: bool
) -> tuple[Any, bool]:
    """A deep copy of ``value`` and whether it holds an integral float, in one walk.

    The same checks as `_needs_copy`; raises `_Refused` likewise. ``tuples`` keeps tuples
    (else they become lists); any other object goes through ``convert`` (whose result is
    plain data, walked as it is) or is refused.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value, False
    if kind is int:
        if -_INT_LIMIT < value < _INT_LIMIT:
            return value, False
        raise _Refused
    if kind is float:
        if not math.isfinite(value):
            raise _Refused
        return value, value.is_integer()
    if depth >= MAX_DEPTH:
        raise _Refused
    integral = False
    if kind is dict:
        out: dict[str, Any] = {}
        for k, item in value.items():
            if type(k) is not str:
                raise _Refused
            if type(item) is str:  # the common case, without a call
                out[k] = item
            else:
                out[k], found = _walk(item, depth + 1, convert, tuples)
                if found:
                    integral = True
        return out, integral
    if kind is list or kind is tuple:
        items: list[Any] = []
        for item in value:
            if type(item) is str:
                items.append(item)
            else:
                copied, found = _walk(item, depth + 1, convert, tuples)
                items.append(copied)
                if found:
                    integral = True
        return (tuple(items) if tuples and kind is tuple else items), integral
    if convert is None:
        raise _Refused
    return _walk(convert(value), depth, None, tuples)


def _walk_fields(
    value: dict[str, Any], convert: Callable[[Any], Any] | None, tuples: bool
) -> tuple[dict[str, Any], list[str]]:
    """`_walk` of each field of a request's content: the copy, and the fields whose value
    holds an integral float (only those are normalised again for the text)."""
    copy: dict[str, Any] = {}
    integral: list[str] = []
    for k, item in value.items():
        if type(k) is not str:
            raise _Refused
        copy[k], found = _walk(item, 1, convert, tuples)
        if found:
            integral.append(k)
    return copy, integral


def _text(copy: dict[str, Any], integral: list[str]) -> str:
    """The canonical text of a walked copy: fields with an integral float are normalised."""
    if not integral:
        return _dumps(copy)
    normal = dict(copy)  # only the fields with an integral float are walked again
    for k in integral:
        normal[k] = _copy(copy[k])
    return _dumps(normal)


def snapshot_json(value: dict[str, Any], path: str = "value") -> tuple[dict[str, Any], str]:
    """A deep copy of ``value`` (lists, tuples, dicts kept) and its canonical JSON text.

    One walk copies and checks; the text is made from the copy, so it is exactly the
    content of the copy whatever the caller does to ``value`` afterwards. Raises
    `CanonicalError` as `canonical_json` does.
    """
    try:
        copy, integral = _walk_fields(value, None, True)
    except (_Refused, RecursionError):
        _normalize(value, path)  # raises CanonicalError naming the place
        raise AssertionError("a value the fast walk refused was accepted") from None
    return copy, _text(copy, integral)


def plain_json(
    content: dict[str, Any], convert: Callable[[Any], Any] | None = None
) -> tuple[dict[str, Any], str] | None:
    """A fresh plain-JSON copy of ``content`` and its canonical text, in one walk.

    Lists, tuples (copied as lists), dicts with str keys and JSON scalars are copied and
    checked as `snapshot_json` checks them; any other object is passed to ``convert``,
    which returns its plain JSON form (or raises). ``None`` when something is refused
    (the caller then takes its slow path, which says what is wrong and where).
    """
    try:
        copy, integral = _walk_fields(content, convert, False)
        text = _text(copy, integral)
        text.encode("utf-8")  # a lone surrogate cannot be hashed: the slow path says so
    except Exception:  # refused, too deep, not Unicode, or ``convert`` failed
        return None
    return copy, text


def canonical_json(value: Any, path: str = "value") -> str:
    """Return the canonical JSON text of ``value`` or raise `CanonicalError`.

    One checking pass over the value; a copy only when it holds an integral float.
    """
    try:
        needs = _needs_copy(value)
    except (_Refused, RecursionError):
        return _dumps(_normalize(value, path))  # raises CanonicalError naming the place
    return _dumps(_copy(value) if needs else value)


def digest(text: str) -> str:
    """Return the hex SHA-256 of ``text`` (portable: never Python's ``hash()``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
