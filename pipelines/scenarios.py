"""The three experiments: a hyperparameter sweep, an ablation and a benchmark.

Each scenario is a list of methods (configurations) run on the same puzzles. Every
method is one run: a new `OnlineAPI` pipeline over the shared cache. Inside a run each
puzzle has its own namespace, ``game24/<puzzle id>``, so:

- within a run, repeated questions about a puzzle get fresh, independent samples;
- a later run (another configuration) walks the same sample lists from the start and
  reuses every sample an earlier run already paid for;
- running the whole scenario again replays it exactly, with zero model calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from pipelines.methods import Direct, Method, TreeOfThoughts
from pipelines.puzzles import Puzzle

__all__ = [
    "BENCHMARK_METHODS",
    "SCENARIOS",
    "Scenario",
    "ablation",
    "benchmark",
    "namespace_for",
    "sweep",
]

SCENARIOS = ("sweep", "ablation", "benchmark")
BENCHMARK_METHODS = ("io", "sc", "tot", "greedy")
DEFAULT_TOT = TreeOfThoughts(width=5, depth=3, proposals=1, evaluations=3)


@dataclass(frozen=True)
class Scenario:
    """A named list of methods to run on the same puzzles."""

    name: str
    title: str
    methods: tuple[Method, ...]


def namespace_for(puzzle: Puzzle) -> str:
    """Return the namespace of a puzzle: the same in every run and every method."""
    return f"game24/{puzzle.id}"


def sweep(
    widths: Sequence[int] = (1, 3, 5),
    depths: Sequence[int] = (2, 3),
    evaluations: Sequence[int] = (1, 2, 3),
) -> Scenario:
    """Tree of Thoughts over the grid width x depth x evaluations."""
    methods = tuple(
        TreeOfThoughts(width=w, depth=d, evaluations=e)
        for w in widths
        for d in depths
        for e in evaluations
    )
    title = (
        f"Hyperparameter sweep: Tree of Thoughts, width {_list(widths)} x depth "
        f"{_list(depths)} x evaluations {_list(evaluations)}"
    )
    return Scenario("sweep", title, methods)


def ablation(base: TreeOfThoughts = DEFAULT_TOT) -> Scenario:
    """The full Tree of Thoughts, then one component removed at a time."""
    methods: tuple[Method, ...] = (
        replace(base, name="full"),
        replace(base, value_model=False, name="no value model"),
        replace(base, evaluations=1, name="single evaluation sample"),
        replace(base, width=1, name="no breadth (width 1)"),
    )
    title = f"Ablation: {base.label}, one component removed at a time"
    return Scenario("ablation", title, methods)


def benchmark(
    sc_samples: int = 10,
    tot: TreeOfThoughts = DEFAULT_TOT,
    methods: Sequence[str] = ("io", "sc", "tot"),
) -> Scenario:
    """Several methods on the same puzzles (names from `BENCHMARK_METHODS`).

    ``io`` answers once, ``sc`` votes over ``sc_samples`` answers, ``tot`` is the given
    Tree of Thoughts and ``greedy`` the same search keeping one state per level.
    """
    unknown = [name for name in methods if name not in BENCHMARK_METHODS]
    if unknown or not methods:
        raise ValueError(
            f"unknown benchmark methods {unknown}; choose from {', '.join(BENCHMARK_METHODS)}"
        )
    built: dict[str, Method] = {
        "io": Direct(1),
        "sc": Direct(sc_samples),
        "tot": tot,
        "greedy": replace(tot, width=1, name=f"greedy ({replace(tot, width=1).label})"),
    }
    chosen = tuple(built[name] for name in methods)
    title = "Benchmark: " + ", ".join(m.label for m in chosen)
    return Scenario("benchmark", title, chosen)


def _list(values: Sequence[int]) -> str:
    return "{" + ",".join(str(v) for v in values) + "}"
