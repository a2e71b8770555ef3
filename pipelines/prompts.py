"""What the reasoning methods ask the model, and how they read its answers.

Each request is a `GameRequest` (a `cachesaver.Request` with extra fields that become
part of the cache key). As in the CacheSaver paper, every search method (ToT, FoA, GoT)
uses the same step and evaluation prompts:

- ``propose`` (the step prompt): list possible next steps from the remaining numbers;
- ``answer``: write the final expression (from the puzzle alone: io / self-consistency;
  or following the steps so far: the last step of every search);
- ``evaluate`` (the evaluation prompt): judge whether the remaining numbers can reach 24;
- ``judge``: judge a final answer (the evaluation of a finished state);
- ``aggregate`` (GoT only): choose the most promising of several candidate steps;
- ``refine`` (GoT only): check a final answer and correct it if it is wrong.

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
    "KINDS",
    "GameRequest",
    "Step",
    "aggregate_prompt",
    "answer_prompt",
    "evaluate_prompt",
    "format_numbers",
    "judge_prompt",
    "parse_choices",
    "parse_judgement",
    "parse_steps",
    "propose_prompt",
    "query_of",
    "refine_prompt",
]

KINDS = ("propose", "answer", "evaluate", "judge", "aggregate", "refine")

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

JUDGE_INSTRUCTIONS = """\
Does the answer use each input number exactly once, with + - * / and parentheses, and
equal 24? Check it, then give your judgement on the last line: sure or impossible."""

AGGREGATE_INSTRUCTIONS = """\
Several next steps are proposed for the numbers. Choose the most promising ones for
reaching 24 and reply with their numbers, best first, as: Selected: 2, 5, 1"""

REFINE_INSTRUCTIONS = """\
Check the answer: each input number exactly once, + - * / and parentheses, equal to 24.
If it is right, repeat it; if not, correct it. Reply with one line: Answer: <expression> = 24"""

JUDGEMENT_SCORES = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}

_STEP = re.compile(
    r"^\s*(-?\d+)\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)\s*\(\s*left\s*:\s*([-\d\s]*)\)\s*$",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z]+")
_CHOICES = re.compile(r"selected\s*:\s*([\d,\s]*)", re.IGNORECASE)
_INTEGER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class GameRequest(Request):
    """A Game of 24 request; ``kind``, ``temperature`` and ``max_tokens`` are in its key."""

    kind: str = "answer"
    temperature: float = 0.7
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")


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


def judge_prompt(puzzle: Sequence[int], answer: str) -> str:
    """Return the prompt asking whether ``answer`` (an ``Answer: ...`` text) solves ``puzzle``."""
    return (
        f"{JUDGE_INSTRUCTIONS}\n{QUERY_MARKER}{format_numbers(puzzle)}\n"
        f"{_answer_line(answer)}\nJudgement:"
    )


def aggregate_prompt(numbers: Sequence[int], candidates: Sequence[str], keep: int) -> str:
    """Return the prompt asking for the ``keep`` most promising of ``candidates`` steps."""
    lines = [f"{AGGREGATE_INSTRUCTIONS}\n{QUERY_MARKER}{format_numbers(numbers)}"]
    lines.append(f"Choose {keep}:")
    lines.extend(f"({k}) {line}" for k, line in enumerate(candidates, start=1))
    return "\n".join(lines)


def refine_prompt(puzzle: Sequence[int], steps: Sequence[str], answer: str) -> str:
    """Return the prompt asking to check ``answer`` (reached by ``steps``) and correct it."""
    lines = [f"{REFINE_INSTRUCTIONS}\n{QUERY_MARKER}{format_numbers(puzzle)}"]
    if steps:
        lines.append("Steps:")
        lines.extend(steps)
    lines.append(f"Proposed {_answer_line(answer)}")
    lines.append("Answer:")
    return "\n".join(lines)


def _answer_line(answer: str) -> str:
    for line in reversed(answer.strip().splitlines()):
        if line.lower().lstrip().startswith("answer"):
            return line.strip()
    return f"Answer: {answer.strip()}"


def parse_choices(text: str, count: int) -> list[int]:
    """Return the 0-based indices of ``Selected: 2, 5`` (1-based, below ``count``), in order."""
    match = _CHOICES.search(text)
    if match is None:
        return []
    chosen: list[int] = []
    for part in match.group(1).replace(",", " ").split():
        index = int(part) - 1
        if 0 <= index < count and index not in chosen:
            chosen.append(index)
    return chosen


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
