"""Tree of Thoughts (breadth-first) and Graph of Thoughts, over the shared step and value.

Both follow their papers' descriptions as the CacheSaver paper runs them on Game of 24:

- `TreeOfThoughts` (Yao et al., 2023, BFS): for ``steps`` rounds, every kept state takes
  the shared step (one proposal listing several next steps; with one number left, the
  final answer), every new state is valued (``evaluations`` judgements, scores summed,
  value cache on), and the ``width`` best are kept. A puzzle stops early once a kept state
  is solved.
- `GraphOfThoughts` (Besta et al., 2024): thoughts are vertices and operations make new
  ones: *generate* (the shared step), *aggregate* (the model merges a state's candidate
  steps into the ``selections`` most promising ones, one call per state), *refine* (the
  model checks each finished answer and corrects it, a new vertex beside the original),
  *score* (the shared evaluation) and *keep best* (``best`` vertices survive a round).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.aio import gather_all
from pipelines.methods import (
    Attempt,
    Client,
    Evaluator,
    State,
    attempt_from,
    children_of,
    expand,
    step_prompt,
)
from pipelines.prompts import aggregate_prompt, parse_choices, refine_prompt
from pipelines.puzzles import Puzzle

__all__ = ["GraphOfThoughts", "TreeOfThoughts"]


def _check_positive(method: object, *names: str) -> None:
    for name in names:
        value = getattr(method, name)
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def _keep_best(pool: list[tuple[State, float]], count: int) -> list[State]:
    # sorted() is stable: equal values keep their order (issue order), so ties are fixed.
    return [state for state, _ in sorted(pool, key=lambda item: -item[1])[:count]]


@dataclass(frozen=True)
class TreeOfThoughts:
    """Breadth-first Tree of Thoughts (see the module docstring)."""

    width: int = 5
    steps: int = 4
    evaluations: int = 3
    value_cache: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        _check_positive(self, "width", "steps", "evaluations")

    @property
    def label(self) -> str:
        return self.name or f"ToT-BFS w={self.width} s={self.steps} e={self.evaluations}"

    async def solve_all(self, puzzles: Sequence[Puzzle], client: Client) -> list[Attempt]:
        evaluator = Evaluator(client, self.evaluations, {} if self.value_cache else None)
        frontiers = {p: [State.root(p)] for p in puzzles}
        open_puzzles = list(puzzles)
        for step in range(self.steps):
            parents = [(p, s) for p in open_puzzles for s in frontiers[p] if not s.finished]
            children = await expand([s for _, s in parents], client, f"s{step}")
            proposals: dict[Puzzle, list[State]] = {p: [] for p in open_puzzles}
            for (puzzle, _), kids in zip(parents, children, strict=True):
                proposals[puzzle].extend(kids)
            open_puzzles = [p for p in open_puzzles if proposals[p]]
            pool = [s for p in open_puzzles for s in proposals[p]]
            values = dict(
                zip(map(id, pool), await evaluator.values(pool, f"s{step}/value"), strict=True)
            )
            for puzzle in open_puzzles:
                scored = [(s, values[id(s)]) for s in proposals[puzzle]]
                frontiers[puzzle] = _keep_best(scored, self.width)
            open_puzzles = [p for p in open_puzzles if not any(s.correct for s in frontiers[p])]
            if not open_puzzles:
                break
        return [attempt_from(p, frontiers[p]) for p in puzzles]


@dataclass(frozen=True)
class GraphOfThoughts:
    """Graph of Thoughts: generate, aggregate, refine, score, keep best (module docstring)."""

    selections: int = 3
    steps: int = 4
    evaluations: int = 3
    best: int = 2
    value_cache: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        _check_positive(self, "selections", "steps", "evaluations", "best")

    @property
    def label(self) -> str:
        return self.name or (
            f"GoT k={self.selections} s={self.steps} e={self.evaluations} b={self.best}"
        )

    async def solve_all(self, puzzles: Sequence[Puzzle], client: Client) -> list[Attempt]:
        evaluator = Evaluator(client, self.evaluations, {} if self.value_cache else None)
        kept = {p: [State.root(p)] for p in puzzles}
        open_puzzles = list(puzzles)
        for step in range(self.steps):
            parents = [s for p in open_puzzles for s in kept[p] if not s.finished]
            generated = await expand(parents, client, f"s{step}")
            merged = await gather_all(
                self._aggregate(state, kids, client, f"{state.puzzle.id}/s{step}/aggregate/{i}")
                for i, (state, kids) in enumerate(zip(parents, generated, strict=True))
            )
            refined = await self._refine(
                [kid for kids in merged for kid in kids if kid.finished], client, f"s{step}"
            )
            pool = [kid for kids in merged for kid in kids] + refined
            values = dict(
                zip(map(id, pool), await evaluator.values(pool, f"s{step}/value"), strict=True)
            )
            for puzzle in open_puzzles:
                scored = [(s, values[id(s)]) for s in pool if s.puzzle == puzzle]
                if scored:
                    kept[puzzle] = _keep_best(scored, self.best)
            open_puzzles = [
                p
                for p in open_puzzles
                if any(s.puzzle == p for s in pool) and not any(s.correct for s in kept[p])
            ]
            if not open_puzzles:
                break
        return [attempt_from(p, kept[p]) for p in puzzles]

    async def _aggregate(
        self, state: State, kids: list[State], client: Client, request_id: str
    ) -> list[State]:
        """Merge a state's candidate steps into the most promising few (one model call)."""
        if len(kids) <= self.selections or step_prompt(state)[0] == "answer":
            return kids
        lines = [kid.steps[-1] for kid in kids]
        texts = await client.ask(
            "aggregate", aggregate_prompt(state.numbers, lines, self.selections), 1, request_id
        )
        return [kids[k] for k in parse_choices(texts[0], len(kids))[: self.selections]]

    async def _refine(self, finished: list[State], client: Client, label: str) -> list[State]:
        """Check every new answer and add the model's corrected version as a new vertex."""
        texts = await gather_all(
            client.ask(
                "refine",
                refine_prompt(s.puzzle.numbers, s.steps, s.answer or ""),
                1,
                f"{s.puzzle.id}/{label}/refine/{i}",
            )
            for i, s in enumerate(finished)
        )
        refined = []
        for state, text in zip(finished, texts, strict=True):
            child = children_of(State(state.puzzle, state.numbers, state.steps), text[0])[0]
            if child.answer != state.answer:
                refined.append(child)
        return refined
