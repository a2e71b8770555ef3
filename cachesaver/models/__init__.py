"""Provider adapters and drop-in clients.

- Drop-in clients (change one import): ``cachesaver.models.openai.AsyncOpenAI`` /
  ``OpenAI``, ``cachesaver.models.together.AsyncTogether`` / ``Together``,
  ``cachesaver.models.anthropic.AsyncAnthropic`` / ``Anthropic`` and
  ``cachesaver.models.gemini.Client`` (``google.genai.Client``).
- Pipeline adapters: `OpenAIModel`, `TogetherModel` (chat, `SingleRequestModel`) and
  `OpenAIEmbeddingModel`, `TogetherEmbeddingModel` (embeddings, `BatchRequestModel`).
- More pipeline adapters, each an optional extra: `AnthropicModel`
  (``cachesaver[anthropic]``), `GeminiModel` (``cachesaver[gemini]``), `LiteLLMModel`
  (any provider LiteLLM reaches; ``cachesaver[litellm]``) and `TransformersModel` (a
  local Hugging Face causal LM for `LocalAPI`; ``cachesaver[local]``).
- `ChatRequest` / `EmbeddingRequest`: `Request` subclasses whose fields are API
  parameters; `ChatSample` / `EmbeddingSample`: what ``sample="full"`` stores (plain
  JSON, typed); `cache_flags` / `choice_usage`: the per-choice flags and token counts
  of a drop-in answer.

The provider classes are imported on first use, so ``import cachesaver.models`` does
not import both SDKs. See ``docs/providers.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cachesaver.models._common import TokenUsage
from cachesaver.models._errors import DropInOptionError, UncachedPathError
from cachesaver.models._live import LiveStream, StreamAbandonedError
from cachesaver.models._resources import CachedRawResponse
from cachesaver.models._stream import ChatStream
from cachesaver.models.requests import ChatRequest, EmbeddingRequest, ResponsesRequest
from cachesaver.models.samples import (
    ChatSample,
    ChoiceFlags,
    ChoiceUsage,
    EmbeddingSample,
    cache_flags,
    choice_usage,
    sample_message,
    sample_text,
)

if TYPE_CHECKING:
    from cachesaver.models.anthropic import AnthropicModel
    from cachesaver.models.gemini import GeminiModel
    from cachesaver.models.litellm import LiteLLMModel
    from cachesaver.models.local import TransformersModel
    from cachesaver.models.openai import OpenAIEmbeddingModel, OpenAIModel
    from cachesaver.models.together import TogetherEmbeddingModel, TogetherModel

__all__ = [
    "AnthropicModel",
    "CachedRawResponse",
    "ChatRequest",
    "ChatSample",
    "ChatStream",
    "ChoiceFlags",
    "ChoiceUsage",
    "DropInOptionError",
    "EmbeddingRequest",
    "EmbeddingSample",
    "GeminiModel",
    "LiteLLMModel",
    "LiveStream",
    "OpenAIEmbeddingModel",
    "OpenAIModel",
    "ResponsesRequest",
    "StreamAbandonedError",
    "TogetherEmbeddingModel",
    "TogetherModel",
    "TokenUsage",
    "TransformersModel",
    "UncachedPathError",
    "cache_flags",
    "choice_usage",
    "sample_message",
    "sample_text",
]

_LAZY = {
    "AnthropicModel": "cachesaver.models.anthropic",
    "GeminiModel": "cachesaver.models.gemini",
    "LiteLLMModel": "cachesaver.models.litellm",
    "TransformersModel": "cachesaver.models.local",
    "OpenAIModel": "cachesaver.models.openai",
    "OpenAIEmbeddingModel": "cachesaver.models.openai",
    "TogetherModel": "cachesaver.models.together",
    "TogetherEmbeddingModel": "cachesaver.models.together",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cachesaver.models' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
