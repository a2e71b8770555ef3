"""The chat adapter shared by `OpenAIModel` and `TogetherModel`.

An adapter is a `SingleRequestModel`: ``request(request)`` makes one chat-completions
call with ``n=request.n`` and returns exactly ``n`` samples. It maps the request's
``prompt`` (a str or a list of messages) to ``messages`` and every other field to the API
parameter of the same name; its ``identity`` (provider, endpoint, model, base URL,
sample kind) is part of every key, so two adapters sharing a cache never mix samples.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Generic, Literal

from cachesaver.errors import InvalidRequestError, ModelContractError
from cachesaver.models._common import (
    CALL_CLIENT,
    CALL_OPTIONS_ATTR,
    SDK_ATTR,
    ClientT,
    ConcurrencyLimit,
    TokenUsage,
    apportion,
    base_url_of,
    check_call_options,
    check_model,
    request_label,
)
from cachesaver.models._live import STREAM_ATTR
from cachesaver.models.samples import ChatSample
from cachesaver.typedefs import Request, Response

__all__ = ["ChatAdapter", "SampleKind"]

SampleKind = Literal["text", "full"]
_SAMPLE_KINDS = ("text", "full")
_BASE_FIELDS = frozenset({"prompt", "n", "request_id", "namespace"})
_OWNED_PARAMS = frozenset({"model", "messages", "n", "stream"})
# How one request field is sent: as the parameter of its name, merged from a dict of
# parameters, as the SDK's extra_body, or not at all (key only).
_How = Literal["param", "params", "extra_body", "ignore", "owned", "unknown"]
_Plan = tuple[tuple[str, _How], ...]


def _output_weight(choice: Mapping[str, Any]) -> int:
    """A stand-in for a choice's output tokens: the length of what it generated."""
    message = choice.get("message")
    weight = 1
    if isinstance(message, Mapping):
        for part in ("content", "refusal", "reasoning", "reasoning_content"):
            value = message.get(part)
            if isinstance(value, str):
                weight += len(value)
        for call in message.get("tool_calls") or ():
            if isinstance(call, Mapping):
                weight += len(json.dumps(call.get("function"), ensure_ascii=False))
    elif isinstance(choice.get("text"), str):
        weight += len(choice["text"])
    return weight


class ChatAdapter(Generic[ClientT]):
    """A chat-completions endpoint as a `SingleRequestModel` (see the provider classes)."""

    provider: ClassVar[str] = ""
    endpoint: ClassVar[str] = "chat.completions"
    # Parameters the SDK's create() accepts, besides model/messages/n/stream and the
    # per-call transport options (extra_headers, extra_query, extra_body, timeout).
    sdk_params: ClassVar[frozenset[str]] = frozenset()
    # The subset (plus transport options) that does not change the output: never part
    # of the key, allowed in ``call_options``.
    call_option_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        client: ClientT,
        model: str,
        *,
        sample: SampleKind = "text",
        max_concurrency: int | None = None,
        call_options: Mapping[str, Any] | None = None,
        ignore_fields: Iterable[str] = (),
        identity_base_url: str | None = None,
    ) -> None:
        name = type(self).__name__
        check_model(name, model)
        if sample not in _SAMPLE_KINDS:
            raise ValueError(
                f"{name}: sample must be 'text' (the message content) or 'full' (a "
                f"ChatSample with the whole choice and its token usage), got {sample!r}"
            )
        options = check_call_options(
            name,
            call_options,
            self.call_option_names,
            "; parameters that change the output belong in the Request (as fields), so "
            "they are part of the key",
        )
        self.client: ClientT = client
        self.model = model
        self.sample: SampleKind = sample
        self.call_options = options
        self.ignore_fields = frozenset(ignore_fields)
        self._limit = ConcurrencyLimit(max_concurrency)
        self._base_url = identity_base_url or base_url_of(client)
        self._plans: dict[type, _Plan] = {}
        self._usage = TokenUsage()

    # -- identity and accounting ---------------------------------------------------------

    @property
    def identity(self) -> dict[str, str]:
        """Provider, endpoint, model, base URL and sample kind: part of every key."""
        return {
            "provider": self.provider,
            "endpoint": self.endpoint,
            "model": self.model,
            "base_url": self._base_url,
            "sample": self.sample,
        }

    @property
    def max_concurrency(self) -> int | None:
        return self._limit.limit

    @property
    def usage(self) -> TokenUsage:
        """Calls made and tokens they reported, summed since this adapter was created."""
        return self._usage

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self._base_url!r})"

    # -- request mapping -----------------------------------------------------------------

    def _plan(self, cls: type) -> _Plan:
        plan = self._plans.get(cls)
        if plan is not None:
            return plan
        steps: list[tuple[str, _How]] = []
        for f in dataclasses.fields(cls):
            name = f.name
            if name in _BASE_FIELDS:
                continue
            if name in self.ignore_fields:
                steps.append((name, "ignore"))
            elif name in ("params", "extra_body"):
                steps.append((name, name))  # type: ignore[arg-type]
            elif name in _OWNED_PARAMS:
                steps.append((name, "owned"))
            elif name in self.sdk_params:
                steps.append((name, "param"))
            else:
                steps.append((name, "unknown"))
        plan = tuple(steps)
        self._plans[cls] = plan
        return plan

    def _field_error(self, request: Request, name: str) -> InvalidRequestError:
        cls = type(request).__name__
        adapter = type(self).__name__
        if name == "model":
            return InvalidRequestError(
                f"{request_label(request)}: field 'model' is set, but the model is chosen by "
                f"{adapter}(model=...) and is part of its identity; use one adapter (and "
                "pipeline) per model"
            )
        if name in _OWNED_PARAMS:
            return InvalidRequestError(
                f"{request_label(request)}: field {name!r} is set, but cachesaver sets it itself "
                "(messages come from prompt, n from Request.n; pipelines do not stream)"
            )
        return InvalidRequestError(
            f"{request_label(request)}: {cls} field {name!r} is not a parameter of {self.provider} "
            "chat.completions.create; send other parameters in a 'params' dict field or in "
            f"'extra_body', or pass ignore_fields=[{name!r}] to {adapter} to keep the field "
            "in the key without sending it"
        )

    def _parameters(self, request: Request) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for name, how in self._plan(type(request)):
            value = getattr(request, name)
            if value is None or how == "ignore":
                continue
            if how == "param":
                kwargs[name] = value
            elif how == "owned" or how == "unknown":
                raise self._field_error(request, name)
            elif how == "extra_body":
                if not isinstance(value, dict):
                    raise InvalidRequestError(
                        f"{request_label(request)}: field 'extra_body' must be a dict, got "
                        f"{type(value).__name__}"
                    )
                kwargs["extra_body"] = value
            else:
                if not isinstance(value, dict):
                    raise InvalidRequestError(
                        f"{request_label(request)}: field 'params' must be a dict of API "
                        f"parameters, got {type(value).__name__}"
                    )
                for key, item in value.items():
                    if key in _OWNED_PARAMS or key not in self.sdk_params:
                        raise InvalidRequestError(
                            f"{request_label(request)}: params[{key!r}] is not a parameter of "
                            f"{self.provider} chat.completions.create that a request may "
                            "set; send unknown parameters in 'extra_body'"
                        )
                    if item is not None:
                        kwargs[key] = item
        return kwargs

    @staticmethod
    def _messages(request: Request) -> list[Any]:
        prompt = request.prompt
        if isinstance(prompt, str):
            return [{"role": "user", "content": prompt}]
        if (
            isinstance(prompt, (list, tuple))
            and prompt
            and all(isinstance(m, dict) for m in prompt)
        ):
            return list(prompt)
        raise InvalidRequestError(
            f"{request_label(request)}: prompt must be a str (sent as one user message) or a "
            "non-empty list of chat messages such as [{'role': 'user', 'content': '...'}], "
            f"got {type(prompt).__name__}"
        )

    # -- the call ------------------------------------------------------------------------

    async def _create(self, kwargs: dict[str, Any]) -> Any:
        """Make one chat-completions call with the SDK; return its completion.

        The SDK client to use is ``call_client(self)`` (the caller's, for a drop-in).
        """
        raise NotImplementedError

    def _completion_of(self, data: dict[str, Any]) -> Any:
        """The SDK's completion object for a completion's JSON (a finished stream)."""
        raise NotImplementedError

    async def request(self, request: Request) -> Response:
        """Return exactly ``request.n`` samples from one API call (more if it gives fewer)."""
        kwargs = self._parameters(request)
        kwargs["messages"] = self._messages(request)
        kwargs["model"] = self.model
        options = self.call_options
        per_call = getattr(request, CALL_OPTIONS_ATTR, None)
        if per_call:
            options = {**options, **per_call}
        client = getattr(request, SDK_ATTR, None)
        sink = getattr(request, STREAM_ATTR, None)
        token = CALL_CLIENT.set(client) if client is not None else None
        try:
            return await self._request(request, kwargs, options, sink)
        finally:
            if token is not None:
                CALL_CLIENT.reset(token)

    async def _request(
        self, request: Request, kwargs: dict[str, Any], options: dict[str, Any], sink: Any
    ) -> Response:
        samples: list[Any] = []
        # Per sample: was its prompt shared with an earlier sample of its API call? A
        # provider that returns fewer choices than asked is asked again, and each such
        # call pays its prompt again: its first choice is not duplicated.
        duplicated: list[bool] = []
        remaining = request.n
        while remaining > 0:
            call = {**kwargs, **options}
            if remaining > 1:
                call["n"] = remaining
            async with self._limit.slot():
                if sink is not None and not samples:
                    completion = self._completion_of(await sink.pump(self, call))
                else:
                    completion = await self._create(call)
            got = self._samples(completion, remaining, request)
            duplicated.extend(j > 0 for j in range(len(got)))
            samples.extend(got)
            remaining -= len(got)
        return Response(samples, duplicated=duplicated)

    def _samples(self, completion: Any, wanted: int, request: Request) -> list[Any]:
        choices = list(getattr(completion, "choices", None) or ())
        if not choices:
            raise ModelContractError(
                f"{self.provider} returned no choices for model {self.model!r} "
                f"({request_label(request)}, n={wanted}); check the model name and parameters"
            )
        choices.sort(key=lambda c: getattr(c, "index", 0) or 0)
        usage = getattr(completion, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        self._usage = self._usage + TokenUsage(
            1, min(len(choices), wanted), prompt_tokens or 0, completion_tokens or 0
        )
        taken = choices[:wanted]
        if self.sample == "text":
            return [self._text_of(choice) for choice in taken]
        dumps: list[dict[str, Any]] = []
        for choice in choices:
            data = choice.model_dump(mode="json", exclude_unset=True)
            data.pop("index", None)
            dumps.append(data)
        shares: list[int | None]
        if completion_tokens is None:
            shares = [None] * len(dumps)
        else:
            shares = list(apportion(completion_tokens, [_output_weight(d) for d in dumps]))
        fingerprint = getattr(completion, "system_fingerprint", None)
        model = str(getattr(completion, "model", None) or self.model)
        call_id = str(getattr(completion, "id", "") or "")
        created = int(getattr(completion, "created", 0) or 0)
        if not isinstance(fingerprint, str):
            fingerprint = None
        return [
            ChatSample(
                choice=dumps[i],
                prompt_tokens=prompt_tokens,
                completion_tokens=shares[i],
                model=model,
                id=call_id,
                created=created,
                system_fingerprint=fingerprint,
            )
            for i in range(len(taken))
        ]

    @staticmethod
    def _text_of(choice: Any) -> str | None:
        message = getattr(choice, "message", None)
        if message is not None:
            content = getattr(message, "content", None)
            return content if isinstance(content, str) else None
        text = getattr(choice, "text", None)
        return text if isinstance(text, str) else None
