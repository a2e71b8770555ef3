"""What an experiment cost with cachesaver, and what it would have cost without.

Every response a method receives is recorded in a `Ledger`, with the CacheSaver paper's
counting rules:

- **without cachesaver** (``baseline``): every request goes to the model as issued (one
  call per request) and every sample pays its full prompt and its completion, as the
  paper counts its baseline;
- **with cachesaver** (``paid``): read from the per-sample flags; a sample's prompt is
  paid when it is neither ``cached`` nor ``duplicated`` (that is also exactly one per
  model call), its completion when it is not ``cached``.

A sample is a dict ``{"text", "prompt_tokens", "completion_tokens"}``; ``prompt_tokens``
is the size of the prompt of the call that produced it. The pipelines' models also stamp
each sample with the model call that produced it (``"call"``, ``"position"``: see
`stamp`). The stamps are stored with the samples, so a `CallBook` shared by a scenario's
runs prices "with cachesaver" as what the scenario costs from an empty cache: every model
call's prompt once, every sample's completion once, whoever used it first. On a fresh
cache that equals the flag-based count; on a replay (every sample cached, nothing paid
now) it still prints the same numbers, which is what makes a replay's report identical.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cachesaver import Request, Response

__all__ = ["CallBook", "Ledger", "Prices", "Usage", "sample_text", "sample_tokens", "stamp"]


@dataclass(frozen=True)
class Prices:
    """USD per million tokens (defaults: gpt-4.1-nano list prices, as in the paper)."""

    prompt: float = 0.10
    completion: float = 0.40


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


def stamp(samples: list[Any]) -> list[Any]:
    """Mark dict samples of one model call with a call id and their position in the call."""
    call = uuid.uuid4().hex
    for position, sample in enumerate(samples):
        if isinstance(sample, dict):
            sample["call"] = call
            sample["position"] = position
    return samples


@dataclass
class CallBook:
    """The model calls and samples a scenario has already been charged for."""

    calls: set[str] = field(default_factory=set)
    samples: set[tuple[str, int]] = field(default_factory=set)

    def charge(self, sample: Any) -> Usage | None:
        """Return what ``sample`` adds to the bill (None when it carries no stamp)."""
        if not isinstance(sample, dict) or "call" not in sample or "position" not in sample:
            return None
        call, position = str(sample["call"]), int(sample["position"])
        prompt, completion = sample_tokens(sample)
        new_call = call not in self.calls
        new_sample = (call, position) not in self.samples
        self.calls.add(call)
        self.samples.add((call, position))
        return Usage(int(new_call), prompt if new_call else 0, completion if new_sample else 0)


@dataclass
class Ledger:
    """Tallies of every response of one run.

    ``paid`` is what this invocation paid (from the flags); ``charged`` is what the
    scenario costs from an empty cache (from the stamps, through ``book``; equal to
    ``paid`` on a fresh cache). With ``keep``, every ``(request, response)`` pair is also
    kept in ``records`` (in the order the responses arrived, which is not the issue order).
    """

    baseline: Usage = field(default_factory=Usage)
    paid: Usage = field(default_factory=Usage)
    charged: Usage = field(default_factory=Usage)
    book: CallBook = field(default_factory=CallBook)
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
        self.baseline = self.baseline + Usage(
            1, sum(prompt for prompt, _ in tokens), sum(completion for _, completion in tokens)
        )
        prompt_paid = [not c and not d for c, d in zip(cached, duplicated, strict=True)]
        self.paid = self.paid + Usage(
            sum(prompt_paid),
            sum(p for (p, _), paid in zip(tokens, prompt_paid, strict=True) if paid),
            sum(c for (_, c), hit in zip(tokens, cached, strict=True) if not hit),
        )
        charges = [self.book.charge(sample) for sample in data]
        if all(charge is not None for charge in charges):
            self.charged = self.charged + Usage.total(c for c in charges if c is not None)
        else:  # a model that does not stamp its samples: the flags are all we have
            self.charged = self.charged + Usage(
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
