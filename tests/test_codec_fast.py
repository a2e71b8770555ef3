"""Decoding through the fast JSON parser gives exactly what the standard library gives."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from cachesaver import DamagedSampleError
from cachesaver.codec import decode_sample


def _same(one: Any, other: Any) -> bool:
    """Equal values of the same types (float signs and NaNs, key order and nesting)."""
    if type(one) is not type(other):
        return False
    if isinstance(one, float):
        if math.isnan(one):
            return math.isnan(other)
        return one == other and math.copysign(1.0, one) == math.copysign(1.0, other)
    if isinstance(one, list):
        return len(one) == len(other) and all(map(_same, one, other))
    if isinstance(one, dict):
        return list(one) == list(other) and all(_same(one[k], other[k]) for k in one)
    return bool(one == other)


def _standard(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None


def _decoded(text: str) -> tuple[bool, Any]:
    try:
        return True, decode_sample(text)
    except DamagedSampleError:
        return False, None


EDGE_TEXTS = [
    "-0",
    "-0.0",
    "0e0",
    "1E5",
    "1e400",
    "-1e400",
    "1e-400",
    "0.1",
    "4.35",
    "0.30000000000000004",
    "1.7976931348623157e308",
    "5e-324",
    "2.2250738585072014e-308",
    "9007199254740993",
    "9007199254740993.0",
    "123456789012345678901234567890",
    "-" + "9" * 4300,
    "NaN",
    "Infinity",
    "-Infinity",
    "true",
    "null",
    "[]",
    "{}",
    '"\\ud83d\\ude00"',
    '"\\u00E9\\u0000\\/\\n\\t"',
    '"é \u2028 \U0001f600"',
    '{"a":1,"a":2,"b":[1,{"a":null}]}',
    " [1, 2] ",
    '{"choice":{"finish_reason":"stop","logprobs":null,"message":{"content":"hi",'
    '"role":"assistant"}},"prompt_tokens":19,"completion_tokens":2,"model":"m",'
    '"id":"chatcmpl-1","created":1796190591,"system_fingerprint":null}',
    # What the fast parser refuses and the standard library accepts: lone surrogates,
    # nesting deeper than the fast parser's limit.
    '"\\ud800"',
    '{"a":"x\\udc00\\ud800y"}',
    "[" * 220 + "]" * 220,
]


@pytest.mark.parametrize("text", EDGE_TEXTS, ids=range(len(EDGE_TEXTS)))
def test_decoding_gives_the_standard_librarys_values(text: str) -> None:
    """Each edge-case text decodes to exactly the standard library's value and types."""
    ok, expected = _standard(text)
    assert ok
    assert _same(decode_sample(text), expected)


def test_texts_the_standard_library_refuses_are_damaged() -> None:
    """Texts the standard library refuses (bad numbers, raw control characters,
    trailing data, an int past Python's digit limit) still raise DamagedSampleError."""
    for text in ["01", "1.", ".5", "+1", "nan", "[1,]", '"a\x01b"', "1 2", "1" * 4301, "'a'"]:
        assert _standard(text) == (False, None)
        with pytest.raises(DamagedSampleError):
            decode_sample(text)


def _random_text(rnd: random.Random, depth: int = 0) -> str:
    atoms = [
        "0",
        "-0",
        "12",
        "1.5",
        "-0.0",
        "1e5",
        "1E-5",
        "0e0",
        "NaN",
        "-Infinity",
        "nan",
        "inf",
        "+1",
        "true",
        "null",
        "True",
        '""',
        '"a"',
        '"\\n"',
        '"\t"',
        '"\x7f"',
        '"\\u00e9"',
        '"\\ud800"',
        '"\\ud83d\\ude00"',
        '"é"',
        '"\\a"',
        "1e99999",
        "01",
        "1.",
        "-",
        "9" * 30 + ".5",
        "'a'",
    ]
    roll = rnd.random()
    if depth > 3 or roll < 0.5:
        return rnd.choice(atoms)
    if roll < 0.75:
        return "[" + ",".join(_random_text(rnd, depth + 1) for _ in range(rnd.randint(0, 3))) + "]"
    keys = ['"k"', '"a"', '"é"', '"\\u0041"']
    return (
        "{"
        + ",".join(
            rnd.choice(keys) + rnd.choice(["", " "]) + ":" + _random_text(rnd, depth + 1)
            for _ in range(rnd.randint(0, 3))
        )
        + "}"
    )


def _mutated(rnd: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rnd.randint(1, 2)):
        at = rnd.randint(0, len(chars))
        if rnd.random() < 0.4 and chars:
            del chars[min(at, len(chars) - 1)]
        else:
            chars.insert(at, rnd.choice('[]{},:"\\ 0eE.-+aN\t\x0c\xa0'))
    return "".join(chars)


def test_random_and_damaged_texts_decode_as_the_standard_library_decides() -> None:
    """On thousands of random texts, valid or damaged, a text decodes exactly when the
    standard library parses it, and to the same value."""
    rnd = random.Random(1234)
    for _ in range(5000):
        text = _random_text(rnd)
        if rnd.random() < 0.5:
            text = _mutated(rnd, text)
        ok, expected = _standard(text)
        decoded_ok, value = _decoded(text)
        assert decoded_ok == ok, text
        assert _same(value, expected), text
