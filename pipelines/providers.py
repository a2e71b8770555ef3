"""The models the pipelines can run on: the offline simulation, OpenAI and Together.

A real provider is reached through cachesaver's own drop-in clients
(`cachesaver.models.openai.AsyncOpenAI`, `cachesaver.models.together.AsyncTogether`),
the way a user of the library would. `DropInProvider` makes one drop-in client per run
of a method (a new client is a new run), over the run's cache directory, in the
scenario's one namespace, with the arm's batching. `DropInRun` turns its answers into
the sample dicts every method and the accounting read, ``{"text", "prompt_tokens",
"completion_tokens", "call", "position"}``:

- the token counts are each choice's own (`cachesaver.models.choice_usage`): the full
  prompt of the API call that made the sample and the sample's output, the same on a
  cache hit as on the fresh call, so the baseline can pay every sample's full prompt;
- ``call`` is that API call's id and ``position`` the sample's index in its key's sample
  list (counted per run, in issue order, as cachesaver allocates them), so the
  accounting charges every model call's prompt and every sample's output once, and a
  replay prices the same as the run that paid.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

from cachesaver import Request, Response, Stats
from cachesaver.models import cache_flags, choice_usage
from pipelines.latency import LatencyModel, LatencyProfile
from pipelines.simulated import MODEL_NAME, simulated_model
from pipelines.tokens import count_tokens

__all__ = [
    "PROVIDERS",
    "DropInProvider",
    "DropInRun",
    "ProviderError",
    "check_provider",
    "make_model",
    "model_description",
]

PROVIDERS = ("simulated", "openai", "together")
_KEYS = {"openai": "OPENAI_API_KEY", "together": "TOGETHER_API_KEY"}


class ProviderError(RuntimeError):
    """A provider cannot be used as asked (unknown name, missing model or API key)."""


class DropInRun:
    """One run of a method against a real provider: a drop-in client used as a pipeline.

    ``request`` sends a pipelines request as one chat call (the prompt as one user
    message, with its ``n``, ``temperature``, ``max_tokens``, namespace and request id)
    and returns a `Response` with the call's flags; ``stats`` are the client's counters.
    Use as ``async with``: leaving closes the client (and its cache).
    """

    def __init__(self, client: Any, model: str) -> None:
        self.client = client
        self.model = model
        self._drawn: dict[tuple[str, float | None, int | None, str | None], int] = {}

    async def __aenter__(self) -> DropInRun:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.client.close()

    async def request(self, request: Request) -> Response:
        prompt = str(request.prompt)
        # The indices this request draws in its key's sample list: cachesaver hands them
        # out per run and namespace in issue order, and this runs before the first await.
        where = (prompt, request.temperature, request.max_tokens, request.namespace)
        first = self._drawn.get(where, 0)
        self._drawn[where] = first + request.n
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["max_tokens"] = request.max_tokens
        if request.namespace is not None:
            options["namespace"] = request.namespace
        completion = await self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": prompt}],
            n=request.n,
            request_id=request.request_id,
            **options,
        )
        flags = cache_flags(completion)
        samples: list[dict[str, Any]] = []
        for k, (choice, usage) in enumerate(
            zip(completion.choices, choice_usage(completion), strict=True)
        ):
            text = choice.message.content or ""
            sample: dict[str, Any] = {
                "text": text,
                "prompt_tokens": (
                    count_tokens(prompt) if usage.prompt_tokens is None else usage.prompt_tokens
                ),
                "completion_tokens": (
                    count_tokens(text)
                    if usage.completion_tokens is None
                    else usage.completion_tokens
                ),
            }
            if usage.completion_id:  # without an id, the flags are all the accounting has
                sample["call"] = usage.completion_id
                sample["position"] = first + k
            samples.append(sample)
        return Response(
            samples,
            cached=[f.cached for f in flags],
            duplicated=[f.duplicated for f in flags],
        )

    def stats(self) -> Stats:
        """The drop-in client's pipeline counters (model calls, cached samples, ...)."""
        stats: Stats = self.client.cachesaver_stats()
        return stats


class DropInProvider:
    """A real provider through cachesaver's drop-in client, one client per run.

    ``provider`` is ``"openai"`` or ``"together"``; ``base_url`` (optional) points the
    client at another endpoint, e.g. a local OpenAI-compatible server. At most
    ``max_concurrency`` API calls are in flight at once in a run.
    """

    def __init__(
        self,
        provider: str,
        model: str,
        api_key: str,
        base_url: str | None = None,
        max_concurrency: int = 8,
    ) -> None:
        self.provider = provider
        self.model = model
        self.base_url = base_url
        self.max_concurrency = max_concurrency
        self._api_key = api_key

    def open_run(
        self,
        cache: str | os.PathLike[str],
        namespace: str,
        batch_size: int,
        timeout: float,
    ) -> DropInRun:
        """Return a new run: a drop-in client over ``cache`` whose calls use ``namespace``."""
        options: dict[str, Any] = {
            "cache": os.fspath(cache),
            "namespace": namespace,
            "batch_size": batch_size,
            "batch_timeout": timeout,
            "max_concurrency": self.max_concurrency,
            "api_key": self._api_key,
        }
        if self.base_url is not None:
            options["base_url"] = self.base_url
        client: Any
        if self.provider == "openai":
            from cachesaver.models.openai import AsyncOpenAI

            client = AsyncOpenAI(**options)
        else:
            from cachesaver.models.together import AsyncTogether

            client = AsyncTogether(**options)
        return DropInRun(client, self.model)


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
    waiting); a real provider (a `DropInProvider`) is reached at ``base_url`` when given.
    """
    check_provider(provider, model)
    if provider == "simulated":
        return LatencyModel(simulated_model(seed), latency, time_scale)
    assert model is not None
    return DropInProvider(provider, model, os.environ[_KEYS[provider]], base_url)


def model_description(provider: str, model: str | None, seed: int) -> str:
    """Return a short human description of the model, for report headers."""
    if provider == "simulated":
        return f"simulated ({MODEL_NAME}, seed {seed})"
    return f"{provider} {model} (drop-in client)"
