"""Request keys: canonical, portable, and sensitive to exactly what is asked."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from cachesaver import AsyncCacher, Request, Response


class Echo:
    """A model with no declared identity."""

    async def request(self, request: Request) -> Response:
        return Response(data=["x"] * request.n)


class Named(Echo):
    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def identity(self) -> dict[str, str]:
        return {"provider": "test", "model": self.name}


@dataclass(frozen=True)
class Decoding(Request):
    temperature: float = 1
    seed: int | None = None


@dataclass(frozen=True)
class OtherName(Request):
    temperature: float = 1
    seed: int | None = None


def key(request: Request, model: Any = None, cache: str = "unused") -> str:
    return AsyncCacher(model or Echo(), cache).key_of(request)


def test_key_ignores_n_request_id_and_namespace() -> None:
    """n, request_id and namespace say how to draw, not what is asked: not in the key."""
    assert key(Request("q", n=1)) == key(Request("q", n=5, request_id="r", namespace="ns"))


def test_key_is_order_sensitive_for_lists() -> None:
    """A chat history [u, a, u] differs from [u, a] and from its reordering."""
    u1 = {"role": "user", "content": "hi"}
    a = {"role": "assistant", "content": "hello"}
    u2 = {"role": "user", "content": "bye"}
    keys = {key(Request([u1, a, u2])), key(Request([u1, a])), key(Request([u2, a, u1]))}
    assert len(keys) == 3


def test_tuples_and_lists_give_the_same_key() -> None:
    """A tuple and a list with the same items are the same content."""
    assert key(Request(("a", "b"))) == key(Request(["a", "b"]))


def test_dict_key_order_does_not_matter() -> None:
    """Dicts with the same items in another order give the same key."""
    assert key(Request({"a": 1, "b": 2})) == key(Request({"b": 2, "a": 1}))


def test_one_and_one_point_zero_agree_but_true_differs() -> None:
    """1 == 1.0 give the same key; True and 1 do not."""
    assert key(Decoding("q", temperature=1)) == key(Decoding("q", temperature=1.0))
    assert key(Request({"x": 1})) != key(Request({"x": True}))
    assert key(Decoding("q", temperature=0.7)) != key(Decoding("q", temperature=0.70001))


def test_subclass_fields_are_in_the_key_by_name_not_class() -> None:
    """Added fields change the key; the subclass's name does not."""
    assert key(Decoding("q", temperature=0.5)) != key(Decoding("q", temperature=0.9))
    assert key(Decoding("q", temperature=0.5)) == key(OtherName("q", temperature=0.5))


def test_none_fields_are_left_out_so_old_caches_stay_valid() -> None:
    """A field whose value is None is not in the key: adding an optional field is safe."""
    assert key(Decoding("q", temperature=1, seed=None)) == key(OtherName("q", temperature=1))

    @dataclass(frozen=True)
    class Older(Request):
        temperature: float = 1

    assert key(Decoding("q", seed=None)) == key(Older("q"))
    assert key(Decoding("q", seed=3)) != key(Older("q"))


def test_model_identity_separates_keys() -> None:
    """Two models that declare different identities never share keys."""
    r = Request("q")
    assert key(r, Named("a")) != key(r, Named("b"))
    assert key(r, Named("a")) == key(r, Named("a"))
    assert key(r, Named("a")) != key(r, Echo())


def test_key_is_a_sha256_hex_digest_pinned_across_versions() -> None:
    """The key format is stable: a pinned request keeps its pinned key."""
    k = key(Decoding([{"role": "user", "content": "héllo"}], temperature=0.5, seed=7))
    canonical = (
        '{"request":{"prompt":[{"content":"héllo","role":"user"}],"seed":7,"temperature":0.5}}'
    )
    assert k == hashlib.sha256(canonical.encode()).hexdigest()
    assert k == "5919ac36ad5cadc4d05f8f36b7f4f3e4cd85979aaf20b9e2e79b654fbaec04c9"


def test_key_is_the_same_in_another_process() -> None:
    """Keys never depend on hash(): another interpreter with another hash seed agrees."""
    code = (
        "from cachesaver import AsyncCacher, Request\n"
        "class M:\n"
        "    async def request(self, r): ...\n"
        "print(AsyncCacher(M(), 'unused').key_of(Request({'b': [1, 2.0], 'a': 'x'})))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == key(Request({"a": "x", "b": [1, 2]}))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused(bad: float) -> None:
    """NaN and infinities have no canonical form and are refused at construction."""
    with pytest.raises(ValueError, match="finite"):
        Decoding("q", temperature=bad)
