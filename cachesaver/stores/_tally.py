"""Adding up what a store holds per model identity, for the stores' statistics scans.

A canonical content is ``{"identity":...,"request":...}``: the text before
``,"request":`` (its *head*) names the identity, so keys are added up per head without
parsing their contents. A head is trusted only when the text after ``{"identity":`` is
one whole JSON value (an identity that itself holds ``,"request":`` cuts its head short,
so such keys, and contents that do not start with the identity, are counted one by one).
"""

from __future__ import annotations

import json

from cachesaver.stores.base import IdentityTotals

__all__ = ["HEAD_START", "REQUEST_MARK", "IdentityCounter", "head_of", "token_counts"]

HEAD_START = '{"identity":'
REQUEST_MARK = ',"request":'
TOKENS = '"prompt_tokens"'


def token_counts(text: str) -> tuple[int, int]:
    """The prompt and completion tokens a sample text reports (0 where it reports none)."""
    if TOKENS not in text:
        return 0, 0
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return 0, 0
    if not isinstance(data, dict):
        return 0, 0
    prompt, completion = data.get("prompt_tokens"), data.get("completion_tokens")
    return (
        prompt if type(prompt) is int else 0,
        completion if type(completion) is int else 0,
    )


def head_of(content: str) -> str | None:
    """The text of ``content`` before its request, None when it does not start so."""
    if not content.startswith(HEAD_START):
        return None
    head, found, _ = content.partition(REQUEST_MARK)
    return head if found else None


class IdentityCounter:
    """Sums keys per trusted head; every other key stays a total of its own."""

    def __init__(self) -> None:
        self._sums: dict[str, list[int]] = {}
        self._examples: dict[str, str] = {}
        self._trust: dict[str, bool] = {}
        self._alone: list[IdentityTotals] = []

    def trusted(self, head: str | None) -> bool:
        """Whether every key with this head has the identity the head spells out.

        ``head`` is what `head_of` returns (the text before the request, starting with
        ``{"identity":``): trusted when the rest is one whole JSON value.
        """
        if head is None:
            return False
        known = self._trust.get(head)
        if known is None:
            try:
                json.loads(head[len(HEAD_START) :])
                known = True
            except (ValueError, RecursionError):
                known = False
            self._trust[head] = known
        return known

    def add(
        self, head: str, keys: int, samples: int, size: int, prompt: int, completion: int
    ) -> None:
        """Count ``keys`` keys of a trusted ``head``."""
        sums = self._sums.get(head)
        if sums is None:
            sums = self._sums[head] = [0, 0, 0, 0, 0]
        sums[0] += keys
        sums[1] += samples
        sums[2] += size
        sums[3] += prompt
        sums[4] += completion

    def add_content(
        self, content: str, samples: int, size: int, prompt: int, completion: int
    ) -> None:
        """Count one key, by its head when that is trusted."""
        head = head_of(content)
        if head is not None and self.trusted(head):
            self.add(head, 1, samples, size, prompt, completion)
            self._examples.setdefault(head, content)
        else:
            self.add_alone(content, samples, size, prompt, completion)

    def add_alone(
        self, content: str, samples: int, size: int, prompt: int, completion: int
    ) -> None:
        """Count one key whose identity only its whole content can tell."""
        self._alone.append(IdentityTotals(content, 1, samples, size, prompt, completion))

    def missing_examples(self) -> list[str]:
        """The heads that still need one key's content as their example."""
        return [head for head in self._sums if head not in self._examples]

    def example(self, head: str, content: str) -> None:
        self._examples[head] = content

    def totals(self) -> list[IdentityTotals]:
        """One total per head (its example is one of its keys' content), then the rest."""
        out = [IdentityTotals(self._examples[head], *sums) for head, sums in self._sums.items()]
        return out + self._alone
