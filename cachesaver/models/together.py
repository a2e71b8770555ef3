"""Together: a drop-in `AsyncTogether` client and the pipeline adapters.

Change one import and existing code becomes cached, deduplicated and reproducible::

    from cachesaver.models.together import AsyncTogether   # was: from together import ...

    client = AsyncTogether(cache="caches/exp1")              # api_key, base_url, ... as before
    completion = await client.chat.completions.create(
        model="meta-llama/Llama-3.3-70B-Instruct-Turbo",
        messages=[{"role": "user", "content": "Hi"}], n=3, namespace="run-1",
    )

For pipelines, `TogetherModel` is a `SingleRequestModel` over a ``together.AsyncTogether``
client and `TogetherEmbeddingModel` a `BatchRequestModel`. See ``docs/providers.md``.
"""

# ruff: noqa: E402  (the SDK version is checked before its modules are imported)
from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Mapping
from typing import Any

import together

_TOGETHER_VERSION = importlib.metadata.version("together")
if int(_TOGETHER_VERSION.split(".")[0]) < 2:
    raise ImportError(
        f"cachesaver.models.together needs the together SDK 2.x or 3.x; together "
        f"{_TOGETHER_VERSION} is installed (pip install 'together>=2'). Your own model "
        "classes calling together 1.x work with cachesaver's pipelines."
    )

from together.resources.chat.completions import AsyncCompletionsResource
from together.resources.embeddings import AsyncEmbeddingsResource
from together.types.chat.chat_completion import ChatCompletion
from together.types.chat.chat_completion_chunk import ChatCompletionChunk
from together.types.embedding import Embedding

from cachesaver.cacher import Mode
from cachesaver.manifest import RunManifest
from cachesaver.models._chat import ChatAdapter
from cachesaver.models._common import TRANSPORT_PARAMS, call_client, sdk_params, validator_of
from cachesaver.models._dropin import DropInClient
from cachesaver.models._dropin_embed import EmbeddingsMixin
from cachesaver.models._embed import EmbeddingAdapter
from cachesaver.models._errors import DropInOptionError
from cachesaver.models._resources import (
    ChatCompletionsProxy,
    ChatProxy,
    EmbeddingsProxy,
    RawClient,
)
from cachesaver.models._sync import SyncDropIn
from cachesaver.pipelines import DEFAULT_CACHE
from cachesaver.savings import Price
from cachesaver.stores import CacheLike

__all__ = [
    "CHAT_NOT_IN_KEY",
    "EMBEDDINGS_NOT_IN_KEY",
    "AsyncTogether",
    "Together",
    "TogetherEmbeddingModel",
    "TogetherModel",
]

#: Chat parameters that do not change the output: sent, never part of the key.
#: ``compliance`` routes the call to compliant infrastructure serving the same model.
CHAT_NOT_IN_KEY: frozenset[str] = TRANSPORT_PARAMS | frozenset({"compliance"})
#: Embedding parameters that do not change the output.
EMBEDDINGS_NOT_IN_KEY: frozenset[str] = TRANSPORT_PARAMS

_CHAT_PARAMS = sdk_params(AsyncCompletionsResource.create)
_EMBED_PARAMS = sdk_params(AsyncEmbeddingsResource.create)


class TogetherModel(ChatAdapter[together.AsyncTogether]):
    """Together chat completions as a `SingleRequestModel` for `OnlineAPI`.

    Same options as `cachesaver.models.openai.OpenAIModel` (``sample``,
    ``max_concurrency``, ``call_options``, ``ignore_fields``, ``identity_base_url``);
    Together's own parameters (``top_k``, ``repetition_penalty``, ``min_p``, ...) are
    request fields like any other, or entries of `ChatRequest.params`.
    """

    provider = "together"
    sdk_params = _CHAT_PARAMS
    call_option_names = CHAT_NOT_IN_KEY

    async def _create(self, kwargs: dict[str, Any]) -> ChatCompletion:
        completion: ChatCompletion = await call_client(self).chat.completions.create(**kwargs)
        return completion

    async def _stream(self, kwargs: dict[str, Any]) -> Any:
        return await call_client(self).chat.completions.create(**kwargs, stream=True)

    def _completion_of(self, data: dict[str, Any]) -> ChatCompletion:
        data.setdefault("prompt", [])
        return ChatCompletion.model_validate(data)


class TogetherEmbeddingModel(EmbeddingAdapter[together.AsyncTogether]):
    """Together embeddings as a `BatchRequestModel` (use it with `LocalAPI`)."""

    provider = "together"
    sdk_params = _EMBED_PARAMS
    call_option_names = EMBEDDINGS_NOT_IN_KEY

    async def _create(self, kwargs: dict[str, Any]) -> Embedding:
        result: Embedding = await call_client(self).embeddings.create(**kwargs)
        return result


class _ChatCompletions(ChatCompletionsProxy[ChatCompletion, ChatCompletionChunk]):
    """``client.chat.completions`` of `AsyncTogether`."""


class _Chat(ChatProxy[_ChatCompletions]):
    """``client.chat`` of `AsyncTogether`."""

    _completions_type = _ChatCompletions


class _Embeddings(EmbeddingsProxy[Embedding]):
    """``client.embeddings`` of `AsyncTogether`."""


class AsyncTogether(EmbeddingsMixin, DropInClient):
    """``together.AsyncTogether`` with chat completions and embeddings served by cachesaver.

    SDK options (``api_key``, ``base_url``, ``timeout``, ``max_retries``, ...) go to the
    real client (``client.sdk``), or wrap one with ``sdk_client=``. cachesaver options
    as for `cachesaver.models.openai.AsyncOpenAI`: ``cache``, ``namespace``,
    ``batch_size``, ``batch_timeout``, ``max_concurrency``, ``max_embedding_inputs``,
    ``identity_base_url``, ``mode``, ``manifest``, ``run_id``. ``chat.completions.create``
    and ``embeddings.create`` are cached (also through ``with_raw_response``); any other
    SDK path raises `UncachedPathError` (use ``client.sdk.<path>`` for the uncached SDK).
    """

    sdk: together.AsyncTogether
    _provider = "together"
    _chat_not_in_key = CHAT_NOT_IN_KEY & (_CHAT_PARAMS | TRANSPORT_PARAMS)
    _chat_params = _CHAT_PARAMS | _chat_not_in_key
    _embed_params = _EMBED_PARAMS | EMBEDDINGS_NOT_IN_KEY
    _embed_not_in_key = EMBEDDINGS_NOT_IN_KEY
    _role_in_every_delta = True
    _logprobs_in_chunks = False
    _has_parse = False

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
        sdk_client: together.AsyncTogether | None = None,
        **sdk_options: Any,
    ) -> None:
        if sdk_client is not None and sdk_options:
            raise DropInOptionError(
                f"AsyncTogether: pass either sdk_client or SDK options, not both (got "
                f"{sorted(sdk_options)}); configure the client you pass in instead"
            )

        def make_sdk() -> together.AsyncTogether:
            if sdk_client is not None:
                return sdk_client
            return together.AsyncTogether(**sdk_options)

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
        self.with_raw_response = RawClient(self)

    async def __aenter__(self) -> AsyncTogether:
        return self

    def with_options(self, *, namespace: str | None = None, **sdk_options: Any) -> AsyncTogether:
        derived: AsyncTogether = super().with_options(namespace=namespace, **sdk_options)
        return derived

    copy = with_options

    def _chat_adapter(self, model: str) -> TogetherModel:
        return TogetherModel(
            self.sdk,
            model,
            sample="full",
            max_concurrency=self.max_concurrency,
            identity_base_url=self._base_url,
        )

    def _embedding_adapter(self, model: str) -> TogetherEmbeddingModel:
        return TogetherEmbeddingModel(
            self.sdk,
            model,
            max_inputs=self.max_embedding_inputs,
            max_concurrency=self.max_concurrency,
            identity_base_url=self._base_url,
        )

    def _completion(self, data: dict[str, Any]) -> ChatCompletion:
        data.setdefault("prompt", [])
        return validator_of(ChatCompletion)(data)

    def _chunk(self, data: dict[str, Any]) -> ChatCompletionChunk:
        for part in data.get("choices") or ():
            delta = part.get("delta")
            if isinstance(delta, dict):
                delta.setdefault("role", "assistant")
        return ChatCompletionChunk.model_validate(data)

    def _embedding_response(
        self, vectors: list[Any], model: str, prompt_tokens: int | None
    ) -> Embedding:
        data: dict[str, Any] = {
            "object": "list",
            "model": model,
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
        }
        if prompt_tokens is not None:
            # Not a field of together's Embedding type: an extra, as the API may send.
            data["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        if vectors and isinstance(vectors[0], str):
            return Embedding.construct(**data)
        return Embedding.model_validate(data)


class Together(SyncDropIn):
    """``together.Together`` (sync) with the same caching as `AsyncTogether`.

    Same options as `AsyncTogether`; see `cachesaver.models.openai.OpenAI` for how the
    sync clients run (one owned background event loop; ``close()`` or ``with``).
    """

    _async_type = AsyncTogether
