"""Validate a Game of 24 answer exactly, without ever evaluating code.

The expression is parsed with `ast` and walked by hand: only integer literals written in
decimal and the binary operators + - * / are accepted, arithmetic is exact
(`fractions.Fraction`), and the literals must be the puzzle's four numbers, each used
exactly once.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from pipelines.puzzles import TARGET

__all__ = ["MAX_LENGTH", "Verdict", "check_answer", "extract_expression"]

MAX_LENGTH = 200  # characters; a real answer is about 20
_OPERATORS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
}
_DECIMAL = re.compile(r"[0-9]+")
_SYMBOLS = {"\u00d7": "*", "\u00f7": "/", "\u2212": "-"}  # x, division sign, minus sign
_ANSWER = re.compile(r"answer\s*:\s*(.*)", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """Whether an answer is correct, and if not, why."""

    ok: bool
    reason: str
    value: Fraction | None = None


class _Rejected(Exception):
    pass


def extract_expression(text: str) -> str | None:
    """Return the expression of the last ``Answer: <expr> = 24`` line of ``text``, if any."""
    found = None
    for line in text.splitlines():
        match = _ANSWER.search(line)
        if match:
            found = match.group(1)
    if found is None:
        return None
    expression = found.split("=", 1)[0].strip()
    for fancy, plain in _SYMBOLS.items():
        expression = expression.replace(fancy, plain)
    return expression or None


def _evaluate(node: ast.AST, source: str, used: list[int]) -> Fraction:
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left = _evaluate(node.left, source, used)
        right = _evaluate(node.right, source, used)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            raise _Rejected("division by zero")
        return left / right
    if isinstance(node, ast.Constant) and type(node.value) is int:
        written = ast.get_source_segment(source, node) or ""
        if not _DECIMAL.fullmatch(written):
            raise _Rejected(f"number {written!r} is not a plain decimal integer")
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp):
        raise _Rejected(f"operator {type(node.op).__name__} is not allowed (only + - * /)")
    raise _Rejected(f"{type(node).__name__} is not allowed (only numbers, + - * / and parentheses)")


def check_answer(expression: str | None, numbers: Sequence[int]) -> Verdict:
    """Return whether ``expression`` uses each of ``numbers`` exactly once and equals 24."""
    if expression is None or not expression.strip():
        return Verdict(False, "no expression")
    if len(expression) > MAX_LENGTH:
        return Verdict(False, f"expression longer than {MAX_LENGTH} characters")
    source = expression.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return Verdict(False, f"not an arithmetic expression ({type(exc).__name__})")
    used: list[int] = []
    try:
        value = _evaluate(tree.body, source, used)
    except _Rejected as exc:
        return Verdict(False, str(exc))
    except RecursionError:
        return Verdict(False, "expression nested too deeply")
    if sorted(used) != sorted(numbers):
        wanted = " ".join(str(n) for n in sorted(numbers))
        got = " ".join(str(n) for n in sorted(used))
        return Verdict(False, f"uses numbers [{got}], must use [{wanted}] each exactly once", value)
    if value != TARGET:
        return Verdict(False, f"evaluates to {value}, not {TARGET}", value)
    return Verdict(True, "correct", value)
