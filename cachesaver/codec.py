"""Code-free storage format for samples: JSON, with type tags for rich objects.

Plain JSON values (str, int, float, bool, None, list, dict with str keys) are stored as
they are. Everything else is a tagged object ``{"$cs": TAG, "v": PAYLOAD}``:

- ``tuple``, ``bytes``, non-finite floats and dicts that are not plain JSON (non-str keys,
  or a ``"$cs"`` key of their own) have built-in tags;
- dataclass, attrs and pydantic instances are tagged ``module:QualName``.

Decoding never imports a module and never calls a class because a tag names it: a tag
restores only classes registered in this process, by `register_type` or implicitly when
this process itself stored an instance (its own model produced it). An unknown tag raises
`UnknownTypeTagError` telling which class to register. Nothing is ever pickled.

Bounds (the same as for request keys): at most ``MAX_DEPTH`` levels of nesting and ints of
at most ``MAX_INT_DIGITS`` digits, so every stored sample can be read back by every
process. A text that cannot be decoded raises `DamagedSampleError`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

from cachesaver._canonical import MAX_DEPTH, MAX_INT_DIGITS
from cachesaver.errors import (
    CacheSaverError,
    DamagedSampleError,
    UnknownTypeTagError,
    UnstorableSampleError,
)

__all__ = ["decode_sample", "encode_sample", "register_type", "registered_types"]

TAG = "$cs"
_KINDS = ("dataclass", "attrs", "pydantic")
_registry: dict[str, tuple[str, type]] = {}
_tag_for: dict[type, str] = {}  # the tag each known class is written with
_init_names: dict[type, frozenset[str]] = {}  # dataclass fields taken by __init__
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_INT_LIMIT = 10**MAX_INT_DIGITS
# Reading accepts what `cachesaver import` accepts (export.MAX_NESTING JSON levels, tags
# included); writing stays within MAX_DEPTH levels of the sample itself.
_MAX_READ_DEPTH = 257


def _kind_of(cls: type) -> str | None:
    if dataclasses.is_dataclass(cls):
        return "dataclass"
    if getattr(cls, "__attrs_attrs__", None) is not None:
        return "attrs"
    if callable(getattr(cls, "model_validate", None)) and callable(
        getattr(cls, "model_dump", None)
    ):
        return "pydantic"
    return None


def _tag_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_type(cls: type, tag: str | None = None) -> str:
    """Allow stored samples tagged as ``cls`` to be restored; return the tag.

    ``cls`` must be a dataclass, an attrs class or a pydantic model. Register the classes
    your model returns before replaying a cache in a new process.
    """
    kind = _kind_of(cls)
    if kind is None:
        raise TypeError(
            f"cannot register {cls!r}: only dataclass, attrs and pydantic classes can be "
            "stored; convert other objects to JSON-like data in your model"
        )
    name = tag or _tag_of(cls)
    _registry[name] = (kind, cls)
    _tag_for[cls] = name
    return name


def registered_types() -> dict[str, type]:
    """Return the classes a tag may restore in this process, by tag."""
    return {tag: cls for tag, (_, cls) in _registry.items()}


def _tagged(tag: str, payload: Any) -> dict[str, Any]:
    return {TAG: tag, "v": payload}


def _to_json(value: Any, path: str, depth: int = 0) -> Any:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_INT_LIMIT < value < _INT_LIMIT:
            return value
        raise UnstorableSampleError(
            f"{path} is an int of more than {MAX_INT_DIGITS} digits, which not every process "
            "can read back; return it as a str"
        )
    if kind is float:
        return value if math.isfinite(value) else _tagged("float", repr(value))
    if kind is bytes:
        return _tagged("bytes", base64.b64encode(value).decode("ascii"))
    if depth >= MAX_DEPTH:
        raise UnstorableSampleError(
            f"{path} is nested more than {MAX_DEPTH} levels deep; flatten it (a str is fine)"
        )
    deeper = depth + 1
    if kind is list:
        return [_to_json(item, f"{path}[{i}]", deeper) for i, item in enumerate(value)]
    if kind is dict:
        if TAG not in value and all(type(k) is str for k in value):
            return {k: _to_json(item, f"{path}[{k!r}]", deeper) for k, item in value.items()}
        return _tagged(
            "dict",
            [
                [_to_json(k, f"{path} key", deeper), _to_json(v, f"{path}[{k!r}]", deeper)]
                for k, v in value.items()
            ],
        )
    if kind is tuple:
        return _tagged(
            "tuple", [_to_json(item, f"{path}[{i}]", deeper) for i, item in enumerate(value)]
        )
    return _object_to_json(value, path, deeper)


def _object_to_json(value: Any, path: str, depth: int) -> Any:
    cls = type(value)
    tag = _tag_for.get(cls) or _tag_of(cls)
    known = _registry.get(tag)
    kind = known[0] if known is not None and known[1] is cls else _kind_of(cls)
    if kind == "dataclass":
        payload = {
            f.name: _to_json(getattr(value, f.name), f"{path}.{f.name}", depth)
            for f in dataclasses.fields(value)
        }
    elif kind == "attrs":
        payload = {
            a.name: _to_json(getattr(value, a.name), f"{path}.{a.name}", depth)
            for a in cls.__attrs_attrs__
        }
    elif kind == "pydantic":
        payload = _to_json(value.model_dump(mode="json"), path, depth)
    else:
        raise UnstorableSampleError(
            f"{path} is a {cls.__module__}.{cls.__qualname__}, which cannot be stored as "
            "code-free JSON; return str/int/float/bool/None/list/dict, or a dataclass, "
            "attrs or pydantic object (cachesaver never pickles)"
        )
    if known is None or known[1] is not cls:
        # This process made the object, so its class is trusted here.
        _registry[tag] = (kind, cls)
        _tag_for[cls] = tag
    return _tagged(tag, payload)


def encode_sample(value: Any) -> str:
    """Return the stored JSON text of one sample, or raise `UnstorableSampleError`."""
    try:
        text = _dumps(value) if type(value) is str else _dumps(_to_json(value, "sample"))
    except RecursionError:  # a self-referencing or absurdly deep object graph
        raise UnstorableSampleError(
            f"sample is nested too deeply to store (more than {MAX_DEPTH} levels); flatten it"
        ) from None
    if text.isascii():  # nothing to check (and no bytes made to check it)
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnstorableSampleError(
            f"sample text is not valid Unicode ({exc.reason} at position {exc.start}: a lone "
            "surrogate such as half an emoji); clean the model output before returning it"
        ) from None
    return text


def _from_json(value: Any, depth: int = 0) -> Any:
    kind = type(value)
    if kind is not list and kind is not dict:
        return value
    if depth > _MAX_READ_DEPTH:
        raise DamagedSampleError(
            f"the stored sample is nested more than {_MAX_READ_DEPTH} levels deep"
        )
    deeper = depth + 1
    if kind is list:
        return [_from_json(item, deeper) for item in value]
    tag = value.get(TAG)
    if tag is None:
        return {k: _from_json(item, deeper) for k, item in value.items()}
    payload = value.get("v")
    if tag == "tuple":
        return tuple(_from_json(item, deeper) for item in payload)
    if tag == "dict":
        return {_from_json(k, deeper): _from_json(v, deeper) for k, v in payload}
    if tag == "bytes":
        return base64.b64decode(payload, validate=True)
    if tag == "float":
        return float(payload)
    known = _registry.get(tag)
    if known is None:
        raise UnknownTypeTagError(
            f"a stored sample is tagged {tag!r}, a class this process has not registered; "
            f"call cachesaver.register_type(<that class>) before reading (decoding never "
            "imports or calls a class a tag names on its own)"
        )
    cls_kind, cls = known
    if cls_kind == "pydantic":
        return cls.model_validate(_from_json(payload, deeper))  # type: ignore[attr-defined]
    fields = {k: _from_json(v, deeper) for k, v in payload.items()}
    if cls_kind == "dataclass":
        init = _init_names.get(cls)
        if init is None:
            init = _init_names[cls] = frozenset(f.name for f in dataclasses.fields(cls) if f.init)
        obj = cls(**{k: v for k, v in fields.items() if k in init})
        for k, v in fields.items():
            if k not in init:
                object.__setattr__(obj, k, v)
        return obj
    attrs_fields = cls.__attrs_attrs__  # type: ignore[attr-defined]
    obj = cls(**{a.alias: fields[a.name] for a in attrs_fields if a.init and a.name in fields})
    for a in attrs_fields:
        if not a.init and a.name in fields:
            object.__setattr__(obj, a.name, fields[a.name])
    return obj


_scan: Any = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_jiter_loads: Callable[[bytes], Any] | None
try:  # pydantic's JSON parser (a dependency, as of the OpenAI SDK): about twice as fast
    from jiter import from_json as _jiter_loads
except ImportError:  # pragma: no cover - a dependency; the standard library still works
    _jiter_loads = None


def _loads(text: str) -> Any:
    """The standard library's parse of ``text`` (raises ValueError for what it refuses)."""
    try:  # the C scanner straight away: a stored text is one JSON value, no spaces
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):  # anything else: the full parser accepts it or says why not
        value = json.loads(text)
    return value


def decode_sample(text: str) -> Any:
    """Return the sample stored as ``text`` (the inverse of `encode_sample`).

    Raises `DamagedSampleError` for a text `encode_sample` cannot have made, and
    `UnknownTypeTagError` for a class this process has not registered.
    """
    try:
        if _jiter_loads is None:
            value = _loads(text)
        else:
            # jiter accepts a subset of what the standard library does and gives the
            # same values (tests/test_codec_fast.py compares them on edge cases and random
            # texts); whatever it refuses (a lone surrogate, deeper nesting than 200
            # levels, ...) the standard library decides, as before.
            try:
                value = _jiter_loads(text.encode())
            except ValueError:  # UnicodeEncodeError included
                value = _loads(text)
        if "$" not in text or TAG not in text:  # one character first: a memchr
            return value
        return _from_json(value)
    except CacheSaverError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        # JSONDecodeError and int-too-long are ValueErrors; a broken tag's payload gives
        # TypeError/KeyError/AttributeError; nesting past the stack gives RecursionError.
        raise DamagedSampleError(
            f"a stored sample cannot be decoded ({type(exc).__name__}: {str(exc)[:200]}); "
            "it was not written by cachesaver or was damaged; `cachesaver verify` finds such "
            "samples"
        ) from None
