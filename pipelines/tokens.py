"""A deterministic stand-in for a tokenizer, used to count the simulated model's tokens.

Roughly what a BPE tokenizer does on this kind of text: a word is one token, a number is
one token per three digits, every punctuation mark is one token.
"""

from __future__ import annotations

import re

__all__ = ["count_tokens"]

_TOKEN = re.compile(r"\d{1,3}|[A-Za-z]+|[^\sA-Za-z\d]")


def count_tokens(text: str) -> int:
    """Return the number of tokens in ``text`` (deterministic, no external tokenizer)."""
    return len(_TOKEN.findall(text))
