"""An offline, stochastic Game of 24 reasoner built on `cachesaver.testing.SimulatedLLM`.

It reads the same prompts a real model would get and answers in the same format, with
the kinds of mistakes a real model makes:

- ``propose``: a handful of steps, some chosen to keep the puzzle solvable, the rest
  arbitrary; now and then a step has wrong arithmetic or a wrong list of what is left;
- ``evaluate``: a few attempts and a verdict (sure / likely / impossible) that is right
  more often than not, and more reliable the fewer numbers are left;
- ``answer``: follows the given steps (faithfully, mistakes included) and completes them
  with a probability that falls with the number of values still to combine; otherwise
  writes a plausible expression that is wrong.

Every sample is ``{"text", "prompt_tokens", "completion_tokens"}`` with token counts from
`pipelines.tokens.count_tokens`, so the savings tables can be computed from the samples.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from cachesaver import Request
from cachesaver.testing import SimulatedLLM
from pipelines.prompts import Step, format_numbers, parse_steps, query_of
from pipelines.puzzles import is_solvable, solutions
from pipelines.tokens import count_tokens

__all__ = ["MODEL_NAME", "Profile", "SimulatedReasoner", "make_sample", "simulated_model"]

MODEL_NAME = "game24-simulated-reasoner-v1"

_Term = tuple[Fraction, str]
_Move = tuple[int, str, int, int]  # a op b = result, with exact integer arithmetic
_OPERATORS = "+-*/"
_REMARKS = (
    "Hard to say without more tries.",
    "The numbers do not combine nicely.",
    "Close, but not exact.",
    "Maybe with a division.",
)


@dataclass(frozen=True)
class Profile:
    """Error rates and lengths of the simulated reasoner.

    ``judge_right[k]`` is the chance of the right verdict with ``k`` numbers left (index 0
    unused); a wrong verdict is ``likely`` half the time. ``answer_success[k]`` is the
    chance of completing a correct partial solution with ``k`` values left to combine;
    a completed solution is written the model's usual way with ``usual_solution``
    probability. A wrong direct answer is one of three favourite mistakes per puzzle
    with ``favourite_mistake`` probability.
    """

    steps_per_proposal: tuple[int, int] = (4, 8)
    useful_step: float = 0.2
    arithmetic_error: float = 0.06
    bookkeeping_error: float = 0.03
    judge_right: tuple[float, ...] = (0.0, 0.95, 0.8, 0.62, 0.55)
    answer_success: tuple[float, ...] = (0.0, 0.97, 0.8, 0.35, 0.1)
    favourite_mistake: float = 0.25
    usual_solution: float = 0.7


def make_sample(text: str, prompt: str) -> dict[str, Any]:
    """Return a sample with the token counts a provider would report for it."""
    return {
        "text": text,
        "prompt_tokens": count_tokens(prompt),
        "completion_tokens": count_tokens(text),
    }


def _numbers_in(line: str) -> list[int]:
    return [int(token) for token in line.replace("Input:", "").split() if _is_int(token)]


def _is_int(token: str) -> bool:
    return token.lstrip("-").isdigit()


def _moves(numbers: list[int]) -> list[tuple[_Move, tuple[int, ...]]]:
    """Every integer step from ``numbers`` with a non-negative result, and what is left."""
    found: dict[_Move, tuple[int, ...]] = {}
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


def _apply(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b != 0 else None


def _strip(text: str) -> str:
    return text[1:-1] if text.startswith("(") and text.endswith(")") and _balanced(text) else text


def _balanced(text: str) -> bool:
    depth = 0
    for char in text[1:-1]:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _random_expression(terms: list[str], rng: random.Random) -> str:
    pool = list(terms)
    while len(pool) > 1:
        i, j = rng.sample(range(len(pool)), 2)
        joined = f"({pool[i]} {rng.choice(_OPERATORS)} {pool[j]})"
        pool = [t for k, t in enumerate(pool) if k not in (i, j)] + [joined]
    return _strip(pool[0])


def _garble(expression: str, rng: random.Random) -> str:
    positions = [k for k, char in enumerate(expression) if char in _OPERATORS]
    if not positions:
        return f"{expression} + 1"
    k = rng.choice(positions)
    other = rng.choice([op for op in _OPERATORS if op != expression[k]])
    return expression[:k] + other + expression[k + 1 :]


class SimulatedReasoner:
    """The ``responder`` of a `SimulatedLLM`: makes one sample per call.

    Each sample is drawn from its own random stream, seeded by ``seed``, the request's
    content and how many samples of that content this reasoner has made before. The
    ``rng`` that `SimulatedLLM` passes is shared by all samples of one model call, so
    with it a sample would depend on how the cache happened to split the draws into
    calls (which depends on batch timing); per-sample streams make the k-th sample of a
    question the same however the calls were merged.
    """

    def __init__(self, profile: Profile | None = None, seed: int = 0) -> None:
        self.profile = profile or Profile()
        self.seed = seed
        self._drawn: dict[str, int] = {}

    def _stream(self, request: Request, prompt: str) -> random.Random:
        content = f"{request.kind}\x00{request.temperature}\x00{request.max_tokens}\x00{prompt}"
        k = self._drawn.get(content, 0)
        self._drawn[content] = k + 1
        material = f"{self.seed}\x00{k}\x00{content}".encode()
        return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))

    def __call__(self, request: Request, call_rng: random.Random) -> dict[str, Any]:
        """Return one sample for ``request`` (``call_rng`` is unused: see the class doc)."""
        prompt = request.prompt if isinstance(request.prompt, str) else str(request.prompt)
        rng = self._stream(request, prompt)
        query = query_of(prompt)
        numbers = _numbers_in(query[0]) if query else []
        if request.kind == "propose":
            text = self.propose(numbers, rng)
        elif request.kind == "evaluate":
            text = self.evaluate(numbers, rng)
        elif request.kind == "answer":
            text = self.answer(numbers, parse_steps("\n".join(query[1:])), rng)
        else:
            text = "I do not know how to help with that."
        return make_sample(text, prompt)

    # -- propose ---------------------------------------------------------------------------

    def propose(self, numbers: list[int], rng: random.Random) -> str:
        """Return a few next steps from ``numbers``, one per line."""
        if len(numbers) < 2:
            return "Only one number is left; there is no step to take."
        moves = _moves(numbers)
        useful = [m for m in moves if is_solvable(m[1])]
        lines = []
        for _ in range(rng.randint(*self.profile.steps_per_proposal)):
            pool = useful if useful and rng.random() < self.profile.useful_step else moves
            lines.append(self._write_step(*rng.choice(pool), rng))
        return "\n".join(lines)

    def _write_step(self, move: _Move, left: tuple[int, ...], rng: random.Random) -> str:
        a, op, b, result = move
        remaining = list(left)
        remaining.remove(result)
        if rng.random() < self.profile.arithmetic_error:
            result = max(0, result + rng.choice((-2, -1, 1, 2)))
        remaining.append(result)
        if rng.random() < self.profile.bookkeeping_error and len(remaining) > 1:
            if rng.random() < 0.5:
                remaining.pop(rng.randrange(len(remaining) - 1))
            else:
                remaining.append(rng.choice(remaining))
        return f"{a} {op} {b} = {result} (left: {format_numbers(remaining)})"

    # -- evaluate --------------------------------------------------------------------------

    def evaluate(self, numbers: list[int], rng: random.Random) -> str:
        """Return a few attempts and a verdict on whether ``numbers`` can reach 24."""
        if not numbers:
            return "There are no numbers to judge.\nimpossible"
        solvable = is_solvable(numbers)
        right = self.profile.judge_right[min(len(numbers), len(self.profile.judge_right) - 1)]
        if rng.random() < right:
            verdict = (
                "sure" if solvable and len(numbers) < 4 else "likely" if solvable else "impossible"
            )
        else:
            verdict = "likely" if rng.random() < 0.5 else ("impossible" if solvable else "sure")
        lines = [self._attempt(numbers, rng) for _ in range(rng.randint(1, 3))]
        if verdict == "sure" and solvable:
            lines.append(f"{rng.choice(solutions(numbers, 3))} = 24")
        elif verdict != "sure":
            lines.append(rng.choice(_REMARKS))
        lines.append(verdict)
        return "\n".join(lines)

    def _attempt(self, numbers: list[int], rng: random.Random) -> str:
        if len(numbers) == 1:
            return f"{numbers[0]} {'=' if numbers[0] == 24 else '!='} 24"
        (a, op, b, result), _ = rng.choice(_moves(numbers))
        return f"{a} {op} {b} = {result}"

    # -- answer ----------------------------------------------------------------------------

    def answer(self, numbers: list[int], steps: list[Step], rng: random.Random) -> str:
        """Return ``Answer: <expression> = 24``, following ``steps`` from ``numbers``."""
        if not numbers:
            return "I cannot find the input numbers in the question."
        terms, faithful = self._follow(numbers, steps)
        values = [value for value, _ in terms]
        chance = self.profile.answer_success[min(len(terms), len(self.profile.answer_success) - 1)]
        if faithful and terms and is_solvable(values) and rng.random() < chance:
            usual, *others = solutions(terms, 3)
            if others and rng.random() >= self.profile.usual_solution:
                usual = rng.choice(others)
            expression = usual
        elif len(terms) == 1:
            expression = _garble(terms[0][1], rng) if faithful else _strip(terms[0][1])
        elif not steps and rng.random() < self.profile.favourite_mistake:
            expression = rng.choice(self._favourite_mistakes(numbers))
        else:
            expression = _random_expression([text for _, text in terms], rng)
        return f"Answer: {expression} = 24"

    def _follow(self, numbers: list[int], steps: list[Step]) -> tuple[list[_Term], bool]:
        """Replay ``steps`` as written; ``faithful`` is False if any step was wrong."""
        terms: list[_Term] = [(Fraction(n), str(n)) for n in numbers]
        faithful = True
        for step in steps:
            left_term = _take(terms, step.a)
            right_term = _take(terms, step.b)
            faithful = faithful and left_term[1] != "" and right_term[1] != ""
            a_text = left_term[1] or str(step.a)
            b_text = right_term[1] or str(step.b)
            actual = _apply(left_term[0], step.op, right_term[0])
            faithful = faithful and actual == step.result
            terms.append((Fraction(step.result), f"({a_text} {step.op} {b_text})"))
            if sorted(v for v, _ in terms) != sorted(Fraction(n) for n in step.left):
                faithful = False
                terms = [
                    _take(terms, n) if _has(terms, n) else (Fraction(n), str(n)) for n in step.left
                ]
        return terms, faithful

    def _favourite_mistakes(self, numbers: list[int]) -> list[str]:
        """Three wrong answers this model tends to give for this puzzle (fixed per puzzle)."""
        rng = random.Random(f"favourite mistakes {format_numbers(numbers)}")
        return [_random_expression([str(n) for n in numbers], rng) for _ in range(3)]


def _has(terms: list[_Term], number: int) -> bool:
    return any(value == number for value, _ in terms)


def _take(terms: list[_Term], number: int) -> _Term:
    """Remove and return the first term worth ``number``, or ``(number, "")`` if none is."""
    for k, (value, text) in enumerate(terms):
        if value == number:
            del terms[k]
            return value, text
    return Fraction(number), ""


def simulated_model(seed: int = 0, profile: Profile | None = None) -> SimulatedLLM:
    """Return the offline model: a seeded `SimulatedLLM` answering as a Game of 24 reasoner."""
    return SimulatedLLM(seed=seed, responder=SimulatedReasoner(profile, seed), name=MODEL_NAME)
