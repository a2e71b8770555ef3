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

from typing import Any

import openai
from openai.resources.chat.completions import AsyncCompletions
from openai.resources.embeddings import AsyncEmbeddings
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.create_embedding_response import CreateEmbeddingResponse

from cachesaver.cacher import Mode
from cachesaver.models._chat import ChatAdapter
from cachesaver.models._common import TRANSPORT_PARAMS, sdk_params
from cachesaver.models._dropin import DropInClient
from cachesaver.models._embed import EmbeddingAdapter
from cachesaver.models._resources import ChatCompletionsProxy, ChatProxy, EmbeddingsProxy
from cachesaver.pipelines import DEFAULT_CACHE
from cachesaver.stores import CacheLike

__all__ = [
    "CHAT_NOT_IN_KEY",
    "EMBEDDINGS_NOT_IN_KEY",
    "AsyncOpenAI",
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
        completion: ChatCompletion = await self.client.chat.completions.create(**kwargs)
        return completion


class OpenAIEmbeddingModel(EmbeddingAdapter[openai.AsyncOpenAI]):
    """OpenAI embeddings as a `BatchRequestModel` (use it with `LocalAPI`).

    Each request's ``prompt`` is one input; each sample an `EmbeddingSample`. A batch
    is sent as one API call per ``max_inputs`` inputs.
    """

    provider = "openai"
    sdk_params = _EMBED_PARAMS
    call_option_names = EMBEDDINGS_NOT_IN_KEY

    async def _create(self, kwargs: dict[str, Any]) -> CreateEmbeddingResponse:
        return await self.client.embeddings.create(**kwargs)


class _ChatCompletions(ChatCompletionsProxy[ChatCompletion, ChatCompletionChunk]):
    """``client.chat.completions`` of `AsyncOpenAI`."""


class _Chat(ChatProxy[_ChatCompletions]):
    """``client.chat`` of `AsyncOpenAI`."""

    _completions_type = _ChatCompletions


class _Embeddings(EmbeddingsProxy[CreateEmbeddingResponse]):
    """``client.embeddings`` of `AsyncOpenAI`."""


class AsyncOpenAI(DropInClient):
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
    - ``mode="replay"``: serve only from the cache (a miss raises `CacheMissError`).

    ``chat.completions.create`` and ``embeddings.create`` are cached; any other
    attribute is the SDK's own (uncached). Close with ``await client.close()`` or use
    ``async with``.
    """

    sdk: openai.AsyncOpenAI
    _provider = "openai"
    _chat_params = _CHAT_PARAMS | {"stream_options"} | CHAT_NOT_IN_KEY
    _chat_not_in_key = CHAT_NOT_IN_KEY
    _embed_params = _EMBED_PARAMS | EMBEDDINGS_NOT_IN_KEY
    _embed_not_in_key = EMBEDDINGS_NOT_IN_KEY
    _role_in_every_delta = False
    _logprobs_in_chunks = True
    _has_encoding_format = True

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
        sdk_client: openai.AsyncOpenAI | None = None,
        **sdk_options: Any,
    ) -> None:
        if sdk_client is not None and sdk_options:
            raise TypeError(
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
        )
        self.chat = _Chat(self)
        self.embeddings = _Embeddings(self)

    async def __aenter__(self) -> AsyncOpenAI:
        return self

    def _chat_adapter(self, model: str) -> OpenAIModel:
        return OpenAIModel(
            self.sdk,
            model,
            sample="full",
            max_concurrency=self.max_concurrency,
            identity_base_url=self._identity_base_url,
        )

    def _embedding_adapter(self, model: str) -> OpenAIEmbeddingModel:
        return OpenAIEmbeddingModel(
            self.sdk,
            model,
            max_inputs=self.max_embedding_inputs,
            max_concurrency=self.max_concurrency,
            identity_base_url=self._identity_base_url,
        )

    def _completion(self, data: dict[str, Any]) -> ChatCompletion:
        return ChatCompletion.model_validate(data)

    def _chunk(self, data: dict[str, Any]) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate(data)

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
