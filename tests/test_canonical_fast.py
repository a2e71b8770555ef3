"""The fast canonical encoder gives exactly the text of the reference normalisation."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from cachesaver._canonical import (
    CanonicalError,
    _dumps,
    _normalize,
    canonical_json,
    plain_json,
    snapshot_json,
)


def _value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["str", "int", "float", "bool", "none"] + (
        ["list", "tuple", "dict"] if depth < 4 else []
    )
    kind = rng.choice(kinds)
    if kind == "str":
        return rng.choice(["", "a", "é", "x y", "1.0"])
    if kind == "int":
        return rng.randint(-3, 3)
    if kind == "float":
        return rng.choice([0.0, 1.0, -2.0, 0.5, 1e20, 3.25])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    items = [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "list":
        return items
    if kind == "tuple":
        return tuple(items)
    return {rng.choice("abcde") + str(i): item for i, item in enumerate(items)}


def test_fast_path_matches_the_reference_on_random_values() -> None:
    """For 3,000 random JSON-like values the one-pass encoder gives the reference text."""
    rng = random.Random(7)
    for _ in range(3000):
        value = _value(rng)
        assert canonical_json(value) == _dumps(_normalize(value, "value"))


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": [1, {"b": math.nan}]}, "value['a'][1]['b']"),
        ([{1: "x"}], "value[0]"),
        ({"s": {"a", "b"}}, "value['s']"),
    ],
)
def test_refusals_still_name_the_place(value: Any, where: str) -> None:
    """A value the fast walk refuses is reported by the reference walk, with its path."""
    with pytest.raises(CanonicalError) as caught:
        canonical_json(value)
    assert caught.value.path == where


def _same_shape(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_shape(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_shape(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_snapshot_json_copies_and_encodes_in_one_walk() -> None:
    """snapshot_json gives the reference text and an equal, independent deep copy."""
    rng = random.Random(11)
    for _ in range(3000):
        value = {"prompt": _value(rng), "extra": _value(rng)}
        copy, text = snapshot_json(value, "request")
        assert text == _dumps(_normalize(value, "request"))
        assert _same_shape(copy, value)
        for k, item in value.items():
            if isinstance(item, (list, dict)):
                assert copy[k] is not item


def test_snapshot_json_refusals_name_the_place() -> None:
    """A value snapshot_json refuses is reported with the same path as canonical_json."""
    with pytest.raises(CanonicalError) as caught:
        snapshot_json({"a": [1, {"b": math.inf}]}, "request")
    assert caught.value.path == "request['a'][1]['b']"


def _as_lists(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_as_lists(item) for item in value]
    if isinstance(value, dict):
        return {k: _as_lists(item) for k, item in value.items()}
    return value


def test_plain_json_copies_as_lists_and_encodes_in_one_walk() -> None:
    """plain_json gives the reference text and an independent copy with tuples as lists."""
    rng = random.Random(13)
    for _ in range(3000):
        value = {"prompt": _value(rng), "extra": _value(rng)}
        built = plain_json(value)
        assert built is not None
        copy, text = built
        assert text == _dumps(_normalize(value, "request"))
        assert _same_shape(copy, _as_lists(value))
        for k, item in value.items():
            if isinstance(item, (list, dict)):
                assert copy[k] is not item


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, {"b": math.nan}]},
        {"a": [{1: "x"}]},
        {"a": {"b", "c"}},
        {"a": 10**700},
        {"a": "\ud83d"},
        {"a": [object()]},
    ],
)
def test_plain_json_leaves_what_it_refuses_to_the_slow_path(value: Any) -> None:
    """Anything the key walk would refuse (or cannot copy) gives None, not a wrong text."""
    assert plain_json(value) is None
