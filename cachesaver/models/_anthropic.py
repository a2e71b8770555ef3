"""Anthropic: the `AnthropicModel` pipeline adapter over the Messages API (and the
request type and stream events the drop-in clients in `cachesaver.models.anthropic` use).

``OnlineAPI(AnthropicModel(anthropic.AsyncAnthropic(), "claude-sonnet-4-5"), cache=...)``.
The ``anthropic`` SDK is an optional extra (``pip install "cachesaver[anthropic]"``).

The Messages API has no ``n``: a request for n samples is n API calls, made
concurrently (at most ``max_concurrency`` at once). Each call pays its own prompt, so
the adapter reports honest flags: sample i > 0 is ``duplicated`` only when its call
read the prompt from Anthropic's prompt cache (``usage.cache_read_input_tokens > 0``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cachesaver.errors import InvalidRequestError, MissingExtraError, ModelContractError
from cachesaver.models._adapter import AdapterBase, SampleKind
from cachesaver.models._common import (
    CALL_OPTIONS_ATTR,
    SDK_ATTR,
    TRANSPORT_PARAMS,
    base_url_of,
    request_label,
)
from cachesaver.typedefs import Request, Response

__all__ = [
    "MESSAGES_NOT_IN_KEY",
    "AnthropicModel",
    "AnthropicRequest",
    "messages_of",
    "stream_payloads",
    "text_of",
]

#: Messages API parameters that do not change the output: never part of the key.
MESSAGES_NOT_IN_KEY: frozenset[str] = TRANSPORT_PARAMS | frozenset(
    {"metadata", "service_tier", "user_profile_id", "workspace_id", "diagnostics"}
)
# Sampling parameters the API takes; sent as SDK parameters where the installed SDK has
# them, else in the request body (``extra_body``), as the API reads them either way.
_WIRE_ONLY = frozenset({"temperature", "top_p", "top_k"})
_BASE_FIELDS = frozenset({"prompt", "n", "request_id", "namespace", "params", "extra_body"})
_OWNED = frozenset({"model", "messages", "stream", "system_from_prompt"})
_PARAMS: frozenset[str] | None = None


@dataclass(frozen=True, kw_only=True)
class AnthropicRequest(Request):
    """A `Request` whose fields are Messages API parameters (all part of the key).

    ``params`` holds any other parameter of ``messages.create`` by name, ``extra_body``
    parameters the installed SDK does not know (sent in the request body).
    """

    max_tokens: int | None = None
    system: Any = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    params: dict[str, Any] | None = None
    extra_body: dict[str, Any] | None = None


def _sdk() -> Any:
    try:
        return importlib.import_module("anthropic")
    except ImportError as exc:
        raise MissingExtraError(
            f'the Anthropic adapter needs the anthropic SDK: pip install "cachesaver[anthropic]" '
            f"({exc})"
        ) from exc


def messages_of(request: Request) -> tuple[list[Any], Any]:
    """``(messages, system)`` from a request's prompt.

    A str is one user message. A list of chat messages is sent as it is, except that
    leading ``{"role": "system"}`` messages (OpenAI style) become the ``system`` parameter.
    """
    prompt = request.prompt
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}], None
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(m, dict) for m in prompt):
        system: list[str] = []
        rest = list(prompt)
        while rest and rest[0].get("role") == "system":
            content = rest.pop(0).get("content")
            if not isinstance(content, str):
                raise InvalidRequestError(
                    f"{request_label(request)}: a system message's content must be a str"
                )
            system.append(content)
        if not rest:
            raise InvalidRequestError(
                f"{request_label(request)}: the prompt has only system messages; the Messages "
                "API needs at least one user message"
            )
        return rest, ("\n\n".join(system) if system else None)
    raise InvalidRequestError(
        f"{request_label(request)}: prompt must be a str (one user message) or a non-empty list "
        "of chat messages such as [{'role': 'user', 'content': '...'}], got "
        f"{type(prompt).__name__}"
    )


class AnthropicModel(AdapterBase):
    """Anthropic's Messages API as a `SingleRequestModel` for `OnlineAPI`.

    - ``max_tokens``: the default for every call (the API requires one); a request field
      ``max_tokens`` overrides it. It is part of the identity;
    - request fields are sent as the Messages parameter of their name (``temperature``,
      ``top_p``, ``top_k``, ``system``, ``stop_sequences``, ``tools``, ``tool_choice``,
      ``thinking``, ...); others are refused unless named in ``ignore_fields``;
    - ``sample="text"``: a sample is the text of the answer (its text blocks joined;
      ``None`` for a pure tool call); ``sample="full"``: the whole ``Message`` as JSON;
    - ``call_options``: options that leave the output unchanged (`MESSAGES_NOT_IN_KEY`).

    Errors are the SDK's own exceptions after its own retries; if one of a request's n
    calls fails, the request fails (the other calls' samples are not stored).
    """

    provider = "anthropic"
    endpoint = "messages"
    call_option_names = MESSAGES_NOT_IN_KEY

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        max_tokens: int = 1024,
        sample: SampleKind = "text",
        max_concurrency: int | None = None,
        call_options: Mapping[str, Any] | None = None,
        ignore_fields: Iterable[str] = (),
        identity_base_url: str | None = None,
    ) -> None:
        if type(max_tokens) is not int or max_tokens < 1:
            raise ValueError(
                f"{type(self).__name__}: max_tokens must be a positive int, got {max_tokens!r}"
            )
        super().__init__(
            client,
            model,
            sample=sample,
            max_concurrency=max_concurrency,
            call_options=call_options,
            ignore_fields=ignore_fields,
            base_url=identity_base_url or base_url_of(client),
        )
        self.max_tokens = max_tokens
        self._params = self.sdk_parameters()

    @staticmethod
    def sdk_parameters() -> frozenset[str]:
        """The parameters the installed SDK's ``messages.create`` takes (besides stream)."""
        global _PARAMS
        if _PARAMS is None:
            _PARAMS = _sdk_params(_sdk())
        return _PARAMS

    @property
    def identity(self) -> dict[str, Any]:
        """Provider, endpoint, model, base URL, default max_tokens and sample kind."""
        return {**super().identity, "max_tokens": self.max_tokens}

    def parameters(self, request: Request) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` for one sample of ``request``."""
        messages, system = messages_of(request)
        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens}
        wire: dict[str, Any] = {}
        why = "the model is the adapter's, messages come from prompt; pipelines do not stream"
        for name, value in self._set_fields(request, _BASE_FIELDS, _OWNED, why):
            if name in self._params:
                kwargs[name] = value
            elif name in _WIRE_ONLY:
                wire[name] = value
            else:
                raise InvalidRequestError(
                    f"{request_label(request)}: field {name!r} is not a parameter of Anthropic "
                    "messages.create; remove it, or pass ignore_fields=[" + repr(name) + "] to "
                    "AnthropicModel to keep it in the key without sending it"
                )
        self._merge(request, kwargs, wire)
        if system is not None:
            if "system" in kwargs:
                raise InvalidRequestError(
                    f"{request_label(request)}: the prompt has a system message and the field "
                    "'system' is set too; use one of them"
                )
            kwargs["system"] = system
        kwargs["messages"] = messages
        if wire:
            kwargs["extra_body"] = wire
        return kwargs

    def _merge(self, request: Request, kwargs: dict[str, Any], wire: dict[str, Any]) -> None:
        """Add the request's ``params`` and ``extra_body`` dicts to the call."""
        params = getattr(request, "params", None)
        if params is not None:
            if not isinstance(params, dict):
                raise InvalidRequestError(
                    f"{request_label(request)}: field 'params' must be a dict of Messages API "
                    f"parameters, got {type(params).__name__}"
                )
            for name, value in params.items():
                if value is None:
                    continue
                if name in _OWNED or name in kwargs:
                    raise InvalidRequestError(
                        f"{request_label(request)}: params[{name!r}] is set twice or is set by "
                        "the adapter itself"
                    )
                if name in self._params:
                    kwargs[name] = value
                elif name in _WIRE_ONLY:
                    wire[name] = value
                else:
                    raise InvalidRequestError(
                        f"{request_label(request)}: params[{name!r}] is not a parameter of the "
                        "installed anthropic SDK's messages.create; send it in extra_body"
                    )
        extra = getattr(request, "extra_body", None)
        if extra is not None:
            if not isinstance(extra, dict):
                raise InvalidRequestError(
                    f"{request_label(request)}: field 'extra_body' must be a dict, got "
                    f"{type(extra).__name__}"
                )
            wire.update(extra)

    async def _one(self, client: Any, kwargs: dict[str, Any]) -> Any:
        async with self._limit.slot():
            return await client.messages.create(**kwargs)

    async def request(self, request: Request) -> Response:
        """Return ``request.n`` samples from ``n`` Messages API calls, made concurrently."""
        kwargs = {**self.parameters(request), **self.call_options}
        per_call = getattr(request, CALL_OPTIONS_ATTR, None)
        if per_call:
            kwargs.update(per_call)
        client = getattr(request, SDK_ATTR, None) or self.client
        calls = [self._one(client, kwargs) for _ in range(request.n)]
        messages = await asyncio.gather(*calls) if len(calls) > 1 else [await calls[0]]
        samples: list[Any] = []
        duplicated: list[bool] = []
        for i, message in enumerate(messages):
            usage = getattr(message, "usage", None)
            if usage is None or not isinstance(getattr(message, "content", None), list):
                raise ModelContractError(
                    f"anthropic answered {request_label(request)} with {type(message).__name__}, "
                    "not a Message; check the client"
                )
            self._count(1, 1, usage.input_tokens, usage.output_tokens)
            read = getattr(usage, "cache_read_input_tokens", None) or 0
            duplicated.append(i > 0 and read > 0)
            if self.sample == "text":
                samples.append(text_of(message))
            else:
                samples.append(message.model_dump(mode="json", exclude_none=True))
        return Response(samples, duplicated=duplicated)


def text_of(message: Any) -> str | None:
    """The text blocks of a ``Message`` joined (``None`` when it has none)."""
    texts = [
        block.text
        for block in message.content
        if getattr(block, "type", None) == "text" and isinstance(block.text, str)
    ]
    return "".join(texts) if texts else None


def stream_payloads(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The events the Messages API streams for ``message`` (a Message as JSON), in order:
    ``message_start``, per content block start / deltas (text word by word, tool input as
    one JSON delta) / stop, ``message_delta`` (stop reason, output tokens), ``message_stop``.
    """
    usage = dict(message.get("usage") or {})
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": min(1, usage.get("output_tokens") or 0)}
    for extra in ("cached", "duplicated"):
        start.pop(extra, None)
    out: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message.get("content") or []):
        kind = block.get("type")
        if kind == "text":
            out.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                }
            )
            words = str(block.get("text", "")).split(" ")
            for position, word in enumerate(words):
                piece = word if position == 0 else " " + word
                delta = {"type": "text_delta", "text": piece}
                out.append({"type": "content_block_delta", "index": index, "delta": delta})
        elif kind == "tool_use":
            opened = {**block, "input": {}}
            out.append({"type": "content_block_start", "index": index, "content_block": opened})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block.get("input"))}
            out.append({"type": "content_block_delta", "index": index, "delta": delta})
        else:  # thinking and other blocks: whole, in their start event
            out.append({"type": "content_block_start", "index": index, "content_block": block})
        out.append({"type": "content_block_stop", "index": index})
    out.append(
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": message.get("stop_reason"),
                "stop_sequence": message.get("stop_sequence"),
            },
            "usage": {"output_tokens": usage.get("output_tokens") or 0},
        }
    )
    out.append({"type": "message_stop"})
    return out


def _sdk_params(sdk: Any) -> frozenset[str]:
    import inspect

    create = sdk.resources.messages.AsyncMessages.create
    names = set(inspect.signature(create).parameters)
    return frozenset(names - {"self", "stream", "extra_body"} - TRANSPORT_PARAMS)
