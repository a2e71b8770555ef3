"""Run a scenario: every method is one run (one `OnlineAPI`) over the shared cache."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cachesaver import OnlineAPI, Stats
from pipelines.accounting import Ledger, Usage
from pipelines.aio import gather_all
from pipelines.methods import Attempt, Client, Method
from pipelines.progress import Progress
from pipelines.puzzles import Puzzle
from pipelines.scenarios import Scenario, namespace_for

__all__ = [
    "MethodResult",
    "RunSettings",
    "ScenarioResult",
    "add_stats",
    "run_method",
    "run_scenario",
]


@dataclass(frozen=True)
class RunSettings:
    """How the pipelines are set up and how much runs at once."""

    batch_size: int = 64
    timeout: float = 0.01
    concurrency: int = 16  # puzzles in flight per run
    progress: bool = False
    keep_records: bool = False  # keep every (request, response) in the ledgers


@dataclass(frozen=True)
class MethodResult:
    """One run: a method's attempts on every puzzle, its ledger and its pipeline's stats."""

    label: str
    attempts: list[Attempt]
    ledger: Ledger
    stats: Stats

    @property
    def accuracy(self) -> float:
        return sum(a.correct for a in self.attempts) / len(self.attempts) if self.attempts else 0.0


@dataclass(frozen=True)
class ScenarioResult:
    """Every run of a scenario, with totals."""

    scenario: Scenario
    puzzles: list[Puzzle]
    results: list[MethodResult]

    @property
    def baseline(self) -> Usage:
        """What the model would have been asked without cachesaver."""
        return Usage.total(r.ledger.baseline for r in self.results)

    @property
    def paid(self) -> Usage:
        """What was actually paid, from the per-sample flags."""
        return Usage.total(r.ledger.paid for r in self.results)

    @property
    def stats(self) -> Stats:
        """The pipelines' statistics, summed over the runs."""
        return add_stats(r.stats for r in self.results)

    @property
    def accuracy(self) -> float:
        return sum(r.accuracy for r in self.results) / len(self.results) if self.results else 0.0


def add_stats(stats: Iterable[Stats]) -> Stats:
    """Return the field-by-field sum of several `Stats`."""
    total = {f.name: 0 for f in dataclasses.fields(Stats)}
    for item in stats:
        for name in total:
            total[name] += getattr(item, name)
    return Stats(**total)


async def run_method(
    method: Method,
    puzzles: Sequence[Puzzle],
    model: object,
    cache: str | os.PathLike[str],
    settings: RunSettings,
    progress: Progress | None = None,
) -> MethodResult:
    """Solve every puzzle with ``method`` in one new pipeline over ``cache``."""
    ledger = Ledger(keep=settings.keep_records)
    limit = asyncio.Semaphore(settings.concurrency)
    async with OnlineAPI(
        model, cache=cache, batch_size=settings.batch_size, timeout=settings.timeout
    ) as pipeline:
        client = Client(pipeline, ledger)

        async def solve(puzzle: Puzzle) -> Attempt:
            async with limit:
                attempt = await method.solve(puzzle, client, namespace_for(puzzle))
            if progress is not None:
                await progress.advance()
            return attempt

        attempts = await gather_all(solve(p) for p in puzzles)
    return MethodResult(method.label, attempts, ledger, pipeline.stats())


async def run_scenario(
    scenario: Scenario,
    puzzles: Sequence[Puzzle],
    model: object,
    cache: str | os.PathLike[str],
    settings: RunSettings | None = None,
) -> ScenarioResult:
    """Run every method of ``scenario`` on ``puzzles``, one after the other."""
    settings = settings or RunSettings()
    results: list[MethodResult] = []
    outer = await Progress.open(
        settings.progress, total=len(scenario.methods), desc=scenario.name, unit="config"
    )
    try:
        for method in scenario.methods:
            inner = await Progress.open(
                settings.progress, total=len(puzzles), desc=method.label, unit="puzzle", leave=False
            )
            try:
                results.append(await run_method(method, puzzles, model, cache, settings, inner))
            finally:
                await inner.close()
            await outer.advance()
    finally:
        await outer.close()
    return ScenarioResult(scenario, list(puzzles), results)
