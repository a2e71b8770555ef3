"""What an experiment cost with cachesaver, and what it would have cost without.

Every response a method receives is recorded in a `Ledger`:

- **without cachesaver** (``baseline``): every request goes to the model as issued: one
  call per request, its prompt paid once (a request for n samples is one call), and the
  completion tokens of every sample paid;
- **with cachesaver** (``paid``): read from the per-sample flags; a sample's prompt is
  paid when it is neither ``cached`` nor ``duplicated`` (that is also exactly one per
  model call), its completion when it is not ``cached``.

A sample is a dict ``{"text", "prompt_tokens", "completion_tokens"}``; ``prompt_tokens``
is the size of the prompt of the call that produced it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cachesaver import Request, Response

__all__ = ["Ledger", "Prices", "Usage", "sample_text", "sample_tokens"]


@dataclass(frozen=True)
class Prices:
    """USD per million tokens (defaults: gpt-4o-mini list prices)."""

    prompt: float = 0.15
    completion: float = 0.60


@dataclass(frozen=True)
class Usage:
    """Model calls and tokens paid for."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def cost(self, prices: Prices) -> float:
        """Return the estimated cost in USD."""
        return (
            self.prompt_tokens * prices.prompt + self.completion_tokens * prices.completion
        ) / 1_000_000

    @staticmethod
    def total(usages: Iterable[Usage]) -> Usage:
        result = Usage()
        for usage in usages:
            result = result + usage
        return result


def sample_text(sample: Any) -> str:
    """Return the text of a sample (a dict with ``"text"``, or a plain string)."""
    if isinstance(sample, dict):
        return str(sample.get("text", ""))
    return str(sample)


def sample_tokens(sample: Any) -> tuple[int, int]:
    """Return ``(prompt_tokens, completion_tokens)`` of a sample (0 when not reported)."""
    if isinstance(sample, dict):
        return int(sample.get("prompt_tokens", 0)), int(sample.get("completion_tokens", 0))
    return 0, 0


@dataclass
class Ledger:
    """Tallies of every response of one run.

    With ``keep``, every ``(request, response)`` pair is also kept in ``records`` (in the
    order the responses arrived, which is not the issue order).
    """

    baseline: Usage = field(default_factory=Usage)
    paid: Usage = field(default_factory=Usage)
    requests: int = 0
    samples: int = 0
    cached: int = 0
    duplicated: int = 0
    keep: bool = False
    records: list[tuple[Request, Response]] = field(default_factory=list)

    def record(self, request: Request, response: Response) -> None:
        """Add one response (with the flags an `OnlineAPI` sets) to the tallies."""
        data = response.data
        count = len(data)
        cached = response.cached or [False] * count
        duplicated = response.duplicated or [False] * count
        tokens = [sample_tokens(sample) for sample in data]
        prompt_once = tokens[0][0] if tokens else 0
        self.baseline = self.baseline + Usage(
            1, prompt_once, sum(completion for _, completion in tokens)
        )
        prompt_paid = [not c and not d for c, d in zip(cached, duplicated, strict=True)]
        self.paid = self.paid + Usage(
            sum(prompt_paid),
            sum(p for (p, _), paid in zip(tokens, prompt_paid, strict=True) if paid),
            sum(c for (_, c), hit in zip(tokens, cached, strict=True) if not hit),
        )
        self.requests += 1
        self.samples += count
        self.cached += sum(cached)
        self.duplicated += sum(duplicated)
        if self.keep:
            self.records.append((request, response))
