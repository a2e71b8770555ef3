"""The drop-in's one-walk request building gives exactly the documented `ChatRequest`, and
a hit is exactly the SDK object ``model_validate`` builds."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from pydantic import BaseModel

from cachesaver import InvalidRequestError
from cachesaver.models import ChatRequest
from cachesaver.models._common import jsonable
from cachesaver.models.openai import AsyncOpenAI
from cachesaver.testing.server import FakeLLMServer
from cachesaver.typedefs import request_content

MESSAGES = [{"role": "user", "content": "What is the meaning of life?"}]
_TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number", "minimum": 1.0}},
            "required": ("a",),
        },
    },
}
_EARLIER = ChatCompletionMessage(role="assistant", content="42")


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


@pytest.fixture
def client(server: FakeLLMServer, tmp_path: Path) -> AsyncOpenAI:
    return AsyncOpenAI(
        cache=str(tmp_path / "cache"), base_url=server.openai_base_url, api_key="test"
    )


def _documented(messages: Any, n: int, namespace: str, params: dict[str, Any]) -> ChatRequest:
    """The request as docs/providers.md says a drop-in call is keyed, built field by field."""
    fields = {name: jsonable(value, name) for name, value in params.items()}
    others = {k: fields.pop(k) for k in list(fields) if k not in ChatRequest.__dataclass_fields__}
    return ChatRequest(
        jsonable(messages, "messages"),
        n=n,
        namespace=namespace,
        params=others or None,
        **fields,
    )


CALLS: list[tuple[Any, dict[str, Any]]] = [
    (MESSAGES, {}),
    (MESSAGES, {"temperature": 1.0, "max_tokens": 5, "seed": 3}),
    (tuple(MESSAGES), {"temperature": 0.25, "stop": ("\n", "END")}),
    ([*MESSAGES, _EARLIER, {"role": "user", "content": "Why?"}], {"top_p": 1}),
    (MESSAGES, {"logit_bias": {"50256": -100.0}, "logprobs": True, "top_logprobs": 2}),
    (MESSAGES, {"tools": [_TOOL], "tool_choice": "auto", "parallel_tool_calls": False}),
    (MESSAGES, {"extra_body": {"top_k": 40, "weights": (1.0, 0.5)}}),
    (MESSAGES, {"reasoning_effort": "low", "response_format": {"type": "json_object"}}),
    ([{"role": "user", "content": [{"type": "text", "text": "é ✓"}]}], {"n": 3}),
]


@pytest.mark.parametrize(("messages", "params"), CALLS)
def test_dropin_request_is_the_documented_request(
    client: AsyncOpenAI, messages: Any, params: dict[str, Any]
) -> None:
    """Every field, the key text and the types (tuples as lists) match the slow build."""
    params = dict(params)
    n = params.pop("n", 1)
    extra_body = params.pop("extra_body", None)
    expected = _documented(messages, n, "ns", params)
    if extra_body is not None:
        expected = dataclasses.replace(expected, extra_body=jsonable(extra_body, "extra_body"))
    call = dict(params)
    if extra_body is not None:
        call["extra_body"] = extra_body
    built, _ = client._chat_request(messages, n, "ns", None, call)
    assert type(built) is ChatRequest
    assert built == expected
    assert request_content(built) == request_content(expected)
    for f in dataclasses.fields(ChatRequest):
        assert repr(getattr(built, f.name)) == repr(getattr(expected, f.name)), f.name


def test_dropin_request_owns_its_content(client: AsyncOpenAI) -> None:
    """Changing the caller's history, tools or extra_body afterwards changes nothing."""
    history = [{"role": "user", "content": "hi"}]
    tools: list[dict[str, Any]] = [{"type": "function", "function": {"name": "f"}}]
    body = {"top_k": [1, 2]}
    request, _ = client._chat_request(history, 1, "ns", None, {"tools": tools, "extra_body": body})
    key = request_content(request)
    history.append({"role": "assistant", "content": "hello"})
    history[0]["content"] = "changed"
    tools[0]["function"]["name"] = "g"
    body["top_k"].append(3)
    assert request.prompt == [{"role": "user", "content": "hi"}]
    assert request.tools == [{"type": "function", "function": {"name": "f"}}]
    assert request.extra_body == {"top_k": [1, 2]}
    assert request_content(request) == key


@pytest.mark.parametrize(
    ("messages", "params", "says"),
    [
        ([{"role": "user", "content": float("nan")}], {}, "prompt"),
        (MESSAGES, {"tools": [{"names": {"a", "b"}}]}, "tools"),
        (MESSAGES, {"stop": ["x", 10**700]}, "stop"),
        (MESSAGES, {"extra_body": ["not", "a", "dict"]}, "extra_body must be a dict"),
        (MESSAGES, {"n": 0}, "'n' must be a positive int"),
        (MESSAGES, {"n": 2.0}, "'n' must be a positive int"),
        ([{"role": "user", "content": "\ud83d"}], {}, "not valid Unicode"),
        ([], {}, "non-empty list of messages"),
    ],
)
async def test_bad_content_is_still_named(
    client: AsyncOpenAI, messages: Any, params: dict[str, Any], says: str
) -> None:
    """Content the fast walk cannot take gets the field-by-field path's clear error."""
    async with client:
        with pytest.raises(InvalidRequestError, match=says):
            await client.chat.completions.create(model="fake-chat", messages=messages, **params)


def _models(value: Any) -> list[BaseModel]:
    """``value`` and every SDK object inside it, depth first."""
    found: list[BaseModel] = []
    if isinstance(value, BaseModel):
        found.append(value)
        for name in type(value).model_fields:
            found.extend(_models(getattr(value, name)))
    elif isinstance(value, list):
        for item in value:
            found.extend(_models(item))
    return found


async def _hit_and_validated(
    client_class: Any,
    completion_class: Any,
    base_url: str,
    cache: str,
    monkeypatch: Any,
    call: dict[str, Any],
) -> tuple[Any, Any, dict[str, Any]]:
    """A hit of ``call``, what ``model_validate`` builds from the data the client
    validated for it, and that data."""
    options: dict[str, Any] = {"base_url": base_url, "api_key": "test"}
    async with client_class(cache=cache, **options) as client:
        await client.chat.completions.create(model="m", messages=MESSAGES, **call)
    seen: list[dict[str, Any]] = []
    built = client_class._completion

    def spy(self: Any, data: dict[str, Any]) -> Any:
        completion = built(self, data)
        seen.append(copy.deepcopy(data))  # as validated (Together's adds a field first)
        return completion

    monkeypatch.setattr(client_class, "_completion", spy)
    async with client_class(cache=cache, **options) as again:  # a new run
        hit = await again.chat.completions.create(model="m", messages=MESSAGES, **call)
    return hit, completion_class.model_validate(seen[0]), seen[0]


def _same_objects(hit: Any, expected: Any) -> None:
    pairs = list(zip(_models(hit), _models(expected), strict=True))
    assert len(pairs) > 5
    for mine, theirs in pairs:
        assert type(mine) is type(theirs)
        assert mine.model_fields_set == theirs.model_fields_set
        assert mine.model_extra == theirs.model_extra


async def test_a_hit_is_what_model_validate_builds(
    server: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hit's ``ChatCompletion`` (two choices, logprobs) equals what
    ``ChatCompletion.model_validate`` builds from the same data, with the same fields
    set and extras on every object inside it."""
    hit, expected, data = await _hit_and_validated(
        AsyncOpenAI,
        ChatCompletion,
        server.openai_base_url,
        str(tmp_path / "c"),
        monkeypatch,
        {"n": 2, "logprobs": True, "top_logprobs": 2},
    )
    assert hit == expected and hit.choices[1].model_extra == {
        "cached": True,
        "duplicated": False,
        **{k: data["choices"][1][k] for k in ("prompt_tokens", "completion_tokens")},
        "completion_id": data["choices"][1]["completion_id"],
    }
    _same_objects(hit, expected)


async def test_a_together_hit_is_what_model_validate_builds(
    server: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same holds for Together's drop-in (two choices, logprobs): its hit is the SDK's
    own ``ChatCompletion`` that ``model_validate`` builds, fields set and extras included."""
    from together.types.chat.chat_completion import ChatCompletion as TogetherCompletion

    from cachesaver.models.together import AsyncTogether

    hit, expected, _ = await _hit_and_validated(
        AsyncTogether,
        TogetherCompletion,
        server.url,
        str(tmp_path / "t"),
        monkeypatch,
        {"n": 2, "logprobs": 1},
    )
    assert type(hit) is TogetherCompletion and hit == expected
    assert hit.choices[1].model_extra is not None
    assert hit.choices[1].model_extra["cached"] is True
    _same_objects(hit, expected)
