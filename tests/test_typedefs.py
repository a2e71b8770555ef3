"""Requests, batches, responses and the model contracts."""

from __future__ import annotations

import copy
import pickle
from dataclasses import FrozenInstanceError, dataclass
from typing import Any

import pytest

from cachesaver import CacheSaverError, InvalidRequestError
from cachesaver.typedefs import (
    Batch,
    BatchRequestModel,
    Request,
    Response,
    SingleRequestModel,
    request_content,
)


@dataclass(frozen=True)
class Decoding(Request):
    temperature: float = 1
    max_completion_tokens: int | None = None


@dataclass(frozen=True)
class Required(Request):
    model_name: str


def test_request_has_the_four_fields_with_defaults() -> None:
    """A Request carries prompt, n, request_id and namespace, with n=1 by default."""
    r = Request("hi")
    assert (r.prompt, r.n, r.request_id, r.namespace) == ("hi", 1, None, "default")


def test_request_is_frozen() -> None:
    """Assigning to a Request field raises, so requests can be shared safely."""
    r = Request("hi")
    with pytest.raises(FrozenInstanceError):
        r.n = 3  # type: ignore[misc]


def test_subclass_adds_fields_with_and_without_defaults() -> None:
    """Subclasses add decoding fields, with defaults or required."""
    r = Decoding(prompt="x", n=2, request_id="a", namespace="ns", temperature=0.5)
    assert r.temperature == 0.5 and r.max_completion_tokens is None
    q = Required("x", "gpt", n=3)
    assert q.model_name == "gpt" and q.n == 3


def test_undeclared_field_reads_as_none() -> None:
    """Reading a field no class declares returns None (request.stop or None works)."""
    r = Decoding("x")
    assert r.stop is None
    assert r.seed is None
    assert (r.top_p or 1) == 1


def test_private_and_dunder_names_still_raise() -> None:
    """Private and dunder attributes that do not exist raise AttributeError."""
    r = Request("x")
    with pytest.raises(AttributeError):
        _ = r._secret
    with pytest.raises(AttributeError):
        _ = r.__missing_dunder__


def test_request_copies_and_pickles_like_a_dataclass() -> None:
    """copy and pickle work on requests (the None fallback does not confuse them)."""
    r = Decoding("x", n=2, temperature=0.3)
    assert copy.copy(r) == r
    assert pickle.loads(pickle.dumps(r)) == r


@pytest.mark.parametrize("bad", [0, -1, "3", 2.5, True, None])
def test_bad_n_is_refused_at_construction(bad: Any) -> None:
    """n that is not a positive int raises a CacheSaverError naming the field 'n'."""
    with pytest.raises(InvalidRequestError, match="'n'") as info:
        Request("x", n=bad)
    assert isinstance(info.value, CacheSaverError)
    assert isinstance(info.value, (ValueError, TypeError))


def test_bad_namespace_and_request_id_are_refused() -> None:
    """namespace must be a str and request_id a str or None."""
    with pytest.raises(InvalidRequestError, match="'namespace'"):
        Request("x", namespace=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="'request_id'"):
        Request("x", request_id=7)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("prompt", {1, 2}),
        ("prompt", {"a": float("nan")}),
        ("prompt", [{"role": "user", "content": object()}]),
        ("prompt", {1: "non-str key"}),
        ("temperature", float("inf")),
    ],
)
def test_unencodable_field_is_refused_naming_it(field: str, value: Any) -> None:
    """A prompt or field with no canonical encoding fails at construction, naming it."""
    kwargs = {"prompt": "ok", field: value}
    with pytest.raises(InvalidRequestError, match=repr(field)):
        Decoding(**kwargs)


def test_prompt_may_be_a_list_of_chat_messages() -> None:
    """A prompt can be any JSON-like structure, such as chat messages."""
    r = Request([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert "be brief" in request_content(r)


def test_response_repr_shows_all_three_lists() -> None:
    """Response's repr shows data, cached and duplicated."""
    r = Response(data=["a", "b"], cached=[True, False], duplicated=[False, True])
    assert repr(r) == ("Response(data=['a', 'b'], cached=[True, False], duplicated=[False, True])")
    assert Response(data=["a"]).cached is None and Response(data=["a"]).duplicated is None


def test_batch_holds_requests_in_order() -> None:
    """A Batch keeps its requests in the given order."""
    a, b = Request("a"), Request("b")
    assert Batch(requests=[a, b]).requests == [a, b]


def test_models_can_be_subclassed_or_structural() -> None:
    """Both contracts can be subclassed (as in the notebook) or met by duck typing."""

    class Both(SingleRequestModel, BatchRequestModel):
        def __init__(self, name: str) -> None:
            self.name = name

        async def request(self, request: Request) -> Response:
            return Response(data=[self.name] * request.n)

        async def batch_request(self, batch: Batch) -> list[Response]:
            return [await self.request(r) for r in batch.requests]

    class Duck:
        async def request(self, request: Request) -> Response:
            return Response(data=["quack"])

    assert Both("m").name == "m"
    assert isinstance(Both("m"), SingleRequestModel)
    assert isinstance(Both("m"), BatchRequestModel)
    assert isinstance(Duck(), SingleRequestModel)
    assert not isinstance(Duck(), BatchRequestModel)


def test_with_n_keeps_content_and_instance_attributes() -> None:
    """with_n changes only n; attributes set outside the fields travel with the copy."""
    from cachesaver.typedefs import with_n

    r = Decoding("q", n=1, namespace="ns", request_id="r", temperature=0.2)
    object.__setattr__(r, "_transport", {"timeout": 3})
    copy = with_n(r, 4)
    assert copy.n == 4 and (copy.prompt, copy.namespace, copy.temperature) == ("q", "ns", 0.2)
    assert request_content(copy) == request_content(r)
    assert copy._transport == {"timeout": 3}
    assert r.n == 1


def test_text_that_is_not_valid_unicode_is_refused_naming_the_field() -> None:
    """A lone surrogate (half an emoji) in a field fails at construction, naming it."""
    with pytest.raises(InvalidRequestError, match=r"'prompt'.*surrogate"):
        Request("broken emoji \ud83d")
    with pytest.raises(InvalidRequestError, match="'stop'"):

        @dataclass(frozen=True)
        class WithStop(Request):
            stop: list[str] | None = None

        WithStop("fine", stop=["ok", "\udc00"])
