"""Reasoning methods for Game of 24; every model call goes through a cachesaver pipeline.

- `Direct`: ask for the answer ``samples`` times in one request and take the majority
  answer (``samples=1`` is plain input-output prompting, more is self-consistency);
- `TreeOfThoughts`: breadth-first search; at each level every open state asks for next
  steps (``proposals`` samples), every new state is judged (``evaluations`` samples,
  scores summed), and the best ``width`` states are kept; after ``depth`` levels the best
  state is turned into an answer.

Requests are issued in a fixed order (`gather_all` over lists built in a fixed order),
so the k-th request of a puzzle's namespace is the same in every run, and a replay from
the cache reproduces every decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cachesaver import SingleRequestModel
from pipelines.accounting import Ledger, sample_text
from pipelines.aio import gather_all
from pipelines.checker import Verdict, check_answer, extract_expression
from pipelines.prompts import (
    GameRequest,
    answer_prompt,
    evaluate_prompt,
    parse_judgement,
    parse_steps,
    propose_prompt,
)
from pipelines.puzzles import Puzzle

__all__ = ["Attempt", "Client", "Direct", "Method", "TreeOfThoughts", "majority_answer"]

TEMPERATURE = 0.7
MAX_TOKENS = {"propose": 200, "evaluate": 120, "answer": 60}


class Client:
    """Sends a method's requests through a pipeline and records every response."""

    def __init__(self, pipeline: SingleRequestModel, ledger: Ledger | None = None) -> None:
        self.pipeline = pipeline
        self.ledger = ledger if ledger is not None else Ledger()

    async def ask(
        self, kind: str, prompt: str, n: int, namespace: str, request_id: str
    ) -> list[str]:
        """Return the texts of ``n`` samples for ``prompt``."""
        request = GameRequest(
            prompt,
            kind=kind,
            temperature=TEMPERATURE,
            max_tokens=MAX_TOKENS[kind],
            n=n,
            namespace=namespace,
            request_id=request_id,
        )
        response = await self.pipeline.request(request)
        self.ledger.record(request, response)
        return [sample_text(sample) for sample in response.data]


@dataclass(frozen=True)
class Attempt:
    """A method's final answer to one puzzle, and the checker's verdict on it."""

    puzzle: Puzzle
    answer: str
    verdict: Verdict

    @property
    def correct(self) -> bool:
        return self.verdict.ok


class Method(Protocol):
    """A way of solving a puzzle with model calls."""

    @property
    def label(self) -> str: ...

    async def solve(self, puzzle: Puzzle, client: Client, namespace: str) -> Attempt: ...


def _attempt(puzzle: Puzzle, text: str) -> Attempt:
    return Attempt(puzzle, text, check_answer(extract_expression(text), puzzle.numbers))


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
        return "direct (io)" if self.samples == 1 else f"self-consistency k={self.samples}"

    async def solve(self, puzzle: Puzzle, client: Client, namespace: str) -> Attempt:
        texts = await client.ask(
            "answer", answer_prompt(puzzle.numbers), self.samples, namespace, f"{puzzle.id}/answer"
        )
        return _attempt(puzzle, majority_answer(texts))


@dataclass(frozen=True)
class _Node:
    numbers: tuple[int, ...]
    steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class TreeOfThoughts:
    """Breadth-first Tree-of-Thoughts search (see the module docstring).

    ``value_model=False`` removes the evaluator: states are kept in the order they were
    proposed. Each parameter must be at least 1.
    """

    width: int = 5
    depth: int = 3
    proposals: int = 1
    evaluations: int = 3
    value_model: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        for field_name in ("width", "depth", "proposals", "evaluations"):
            if getattr(self, field_name) < 1:
                raise ValueError(
                    f"{field_name} must be at least 1, got {getattr(self, field_name)}"
                )

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        text = f"tot w={self.width} d={self.depth} e={self.evaluations}"
        if self.proposals != 1:
            text += f" p={self.proposals}"
        return text if self.value_model else text + " no-value"

    async def solve(self, puzzle: Puzzle, client: Client, namespace: str) -> Attempt:
        frontier: list[tuple[_Node, float]] = [(_Node(puzzle.numbers), 0.0)]
        for level in range(1, self.depth + 1):
            open_nodes = [node for node, _ in frontier if len(node.numbers) > 1]
            if not open_nodes:
                break
            proposals = await gather_all(
                client.ask(
                    "propose",
                    propose_prompt(node.numbers),
                    self.proposals,
                    namespace,
                    f"{puzzle.id}/L{level}/propose{i}",
                )
                for i, node in enumerate(open_nodes)
            )
            children = _expand(open_nodes, proposals)
            if not children:
                break
            values = await self._values(children, client, namespace, f"{puzzle.id}/L{level}")
            finished = [(node, value) for node, value in frontier if len(node.numbers) <= 1]
            pool = finished + list(zip(children, values, strict=True))
            # sorted() is stable: equal values keep their order (proposal order).
            frontier = sorted(pool, key=lambda item: -item[1])[: self.width]
        best = frontier[0][0]
        texts = await client.ask(
            "answer",
            answer_prompt(puzzle.numbers, best.steps),
            1,
            namespace,
            f"{puzzle.id}/answer",
        )
        return _attempt(puzzle, texts[0])

    async def _values(
        self, children: list[_Node], client: Client, namespace: str, label: str
    ) -> list[float]:
        if not self.value_model:
            return [0.0] * len(children)
        judgements = await gather_all(
            client.ask(
                "evaluate",
                evaluate_prompt(node.numbers),
                self.evaluations,
                namespace,
                f"{label}/evaluate{i}",
            )
            for i, node in enumerate(children)
        )
        return [sum(parse_judgement(text) for text in texts) for texts in judgements]


def _expand(parents: list[_Node], proposals: Sequence[list[str]]) -> list[_Node]:
    """Return the new states, in proposal order, each distinct path once."""
    children: dict[tuple[str, ...], _Node] = {}
    for parent, texts in zip(parents, proposals, strict=True):
        for text in texts:
            for step in parse_steps(text):
                path = (*parent.steps, step.line)
                children.setdefault(path, _Node(step.left, path))
    return list(children.values())
