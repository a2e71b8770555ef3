"""Game of 24 arithmetic for the simulated reasoner: moves, expressions, step replay.

- `all_moves`: every integer step from a list of numbers, and what each leaves;
- `random_expression`, `garble`, `strip_parens`: expressions a model might write;
- `follow`: replay written steps on the puzzle's numbers, noting any wrong step;
- `step_ok`, `last_answer`, `numbers_in`: read what a prompt or a candidate says.
"""

from __future__ import annotations

import random
from fractions import Fraction

from pipelines.prompts import Step
from pipelines.puzzles import is_solvable

__all__ = [
    "OPERATORS",
    "Move",
    "Term",
    "all_moves",
    "apply_op",
    "follow",
    "garble",
    "last_answer",
    "numbers_in",
    "random_expression",
    "step_ok",
    "strip_parens",
]

Term = tuple[Fraction, str]
Move = tuple[int, str, int, int]  # a op b = result, with exact integer arithmetic
OPERATORS = "+-*/"


def numbers_in(line: str) -> list[int]:
    return [int(token) for token in line.replace("Input:", "").split() if _is_int(token)]


def _is_int(token: str) -> bool:
    return token.lstrip("-").isdigit()


def all_moves(numbers: list[int]) -> list[tuple[Move, tuple[int, ...]]]:
    """Every integer step from ``numbers`` with a non-negative result, and what is left."""
    found: dict[Move, tuple[int, ...]] = {}
    for i in range(len(numbers)):
        for j in range(i + 1, len(numbers)):
            big, small = max(numbers[i], numbers[j]), min(numbers[i], numbers[j])
            rest = [n for k, n in enumerate(numbers) if k not in (i, j)]
            results = [("+", big + small), ("*", big * small), ("-", big - small)]
            if small > 0 and big % small == 0:
                results.append(("/", big // small))
            for op, value in results:
                found.setdefault((big, op, small, value), tuple(sorted([*rest, value])))
    return list(found.items())


def apply_op(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b != 0 else None


def strip_parens(text: str) -> str:
    return text[1:-1] if text.startswith("(") and text.endswith(")") and _balanced(text) else text


def _balanced(text: str) -> bool:
    depth = 0
    for char in text[1:-1]:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def random_expression(terms: list[str], rng: random.Random) -> str:
    pool = list(terms)
    while len(pool) > 1:
        i, j = rng.sample(range(len(pool)), 2)
        joined = f"({pool[i]} {rng.choice(OPERATORS)} {pool[j]})"
        pool = [t for k, t in enumerate(pool) if k not in (i, j)] + [joined]
    return strip_parens(pool[0])


def garble(expression: str, rng: random.Random) -> str:
    positions = [k for k, char in enumerate(expression) if char in OPERATORS]
    if not positions:
        return f"{expression} + 1"
    k = rng.choice(positions)
    other = rng.choice([op for op in OPERATORS if op != expression[k]])
    return expression[:k] + other + expression[k + 1 :]


def step_ok(numbers: list[int], step: Step) -> bool:
    rest = list(numbers)
    for n in (step.a, step.b):
        if n not in rest:
            return False
        rest.remove(n)
    actual = apply_op(Fraction(step.a), step.op, Fraction(step.b))
    return (
        actual == step.result
        and sorted([*rest, step.result]) == list(step.left)
        and (is_solvable(step.left))
    )


def last_answer(query: list[str]) -> str:
    for line in reversed(query):
        stripped = line.strip()
        lowered = stripped.lower()
        if lowered.startswith(("answer:", "proposed answer:")) and "=" in stripped:
            return stripped.removeprefix("Proposed ")
    return ""


def follow(numbers: list[int], steps: list[Step]) -> tuple[list[Term], bool]:
    """Replay ``steps`` as written; ``faithful`` is False if any step was wrong."""
    terms: list[Term] = [(Fraction(n), str(n)) for n in numbers]
    faithful = True
    for step in steps:
        left_term = _take(terms, step.a)
        right_term = _take(terms, step.b)
        faithful = faithful and left_term[1] != "" and right_term[1] != ""
        a_text = left_term[1] or str(step.a)
        b_text = right_term[1] or str(step.b)
        actual = apply_op(left_term[0], step.op, right_term[0])
        faithful = faithful and actual == step.result
        terms.append((Fraction(step.result), f"({a_text} {step.op} {b_text})"))
        if sorted(v for v, _ in terms) != sorted(Fraction(n) for n in step.left):
            faithful = False
            terms = [
                _take(terms, n) if _has(terms, n) else (Fraction(n), str(n)) for n in step.left
            ]
    return terms, faithful


def _has(terms: list[Term], number: int) -> bool:
    return any(value == number for value, _ in terms)


def _take(terms: list[Term], number: int) -> Term:
    """Remove and return the first term worth ``number``, or ``(number, "")`` if none is."""
    for k, (value, text) in enumerate(terms):
        if value == number:
            del terms[k]
            return value, text
    return Fraction(number), ""
