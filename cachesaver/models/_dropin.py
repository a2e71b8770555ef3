"""The machinery of the drop-in clients (`AsyncOpenAI`, `AsyncTogether`).

A drop-in client owns the real SDK client (``client.sdk``) and shares a `DropInCore`
(store, pipelines, run options) with the clients derived from it by ``with_options`` /
``copy``. Chat calls go through one `OnlineAPI` pipeline per (model, base URL); each
call becomes a `ChatRequest` whose content is the messages plus every parameter that
can change the output. Nothing is silent: every attribute either is served through the
cache, is a plain setting of the SDK client (``api_key``, ``base_url``, ...), or raises
`UncachedPathError` naming the path, the cached alternative and ``client.sdk.<path>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from cachesaver._canonical import plain_json
from cachesaver.errors import InvalidRequestError
from cachesaver.models._chat import ChatAdapter
from cachesaver.models._common import (
    CALL_OPTIONS_ATTR,
    SDK_ATTR,
    is_omitted,
    jsonable,
)
from cachesaver.models._dropin_base import (
    SETTINGS,
    DropInBase,
    ResourceProxy,
    refuse,
)
from cachesaver.models._stream import ChatStream
from cachesaver.models.requests import ChatRequest
from cachesaver.models.samples import ChatSample
from cachesaver.pipelines import OnlineAPI
from cachesaver.typedefs import Response, prebuilt_request

__all__ = ["SETTINGS", "DropInBase", "DropInClient", "ResourceProxy", "refuse"]


_CHAT_FIELDS = frozenset(
    f
    for f in ChatRequest.__dataclass_fields__
    if f not in ("prompt", "n", "request_id", "namespace", "params", "extra_body")
)
_SENTINELS = ("NotGiven", "Omit")
_SCALARS = (str, int, float, bool)


def _plain_model(value: Any) -> Any:
    """A pydantic object (say, a message of an earlier answer) as the SDK sends it."""
    if not callable(getattr(value, "model_dump", None)):
        raise TypeError  # anything else: the slow path says what is wrong
    return jsonable(value, "value")


class DropInClient(DropInBase):
    """The OpenAI-shaped drop-in clients (chat, embeddings); see `AsyncOpenAI` /
    `AsyncTogether`. Options, derived clients and lifecycle come from `DropInBase`."""

    _provider: ClassVar[str] = ""
    # The SDK's chat/embeddings create() parameters, besides model/messages|input/n/stream.
    _chat_params: ClassVar[frozenset[str]] = frozenset()
    _chat_not_in_key: ClassVar[frozenset[str]] = frozenset()
    _embed_params: ClassVar[frozenset[str]] = frozenset()
    _embed_not_in_key: ClassVar[frozenset[str]] = frozenset()
    _role_in_every_delta: ClassVar[bool] = False
    _logprobs_in_chunks: ClassVar[bool] = True
    _has_encoding_format: ClassVar[bool] = False

    _served: ClassVar[str] = "chat.completions.create, embeddings.create"

    # -- provider hooks ------------------------------------------------------------------

    def _chat_adapter(self, model: str) -> ChatAdapter[Any]:
        raise NotImplementedError

    def _completion(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _chunk(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _structured(self, response_format: Any) -> tuple[Any, Any]:
        """(the JSON response_format sent and keyed, the user's type to parse into)."""
        return jsonable(response_format, "response_format"), None

    def _parse(self, completion: Any, parse_as: Any, tools: Any) -> Any:
        return completion

    def chat_pipeline(self, model: str) -> OnlineAPI:
        """The pipeline that serves chat calls for ``model`` (created on first use)."""
        core = self._core
        if type(model) is str and not core.closed:  # the common case: one dict look-up
            entry = core.pipelines.get(("chat", model, self._base_url))
            if entry is not None:
                return entry[1]
        core.check_open()
        if type(model) is not str or not model:
            raise InvalidRequestError(
                f"chat.completions.create: model must be a non-empty str, got {model!r}"
            )
        return self._core.pipeline(
            ("chat", model, self._base_url), lambda: self._chat_adapter(model)
        )[1]

    # -- chat ----------------------------------------------------------------------------

    def _chat_request(
        self,
        messages: Any,
        n: Any,
        namespace: str | None,
        request_id: str | None,
        params: dict[str, Any],
    ) -> tuple[ChatRequest, dict[str, Any] | None]:
        """Split the call's parameters: key fields, other key params, call options."""
        fields: dict[str, Any] = {}
        others: dict[str, Any] | None = None
        options: dict[str, Any] | None = None
        extra_body: Any = None
        chat_params = self._chat_params
        for name, value in params.items():
            if value is None or type(value).__name__ in _SENTINELS:
                continue
            if name in _CHAT_FIELDS and name in chat_params:
                fields[name] = value
            elif name in self._chat_not_in_key:
                if options is None:
                    options = {}
                options[name] = value
            elif name == "extra_body":
                extra_body = value
            elif name in chat_params:
                if others is None:
                    others = {}
                others[name] = value
            else:
                raise InvalidRequestError(
                    f"{self._provider} chat.completions.create() got an unexpected keyword "
                    f"argument {name!r}: it is not a parameter of the installed "
                    f"{self._provider} SDK; send provider-specific parameters in "
                    "extra_body={...} (they are part of the key)"
                )
        if n is None or type(n).__name__ in _SENTINELS:
            n = 1
        if namespace is None:
            namespace = self.namespace
        kind = type(messages)
        if (kind is list or kind is tuple) and messages:
            # One walk copies the call's content and checks it for the key; anything
            # unusual (or wrong) takes the slow path below, which says what is wrong.
            fields["prompt"] = messages
            if others is not None:
                fields["params"] = others
            if extra_body is not None:
                fields["extra_body"] = extra_body
            built = plain_json(fields, _plain_model)
            if built is not None and (extra_body is None or type(built[0]["extra_body"]) is dict):
                request = prebuilt_request(ChatRequest, *built, n, namespace, request_id)
                if request is not None:
                    return request, options
            del fields["prompt"]
            fields.pop("params", None)
            fields.pop("extra_body", None)
        return self._slow_chat_request(
            messages, n, namespace, request_id, fields, others, extra_body
        ), options

    def _slow_chat_request(
        self,
        messages: Any,
        n: Any,
        namespace: str,
        request_id: str | None,
        fields: dict[str, Any],
        others: dict[str, Any] | None,
        extra_body: Any,
    ) -> ChatRequest:
        """`_chat_request` one value at a time, naming what is wrong."""
        fields = {
            name: value if type(value) in _SCALARS else jsonable(value, name)
            for name, value in fields.items()
        }
        if extra_body is not None:
            plain_body = jsonable(extra_body, "extra_body")
            if not isinstance(plain_body, dict):
                raise InvalidRequestError(
                    f"{self._provider} chat.completions.create: extra_body must be a "
                    f"dict, got {extra_body!r}"
                )
            extra_body = plain_body
        if others is not None:
            others = {name: jsonable(value, name) for name, value in others.items()}
        prompt = jsonable(messages, "messages")
        if type(prompt) is not list or not prompt:
            raise InvalidRequestError(
                f"{self._provider} chat.completions.create: messages must be a non-empty "
                "list of messages such as [{'role': 'user', 'content': 'Hello'}]"
            )
        return ChatRequest(
            prompt,
            n=n,
            namespace=namespace,
            request_id=request_id,
            params=others,
            extra_body=extra_body,
            **fields,
        )

    def _prepare_chat(
        self,
        model: Any,
        messages: Any,
        stream: Any,
        namespace: str | None,
        request_id: str | None,
        params: dict[str, Any],
    ) -> tuple[OnlineAPI, ChatRequest, Any, Any, Any]:
        if stream not in (None, False, True) and not is_omitted(stream):
            raise InvalidRequestError(
                f"chat.completions.create: stream must be True or False, got {stream!r}"
            )
        n = params.pop("n", None)
        stream_options = params.pop("stream_options", None)
        parse_as = None
        tools = params.get("tools")
        response_format = params.get("response_format")
        if response_format is not None and not is_omitted(response_format):
            params["response_format"], parse_as = self._structured(response_format)
        pipeline = self.chat_pipeline(model)
        request, options = self._chat_request(messages, n, namespace, request_id, params)
        if options:
            object.__setattr__(request, CALL_OPTIONS_ATTR, options)
        object.__setattr__(request, SDK_ATTR, self.sdk)
        return pipeline, request, stream_options, parse_as, tools

    async def _chat_create(
        self,
        model: Any,
        messages: Any,
        stream: Any,
        namespace: str | None,
        request_id: str | None,
        params: dict[str, Any],
        parse: bool = False,
    ) -> Any:
        pipeline, request, stream_options, parse_as, tools = self._prepare_chat(
            model, messages, stream, namespace, request_id, params
        )
        if stream is True:
            if parse_as is not None or parse:
                raise InvalidRequestError(
                    "chat.completions: stream=True with a pydantic response_format is not "
                    "served by cachesaver; call without stream (the answer is parsed), or "
                    "use client.sdk.chat.completions.stream(...) uncached"
                )
            from cachesaver.models._live import live_stream

            include_usage = isinstance(stream_options, Mapping) and bool(
                stream_options.get("include_usage")
            )
            return await live_stream(self, pipeline, request, model, include_usage)
        response = await pipeline.request(request)
        completion = self._build_completion(response, model)
        if parse_as is not None or parse:
            return self._parse(completion, parse_as, tools)
        return completion

    def _replay(self, completion: Any, include_usage: bool) -> ChatStream[Any]:
        return ChatStream(
            completion,
            self._chunk,
            include_usage=include_usage,
            role_in_every_delta=self._role_in_every_delta,
            logprobs_in_chunks=self._logprobs_in_chunks,
        )

    def _build_completion(self, response: Response, model: str) -> Any:
        samples: list[ChatSample] = response.data
        count = len(samples)
        cached = response.cached or [False] * count
        duplicated = response.duplicated or [False] * count
        choices: list[dict[str, Any]] = []
        prompt_tokens = 0
        completion_tokens = 0
        for i, sample in enumerate(samples):
            choice = dict(sample["choice"])
            choice["index"] = i
            choice["cached"] = cached[i]
            choice["duplicated"] = duplicated[i]
            # What the sample cost when it was made (whoever paid), and which API call
            # made it: the same on a hit as on the fresh call (`choice_usage`).
            choice["prompt_tokens"] = sample["prompt_tokens"]
            choice["completion_tokens"] = sample["completion_tokens"]
            choice["completion_id"] = sample["id"]
            choices.append(choice)
            if not cached[i]:
                completion_tokens += sample["completion_tokens"] or 0
                if not duplicated[i]:
                    prompt_tokens += sample["prompt_tokens"] or 0
        first = samples[0]
        data: dict[str, Any] = {
            "id": first["id"],
            "object": "chat.completion",
            "created": first["created"],
            "model": first["model"] or model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if first.get("system_fingerprint") is not None:
            data["system_fingerprint"] = first["system_fingerprint"]
        return self._completion(data)
