"""The models the pipelines can run on: the offline simulation, OpenAI and Together.

`ChatModel` is a small `SingleRequestModel` over an OpenAI-compatible async chat client
(``openai.AsyncOpenAI`` or ``together.AsyncTogether``). It returns the same sample dicts
as the simulation, ``{"text", "prompt_tokens", "completion_tokens"}``, from the usage the
provider reports.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from cachesaver import Request, Response
from pipelines.accounting import stamp
from pipelines.latency import LatencyModel, LatencyProfile
from pipelines.simulated import MODEL_NAME, simulated_model
from pipelines.tokens import count_tokens

__all__ = [
    "PROVIDERS",
    "ChatModel",
    "ProviderError",
    "check_provider",
    "make_model",
    "model_description",
    "split_tokens",
]

PROVIDERS = ("simulated", "openai", "together")
_KEYS = {"openai": "OPENAI_API_KEY", "together": "TOGETHER_API_KEY"}
_ENDPOINTS = {"openai": "https://api.openai.com/v1", "together": "https://api.together.xyz/v1"}


class ProviderError(RuntimeError):
    """A provider cannot be used as asked (unknown name, missing model or API key)."""


def split_tokens(total: int | None, texts: Sequence[str]) -> list[int]:
    """Split a call's ``total`` completion tokens over its texts, in proportion to length.

    The parts are integers that add up to ``total`` exactly; without a reported total,
    each text is counted with `count_tokens`.
    """
    counts = [count_tokens(text) for text in texts]
    if total is None:
        return counts
    weights = [max(c, 1) for c in counts]
    scale = sum(weights)
    parts = [total * w // scale for w in weights]
    order = sorted(range(len(texts)), key=lambda k: -(total * weights[k] % scale))
    for k in order[: total - sum(parts)]:
        parts[k] += 1
    return parts


class ChatModel:
    """A `SingleRequestModel` over an OpenAI-compatible ``client.chat.completions``.

    The prompt is sent as one user message; ``temperature`` and ``max_tokens`` are read
    from the request. At most ``max_concurrency`` calls are in flight at once. A provider
    that returns fewer choices than asked for is asked again for the rest.
    """

    def __init__(
        self,
        client: Any,
        model: str,
        provider: str,
        endpoint: str,
        max_concurrency: int = 8,
    ) -> None:
        self.client = client
        self.model = model
        self.provider = provider
        self.endpoint = endpoint
        self._limit = asyncio.Semaphore(max_concurrency)

    @property
    def identity(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.model, "endpoint": self.endpoint}

    async def request(self, request: Request) -> Response:
        samples: list[dict[str, Any]] = []
        while len(samples) < request.n:
            samples.extend(await self._call(request, request.n - len(samples)))
        return Response(data=samples[: request.n])

    async def _call(self, request: Request, n: int) -> list[dict[str, Any]]:
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["max_tokens"] = request.max_tokens
        async with self._limit:
            completion = await self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": str(request.prompt)}],
                n=n,
                **options,
            )
        texts = [choice.message.content or "" for choice in completion.choices]
        if not texts:
            raise ProviderError(f"{self.provider} returned no choices for {request.request_id!r}")
        usage = getattr(completion, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        if prompt_tokens is None:
            prompt_tokens = count_tokens(str(request.prompt))
        completions = split_tokens(getattr(usage, "completion_tokens", None), texts)
        return stamp(
            [
                {"text": text, "prompt_tokens": int(prompt_tokens), "completion_tokens": tokens}
                for text, tokens in zip(texts, completions, strict=True)
            ]
        )

    async def aclose(self) -> None:
        """Close the provider's HTTP client."""
        close = getattr(self.client, "close", None)
        if close is not None:
            await close()


def check_provider(provider: str, model: str | None = None) -> None:
    """Raise `ProviderError` unless ``provider`` can run: known, with a model id and key."""
    if provider == "simulated":
        return
    if provider not in _KEYS:
        raise ProviderError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    if not model:
        raise ProviderError(f"--provider {provider} needs --model NAME (the provider's model id)")
    if not os.environ.get(_KEYS[provider]):
        raise ProviderError(f"--provider {provider} needs the API key in ${_KEYS[provider]}")


def make_model(
    provider: str,
    model: str | None = None,
    seed: int = 0,
    *,
    base_url: str | None = None,
    time_scale: float = 0.0,
    latency: LatencyProfile | None = None,
) -> object:
    """Return the model for ``provider``; real providers read their key from the environment.

    The simulated model takes ``latency`` (default profile) scaled by ``time_scale`` (0: no
    waiting); a real provider is reached at ``base_url`` when given (e.g. a local server).
    """
    check_provider(provider, model)
    if provider == "simulated":
        return LatencyModel(simulated_model(seed), latency, time_scale)
    assert model is not None
    key = os.environ[_KEYS[provider]]
    client: Any
    if provider == "openai":
        from openai import AsyncOpenAI

        client = AsyncOpenAI(api_key=key, base_url=base_url)
    else:
        from together import AsyncTogether

        client = AsyncTogether(api_key=key, base_url=base_url)
    endpoint = str(getattr(client, "base_url", base_url or _ENDPOINTS[provider])).rstrip("/")
    return ChatModel(client, model, provider, endpoint)


def model_description(provider: str, model: str | None, seed: int) -> str:
    """Return a short human description of the model, for report headers."""
    if provider == "simulated":
        return f"simulated ({MODEL_NAME}, seed {seed})"
    return f"{provider} {model}"
