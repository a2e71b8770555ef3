"""Game of 24 puzzles: the standard benchmark set, an exact solver and a generator.

`load_puzzles` reads the 1,362 ranked puzzles of ``pipelines/data/game24_puzzles.csv``
(the set Tree of Thoughts and the CacheSaver paper use; ranks 901-1000 by default).

A puzzle is four numbers from 1 to 13; it is solvable when +, -, *, / and parentheses
combine all four, each exactly once, into 24. Arithmetic is exact (`fractions.Fraction`),
so puzzles such as ``1 5 5 5`` (``5 * (5 - 1 / 5)``) count as solvable.
"""

from __future__ import annotations

import csv
import itertools
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

__all__ = [
    "TARGET",
    "Puzzle",
    "clear_solver_cache",
    "combine",
    "generate_puzzles",
    "is_solvable",
    "load_puzzles",
    "solutions",
]

DATA_FILE = os.path.join(os.path.dirname(__file__), "data", "game24_puzzles.csv")
FIRST_RANK = 901  # the papers' test range: ranks 901-1000

TARGET = 24
_Term = tuple[Fraction, str]


@dataclass(frozen=True)
class Puzzle:
    """Four numbers to combine into 24; ``rank`` is its place in the benchmark (0: none)."""

    numbers: tuple[int, ...]
    rank: int = 0

    @property
    def id(self) -> str:
        """A name for request ids: the rank when known, else the numbers."""
        if self.rank:
            return f"r{self.rank}"
        return "-".join(str(n) for n in self.numbers)

    @property
    def text(self) -> str:
        return " ".join(str(n) for n in self.numbers)


def combine(a: Fraction, b: Fraction) -> Iterator[tuple[str, Fraction]]:
    """Yield ``(operator, result)`` for every way to combine ``a`` with ``b`` (in order)."""
    yield "+", a + b
    yield "-", a - b
    yield "*", a * b
    if b != 0:
        yield "/", a / b


def _children(values: tuple[Fraction, ...]) -> Iterator[tuple[Fraction, ...]]:
    for i, j in itertools.permutations(range(len(values)), 2):
        rest = [v for k, v in enumerate(values) if k not in (i, j)]
        for _, result in combine(values[i], values[j]):
            yield tuple(sorted([*rest, result]))


@lru_cache(maxsize=65536)
def _solvable(values: tuple[Fraction, ...]) -> bool:
    if len(values) == 1:
        return values[0] == TARGET
    return any(_solvable(child) for child in _children(values))


def clear_solver_cache() -> None:
    """Forget every memoised solvability result (a cold start, as in a new process)."""
    _solvable.cache_clear()


def is_solvable(numbers: Sequence[int | Fraction]) -> bool:
    """Return True when ``numbers`` (any count >= 1) can be combined into exactly 24."""
    if not numbers:
        return False
    return _solvable(tuple(sorted(Fraction(n) for n in numbers)))


def _search(terms: list[_Term], found: list[str], limit: int) -> None:
    if len(found) >= limit:
        return
    if len(terms) == 1:
        value, text = terms[0]
        if value == TARGET and text not in found:
            found.append(text)
        return
    for i, j in itertools.permutations(range(len(terms)), 2):
        rest = [t for k, t in enumerate(terms) if k not in (i, j)]
        (a, ea), (b, eb) = terms[i], terms[j]
        for op, result in combine(a, b):
            child = [*rest, (result, f"({ea} {op} {eb})")]
            if _solvable(tuple(sorted(v for v, _ in child))):
                _search(child, found, limit)
                if len(found) >= limit:
                    return


def solutions(terms: Sequence[int | _Term], limit: int = 1) -> list[str]:
    """Return up to ``limit`` distinct expressions that combine ``terms`` into 24.

    A term is a number or a ``(value, expression)`` pair (so a partial solution can be
    completed); the expressions are found in a fixed order, so the result is deterministic.
    """
    pairs: list[_Term] = [
        (Fraction(t), str(t)) if isinstance(t, int) else (Fraction(t[0]), t[1]) for t in terms
    ]
    found: list[str] = []
    if pairs and _solvable(tuple(sorted(v for v, _ in pairs))):
        _search(pairs, found, limit)
    return [_strip_outer(text) for text in found]


def _strip_outer(text: str) -> str:
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth = 0
    for position, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and position < len(text) - 1:
            return text  # the first "(" closes before the end: not one outer pair
    return text[1:-1]


def generate_puzzles(count: int, seed: int = 0) -> list[Puzzle]:
    """Return ``count`` distinct solvable puzzles, the same ones for the same ``seed``.

    The 1820 multisets of four numbers 1-13 are shuffled with ``random.Random(seed)`` and
    the first ``count`` solvable ones are kept (so a smaller set is a prefix of a larger).
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    combos = list(itertools.combinations_with_replacement(range(1, 14), 4))
    random.Random(seed).shuffle(combos)
    chosen: list[Puzzle] = []
    for combo in combos:
        if is_solvable(combo):
            chosen.append(Puzzle(combo))
            if len(chosen) == count:
                return chosen
    raise ValueError(f"there are only {len(chosen)} solvable puzzles; asked for {count}")


def load_puzzles(
    count: int = 100, first_rank: int = FIRST_RANK, path: str | os.PathLike[str] = DATA_FILE
) -> list[Puzzle]:
    """Return ``count`` benchmark puzzles from rank ``first_rank`` on, in rank order.

    Raises ``ValueError`` naming the file when it is missing, malformed, or too short.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if first_rank < 1:
        raise ValueError(f"first rank must be at least 1, got {first_rank}")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise ValueError(f"cannot read the puzzles file {os.fspath(path)!r}: {exc}") from None
    by_rank: dict[int, Puzzle] = {}
    for line, row in enumerate(rows, start=2):
        try:
            rank = int(row["rank"])
            numbers = tuple(int(n) for n in row["numbers"].split())
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(
                f"{os.fspath(path)!r} line {line}: expected columns rank,numbers with four integers"
            ) from None
        if len(numbers) != 4:
            raise ValueError(f"{os.fspath(path)!r} line {line}: expected four numbers")
        by_rank[rank] = Puzzle(numbers, rank)
    wanted = range(first_rank, first_rank + count)
    missing = [rank for rank in wanted if rank not in by_rank]
    if missing:
        raise ValueError(
            f"{os.fspath(path)!r} has ranks 1-{len(by_rank)}; asked for ranks "
            f"{first_rank}-{first_rank + count - 1}"
        )
    return [by_rank[rank] for rank in wanted]
