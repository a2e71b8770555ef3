"""The CacheSaver paper's three Game of 24 experiments, and one extra scenario.

Each scenario is a list of configurations (methods) run on the same puzzles, with the
saving the paper reports for it:

- ``sweep``: ToT-BFS hyperparameter search, width {5,3,1} x 4 steps x evaluations
  {3,1,2}: 9 configurations, in the paper's order; the paper saves about 6x;
- ``ablation``: Fleet of Agents with one part removed at a time: value-weighted
  resampling (``max_unique`` instead), backtracking (``backtrack=0``), selection (``k=0``);
  about 2.5x;
- ``benchmark``: FoA, ToT-BFS and GoT, which share their step and evaluation prompts;
  about 2x;
- ``methods`` (extra, not in the paper): io, self-consistency and the three searches.

Every configuration is one run (one pipeline) with one namespace shared by all puzzles,
``<scenario>``, as in the paper's code: within a run repeated questions get fresh samples;
a later run walks the same sample lists from the start and reuses what earlier ones paid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from pipelines.fleet import FleetOfAgents
from pipelines.methods import Direct, Method
from pipelines.search import GraphOfThoughts, TreeOfThoughts

__all__ = [
    "EXTRA_SCENARIOS",
    "PAPER_SCENARIOS",
    "SCENARIOS",
    "Scenario",
    "ablation",
    "benchmark",
    "build",
    "methods",
    "sweep",
]

PAPER_SCENARIOS = ("sweep", "ablation", "benchmark")
EXTRA_SCENARIOS = ("methods",)
SCENARIOS = PAPER_SCENARIOS + EXTRA_SCENARIOS

# The paper's configurations (its scripts' Game of 24 config for FoA, ToT and GoT).
PAPER_FOA = FleetOfAgents(agents=12, steps=12, k=1, backtrack=0.5, resampling="linear_filtered")
PAPER_TOT = TreeOfThoughts(width=5, steps=4, evaluations=3)
PAPER_GOT = GraphOfThoughts(selections=3, steps=4, evaluations=3, best=2)


@dataclass(frozen=True)
class Scenario:
    """A named list of methods to run on the same puzzles, and the paper's saving for it."""

    name: str
    title: str
    methods: tuple[Method, ...]
    paper_saving: float | None = None  # times cheaper, as the paper reports (None: extra)

    @property
    def namespace(self) -> str:
        """The one namespace of every run of this scenario (shared by all its puzzles)."""
        return self.name


def sweep(
    widths: tuple[int, ...] = (5, 3, 1),
    steps: tuple[int, ...] = (4,),
    evaluations: tuple[int, ...] = (3, 1, 2),
) -> Scenario:
    """ToT-BFS over width x steps x evaluations, in the paper's order (width outermost)."""
    chosen: tuple[Method, ...] = tuple(
        TreeOfThoughts(width=w, steps=s, evaluations=e)
        for w in widths
        for s in steps
        for e in evaluations
    )
    title = (
        f"Sweep: ToT-BFS width {_list(widths)} x steps {_list(steps)} x evaluations "
        f"{_list(evaluations)} ({len(chosen)} configurations)"
    )
    return Scenario("sweep", title, chosen, 6.0)


def ablation(base: FleetOfAgents = PAPER_FOA) -> Scenario:
    """FoA with one component removed at a time (the paper runs these three, not the full one)."""
    chosen: tuple[Method, ...] = (
        replace(base, resampling="max_unique", name="FoA without resampling"),
        replace(base, backtrack=0.0, name="FoA without backtracking"),
        replace(base, k=0, name="FoA without selection"),
    )
    return Scenario("ablation", f"Ablation: {base.label}, one part removed", chosen, 2.5)


def benchmark(
    foa: FleetOfAgents = PAPER_FOA,
    tot: TreeOfThoughts = PAPER_TOT,
    got: GraphOfThoughts = PAPER_GOT,
) -> Scenario:
    """The three searches the paper benchmarks, sharing step and evaluation prompts."""
    chosen: tuple[Method, ...] = (foa, tot, got)
    return Scenario("benchmark", "Benchmark: FoA vs ToT-BFS vs GoT", chosen, 2.0)


def methods(sc_samples: int = 10) -> Scenario:
    """Extra: io and self-consistency beside the three searches (not a paper experiment)."""
    chosen: tuple[Method, ...] = (Direct(1), Direct(sc_samples), PAPER_FOA, PAPER_TOT, PAPER_GOT)
    return Scenario("methods", "Extra: io, self-consistency, FoA, ToT-BFS, GoT", chosen, None)


def build(name: str) -> Scenario:
    """Return the scenario called ``name`` with its default grid."""
    builders: dict[str, Callable[[], Scenario]] = {
        "sweep": sweep,
        "ablation": ablation,
        "benchmark": benchmark,
        "methods": methods,
    }
    if name not in builders:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    return builders[name]()


def _list(values: tuple[int, ...]) -> str:
    return "{" + ",".join(str(v) for v in values) + "}"
