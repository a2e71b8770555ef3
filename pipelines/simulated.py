"""An offline, stochastic Game of 24 reasoner built on `cachesaver.testing.SimulatedLLM`.

It reads the same prompts a real model gets and answers in the same format. Its rates are
calibrated on GPT-4's public Tree of Thoughts logs for ranks 901-1000 (see
docs/pipelines.md, "Calibration"); the defaults of `Profile` are those measurements:

- ``propose``: a state has a repertoire of moves the model favours (fixed per state and
  seed, useful moves ranked higher); each sample lists the top of it, dropping a move now
  and then and adding an unexpected one, so two proposals for one state share most of
  their moves, as a real model's do;
- ``evaluate``: the model holds a belief about each state (fixed per state and seed; right
  more often the fewer numbers are left) and each sample states it or, now and then,
  another verdict, so the three samples of one evaluation mostly agree;
- ``judge`` / ``refine`` / ``aggregate``: check an answer, correct it, pick candidates;
- ``answer``: follows given steps (mistakes included); without steps, a few favourite
  answers per puzzle, mostly wrong (a real model's direct answers repeat heavily).

Each sample is drawn from the rng `SimulatedLLM` seeds for that sample (seed, question,
sample index), so the k-th sample of a question never depends on how calls were split.
Every sample is ``{"text", "prompt_tokens", "completion_tokens"}`` with token counts from
`pipelines.tokens.count_tokens`. The arithmetic (moves, expressions, replaying written
steps) is in `pipelines.moves`.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from cachesaver import Request
from cachesaver.testing import SimulatedLLM
from pipelines.checker import check_answer, extract_expression
from pipelines.moves import (
    Move,
    all_moves,
    follow,
    garble,
    last_answer,
    numbers_in,
    random_expression,
    step_ok,
    strip_parens,
)
from pipelines.prompts import Step, format_numbers, parse_steps, query_of
from pipelines.puzzles import clear_solver_cache, is_solvable, solutions
from pipelines.tokens import count_tokens

__all__ = ["MODEL_NAME", "Profile", "SimulatedReasoner", "make_sample", "simulated_model"]

MODEL_NAME = "game24-simulated-reasoner-v2"

_VERDICTS = ("sure", "likely", "impossible")


@dataclass(frozen=True)
class Profile:
    """Rates of the simulated reasoner, indexed by how many numbers are left (0 unused).

    Defaults are measured on GPT-4's Tree of Thoughts logs (docs/pipelines.md):
    ``steps`` per proposal (min, max), ``useful_weight`` (how much more a move that keeps
    the puzzle solvable is favoured), ``belief_right`` (the evaluation belief is right),
    ``verdict_stable`` (a sample states the belief rather than another verdict).
    """

    steps: tuple[tuple[int, int], ...] = ((0, 0), (0, 0), (3, 5), (4, 8), (7, 12))
    useful_weight: tuple[float, ...] = (1.0, 1.0, 8.0, 1.2, 1.6)
    drop_move: float = 0.08
    surprise_move: float = 0.15
    arithmetic_error: float = 0.002
    bookkeeping_error: float = 0.005
    # (sure, likely, impossible) shares of evaluation samples, by numbers left
    verdicts_solvable: tuple[tuple[float, float, float], ...] = (
        (0.0, 0.0, 1.0),
        (1.0, 0.0, 0.0),
        (0.99, 0.002, 0.008),
        (0.4, 0.532, 0.068),
        (0.4, 0.532, 0.068),
    )
    verdicts_unsolvable: tuple[tuple[float, float, float], ...] = (
        (0.0, 0.0, 1.0),
        (0.0, 0.029, 0.971),
        (0.0, 0.245, 0.755),
        (0.002, 0.858, 0.14),
        (0.002, 0.858, 0.14),
    )
    verdict_stable: tuple[float, ...] = (0.0, 0.7, 0.6, 0.88, 0.88)
    answer_success: tuple[float, ...] = (0.0, 0.97, 0.8, 0.35, 0.1)
    direct_correct: float = 0.07
    direct_favourites: tuple[float, ...] = (0.6, 0.15, 0.1, 0.05)  # rest: a fresh guess
    judge_right: float = 0.95
    refine_fix: float = 0.3
    aggregate_pick_useful: float = 0.7


def make_sample(text: str, prompt: str) -> dict[str, Any]:
    """Return a sample with the token counts a provider would report for it."""
    return {
        "text": text,
        "prompt_tokens": count_tokens(prompt),
        "completion_tokens": count_tokens(text),
    }


def _at(table: tuple[Any, ...], index: int) -> Any:
    return table[max(0, min(index, len(table) - 1))]


class SimulatedReasoner:
    """The ``responder`` of a `SimulatedLLM`: makes one sample from its seeded rng.

    What is fixed per question (a state's favoured moves, the belief about a state, a
    puzzle's favourite answers) comes from `_fixed`, seeded by ``seed`` and the question.
    """

    def __init__(self, profile: Profile | None = None, seed: int = 0) -> None:
        self.profile = profile or Profile()
        self.seed = seed
        self._repertoires: dict[tuple[int, ...], list[tuple[Move, tuple[int, ...]]]] = {}

    def cold_start(self) -> None:
        """Forget what was computed for earlier questions (the solver's memo included)."""
        self._repertoires.clear()
        clear_solver_cache()

    def _fixed(self, *parts: object) -> random.Random:
        material = "\x00".join(str(part) for part in (self.seed, *parts)).encode()
        return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))

    def __call__(self, request: Request, rng: random.Random) -> dict[str, Any]:
        """Return one sample for ``request``."""
        prompt = request.prompt if isinstance(request.prompt, str) else str(request.prompt)
        query = query_of(prompt)
        numbers = numbers_in(query[0]) if query else []
        kind = getattr(request, "kind", "answer")
        if kind == "propose":
            text = self.propose(numbers, rng)
        elif kind == "evaluate":
            text = self.evaluate(numbers, rng)
        elif kind == "judge":
            text = self.judge(numbers, last_answer(query), rng)
        elif kind == "aggregate":
            text = self.aggregate(numbers, query, rng)
        elif kind == "refine":
            text = self.refine(numbers, parse_steps("\n".join(query)), last_answer(query), rng)
        elif kind == "answer":
            text = self.answer(numbers, parse_steps("\n".join(query[1:])), rng)
        else:
            text = "I do not know how to help with that."
        return make_sample(text, prompt)

    # -- propose ---------------------------------------------------------------------------

    def repertoire(self, numbers: list[int]) -> list[tuple[Move, tuple[int, ...]]]:
        """The moves the model favours from ``numbers``, most favoured first (fixed)."""
        known = self._repertoires.get(tuple(sorted(numbers)))
        if known is not None:
            return known
        moves = all_moves(numbers)
        fixed = self._fixed("repertoire", format_numbers(numbers))
        weight = _at(self.profile.useful_weight, len(numbers))

        def key(item: tuple[Move, tuple[int, ...]]) -> float:
            w = weight if is_solvable(item[1]) else 1.0
            return float(fixed.random() ** (1.0 / w))

        ranked = sorted(moves, key=key, reverse=True)
        self._repertoires[tuple(sorted(numbers))] = ranked
        return ranked

    def propose(self, numbers: list[int], rng: random.Random) -> str:
        """Return a few next steps from ``numbers``, one per line."""
        if len(numbers) < 2:
            return "Only one number is left; there is no step to take."
        ranked = self.repertoire(numbers)
        low, high = _at(self.profile.steps, len(numbers))
        count = min(rng.randint(low, high), len(ranked))
        chosen = [m for m in ranked if rng.random() >= self.profile.drop_move][:count]
        if rng.random() < self.profile.surprise_move:
            chosen.insert(rng.randrange(len(chosen) + 1), rng.choice(ranked))
        return "\n".join(self._write_step(*move, rng) for move in chosen)

    def _write_step(self, move: Move, left: tuple[int, ...], rng: random.Random) -> str:
        a, op, b, result = move
        remaining = list(left)
        remaining.remove(result)
        if rng.random() < self.profile.arithmetic_error:
            result = max(0, result + rng.choice((-2, -1, 1, 2)))
        remaining.append(result)
        if rng.random() < self.profile.bookkeeping_error and len(remaining) > 1:
            remaining.pop(rng.randrange(len(remaining) - 1))
        return f"{a} {op} {b} = {result} (left: {format_numbers(remaining)})"

    # -- evaluate and judge ---------------------------------------------------------------

    def _verdicts(self, numbers: list[int]) -> tuple[float, float, float]:
        table = (
            self.profile.verdicts_solvable
            if is_solvable(numbers)
            else (self.profile.verdicts_unsolvable)
        )
        verdicts: tuple[float, float, float] = _at(table, len(numbers))
        return verdicts

    def belief(self, numbers: list[int]) -> str:
        """The verdict the model holds about ``numbers`` (fixed per state and seed)."""
        fixed = self._fixed("belief", format_numbers(numbers))
        return fixed.choices(_VERDICTS, weights=self._verdicts(numbers))[0]

    def evaluate(self, numbers: list[int], rng: random.Random) -> str:
        """Return a few attempts and a verdict on whether ``numbers`` can reach 24.

        A sample states the model's belief about the state, or (now and then) a verdict
        drawn afresh from the same shares, so each sample's verdict has the measured
        shares and the samples of one evaluation agree as often as the real model's.
        """
        if not numbers:
            return "There are no numbers to judge.\nimpossible"
        if rng.random() < _at(self.profile.verdict_stable, len(numbers)):
            verdict = self.belief(numbers)
        else:
            verdict = rng.choices(_VERDICTS, weights=self._verdicts(numbers))[0]
        lines = [self._attempt(numbers, rng) for _ in range(rng.randint(1, 3))]
        if verdict == "sure" and is_solvable(numbers) and len(numbers) > 1:
            lines.append(f"{rng.choice(solutions(numbers, 3))} = 24")
        lines.append(verdict)
        return "\n".join(lines)

    def _attempt(self, numbers: list[int], rng: random.Random) -> str:
        if len(numbers) == 1:
            return f"{numbers[0]} {'=' if numbers[0] == 24 else '!='} 24"
        (a, op, b, result), _ = rng.choice(all_moves(numbers))
        return f"{a} {op} {b} = {result}"

    def judge(self, numbers: list[int], answer: str, rng: random.Random) -> str:
        """Return a check of ``answer`` and ``sure`` / ``impossible``."""
        right = check_answer(extract_expression(answer), numbers).ok
        fixed = self._fixed("judge", format_numbers(numbers), answer)
        if fixed.random() >= self.profile.judge_right:
            right = not right
        if rng.random() >= _at(self.profile.verdict_stable, 1):
            right = not right
        return f"Checking {answer.strip() or 'the answer'}.\n{'sure' if right else 'impossible'}"

    # -- aggregate and refine ---------------------------------------------------------------

    def aggregate(self, numbers: list[int], query: list[str], rng: random.Random) -> str:
        """Return ``Selected: i, j, ...``, preferring candidates that keep 24 in reach."""
        keep = [int(line.split()[1].rstrip(":")) for line in query if line.startswith("Choose ")]
        candidates = parse_steps("\n".join(line.split(") ", 1)[-1] for line in query[2:]))
        useful = [k for k, step in enumerate(candidates) if step_ok(numbers, step)]
        others = [k for k in range(len(candidates)) if k not in useful]
        rng.shuffle(useful)
        rng.shuffle(others)
        chosen: list[int] = []
        while len(chosen) < min(keep[0] if keep else 1, len(candidates)):
            pick_useful = useful and (
                not others or rng.random() < self.profile.aggregate_pick_useful
            )
            chosen.append((useful if pick_useful else others).pop())
        return "Selected: " + ", ".join(str(k + 1) for k in chosen)

    def refine(self, numbers: list[int], steps: list[Step], answer: str, rng: random.Random) -> str:
        """Return the answer unchanged when right; otherwise, sometimes, a corrected one."""
        if check_answer(extract_expression(answer), numbers).ok or not numbers:
            return answer.strip() if answer.strip().startswith("Answer") else f"Answer: {answer}"
        if is_solvable(numbers) and rng.random() < self.profile.refine_fix:
            return f"Answer: {rng.choice(solutions(numbers, 3))} = 24"
        return self.answer(numbers, steps, rng)

    # -- answer ----------------------------------------------------------------------------

    def answer(self, numbers: list[int], steps: list[Step], rng: random.Random) -> str:
        """Return ``Answer: <expression> = 24``, following ``steps`` from ``numbers``."""
        if not numbers:
            return "I cannot find the input numbers in the question."
        if not steps:
            return f"Answer: {self._direct(numbers, rng)} = 24"
        terms, faithful = follow(numbers, steps)
        values = [value for value, _ in terms]
        chance = _at(self.profile.answer_success, len(terms))
        if faithful and terms and is_solvable(values) and rng.random() < chance:
            expression = solutions(terms, 1)[0]
        elif len(terms) == 1:
            expression = garble(terms[0][1], rng) if faithful else strip_parens(terms[0][1])
        else:
            expression = random_expression([text for _, text in terms], rng)
        return f"Answer: {expression} = 24"

    def _direct(self, numbers: list[int], rng: random.Random) -> str:
        """A direct answer: right now and then, else one of the puzzle's favourite mistakes."""
        if rng.random() < self.profile.direct_correct and is_solvable(numbers):
            return solutions(numbers, 1)[0]
        fixed = self._fixed("favourites", format_numbers(numbers))
        favourites = [random_expression([str(n) for n in numbers], fixed) for _ in range(4)]
        draw = rng.random()
        for expression, share in zip(favourites, self.profile.direct_favourites, strict=False):
            if draw < share:
                return expression
            draw -= share
        return random_expression([str(n) for n in numbers], rng)


def simulated_model(seed: int = 0, profile: Profile | None = None) -> SimulatedLLM:
    """Return the offline model: a seeded `SimulatedLLM` answering as a Game of 24 reasoner."""
    return SimulatedLLM(seed=seed, responder=SimulatedReasoner(profile, seed), name=MODEL_NAME)
