"""Fleet of Agents (Klein et al., 2025): a genetic-style particle search with LLM agents.

``agents`` agents per puzzle step in parallel for at most ``steps`` rounds. In a round:

1. **step**: every agent takes one step with the shared step prompt (one sample; it picks
   one of the proposed steps at random, keeping the others in the run's proposal buffer
   for the next agent at the same state, as the paper's code does);
2. a puzzle whose fleet holds a correct answer stops;
3. **backtracking**: the values of the states visited earlier are multiplied by
   ``backtrack`` (0 removes backtracking: only the newest states count), and states with
   too few steps left to finish (``min_steps``) are forgotten;
4. agents that finished wrong (or found no step) are replaced by states resampled from
   those visited;
5. **selection** every ``k`` rounds (0 removes it): every agent's state is valued with the
   shared evaluation (value cache on), added to the visited states, and the whole fleet is
   **resampled** from them in proportion to value (``linear_filtered``: states below half
   the best value are dropped; ``max_unique``, the ablation without value-weighted
   resampling: uniform over the distinct best states).

Random choices come from generators seeded by the puzzle, so runs are reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipelines.aio import gather_all
from pipelines.methods import (
    Attempt,
    Client,
    Evaluator,
    State,
    attempt_from,
    children_of,
    step_prompt,
)
from pipelines.puzzles import Puzzle

__all__ = ["RESAMPLING", "FleetOfAgents", "resample"]

RESAMPLING = ("linear", "linear_filtered", "max_unique")
_EPSILON = 1e-6
_Record = tuple[float, State]


def _weights(values: list[float], method: str) -> list[float]:
    if method == "linear_filtered":
        top = max(values)
        values = [v if v >= top * 0.5 else 0.0 for v in values]
    if method == "max_unique":
        top = max(values)
        return [1.0 if v == top else 0.0 for v in values]
    return [v + _EPSILON for v in values]


def resample(
    records: Sequence[_Record], count: int, method: str, rng: random.Random
) -> list[State]:
    """Draw ``count`` states from ``(value, state)`` records by ``method`` (with replacement)."""
    if method not in RESAMPLING:
        raise ValueError(f"resampling must be one of {', '.join(RESAMPLING)}; got {method!r}")
    if count <= 0 or not records:
        return []
    if method == "max_unique":
        distinct: dict[tuple[tuple[int, ...], tuple[str, ...], str | None], _Record] = {}
        for value, state in records:
            distinct.setdefault((state.numbers, state.steps, state.answer), (value, state))
        records = list(distinct.values())
    weights = _weights([value for value, _ in records], method)
    states = [state for _, state in records]
    return rng.choices(states, weights=weights, k=count)


@dataclass
class _Fleet:
    puzzle: Puzzle
    agents: list[State]
    rng: random.Random
    visited: list[_Record] = field(default_factory=list)
    solved: bool = False


@dataclass(frozen=True)
class FleetOfAgents:
    """Fleet of Agents (see the module docstring); defaults are the paper's Game of 24 ones."""

    agents: int = 12
    steps: int = 12
    k: int = 1
    backtrack: float = 0.5
    resampling: str = "linear_filtered"
    origin: float = 120.0
    min_steps: int = 4
    evaluations: int = 3
    value_cache: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        for name in ("agents", "steps", "evaluations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.k < 0 or self.min_steps < 0:
            raise ValueError(f"k and min_steps must be >= 0, got {self.k}, {self.min_steps}")
        if not 0.0 <= self.backtrack <= 1.0:
            raise ValueError(f"backtrack must be between 0 and 1, got {self.backtrack}")
        if self.resampling not in RESAMPLING:
            raise ValueError(
                f"resampling must be one of {', '.join(RESAMPLING)}; got {self.resampling!r}"
            )

    @property
    def label(self) -> str:
        return self.name or (
            f"FoA n={self.agents} s={self.steps} k={self.k} b={self.backtrack:g} {self.resampling}"
        )

    async def solve_all(self, puzzles: Sequence[Puzzle], client: Client) -> list[Attempt]:
        evaluator = Evaluator(client, self.evaluations, {} if self.value_cache else None)
        buffer: dict[str, list[str]] = {}
        fleets = [
            _Fleet(p, [State.root(p)] * self.agents, random.Random(f"foa {p.numbers} {p.rank}"))
            for p in puzzles
        ]
        for fleet in fleets:
            fleet.visited = [(self.origin, fleet.agents[0])]
        for step in range(self.steps):
            active = [f for f in fleets if not f.solved]
            if not active:
                break
            await self._step(active, client, buffer, step)
            remaining = self.steps - (step + 1)
            failed: dict[int, list[int]] = {}
            for fleet in active:
                if any(agent.correct for agent in fleet.agents):
                    fleet.solved = True
                    continue
                fleet.visited = [
                    (value * self.backtrack, state)
                    for value, state in fleet.visited
                    if remaining >= self.min_steps - len(state.steps)
                ]
                failed[id(fleet)] = [i for i, a in enumerate(fleet.agents) if _dead(a)]
                self._replace(fleet, failed[id(fleet)])
            select = step < self.steps - 1 and self.k and step % self.k == 0
            if select:
                await self._select([f for f in active if not f.solved], evaluator, failed, step)
        return [attempt_from(f.puzzle, f.agents) for f in fleets]

    async def _step(
        self, fleets: list[_Fleet], client: Client, buffer: dict[str, list[str]], step: int
    ) -> None:
        """Every agent takes one step: from the proposal buffer, or a fresh proposal."""
        available = {prompt: len(lines) for prompt, lines in buffer.items()}
        needs = []
        for fleet in fleets:
            for i, agent in enumerate(fleet.agents):
                if agent.finished:
                    continue
                prompt = step_prompt(agent)[1]
                if available.get(prompt, 0) > 0:
                    available[prompt] -= 1  # served from the buffer, oldest line first
                else:
                    needs.append((fleet, i))
        texts = await gather_all(
            client.ask(*step_prompt(f.agents[i]), 1, f"{f.puzzle.id}/s{step}/agent{i}")
            for f, i in needs
        )
        fresh = {(id(f), i): text[0] for (f, i), text in zip(needs, texts, strict=True)}
        for fleet in fleets:
            for i, agent in enumerate(fleet.agents):
                if agent.finished:
                    continue
                prompt = step_prompt(agent)[1]
                if (id(fleet), i) in fresh:
                    options = children_of(agent, fresh[(id(fleet), i)])
                    fleet.rng.shuffle(options)
                    buffer.setdefault(prompt, []).extend(
                        o.steps[-1] for o in options[1:] if not o.finished
                    )
                    fleet.agents[i] = options[0] if options else _stuck(agent)
                else:
                    fleet.agents[i] = children_of(agent, buffer[prompt].pop(0))[0]

    def _replace(self, fleet: _Fleet, failed: list[int]) -> None:
        """Replace agents that ended wrong by states resampled from the visited ones."""
        if not failed:
            return
        pool = fleet.visited or [(1.0, a) for a in fleet.agents]
        method = self.resampling if fleet.visited else "linear"
        for i, state in zip(failed, resample(pool, len(failed), method, fleet.rng), strict=True):
            fleet.agents[i] = state

    async def _select(
        self, fleets: list[_Fleet], evaluator: Evaluator, failed: dict[int, list[int]], step: int
    ) -> None:
        """Value every agent's state and resample the whole fleet from the visited states."""
        states = [agent for fleet in fleets for agent in fleet.agents]
        values = iter(await evaluator.values(states, f"s{step}/value"))
        for fleet in fleets:
            for i, agent in enumerate(fleet.agents):
                value = next(values)
                if i not in failed.get(id(fleet), []):
                    fleet.visited.append((value, agent))
            fleet.agents = resample(fleet.visited, self.agents, self.resampling, fleet.rng)


def _stuck(state: State) -> State:
    """An agent that found no usable step: a dead end (it finishes with no answer)."""
    return State(state.puzzle, state.numbers, state.steps, "")


def _dead(state: State) -> bool:
    return state.finished and not state.correct
