"""LiteLLM: one pipeline adapter reaching every provider LiteLLM speaks to.

``LiteLLMModel("anthropic/claude-sonnet-4-5")`` is a `SingleRequestModel` for `OnlineAPI`
that calls ``litellm.acompletion``. LiteLLM is an optional extra
(``pip install "cachesaver[litellm]"``); it is imported when the first adapter is built.

The identity recorded in every key is LiteLLM's own reading of the model string (its
provider and model name, from ``litellm.get_llm_provider``) plus the endpoint
(``api_base``), so ``"gpt-4o-mini"`` and ``"openai/gpt-4o-mini"`` share samples while the
same model name on two servers does not.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from cachesaver.errors import MissingExtraError
from cachesaver.models._chat import ChatAdapter, SampleKind
from cachesaver.models._common import TRANSPORT_PARAMS

__all__ = ["LITELLM_NOT_IN_KEY", "LiteLLMModel"]

#: Parameters of ``litellm.acompletion`` that do not change the output: allowed in
#: ``call_options``, never part of the key.
LITELLM_NOT_IN_KEY: frozenset[str] = TRANSPORT_PARAMS | frozenset(
    {
        "user",
        "metadata",
        "safety_identifier",
        "service_tier",
        "store",
        "prompt_cache_key",
        "prompt_cache_retention",
        "num_retries",
    }
)
# Parameters that say where and how to connect, or that cachesaver sets itself: never
# request fields (the endpoint is the adapter's, and part of its identity).
_NOT_REQUEST_FIELDS = frozenset(
    {
        "model",
        "messages",
        "n",
        "stream",
        "stream_options",
        "kwargs",
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "model_list",
        "deployment_id",
        "shared_session",
        "functions",
        "function_call",
    }
)


def _import_litellm() -> ModuleType:
    # LiteLLM fetches a model price list from the internet on import unless told not to;
    # cachesaver never needs it, and an offline machine would wait on it.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        return importlib.import_module("litellm")
    except ImportError as exc:
        raise MissingExtraError(
            f'LiteLLMModel needs the litellm package: pip install "cachesaver[litellm]" ({exc})'
        ) from exc


class LiteLLMModel(ChatAdapter[None]):
    """Any LiteLLM model as a `SingleRequestModel` (``OnlineAPI(LiteLLMModel(...))``).

    - ``model``: LiteLLM's model string, e.g. ``"openai/gpt-4o-mini"``,
      ``"anthropic/claude-sonnet-4-5"``, ``"ollama/llama3"``;
    - ``api_base`` / ``api_key``: sent with every call; ``api_base`` is part of the identity
      (``api_key`` never is);
    - ``sample``, ``max_concurrency``, ``call_options``, ``ignore_fields``: as for
      `OpenAIModel` (request fields are sent as the ``acompletion`` parameter of their name).

    A provider that ignores ``n`` or returns fewer choices is asked again for the rest,
    so a request always gets exactly ``n`` samples. Errors are LiteLLM's own exceptions
    (which subclass the openai SDK's), after LiteLLM's own retries.
    """

    provider = "litellm"
    call_option_names = LITELLM_NOT_IN_KEY

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        sample: SampleKind = "text",
        max_concurrency: int | None = None,
        call_options: Mapping[str, Any] | None = None,
        ignore_fields: Iterable[str] = (),
    ) -> None:
        self._litellm = _import_litellm()
        if not isinstance(model, str) or not model:
            raise ValueError(f"LiteLLMModel needs the model name as a non-empty str, got {model!r}")
        try:
            name, provider, _key, _base = self._litellm.get_llm_provider(model, api_base=api_base)
        except Exception as exc:  # LiteLLM's BadRequestError for an unknown provider
            raise ValueError(
                f"LiteLLMModel: LiteLLM does not know which provider serves {model!r} ({exc}); "
                "prefix the model with its provider, e.g. 'openai/gpt-4o-mini'"
            ) from exc
        if not LiteLLMModel.sdk_params:
            LiteLLMModel.sdk_params = frozenset(_acompletion_params(self._litellm))
        super().__init__(
            None,
            model,
            sample=sample,
            max_concurrency=max_concurrency,
            call_options=call_options,
            ignore_fields=ignore_fields,
            identity_base_url=(api_base or "").rstrip("/"),
        )
        self.litellm_provider: str = str(provider)
        self.litellm_model: str = str(name)
        self._connection: dict[str, Any] = {}
        if api_base is not None:
            self._connection["api_base"] = api_base
        if api_key is not None:
            self._connection["api_key"] = api_key

    @property
    def identity(self) -> dict[str, str]:
        """LiteLLM's provider and model name, the endpoint and the sample kind."""
        return {
            "provider": self.provider,
            "litellm_provider": self.litellm_provider,
            "endpoint": self.endpoint,
            "model": self.litellm_model,
            "base_url": self._base_url,
            "sample": self.sample,
        }

    def __repr__(self) -> str:
        return f"LiteLLMModel(model={self.model!r}, api_base={self._base_url or None!r})"

    async def _create(self, kwargs: dict[str, Any]) -> Any:
        return await self._litellm.acompletion(**kwargs, **self._connection)


def _acompletion_params(litellm: ModuleType) -> set[str]:
    import inspect

    names = set(inspect.signature(litellm.acompletion).parameters)
    return names - _NOT_REQUEST_FIELDS - TRANSPORT_PARAMS - {"extra_body"}
