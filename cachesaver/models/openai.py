"""OpenAI: a drop-in `AsyncOpenAI` client and the pipeline adapters.

Change one import and existing code becomes cached, deduplicated and reproducible::

    from cachesaver.models.openai import AsyncOpenAI      # was: from openai import AsyncOpenAI

    client = AsyncOpenAI(cache="caches/exp1")              # api_key, base_url, ... as before
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], n=3,
        namespace="run-1",                                 # cachesaver's own keywords
    )

For pipelines, `OpenAIModel` is a `SingleRequestModel` over an ``openai.AsyncOpenAI``
client and `OpenAIEmbeddingModel` a `BatchRequestModel`. See ``docs/providers.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import openai
from openai.resources.chat.completions import AsyncCompletions
from openai.resources.embeddings import AsyncEmbeddings
from openai.resources.responses import AsyncResponses
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.create_embedding_response import CreateEmbeddingResponse
from openai.types.responses import Response as ResponsesResponse

from cachesaver.cacher import Mode
from cachesaver.errors import InvalidRequestError
from cachesaver.manifest import RunManifest
from cachesaver.models._chat import ChatAdapter
from cachesaver.models._common import (
    TRANSPORT_PARAMS,
    call_client,
    jsonable,
    sdk_params,
    validator_of,
)
from cachesaver.models._dropin import DropInClient
from cachesaver.models._dropin_embed import EmbeddingsMixin
from cachesaver.models._embed import EmbeddingAdapter
from cachesaver.models._errors import DropInOptionError
from cachesaver.models._resources import (
    BetaProxy,
    ChatCompletionsProxy,
    ChatProxy,
    EmbeddingsProxy,
    RawClient,
    ResponsesProxy,
)
from cachesaver.models._responses import ResponsesMixin, responses_params
from cachesaver.models._sync import SyncDropIn
from cachesaver.pipelines import DEFAULT_CACHE
from cachesaver.savings import Price
from cachesaver.stores import CacheLike

__all__ = [
    "CHAT_NOT_IN_KEY",
    "EMBEDDINGS_NOT_IN_KEY",
    "AsyncOpenAI",
    "OpenAI",
    "OpenAIEmbeddingModel",
    "OpenAIModel",
]

#: Chat parameters that do not change the output: sent, never part of the key.
#: (``stream_options`` is used by the drop-in's replayed streams and never sent.)
CHAT_NOT_IN_KEY: frozenset[str] = TRANSPORT_PARAMS | frozenset(
    {
        "store",
        "metadata",
        "user",
        "safety_identifier",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
    }
)
#: Embedding parameters that do not change the output (``encoding_format`` is applied
#: by the drop-in to the stored floats).
EMBEDDINGS_NOT_IN_KEY: frozenset[str] = TRANSPORT_PARAMS | frozenset({"user"})

_CHAT_PARAMS = sdk_params(AsyncCompletions.create) - {"stream_options"}
_EMBED_PARAMS = sdk_params(AsyncEmbeddings.create) - {"encoding_format"}


class OpenAIModel(ChatAdapter[openai.AsyncOpenAI]):
    """OpenAI chat completions as a `SingleRequestModel` for `OnlineAPI`.

    ``OnlineAPI(OpenAIModel(openai.AsyncOpenAI(), "gpt-4o-mini"), cache=...)``. The
    request's ``prompt`` (str or list of messages) becomes ``messages``; every other
    field is sent as the parameter of its name (`ChatRequest` has the usual ones).

    - ``sample="text"``: a sample is the message content (``str``, ``None`` for a pure
      tool call); ``sample="full"``: a `ChatSample` (the whole choice and its tokens);
    - ``max_concurrency``: at most that many API calls at once;
    - ``call_options``: sent with every call and not part of the key (only options in
      `CHAT_NOT_IN_KEY`, e.g. ``{"user": "me", "timeout": 30}``);
    - ``ignore_fields``: request fields kept in the key but not sent;
    - ``identity_base_url``: the base URL recorded in the identity (default: the
      client's), e.g. to share a cache between a proxy and the provider.

    ``usage`` sums the tokens the calls reported. Errors are the SDK's own exceptions,
    after the SDK's own retries (``max_retries`` of the client).
    """

    provider = "openai"
    sdk_params = _CHAT_PARAMS
    call_option_names = CHAT_NOT_IN_KEY

    async def _create(self, kwargs: dict[str, Any]) -> ChatCompletion:
        completion: ChatCompletion = await call_client(self).chat.completions.create(**kwargs)
        return completion

    async def _stream(self, kwargs: dict[str, Any]) -> Any:
        return await call_client(self).chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )

    def _completion_of(self, data: dict[str, Any]) -> ChatCompletion:
        return ChatCompletion.model_validate(data)


class OpenAIEmbeddingModel(EmbeddingAdapter[openai.AsyncOpenAI]):
    """OpenAI embeddings as a `BatchRequestModel` (use it with `LocalAPI`).

    Each request's ``prompt`` is one input; each sample an `EmbeddingSample`. A batch
    is sent as one API call per ``max_inputs`` inputs.
    """

    provider = "openai"
    sdk_params = _EMBED_PARAMS
    call_option_names = EMBEDDINGS_NOT_IN_KEY

    async def _create(self, kwargs: dict[str, Any]) -> CreateEmbeddingResponse:
        result: CreateEmbeddingResponse = await call_client(self).embeddings.create(**kwargs)
        return result


class _ChatCompletions(ChatCompletionsProxy[ChatCompletion, ChatCompletionChunk]):
    """``client.chat.completions`` of `AsyncOpenAI`."""

    parse = ChatCompletionsProxy._parse


class _Chat(ChatProxy[_ChatCompletions]):
    """``client.chat`` of `AsyncOpenAI`."""

    _completions_type = _ChatCompletions


class _Embeddings(EmbeddingsProxy[CreateEmbeddingResponse]):
    """``client.embeddings`` of `AsyncOpenAI`."""


class _Responses(ResponsesProxy[ResponsesResponse]):
    """``client.responses`` of `AsyncOpenAI`."""


class AsyncOpenAI(EmbeddingsMixin, ResponsesMixin, DropInClient):
    """``openai.AsyncOpenAI`` with chat completions and embeddings served by cachesaver.

    Every SDK option (``api_key``, ``base_url``, ``timeout``, ``max_retries``, ...) is
    passed to the real client, which is ``client.sdk``; or wrap an existing one with
    ``sdk_client=``. cachesaver options:

    - ``cache``: a directory, a ``diskcache.Cache`` or a `Store` (default
      ``caches/default``);
    - ``namespace``: the default namespace of calls (a call's ``namespace=`` overrides);
    - ``batch_size`` / ``batch_timeout``: how fresh calls are grouped (same-key calls
      in one group are merged into one API call); ``batch_timeout`` is in seconds
      (``timeout`` is the SDK's HTTP timeout, as in ``openai``);
    - ``max_concurrency``: at most that many API calls at once per model;
    - ``max_embedding_inputs``: inputs per embeddings API call;
    - ``identity_base_url``: the base URL recorded in cache keys (default: the client's);
    - ``mode="replay"``: serve only from the cache (a miss raises `CacheMissError`);
    - ``manifest``: a path (or `RunManifest`) recording the samples every call received;
    - ``run_id``: join a shared run (workers with one ``run_id`` draw disjoint samples).

    Cached: ``chat.completions.create`` / ``.parse`` (also ``beta.chat.completions``),
    ``embeddings.create``, ``responses.create``, and the same through
    ``with_raw_response``. Any other SDK path raises `UncachedPathError` naming the
    uncached way, ``client.sdk.<path>``; settings such as ``client.base_url`` read
    through. ``with_options(...)`` / ``copy(...)`` give a client on the same cache and
    run. Close with ``await client.close()`` or use ``async with``.
    """

    sdk: openai.AsyncOpenAI
    _provider = "openai"
    # Only what the installed SDK takes (older SDKs lack e.g. prompt_cache_key).
    _chat_not_in_key = CHAT_NOT_IN_KEY & (_CHAT_PARAMS | TRANSPORT_PARAMS)
    _chat_params = _CHAT_PARAMS | {"stream_options"} | _chat_not_in_key
    _embed_params = _EMBED_PARAMS | EMBEDDINGS_NOT_IN_KEY
    _embed_not_in_key = EMBEDDINGS_NOT_IN_KEY
    _role_in_every_delta = False
    _logprobs_in_chunks = True
    _has_encoding_format = True
    _has_parse = True
    _responses_params = responses_params(AsyncResponses.create)
    _served = (
        "chat.completions.create, chat.completions.parse, beta.chat.completions.parse, "
        "embeddings.create, responses.create (and with_raw_response of each)"
    )

    def __init__(
        self,
        *,
        cache: CacheLike = DEFAULT_CACHE,
        namespace: str = "default",
        batch_size: int = 16,
        batch_timeout: float = 0.0,
        max_concurrency: int | None = None,
        max_embedding_inputs: int = 2048,
        identity_base_url: str | None = None,
        mode: Mode = "readwrite",
        manifest: str | os.PathLike[str] | RunManifest | None = None,
        run_id: str | None = None,
        reproduce: str | os.PathLike[str] | RunManifest | None = None,
        prices: Mapping[str, Price] | None = None,
        sdk_client: openai.AsyncOpenAI | None = None,
        **sdk_options: Any,
    ) -> None:
        if sdk_client is not None and sdk_options:
            raise DropInOptionError(
                f"AsyncOpenAI: pass either sdk_client or SDK options, not both (got "
                f"{sorted(sdk_options)}); configure the client you pass in instead"
            )

        def make_sdk() -> openai.AsyncOpenAI:
            return sdk_client if sdk_client is not None else openai.AsyncOpenAI(**sdk_options)

        super().__init__(
            make_sdk,
            sdk_client is None,
            cache=cache,
            namespace=namespace,
            batch_size=batch_size,
            batch_timeout=batch_timeout,
            max_concurrency=max_concurrency,
            max_embedding_inputs=max_embedding_inputs,
            identity_base_url=identity_base_url,
            mode=mode,
            manifest=manifest,
            run_id=run_id,
            reproduce=reproduce,
            prices=prices,
        )

    def _make_resources(self) -> None:
        self.chat = _Chat(self)
        self.embeddings = _Embeddings(self)
        self.responses = _Responses(self)
        self.beta = BetaProxy(self)
        self.with_raw_response = RawClient(self)

    async def __aenter__(self) -> AsyncOpenAI:
        return self

    def with_options(self, *, namespace: str | None = None, **sdk_options: Any) -> AsyncOpenAI:
        derived: AsyncOpenAI = super().with_options(namespace=namespace, **sdk_options)
        return derived

    copy = with_options

    def _chat_adapter(self, model: str) -> OpenAIModel:
        return OpenAIModel(
            self.sdk,
            model,
            sample="full",
            max_concurrency=self.max_concurrency,
            identity_base_url=self._base_url,
        )

    def _embedding_adapter(self, model: str) -> OpenAIEmbeddingModel:
        return OpenAIEmbeddingModel(
            self.sdk,
            model,
            max_inputs=self.max_embedding_inputs,
            max_concurrency=self.max_concurrency,
            identity_base_url=self._base_url,
        )

    def _completion(self, data: dict[str, Any]) -> ChatCompletion:
        return validator_of(ChatCompletion)(data)

    def _chunk(self, data: dict[str, Any]) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate(data)

    def _structured(self, response_format: Any) -> tuple[Any, Any]:
        if isinstance(response_format, type):
            from openai.lib._parsing._completions import type_to_response_format_param

            try:
                param = type_to_response_format_param(response_format)
            except TypeError:
                raise InvalidRequestError(
                    f"response_format is the class {response_format.__qualname__}, which is "
                    "neither a pydantic model nor a dataclass; pass one of those (its JSON "
                    "schema is sent and keyed) or a response_format dict"
                ) from None
            return jsonable(param, "response_format"), response_format
        return jsonable(response_format, "response_format"), None

    def _parse(self, completion: Any, parse_as: Any, tools: Any) -> Any:
        from openai.lib._parsing._completions import parse_chat_completion

        parse: Any = parse_chat_completion  # its types name the SDK's own params
        return parse(
            response_format=parse_as if parse_as is not None else openai.NOT_GIVEN,
            input_tools=tools if tools is not None else openai.NOT_GIVEN,
            chat_completion=completion,
        )

    def _response_object(self, data: dict[str, Any]) -> ResponsesResponse:
        # As the SDK builds what the API sent: leniently (fields newer than the stored
        # answer stay unset rather than failing the hit).
        from openai._models import construct_type

        built: Any = construct_type(type_=ResponsesResponse, value=data)
        return built  # type: ignore[no-any-return]

    def _embedding_response(
        self, vectors: list[Any], model: str, prompt_tokens: int | None
    ) -> CreateEmbeddingResponse:
        tokens = prompt_tokens or 0
        data: dict[str, Any] = {
            "object": "list",
            "model": model,
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if vectors and isinstance(vectors[0], str):
            # encoding_format="base64": the SDK leaves the strings as they are, unvalidated.
            return CreateEmbeddingResponse.construct(**data)
        return CreateEmbeddingResponse.model_validate(data)


class OpenAI(SyncDropIn):
    """``openai.OpenAI`` (sync) with the same caching as `AsyncOpenAI`.

    Constructed with the same options as `AsyncOpenAI` (SDK options and cachesaver's:
    ``cache``, ``namespace``, ``mode``, ``manifest``, ``run_id``, ...); calls block until
    the answer is there and return the same SDK objects and flags; ``stream=True``
    returns an iterator of chunks. The async client runs on one background event loop
    owned by this client (`cachesaver.sync.BackgroundLoop`), so it works in scripts, in
    threads and in Jupyter. Close with ``client.close()`` or ``with OpenAI(...) as client``.
    """

    _async_type = AsyncOpenAI
