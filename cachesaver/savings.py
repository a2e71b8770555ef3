"""What a run paid and saved: calls, prompt and completion tokens, and dollars.

`SavingsCounter` consumes the `Response` objects a pipeline returns. Tokens come from
the samples themselves when the model reports them (the built-in provider adapters
store ``prompt_tokens`` and ``completion_tokens`` in every sample: see
`cachesaver.models.samples.ChatSample`; an Anthropic ``Message`` sample carries them in
its ``usage``); dollars need a `Price` per model. Prices are
on each provider's pricing page (OpenAI: https://openai.com/api/pricing, Together:
https://www.together.ai/pricing), in USD per million tokens.

Accounting follows the flags (SEMANTICS "Flags"): a sample with ``cached`` False was
generated for this request (its completion tokens were paid; its prompt too unless
``duplicated``); a ``cached`` sample cost nothing, and what it saved is what it cost
when it was generated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cachesaver.typedefs import Response

__all__ = ["Price", "Savings", "SavingsCounter", "Tallied"]


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million prompt (input) and completion (output) tokens of one model."""

    prompt: float
    completion: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for that many tokens."""
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1e6


@dataclass(frozen=True, slots=True)
class Savings:
    """Totals of what was paid and what the cache saved.

    ``calls_*`` count model calls (a paid call is one whose prompt was paid: a sample
    with neither flag); ``*_tokens_*`` count what the samples report (0 when the model
    reports nothing); ``dollars_*`` are None when no price is known for a model used.
    """

    samples_paid: int = 0
    samples_saved: int = 0
    calls_paid: int = 0
    calls_saved: int = 0
    prompt_tokens_paid: int = 0
    prompt_tokens_saved: int = 0
    completion_tokens_paid: int = 0
    completion_tokens_saved: int = 0
    dollars_paid: float | None = None
    dollars_saved: float | None = None


def _tokens(sample: Any) -> tuple[int | None, int | None]:
    if not isinstance(sample, dict):
        return None, None
    prompt, completion = sample.get("prompt_tokens"), sample.get("completion_tokens")
    usage = sample.get("usage")
    if prompt is None and completion is None and isinstance(usage, dict):
        # A whole Anthropic Message (sample="full"): its usage counts one call.
        prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    return (
        prompt if type(prompt) is int else None,
        completion if type(completion) is int else None,
    )


class Tallied(Protocol):
    """A pipeline stage that counts what it answered (a cacher): see `SavingsCounter.watch`."""

    def _cs_counts(self) -> tuple[int, int, int]:
        """Samples answered so far, how many were cached, how many duplicated."""
        ...


class SavingsCounter:
    """Adds up what responses paid and saved; `summary` returns a frozen `Savings`.

    ``prices`` maps a model name to its `Price`; ``add(response, model=...)`` names the
    model a response came from (needed for dollars only).

    A pipeline does not add every response: it is watched (`watch`), and its own
    counts of samples and flags give the sample and call totals when `summary` is asked
    for; only responses whose samples can carry token counts (dicts) are added one by
    one, for their tokens (`add_tokens`).
    """

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self.prices = dict(prices or {})
        self._counts = [0] * 8
        self._dollars = [0.0, 0.0]
        self._priced = True
        self._watched: list[tuple[Tallied, str | None]] = []

    def watch(self, source: Tallied, model: str | None = None) -> None:
        """Count what ``source`` answers (responses of ``model``) from its own counts."""
        self._watched.append((source, model))

    def add(self, response: Response, model: str | None = None) -> None:
        """Account for every sample of one response."""
        cached = response.cached
        duplicated = response.duplicated
        c = self._counts
        for i in range(len(response.data)):
            was_cached = bool(cached[i]) if cached is not None else False
            was_dup = bool(duplicated[i]) if duplicated is not None else False
            if was_cached:
                c[1] += 1
            else:
                c[0] += 1
                c[2] += not was_dup
        self.add_tokens(response, model)

    def add_tokens(self, response: Response, model: str | None = None) -> None:
        """Account for the tokens (and dollars) of one response; samples and calls are
        counted by `add` or by a watched source."""
        cached = response.cached
        duplicated = response.duplicated
        price = self.prices.get(model) if model is not None else None
        if price is None:
            self._priced = False
        c = self._counts
        dollars = self._dollars
        for i, sample in enumerate(response.data):
            # `_tokens`, inline for the usual sample (a dict with both counts).
            if isinstance(sample, dict):
                prompt = sample.get("prompt_tokens")
                completion = sample.get("completion_tokens")
                if prompt is None and completion is None:
                    prompt, completion = _tokens(sample)
                else:
                    if type(prompt) is not int:
                        prompt = None
                    if type(completion) is not int:
                        completion = None
            else:
                prompt = completion = None
            prompt_n = prompt or 0
            completion_n = completion or 0
            if cached is not None and cached[i]:
                c[3] += prompt is not None and prompt > 0
                c[5] += prompt_n
                c[7] += completion_n
                if price is not None:
                    dollars[1] += price.cost(prompt_n, completion_n)
            else:
                paid_prompt = 0 if duplicated is not None and duplicated[i] else prompt_n
                c[4] += paid_prompt
                c[6] += completion_n
                if price is not None:
                    dollars[0] += price.cost(paid_prompt, completion_n)

    def summary(self) -> Savings:
        """What was paid and saved so far."""
        c = list(self._counts)
        priced = self._priced
        for source, model in self._watched:
            samples, cached, duplicated = source._cs_counts()
            c[0] += samples - cached
            c[1] += cached
            c[2] += samples - cached - duplicated  # a cached sample is never duplicated
            if samples and (model is None or model not in self.prices):
                priced = False
        priced = priced and any(c)
        return Savings(
            samples_paid=c[0],
            samples_saved=c[1],
            calls_paid=c[2],
            calls_saved=c[3],
            prompt_tokens_paid=c[4],
            prompt_tokens_saved=c[5],
            completion_tokens_paid=c[6],
            completion_tokens_saved=c[7],
            dollars_paid=self._dollars[0] if priced else None,
            dollars_saved=self._dollars[1] if priced else None,
        )
