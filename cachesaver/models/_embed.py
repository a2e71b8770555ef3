"""The embeddings adapter shared by the OpenAI and Together embedding models.

A `BatchRequestModel`: ``batch_request(batch)`` embeds every request's input with as few
API calls as possible (one per ``max_inputs`` inputs with the same parameters). Each
request's ``prompt`` is one input; each sample is an `EmbeddingSample`. Embeddings are
deterministic, so a request with ``n > 1`` gets ``n`` copies of one embedding.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Generic

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
from cachesaver.models.samples import EmbeddingSample
from cachesaver.typedefs import Batch, Request, Response

__all__ = ["EmbeddingAdapter"]

_BASE_FIELDS = frozenset({"prompt", "n", "request_id", "namespace"})


class EmbeddingAdapter(Generic[ClientT]):
    """An embeddings endpoint as a `BatchRequestModel` (see the provider classes)."""

    provider: ClassVar[str] = ""
    endpoint: ClassVar[str] = "embeddings"
    sdk_params: ClassVar[frozenset[str]] = frozenset()
    call_option_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        client: ClientT,
        model: str,
        *,
        max_inputs: int = 2048,
        max_concurrency: int | None = None,
        call_options: Mapping[str, Any] | None = None,
        identity_base_url: str | None = None,
    ) -> None:
        name = type(self).__name__
        check_model(name, model)
        if type(max_inputs) is not int or max_inputs < 1:
            raise ValueError(f"{name}: max_inputs must be a positive int, got {max_inputs!r}")
        options = check_call_options(name, call_options, self.call_option_names)
        self.client: ClientT = client
        self.model = model
        self.max_inputs = max_inputs
        self.call_options = options
        self._limit = ConcurrencyLimit(max_concurrency)
        self._base_url = identity_base_url or base_url_of(client)
        self._usage = TokenUsage()

    @property
    def identity(self) -> dict[str, str]:
        """Provider, endpoint, model and base URL: part of every key."""
        return {
            "provider": self.provider,
            "endpoint": self.endpoint,
            "model": self.model,
            "base_url": self._base_url,
        }

    @property
    def usage(self) -> TokenUsage:
        return self._usage

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self._base_url!r})"

    async def _create(self, kwargs: dict[str, Any]) -> Any:
        """Make one embeddings call with ``call_client(self)``; return its response."""
        raise NotImplementedError

    def _parameters(self, request: Request) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(request):
            name = f.name
            if name in _BASE_FIELDS:
                continue
            value = getattr(request, name)
            if value is None:
                continue
            if name == "params" and isinstance(value, dict):
                for key, item in value.items():
                    if key not in self.sdk_params:
                        raise InvalidRequestError(
                            f"{request_label(request)}: params[{key!r}] is not a parameter of "
                            f"{self.provider} embeddings.create; use 'extra_body'"
                        )
                    if item is not None:
                        kwargs[key] = item
            elif name == "extra_body" and isinstance(value, dict):
                kwargs["extra_body"] = value
            elif name in self.sdk_params:
                kwargs[name] = value
            else:
                raise InvalidRequestError(
                    f"{request_label(request)}: field {name!r} is not a parameter of "
                    f"{self.provider} embeddings.create; send it in 'extra_body'"
                )
        return kwargs

    @staticmethod
    def _input(request: Request) -> str | list[int]:
        prompt = request.prompt
        if isinstance(prompt, str) and prompt:
            return prompt
        if isinstance(prompt, (list, tuple)) and prompt and all(type(t) is int for t in prompt):
            return list(prompt)
        raise InvalidRequestError(
            f"{request_label(request)}: an embedding request's prompt must be one input: a "
            f"non-empty str or a list of token ids, got {type(prompt).__name__}"
        )

    async def batch_request(self, batch: Batch) -> list[Response]:
        """Embed every request's input; one API call per group of equal parameters."""
        groups: dict[str, tuple[dict[str, Any], list[int], Any]] = {}
        inputs: list[str | list[int]] = []
        for position, request in enumerate(batch.requests):
            inputs.append(self._input(request))
            kwargs = self._parameters(request)
            options = {**self.call_options, **(getattr(request, CALL_OPTIONS_ATTR, None) or {})}
            client = getattr(request, SDK_ATTR, None) or self.client
            label = json.dumps([kwargs, sorted(options), id(client)], sort_keys=True, default=repr)
            group = groups.get(label)
            if group is None:
                groups[label] = ({**kwargs, **options}, [position], client)
            else:
                group[1].append(position)
        vectors: list[EmbeddingSample | None] = [None] * len(inputs)
        calls = []
        for kwargs, positions, client in groups.values():
            for start in range(0, len(positions), self.max_inputs):
                chunk = positions[start : start + self.max_inputs]
                calls.append(self._embed(client, kwargs, chunk, inputs, vectors))
        await asyncio.gather(*calls)
        responses: list[Response] = []
        for request, vector in zip(batch.requests, vectors, strict=True):
            assert vector is not None
            responses.append(Response([vector] * request.n))
        return responses

    async def _embed(
        self,
        client: Any,
        kwargs: dict[str, Any],
        positions: list[int],
        inputs: list[str | list[int]],
        out: list[EmbeddingSample | None],
    ) -> None:
        chunk = [inputs[p] for p in positions]
        call = {**kwargs, "model": self.model, "input": chunk}
        token = CALL_CLIENT.set(client)
        try:
            async with self._limit.slot():
                result = await self._create(call)
        finally:
            CALL_CLIENT.reset(token)
        data = sorted(getattr(result, "data", None) or (), key=lambda d: d.index)
        if len(data) != len(chunk):
            raise ModelContractError(
                f"{self.provider} returned {len(data)} embeddings for {len(chunk)} inputs "
                f"(model {self.model!r})"
            )
        usage = getattr(result, "usage", None)
        tokens = getattr(usage, "prompt_tokens", None)
        if tokens is None and isinstance(usage, Mapping):
            tokens = usage.get("prompt_tokens")
        shares: list[int | None] = (
            [None] * len(chunk)
            if not isinstance(tokens, int)
            else list(apportion(tokens, [len(x) for x in chunk]))
        )
        self._usage = self._usage + TokenUsage(
            1, len(chunk), tokens if isinstance(tokens, int) else 0, 0
        )
        model = str(getattr(result, "model", None) or self.model)
        for j, (position, item) in enumerate(zip(positions, data, strict=True)):
            vector = [float(x) for x in item.embedding]
            out[position] = EmbeddingSample(embedding=vector, prompt_tokens=shares[j], model=model)
