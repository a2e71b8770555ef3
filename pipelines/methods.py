"""What every reasoning method shares: the client, search states, steps and values.

A method solves all puzzles of a run together, in lock step: each phase (propose,
evaluate, ...) issues the requests of every puzzle, in puzzle order, with one
`gather_all`. All puzzles share the run's one namespace (the CacheSaver paper's scheme),
so the order of requests inside it decides which sample each gets; lock step makes that
order a function of the samples alone, never of timing, so a run is reproducible and a
replay from the cache makes the same decisions.

- `Client`: sends a method's requests through a pipeline and records every response;
- `State`, `expand`: a partial solution and the shared step (propose, or the final answer);
- `Evaluator`: the shared evaluation, with the method's own value cache (per run, shared by
  all puzzles, as in the paper's code: a state already valued is not asked again);
- `Direct`: io (one answer) and self-consistency (majority of several answers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cachesaver import SingleRequestModel
from pipelines.accounting import Ledger, sample_text
from pipelines.aio import gather_all
from pipelines.checker import Verdict, check_answer, extract_expression
from pipelines.prompts import (
    GameRequest,
    answer_prompt,
    evaluate_prompt,
    format_numbers,
    judge_prompt,
    parse_judgement,
    parse_steps,
    propose_prompt,
)
from pipelines.puzzles import Puzzle

__all__ = [
    "MAX_TOKENS",
    "TEMPERATURE",
    "Attempt",
    "Client",
    "Direct",
    "Evaluator",
    "Method",
    "State",
    "attempt_from",
    "children_of",
    "expand",
    "majority_answer",
    "step_prompt",
]

TEMPERATURE = 0.7  # the paper's decoding parameters, for every request
MAX_TOKENS = 200


class Client:
    """Sends a run's requests, all in its one ``namespace``, and records every response."""

    def __init__(
        self, pipeline: SingleRequestModel, namespace: str, ledger: Ledger | None = None
    ) -> None:
        self.pipeline = pipeline
        self.namespace = namespace
        self.ledger = ledger if ledger is not None else Ledger()

    async def ask(self, kind: str, prompt: str, n: int, request_id: str) -> list[str]:
        """Return the texts of ``n`` samples for ``prompt``."""
        request = GameRequest(
            prompt,
            kind=kind,
            temperature=TEMPERATURE,
            max_tokens=MAX_TOKENS,
            n=n,
            namespace=self.namespace,
            request_id=request_id,
        )
        response = await self.pipeline.request(request)
        self.ledger.record(request, response)
        return [sample_text(sample) for sample in response.data]


@dataclass(frozen=True)
class State:
    """A partial solution: the numbers left, the steps taken, and the answer once written."""

    puzzle: Puzzle
    numbers: tuple[int, ...]
    steps: tuple[str, ...] = ()
    answer: str | None = None

    @classmethod
    def root(cls, puzzle: Puzzle) -> State:
        return cls(puzzle, tuple(sorted(puzzle.numbers)))

    @property
    def finished(self) -> bool:
        return self.answer is not None

    @property
    def correct(self) -> bool:
        return (
            self.answer is not None
            and check_answer(extract_expression(self.answer), self.puzzle.numbers).ok
        )

    @property
    def value_key(self) -> str:
        """What the value cache knows this state by (what its evaluation prompt asks)."""
        if self.answer is not None:
            return f"answer {format_numbers(self.puzzle.numbers)}: {self.answer.strip()}"
        return f"numbers {format_numbers(self.numbers)}"


@dataclass(frozen=True)
class Attempt:
    """A method's result on one puzzle, and the checker's verdict on its answer."""

    puzzle: Puzzle
    answer: str
    verdict: Verdict

    @property
    def correct(self) -> bool:
        return self.verdict.ok


class Method(Protocol):
    """A way of solving puzzles with model calls."""

    @property
    def label(self) -> str: ...

    async def solve_all(self, puzzles: Sequence[Puzzle], client: Client) -> list[Attempt]: ...


def attempt_from(puzzle: Puzzle, states: Sequence[State]) -> Attempt:
    """The paper's rule: solved when any returned state holds a correct answer.

    The answer shown is that correct one, else the first finished state's, else none.
    """
    finished = [state for state in states if state.answer is not None]
    chosen = next((s for s in finished if s.correct), finished[0] if finished else None)
    text = chosen.answer if chosen is not None and chosen.answer is not None else ""
    return Attempt(puzzle, text, check_answer(extract_expression(text), puzzle.numbers))


def step_prompt(state: State) -> tuple[str, str]:
    """Return ``(kind, prompt)`` of the shared step from ``state``.

    With one number left the step is the final answer (following the steps); otherwise
    the model proposes next steps from the remaining numbers.
    """
    if len(state.numbers) <= 1:
        return "answer", answer_prompt(state.puzzle.numbers, state.steps)
    return "propose", propose_prompt(state.numbers)


def children_of(state: State, text: str) -> list[State]:
    """Return the states one step from ``state`` that the model's ``text`` describes."""
    if len(state.numbers) <= 1:
        return [State(state.puzzle, state.numbers, state.steps, text.strip())]
    return [State(state.puzzle, step.left, (*state.steps, step.line)) for step in parse_steps(text)]


async def expand(states: Sequence[State], client: Client, label: str) -> list[list[State]]:
    """Take the shared step from every open state (one sample each); return the children."""
    texts = await gather_all(
        client.ask(*step_prompt(state), 1, f"{state.puzzle.id}/{label}/{i}")
        for i, state in enumerate(states)
    )
    return [children_of(state, text[0]) for state, text in zip(states, texts, strict=True)]


@dataclass
class Evaluator:
    """The shared evaluation: ``samples`` judgements per state, scores summed.

    ``cache`` is the method's value cache (None: off): a state already valued in this run,
    in any puzzle, is not asked again.
    """

    client: Client
    samples: int
    cache: dict[str, float] | None = field(default_factory=dict)

    async def values(self, states: Sequence[State], label: str) -> list[float]:
        """Return the value of every state, asking once per state not yet valued."""
        if self.cache is None:
            return await gather_all(
                self._ask(state, f"{state.puzzle.id}/{label}/{i}") for i, state in enumerate(states)
            )
        asked: dict[str, int] = {}
        jobs: list[Coroutine[Any, Any, float]] = []
        for i, state in enumerate(states):
            key = state.value_key
            if (self.cache is not None and key in self.cache) or key in asked:
                continue
            asked[key] = len(jobs)
            jobs.append(self._ask(state, f"{state.puzzle.id}/{label}/{i}"))
        found = await gather_all(jobs)
        self.cache.update({key: found[index] for key, index in asked.items()})
        return [self.cache[state.value_key] for state in states]

    async def _ask(self, state: State, request_id: str) -> float:
        if state.answer is not None:
            kind, prompt = "judge", judge_prompt(state.puzzle.numbers, state.answer)
        else:
            kind, prompt = "evaluate", evaluate_prompt(state.numbers)
        texts = await self.client.ask(kind, prompt, self.samples, request_id)
        return sum(parse_judgement(text) for text in texts)


def majority_answer(texts: Sequence[str]) -> str:
    """Return the text whose expression is the most common (ties: the earliest)."""
    if not texts:
        return ""
    votes: Counter[str] = Counter()
    first: dict[str, str] = {}
    for text in texts:
        expression = extract_expression(text)
        if expression is None:
            continue
        key = "".join(expression.split())
        votes[key] += 1
        first.setdefault(key, text)
    if not votes:
        return texts[0]
    return first[votes.most_common(1)[0][0]]


@dataclass(frozen=True)
class Direct:
    """Answer in one go; with ``samples > 1``, a majority vote (self-consistency)."""

    samples: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return "io" if self.samples == 1 else f"self-consistency k={self.samples}"

    async def solve_all(self, puzzles: Sequence[Puzzle], client: Client) -> list[Attempt]:
        texts = await gather_all(
            client.ask("answer", answer_prompt(p.numbers), self.samples, f"{p.id}/answer")
            for p in puzzles
        )
        attempts = []
        for puzzle, samples in zip(puzzles, texts, strict=True):
            text = majority_answer(samples)
            attempts.append(
                Attempt(puzzle, text, check_answer(extract_expression(text), puzzle.numbers))
            )
        return attempts
