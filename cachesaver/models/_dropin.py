"""The machinery of the drop-in clients (`AsyncOpenAI`, `AsyncTogether`).

A drop-in client owns the real SDK client and one store. Chat calls go through one
`OnlineAPI` pipeline per model name (cache -> batch -> deduplicate -> the provider's chat
adapter with ``sample="full"``); each call becomes a `ChatRequest` whose content is the
messages plus every parameter that can change the output. Embedding calls are served
per input: every input is one `EmbeddingRequest`, read at sample 0 (embeddings are
deterministic), and only the missing inputs are sent, in one API call.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, ClassVar

from cachesaver import Stats
from cachesaver.batcher import AsyncBatcher
from cachesaver.cacher import AsyncCacher, Mode
from cachesaver.errors import InvalidRequestError, PipelineClosedError
from cachesaver.models._chat import ChatAdapter
from cachesaver.models._common import (
    CALL_OPTIONS_ATTR,
    TokenUsage,
    is_omitted,
    jsonable,
)
from cachesaver.models._embed import EmbeddingAdapter
from cachesaver.models._stream import ChatStream
from cachesaver.models.requests import ChatRequest, EmbeddingRequest
from cachesaver.models.samples import ChatSample, EmbeddingSample
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import CacheLike, Store, open_store
from cachesaver.typedefs import Batch, Response

__all__ = ["UNCACHED_CHAT_METHODS", "UNCACHED_EMBEDDING_METHODS", "DropInClient", "ResourceProxy"]

_CHAT_FIELDS = frozenset(
    f
    for f in ChatRequest.__dataclass_fields__
    if f not in ("prompt", "n", "request_id", "namespace", "params", "extra_body")
)
_SENTINELS = ("NotGiven", "Omit")
_SCALARS = (str, int, float, bool)
# Methods of chat.completions that would bypass the cache: refused, not passed through.
UNCACHED_CHAT_METHODS = frozenset(
    {"parse", "stream", "with_raw_response", "with_streaming_response"}
)
UNCACHED_EMBEDDING_METHODS = frozenset({"with_raw_response", "with_streaming_response"})


def _add(stats: Stats, other: Stats) -> Stats:
    return Stats(
        requests=stats.requests + other.requests,
        samples=stats.samples + other.samples,
        cached=stats.cached + other.cached,
        duplicated=stats.duplicated + other.duplicated,
        generated=stats.generated + other.generated,
        model_calls=stats.model_calls + other.model_calls,
        batches=stats.batches + other.batches,
    )


class DropInClient:
    """The shared part of the drop-in clients; see `AsyncOpenAI` / `AsyncTogether`."""

    _provider: ClassVar[str] = ""
    # The SDK's chat/embeddings create() parameters, besides model/messages|input/n/stream.
    _chat_params: ClassVar[frozenset[str]] = frozenset()
    _chat_not_in_key: ClassVar[frozenset[str]] = frozenset()
    _embed_params: ClassVar[frozenset[str]] = frozenset()
    _embed_not_in_key: ClassVar[frozenset[str]] = frozenset()
    _role_in_every_delta: ClassVar[bool] = False
    _logprobs_in_chunks: ClassVar[bool] = True
    _has_encoding_format: ClassVar[bool] = False

    def __init__(
        self,
        make_sdk: Callable[[], Any],
        owns_sdk: bool,
        *,
        cache: CacheLike,
        namespace: str,
        batch_size: int,
        batch_timeout: float,
        max_concurrency: int | None,
        max_embedding_inputs: int,
        identity_base_url: str | None,
        mode: Mode = "readwrite",
    ) -> None:
        where = f"{type(self).__name__}()"
        if not isinstance(namespace, str):
            raise TypeError(f"{where}: namespace must be a str, got {namespace!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"{where}: batch_size must be a positive int (samples per batch), got "
                f"{batch_size!r}"
            )
        if (
            isinstance(batch_timeout, bool)
            or not isinstance(batch_timeout, (int, float))
            or not math.isfinite(batch_timeout)
            or batch_timeout < 0
        ):
            raise ValueError(
                f"{where}: batch_timeout must be a finite number of seconds >= 0, got "
                f"{batch_timeout!r}; it bounds how long a fresh call waits for its batch"
            )
        if type(max_embedding_inputs) is not int or max_embedding_inputs < 1:
            raise ValueError(
                f"{where}: max_embedding_inputs must be a positive int, got "
                f"{max_embedding_inputs!r}"
            )
        self.namespace = namespace
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.max_concurrency = max_concurrency
        self.max_embedding_inputs = max_embedding_inputs
        self._identity_base_url = identity_base_url
        if mode not in ("readwrite", "replay"):
            raise ValueError(
                f"{where}: mode must be 'readwrite' (the default) or 'replay' (serve only "
                f"from the cache; a miss raises CacheMissError), got {mode!r}"
            )
        self.mode: Mode = mode
        if max_concurrency is not None and (
            type(max_concurrency) is not int or max_concurrency < 1
        ):
            raise ValueError(
                f"{where}: max_concurrency must be a positive int (API calls at once) or "
                f"None, got {max_concurrency!r}"
            )
        # Options are checked before anything is opened (the disk store opens lazily).
        self.sdk = make_sdk()
        self._owns_sdk = owns_sdk
        self._store, self._owns_store = open_store(cache)
        self._chat: dict[str, tuple[ChatAdapter[Any], OnlineAPI]] = {}
        self._embed: dict[str, EmbeddingAdapter[Any]] = {}
        self._embed_stats = Stats()
        self._embed_runs: set[AsyncCacher] = set()
        self._closed = False

    # -- provider hooks ------------------------------------------------------------------

    def _chat_adapter(self, model: str) -> ChatAdapter[Any]:
        raise NotImplementedError

    def _embedding_adapter(self, model: str) -> EmbeddingAdapter[Any]:
        raise NotImplementedError

    def _completion(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _chunk(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _embedding_response(self, vectors: list[Any], model: str, prompt_tokens: int | None) -> Any:
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store every call of this client reads and writes."""
        return self._store

    async def close(self) -> None:
        """Finish calls in flight, close the pipelines, the store and the SDK client.

        A store or SDK client passed in by the caller stays open.
        """
        if self._closed:
            return
        self._closed = True
        try:
            for run in list(self._embed_runs):
                await run.aclose()  # embedding calls in flight finish first
            for _, pipeline in list(self._chat.values()):
                await pipeline.aclose()
        finally:
            try:
                if self._owns_store:
                    await self._store.aclose()
            finally:
                if self._owns_sdk:
                    await self.sdk.close()

    async def __aenter__(self) -> DropInClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise PipelineClosedError(
                f"{type(self).__name__} is closed; create a new client to send more requests"
            )

    def __getattr__(self, name: str) -> Any:
        # Everything else (models, files, ...) is the SDK's own, uncached.
        sdk = self.__dict__.get("sdk")
        if name.startswith("_") or sdk is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(sdk, name)

    def cachesaver_stats(self) -> Stats:
        """Counters of every chat pipeline and embedding call of this client, summed."""
        total = self._embed_stats
        for _, pipeline in self._chat.values():
            total = _add(total, pipeline.stats())
        return total

    def token_usage(self) -> TokenUsage:
        """Tokens the API calls made by this client reported (what it paid for)."""
        total = TokenUsage()
        for adapter, _ in self._chat.values():
            total = total + adapter.usage
        for embedder in self._embed.values():
            total = total + embedder.usage
        return total

    def chat_pipeline(self, model: str) -> OnlineAPI:
        """The pipeline that serves chat calls for ``model`` (created on first use)."""
        self._check_open()
        if type(model) is not str or not model:
            raise TypeError(
                f"chat.completions.create: model must be a non-empty str, got {model!r}"
            )
        entry = self._chat.get(model)
        if entry is None:
            adapter = self._chat_adapter(model)
            pipeline = OnlineAPI(
                adapter,
                cache=self._store,
                batch_size=self.batch_size,
                timeout=self.batch_timeout,
                mode=self.mode,
            )
            entry = self._chat[model] = (adapter, pipeline)
        return entry[1]

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
                fields[name] = value if type(value) in _SCALARS else jsonable(value, name)
            elif name in self._chat_not_in_key:
                if options is None:
                    options = {}
                options[name] = value
            elif name == "extra_body":
                extra_body = jsonable(value, "extra_body")
                if not isinstance(extra_body, dict):
                    raise TypeError(
                        f"{self._provider} chat.completions.create: extra_body must be a "
                        f"dict, got {value!r}"
                    )
            elif name in chat_params:
                if others is None:
                    others = {}
                others[name] = jsonable(value, name)
            else:
                raise TypeError(
                    f"{self._provider} chat.completions.create() got an unexpected keyword "
                    f"argument {name!r}: it is not a parameter of the installed "
                    f"{self._provider} SDK; send provider-specific parameters in "
                    "extra_body={...} (they are part of the key)"
                )
        if n is None or type(n).__name__ in _SENTINELS:
            n = 1
        prompt = jsonable(messages, "messages")
        if type(prompt) is not list or not prompt:
            raise InvalidRequestError(
                f"{self._provider} chat.completions.create: messages must be a non-empty "
                "list of messages such as [{'role': 'user', 'content': 'Hello'}]"
            )
        request = ChatRequest(
            prompt,
            n=n,
            namespace=self.namespace if namespace is None else namespace,
            request_id=request_id,
            params=others,
            extra_body=extra_body,
            **fields,
        )
        return request, options

    async def _chat_create(
        self,
        model: Any,
        messages: Any,
        stream: Any,
        namespace: str | None,
        request_id: str | None,
        params: dict[str, Any],
    ) -> Any:
        if stream not in (None, False, True) and not is_omitted(stream):
            raise TypeError(
                f"chat.completions.create: stream must be True or False, got {stream!r}"
            )
        n = params.pop("n", None)
        stream_options = params.pop("stream_options", None)
        request, options = self._chat_request(messages, n, namespace, request_id, params)
        if options:
            object.__setattr__(request, CALL_OPTIONS_ATTR, options)
        pipeline = self.chat_pipeline(model)
        response = await pipeline.request(request)
        completion = self._build_completion(response, model)
        if stream is True:
            include_usage = isinstance(stream_options, Mapping) and bool(
                stream_options.get("include_usage")
            )
            return ChatStream(
                completion,
                self._chunk,
                include_usage=include_usage,
                role_in_every_delta=self._role_in_every_delta,
                logprobs_in_chunks=self._logprobs_in_chunks,
            )
        return completion

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

    # -- embeddings ----------------------------------------------------------------------

    def _embedding_inputs(self, value: Any) -> list[str | list[int]]:
        where = f"{self._provider} embeddings.create"
        if isinstance(value, str):
            inputs: list[Any] = [value]
        elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
            items = list(value)
            if items and all(type(t) is int for t in items):
                inputs = [items]  # one input given as token ids
            else:
                inputs = [list(x) if isinstance(x, tuple) else x for x in items]
        else:
            inputs = []
        if not inputs:
            raise InvalidRequestError(
                f"{where}: input must be a non-empty str or a non-empty list of inputs"
            )
        for i, item in enumerate(inputs):
            ok = (isinstance(item, str) and item) or (
                isinstance(item, list) and item and all(type(t) is int for t in item)
            )
            if not ok:
                raise InvalidRequestError(
                    f"{where}: input[{i}] must be a non-empty str or a list of token ids, "
                    f"got {item!r}"
                )
        return inputs

    def _embedding_adapter_for(self, model: Any) -> EmbeddingAdapter[Any]:
        self._check_open()
        if type(model) is not str or not model:
            raise TypeError(f"embeddings.create: model must be a non-empty str, got {model!r}")
        adapter = self._embed.get(model)
        if adapter is None:
            adapter = self._embed[model] = self._embedding_adapter(model)
        return adapter

    async def _embeddings_create(
        self, model: Any, input: Any, request_id: str | None, params: dict[str, Any]
    ) -> Any:
        where = f"{self._provider} embeddings.create"
        adapter = self._embedding_adapter_for(model)
        inputs = self._embedding_inputs(input)
        fields: dict[str, Any] = {}
        others: dict[str, Any] = {}
        options: dict[str, Any] = {}
        extra_body: Any = None
        encoding_format = params.pop("encoding_format", None) if self._has_encoding_format else None
        if encoding_format not in (None, "float", "base64") and not is_omitted(encoding_format):
            raise InvalidRequestError(
                f"{where}: encoding_format must be 'float' or 'base64', got {encoding_format!r}"
            )
        for name, value in params.items():
            if is_omitted(value):
                continue
            if name == "dimensions" and name in self._embed_params:
                fields[name] = value
            elif name in self._embed_not_in_key:
                options[name] = value
            elif name == "extra_body":
                extra_body = jsonable(value, "extra_body")
            elif name in self._embed_params:
                others[name] = jsonable(value, name)
            else:
                raise TypeError(
                    f"{where}() got an unexpected keyword argument {name!r}: it is not a "
                    f"parameter of the installed {self._provider} SDK; send provider-specific "
                    "parameters in extra_body={...}"
                )
        unique: dict[str, int] = {}
        requests: list[EmbeddingRequest] = []
        slots: list[int] = []
        for item in inputs:
            label = json.dumps(item)
            slot = unique.get(label)
            if slot is None:
                slot = unique[label] = len(requests)
                request = EmbeddingRequest(
                    item,
                    request_id=request_id,
                    params=others or None,
                    extra_body=extra_body,
                    **fields,
                )
                if options:
                    object.__setattr__(request, CALL_OPTIONS_ATTR, options)
                requests.append(request)
            slots.append(slot)
        # A new run per call: every input reads sample 0 of its key, whatever was asked
        # before (embeddings are deterministic), and the batcher sends all missing
        # inputs in one API call.
        run = AsyncCacher(
            AsyncBatcher(adapter, batch_size=self.max_embedding_inputs, timeout=0),
            cache=self._store,
            mode=self.mode,
        )
        self._embed_runs.add(run)
        try:
            async with run:
                responses = await run.batch_request(Batch(list(requests)))
        finally:
            self._embed_runs.discard(run)
            self._embed_stats = _add(self._embed_stats, run.stats())
        paid: int | None = 0
        for response in responses:
            sample: EmbeddingSample = response.data[0]
            if response.cached and not response.cached[0]:
                tokens = sample["prompt_tokens"]
                if tokens is None:
                    paid = None
                elif paid is not None:
                    paid += tokens
        vectors: list[Any] = []
        served_model = model
        for slot in slots:
            sample = responses[slot].data[0]
            served_model = sample["model"] or model
            vector = sample["embedding"]
            if encoding_format == "base64":
                packed = struct.pack(f"<{len(vector)}f", *vector)
                vectors.append(base64.b64encode(packed).decode("ascii"))
            else:
                vectors.append(list(vector))
        return self._embedding_response(vectors, served_model, paid)


class ResourceProxy:
    """``client.chat`` / ``client.embeddings``: cached ``create``, the rest refused or the SDK's."""

    def __init__(self, sdk_resource: Any, refused: frozenset[str], path: str) -> None:
        self._sdk_resource = sdk_resource
        self._refused = refused
        self._path = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if name in self._refused:
            raise AttributeError(
                f"{self._path}.{name} is not served by cachesaver (it would bypass the "
                f"cache); use {self._path}.create, or call the SDK directly through "
                f"client.sdk.{self._path}.{name} (uncached)"
            )
        return getattr(self._sdk_resource, name)
