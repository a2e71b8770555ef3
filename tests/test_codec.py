"""The code-free sample format: JSON with type tags, never pickle, never imports."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import attrs
import pydantic
import pytest

from cachesaver import UnknownTypeTagError, UnstorableSampleError, register_type
from cachesaver.codec import decode_sample, encode_sample


@dataclasses.dataclass(frozen=True)
class Choice:
    text: str
    score: float
    tags: tuple[str, ...] = ()
    extra: Any = None


@attrs.define
class Step:
    _private: int
    name: str
    hidden: int = attrs.field(init=False, default=0)


class Usage(pydantic.BaseModel):
    prompt_tokens: int
    completion_tokens: int


class Completion(pydantic.BaseModel):
    text: str
    usage: Usage


@pytest.mark.parametrize(
    "value",
    [
        "text",
        "",
        42,
        -1.5,
        True,
        None,
        [1, "a", None, [2.5]],
        {"role": "assistant", "content": "hi"},
        ("a", 1),
        {1: "int key", (1, 2): "tuple key"},
        {"$cs": "looks like a tag"},
        b"\x00bytes",
        float("nan"),
        float("-inf"),
    ],
)
def test_plain_values_round_trip_with_their_types(value: Any) -> None:
    """JSON values, tuples, bytes, odd dicts and non-finite floats come back as they went."""
    back = decode_sample(encode_sample(value))
    assert type(back) is type(value)
    if value == value:  # NaN is never equal to itself
        assert back == value
    else:
        assert back != back


def test_plain_json_is_stored_as_plain_json() -> None:
    """A string or dict sample is stored as the JSON text anyone can read."""
    assert encode_sample("hello") == '"hello"'
    assert json.loads(encode_sample({"a": [1, 2]})) == {"a": [1, 2]}


def test_dataclass_attrs_and_pydantic_objects_round_trip() -> None:
    """Rich provider-style objects come back as the same class with the same fields."""
    step = Step(1, "s")
    step.hidden = 9
    for value in [
        Choice("t", 0.5, ("x",), extra={"k": Choice("inner", 1.0)}),
        step,
        Completion(text="x", usage=Usage(prompt_tokens=3, completion_tokens=4)),
    ]:
        back = decode_sample(encode_sample(value))
        assert type(back) is type(value)
        assert back == value
    assert decode_sample(encode_sample(step)).hidden == 9


def test_unknown_tag_is_an_error_that_says_what_to_register() -> None:
    """A tag this process never registered is refused, never imported."""
    text = json.dumps({"$cs": "os:system", "v": {"command": "echo pwned"}})
    with pytest.raises(UnknownTypeTagError, match="register_type"):
        decode_sample(text)


def test_decoding_never_imports_a_module_named_by_a_tag() -> None:
    """A tag naming a module that is not loaded does not load it."""
    assert "antigravity" not in sys.modules
    with pytest.raises(UnknownTypeTagError):
        decode_sample(json.dumps({"$cs": "antigravity:Thing", "v": {}}))
    assert "antigravity" not in sys.modules


def test_registered_class_restores_in_a_fresh_registry() -> None:
    """register_type is what lets another process restore a class it did not store."""

    @dataclasses.dataclass
    class Local:
        x: int

    tag = register_type(Local, tag="tests:Local-explicit")
    text = json.dumps({"$cs": tag, "v": {"x": 5}})
    assert decode_sample(text) == Local(5)


def test_register_type_refuses_plain_classes() -> None:
    """Only dataclass, attrs and pydantic classes can be registered."""

    class Plain:
        pass

    with pytest.raises(TypeError, match="dataclass"):
        register_type(Plain)


def test_unstorable_sample_names_its_type_and_the_fix() -> None:
    """A sample that cannot be stored says what type it was and how to make it storable."""
    with pytest.raises(UnstorableSampleError, match=r"builtins\.set.*dataclass"):
        encode_sample({"a": {1, 2}})

    class Opaque:
        pass

    with pytest.raises(UnstorableSampleError, match="Opaque"):
        encode_sample([Opaque()])


def test_a_registered_tag_is_used_when_writing() -> None:
    """register_type(cls, tag=...) makes samples of cls stored under that tag."""

    @dataclasses.dataclass
    class Versioned:
        x: int

    register_type(Versioned, tag="tests.Versioned.v1")
    text = encode_sample(Versioned(3))
    assert json.loads(text)["$cs"] == "tests.Versioned.v1"
    assert decode_sample(text) == Versioned(3)


def test_text_that_is_not_valid_unicode_cannot_be_stored() -> None:
    """A sample holding a lone surrogate is refused before it reaches any store."""
    with pytest.raises(UnstorableSampleError, match="surrogate"):
        encode_sample("bad \ud800")
    with pytest.raises(UnstorableSampleError, match="surrogate"):
        encode_sample({"text": ["fine", "bad \udfff"]})
