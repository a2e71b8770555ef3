"""What the reasoning methods ask the model, and how they read its answers.

Three kinds of request, each a `GameRequest` (a `cachesaver.Request` with extra fields
that become part of the cache key):

- ``propose``: list possible next steps from the remaining numbers;
- ``evaluate``: judge whether the remaining numbers can still reach 24;
- ``answer``: write the final expression (from the puzzle alone, or from the steps so far).

The propose and evaluate prompts show only the remaining numbers (sorted), so the same
state reached by different paths, or in different puzzles, is the same question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cachesaver import Request

__all__ = [
    "JUDGEMENT_SCORES",
    "GameRequest",
    "Step",
    "answer_prompt",
    "evaluate_prompt",
    "format_numbers",
    "parse_judgement",
    "parse_steps",
    "propose_prompt",
    "query_of",
]

QUERY_MARKER = "\nInput: "

PROPOSE_INSTRUCTIONS = """\
Combine two of the numbers with + - * / to move toward 24. List possible next steps,
one per line, as: a op b = result (left: the remaining numbers)."""

PROPOSE_EXAMPLE = """\
Input: 3 5 7 12
Possible next steps:
3 + 5 = 8 (left: 7 8 12)
12 / 3 = 4 (left: 4 5 7)
7 - 3 = 4 (left: 4 5 12)
5 * 3 = 15 (left: 7 12 15)
12 - 7 = 5 (left: 3 5 5)
7 + 5 = 12 (left: 3 12 12)
12 - 5 = 7 (left: 3 7 7)"""

EVALUATE_INSTRUCTIONS = """\
Can the numbers reach 24, using each exactly once with + - * / and parentheses? Try a few
combinations, then give your judgement on the last line: sure, likely or impossible."""

EVALUATE_EXAMPLES = """\
Input: 4 6
4 * 6 = 24
sure

Input: 3 5 13
13 - 5 = 8
3 * 8 = 24
sure

Input: 2 9 10
2 + 9 + 10 = 21
(10 - 9) * 2 = 2
10 * 9 / 2 = 45
The numbers are either too small together or too large when multiplied.
impossible

Input: 6 6 12
6 + 6 + 12 = 24
sure

Input: 5 7 8
5 + 7 + 8 = 20
(8 - 5) * 7 = 21
The sum is close to 24, but no combination seems to hit it exactly.
impossible

Input: 1 2 11
11 + 2 + 1 = 14
(11 + 1) * 2 = 24
sure

Input: 2 3 4 8
2 * 3 * 4 = 24, but 8 is left over
8 * 3 = 24, then 2 and 4 must give 1
Within reach with the right pairing.
likely"""

ANSWER_INSTRUCTIONS = """\
Use the input numbers, each exactly once, with + - * / and parentheses to obtain 24.
If steps are given, follow them. Reply with one line: Answer: <expression> = 24"""

ANSWER_EXAMPLES = """\
Input: 1 1 2 6
Answer: (1 + 1) * (2 * 6) = 24

Input: 4 9 10 13
Steps:
13 - 9 = 4 (left: 4 4 10)
10 - 4 = 6 (left: 4 6)
4 * 6 = 24 (left: 24)
Answer: (13 - 9) * (10 - 4) = 24"""

JUDGEMENT_SCORES = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}

_STEP = re.compile(
    r"^\s*(-?\d+)\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)\s*\(\s*left\s*:\s*([-\d\s]*)\)\s*$",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z]+")
_INTEGER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class GameRequest(Request):
    """A Game of 24 request; ``kind``, ``temperature`` and ``max_tokens`` are in its key."""

    kind: str = "answer"
    temperature: float = 0.7
    max_tokens: int | None = None


@dataclass(frozen=True)
class Step:
    """One proposed step ``a op b = result (left: ...)`` exactly as the model wrote it.

    Nothing is checked: ``result`` and ``left`` are the model's claims, right or wrong.
    """

    line: str
    a: int
    op: str
    b: int
    result: int
    left: tuple[int, ...]


def format_numbers(numbers: Sequence[int]) -> str:
    """Return the numbers sorted ascending and separated by spaces: the canonical state."""
    return " ".join(str(n) for n in sorted(numbers))


def propose_prompt(numbers: Sequence[int]) -> str:
    """Return the prompt asking for next steps from ``numbers``."""
    return (
        f"{PROPOSE_INSTRUCTIONS}\n\n{PROPOSE_EXAMPLE}\n"
        f"{QUERY_MARKER}{format_numbers(numbers)}\nPossible next steps:\n"
    )


def evaluate_prompt(numbers: Sequence[int]) -> str:
    """Return the prompt asking whether ``numbers`` can still reach 24."""
    return (
        f"{EVALUATE_INSTRUCTIONS}\n\n{EVALUATE_EXAMPLES}\n{QUERY_MARKER}{format_numbers(numbers)}\n"
    )


def answer_prompt(puzzle: Sequence[int], steps: Sequence[str] = ()) -> str:
    """Return the prompt asking for the final expression, following ``steps`` if any."""
    lines = [f"{ANSWER_INSTRUCTIONS}\n\n{ANSWER_EXAMPLES}\n{QUERY_MARKER}{format_numbers(puzzle)}"]
    if steps:
        lines.append("Steps:")
        lines.extend(steps)
    lines.append("Answer:")
    return "\n".join(lines)


def query_of(prompt: str) -> list[str]:
    """Return the lines of the prompt's last ``Input:`` block (the question, not examples)."""
    position = prompt.rfind(QUERY_MARKER)
    if position < 0:
        return []
    return prompt[position + 1 :].splitlines()


def parse_steps(text: str) -> list[Step]:
    """Return the well-formed ``a op b = c (left: ...)`` lines of a proposal, in order."""
    steps: list[Step] = []
    for line in text.splitlines():
        match = _STEP.match(line)
        if match is None:
            continue
        a, op, b, result, rest = match.groups()
        left = tuple(sorted(int(n) for n in _INTEGER.findall(rest)))
        if left:
            steps.append(Step(line.strip(), int(a), op, int(b), int(result), left))
    return steps


def parse_judgement(text: str) -> float:
    """Return the score of the last sure/likely/impossible word of ``text`` (0 if none)."""
    for word in reversed(_WORD.findall(text.lower())):
        if word in JUDGEMENT_SCORES:
            return JUDGEMENT_SCORES[word]
    return 0.0
