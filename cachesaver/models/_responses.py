"""The OpenAI Responses API (``client.responses.create``) through the cache.

The Responses API has no ``n``: each sample is one API call, so a request for ``n``
samples (``n`` > 1 only when identical calls in one namespace are merged) makes ``n``
calls at once, each paying its prompt (so no sample is flagged ``duplicated``). A
sample is the response's JSON with its own token usage, stored like any other: the same
per-sample semantics as chat (a repeat in a namespace draws a fresh answer, another
namespace reuses it, a new run replays it). ``previous_response_id``,
``conversation`` and ``background`` are refused: they point at state kept by the
provider, which a cache cannot key or replay; pass the earlier turns in ``input``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, ClassVar

from cachesaver.errors import InvalidRequestError
from cachesaver.models._common import (
    CALL_OPTIONS_ATTR,
    SDK_ATTR,
    ConcurrencyLimit,
    TokenUsage,
    base_url_of,
    is_omitted,
    jsonable,
    request_label,
)
from cachesaver.models._core import DropInCore
from cachesaver.models.requests import ResponsesRequest
from cachesaver.typedefs import Request, Response

__all__ = ["RESPONSES_NOT_IN_KEY", "ResponsesAdapter", "ResponsesMixin"]

#: Responses parameters that do not change the output: sent, never part of the key.
RESPONSES_NOT_IN_KEY = frozenset(
    {
        "extra_headers",
        "extra_query",
        "timeout",
        "store",
        "metadata",
        "user",
        "safety_identifier",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)
_REFUSED = {
    "previous_response_id": "response ids point at state the provider keeps, which a cache "
    "cannot key or replay; pass the earlier turns in input=[...] (for example "
    "[*earlier_input, *previous.output, {'role': 'user', 'content': '...'}])",
    "conversation": "a conversation is state the provider keeps, which a cache cannot key "
    "or replay; pass the earlier turns in input=[...]",
    "background": "background responses are fetched later by id; call without background",
    "stream": "streaming of the Responses API is not served by cachesaver; call without "
    "stream (or client.sdk.responses.create(stream=True), uncached)",
}


class ResponsesAdapter:
    """``responses.create`` as a `SingleRequestModel`: one API call per sample."""

    endpoint: ClassVar[str] = "responses"

    def __init__(
        self, client: Any, model: str, provider: str, max_concurrency: int | None, base_url: str
    ) -> None:
        self.client = client
        self.model = model
        self.provider = provider
        self._limit = ConcurrencyLimit(max_concurrency)
        self._base_url = base_url or base_url_of(client)
        self._usage = TokenUsage()

    @property
    def identity(self) -> dict[str, str]:
        return {
            "provider": self.provider,
            "endpoint": self.endpoint,
            "model": self.model,
            "base_url": self._base_url,
            "sample": "full",
        }

    @property
    def usage(self) -> TokenUsage:
        return self._usage

    async def _one(self, client: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        async with self._limit.slot():
            answer = await client.responses.create(**kwargs)
        data: dict[str, Any] = answer.model_dump(mode="json", exclude_unset=True)
        usage = data.get("usage") or {}
        spent_in = usage.get("input_tokens") or 0
        spent_out = usage.get("output_tokens") or 0
        self._usage = self._usage + TokenUsage(1, 1, spent_in, spent_out)
        return {"response": data, "input_tokens": spent_in, "output_tokens": spent_out}

    async def request(self, request: Request) -> Response:
        if not isinstance(request, ResponsesRequest):
            raise InvalidRequestError(
                f"{request_label(request)}: the Responses adapter serves ResponsesRequest"
            )
        kwargs: dict[str, Any] = dict(request.params or {})
        kwargs["model"] = self.model
        kwargs["input"] = request.prompt
        if request.instructions is not None:
            kwargs["instructions"] = request.instructions
        if request.extra_body is not None:
            kwargs["extra_body"] = request.extra_body
        kwargs.update(getattr(request, CALL_OPTIONS_ATTR, None) or {})
        client = getattr(request, SDK_ATTR, None) or self.client
        samples = await asyncio.gather(*(self._one(client, kwargs) for _ in range(request.n)))
        # Each sample was its own call and paid its own prompt: none is "duplicated".
        return Response(list(samples), duplicated=[False] * request.n)


class ResponsesMixin:
    """``responses.create`` of the drop-in `AsyncOpenAI` (mixed into it)."""

    _provider: ClassVar[str]
    _responses_params: ClassVar[frozenset[str]] = frozenset()
    _core: DropInCore
    _base_url: str
    namespace: str
    sdk: Any

    def _response_object(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def _responses_create(
        self,
        model: Any,
        input: Any,
        namespace: str | None,
        request_id: str | None,
        params: dict[str, Any],
    ) -> Any:
        where = f"{self._provider} responses.create"
        self._core.check_open()
        if type(model) is not str or not model:
            raise InvalidRequestError(f"{where}: model must be a non-empty str, got {model!r}")
        instructions = params.pop("instructions", None)
        if is_omitted(instructions):
            instructions = None
        elif type(instructions) is not str:
            raise InvalidRequestError(f"{where}: instructions must be a str, got {instructions!r}")
        others: dict[str, Any] = {}
        options: dict[str, Any] = {}
        extra_body: Any = None
        for name, value in params.items():
            if is_omitted(value):
                continue
            if name in _REFUSED:
                if value is False:
                    continue
                raise InvalidRequestError(f"{where}: {name}= is refused: {_REFUSED[name]}")
            if name in RESPONSES_NOT_IN_KEY:
                options[name] = value
            elif name == "extra_body":
                extra_body = jsonable(value, "extra_body")
            elif name in self._responses_params:
                others[name] = jsonable(value, name)
            else:
                raise InvalidRequestError(
                    f"{where}() got an unexpected keyword argument {name!r}: it is not a "
                    f"parameter of the installed {self._provider} SDK; send other parameters "
                    "in extra_body={...} (they are part of the key)"
                )
        prompt = jsonable(input, "input")
        if not (type(prompt) is str and prompt) and not (type(prompt) is list and prompt):
            raise InvalidRequestError(f"{where}: input must be a non-empty str or list of items")
        request = ResponsesRequest(
            prompt,
            namespace=self.namespace if namespace is None else namespace,
            request_id=request_id,
            instructions=instructions,
            params=others or None,
            extra_body=extra_body,
        )
        if options:
            object.__setattr__(request, CALL_OPTIONS_ATTR, options)
        object.__setattr__(request, SDK_ATTR, self.sdk)
        core = self._core
        _, pipeline = core.pipeline(
            ("responses", model, self._base_url),
            lambda: ResponsesAdapter(
                self.sdk, model, self._provider, core.max_concurrency, self._base_url
            ),
        )
        response = await pipeline.request(request)
        sample = response.data[0]
        cached = bool(response.cached[0]) if response.cached else False
        duplicated = bool(response.duplicated[0]) if response.duplicated else False
        data = dict(sample["response"])
        usage = data.get("usage")
        if cached and isinstance(usage, dict):
            data["usage"] = _zeroed(usage)  # a hit paid nothing
        data["cached"] = cached
        data["duplicated"] = duplicated
        return self._response_object(data)


def _zeroed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _zeroed(v) for k, v in value.items()}
    if type(value) is int:
        return 0
    return value


def responses_params(create: Any, handled: Iterable[str] = ()) -> frozenset[str]:
    """The keyword parameters of the SDK's ``responses.create`` the drop-in keys on."""
    import inspect

    names = frozenset(inspect.signature(create).parameters)
    return names - {"self", "model", "input", "instructions", "extra_body", *handled}
