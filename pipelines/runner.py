"""Run a scenario in the paper's two arms, timing both.

For every configuration of a scenario:

- **with cachesaver**: one run (a new `OnlineAPI`; with a real provider, a new drop-in
  client: `pipelines.providers`) over the scenario's shared cache
  (``<cache>/cachesaver``), batched (``batch_size``, ``timeout``); later configurations
  reuse the samples earlier ones paid for;
- **without cachesaver** (the baseline): one run over a fresh cache of its own
  (``<cache>/baseline/<nn>``) with batch size 1, so nothing is shared with any other run
  and nothing is merged; the paper runs its baseline the same way. The cache only makes a
  second invocation a free replay.

Both arms keep the method's own value cache (part of the method, as in the paper). Each
arm is timed (wall-clock of the method's work, from the first request to the last).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from cachesaver import OnlineAPI, Request, Response, Stats
from pipelines.accounting import CallBook, Ledger, Usage
from pipelines.methods import Attempt, Client, Method
from pipelines.progress import Progress
from pipelines.puzzles import Puzzle
from pipelines.scenarios import Scenario

__all__ = [
    "ArmResult",
    "ConfigResult",
    "RunSettings",
    "ScenarioResult",
    "add_stats",
    "run_arm",
    "run_scenario",
]

ModelFactory = Callable[[], object]


class RunPipeline(Protocol):
    """What one run of a method talks to: an `OnlineAPI`, or a provider's drop-in run."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...

    async def request(self, request: Request) -> Response: ...

    def stats(self) -> Stats: ...


@dataclass(frozen=True)
class RunSettings:
    """How the two arms are set up."""

    batch_size: int = 300  # the paper's cachesaver arm
    timeout: float = 0.02  # seconds a batch waits to fill (the paper's 2 s, time-scaled)
    progress: bool = False
    keep_records: bool = False  # keep every (request, response) in the ledgers
    baseline: bool = True  # run the baseline arm (else: priced from the cachesaver arm)


@dataclass(frozen=True)
class ArmResult:
    """One run of one configuration: its attempts, ledger, pipeline stats and time."""

    attempts: list[Attempt]
    ledger: Ledger
    stats: Stats
    seconds: float
    model_seconds: float = 0.0  # simulated model time of the calls made (unscaled)

    @property
    def accuracy(self) -> float:
        return sum(a.correct for a in self.attempts) / len(self.attempts) if self.attempts else 0.0

    @property
    def requests_per_second(self) -> float:
        return self.ledger.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ConfigResult:
    """A configuration in both arms (``baseline`` is None when that arm was not run)."""

    label: str
    cached: ArmResult
    baseline: ArmResult | None

    @property
    def accuracy(self) -> float:
        return self.cached.accuracy

    @property
    def without(self) -> Usage:
        """What this configuration costs without cachesaver (the paper's counting)."""
        source = self.baseline if self.baseline is not None else self.cached
        return source.ledger.baseline

    @property
    def with_(self) -> Usage:
        """What it costs with cachesaver after the earlier configurations (from an empty
        cache: the same on a replay); equals the flag-based count on a fresh cache."""
        return self.cached.ledger.charged

    @property
    def paid_now(self) -> Usage:
        """What this invocation paid in the cachesaver arm (from the flags; 0 on a replay)."""
        return self.cached.ledger.paid


@dataclass(frozen=True)
class ScenarioResult:
    """Every configuration of a scenario, with totals."""

    scenario: Scenario
    puzzles: list[Puzzle]
    results: list[ConfigResult]

    @property
    def without(self) -> Usage:
        return Usage.total(r.without for r in self.results)

    @property
    def with_(self) -> Usage:
        return Usage.total(r.with_ for r in self.results)

    @property
    def stats(self) -> Stats:
        """The cachesaver arm's pipeline statistics, summed over the configurations."""
        return add_stats(r.cached.stats for r in self.results)

    @property
    def model_calls(self) -> int:
        """Model calls made in this invocation, both arms (0 for a full replay)."""
        arms = [r.cached for r in self.results] + [r.baseline for r in self.results if r.baseline]
        return sum(arm.stats.model_calls for arm in arms)

    @property
    def accuracy(self) -> float:
        return sum(r.accuracy for r in self.results) / len(self.results) if self.results else 0.0

    def seconds(self, arm: str) -> float:
        """Total wall-clock of ``arm`` ("with" or "without"; None-safe)."""
        return sum(a.seconds for a in self._arms(arm))

    def model_seconds(self, arm: str) -> float:
        """Total simulated model time of ``arm``'s calls (0 for real providers)."""
        return sum(a.model_seconds for a in self._arms(arm))

    def requests(self, arm: str) -> int:
        return sum(a.ledger.requests for a in self._arms(arm))

    def _arms(self, arm: str) -> list[ArmResult]:
        if arm == "with":
            return [r.cached for r in self.results]
        return [r.baseline for r in self.results if r.baseline is not None]


def add_stats(stats: Iterable[Stats]) -> Stats:
    """Return the field-by-field sum of several `Stats`."""
    total = {f.name: 0 for f in dataclasses.fields(Stats)}
    for item in stats:
        for name in total:
            total[name] += getattr(item, name)
    return Stats(**total)


async def run_arm(
    method: Method,
    puzzles: Sequence[Puzzle],
    model: object,
    cache: str | os.PathLike[str],
    namespace: str,
    batch_size: int,
    timeout: float,
    keep_records: bool = False,
    book: CallBook | None = None,
) -> ArmResult:
    """Solve every puzzle with ``method`` in one new pipeline over ``cache``.

    ``book`` (shared by the runs of a scenario) says which model calls and samples were
    already charged for, so a later run pays only for what is new to the scenario.
    """
    ledger = Ledger(keep=keep_records, book=book if book is not None else CallBook())
    cold_start = getattr(model, "cold_start", None)
    if cold_start is not None:
        cold_start()  # every run starts cold, as the paper's (one process per run)
    busy = float(getattr(model, "simulated_seconds", 0.0))
    pipeline: RunPipeline
    open_run = getattr(model, "open_run", None)
    if open_run is not None:  # a real provider: its drop-in client is the pipeline
        pipeline = open_run(cache, namespace, batch_size, timeout)
    else:
        pipeline = OnlineAPI(model, cache=cache, batch_size=batch_size, timeout=timeout)
    async with pipeline:
        start = time.perf_counter()
        attempts = await method.solve_all(puzzles, Client(pipeline, namespace, ledger))
        seconds = time.perf_counter() - start
    busy = float(getattr(model, "simulated_seconds", 0.0)) - busy
    return ArmResult(attempts, ledger, pipeline.stats(), seconds, busy)


async def run_scenario(
    scenario: Scenario,
    puzzles: Sequence[Puzzle],
    model_factory: ModelFactory,
    cache: str | os.PathLike[str],
    settings: RunSettings | None = None,
) -> ScenarioResult:
    """Run every configuration of ``scenario`` on ``puzzles`` in both arms.

    ``model_factory`` makes a model: one serves every cachesaver-arm run (so the simulated
    model keeps counting its draws across the shared cache), and each baseline run gets a
    new one (a fresh model for a fresh cache, as a fresh process would be).
    """
    settings = settings or RunSettings()
    shared_model = model_factory()
    book = CallBook()
    results: list[ConfigResult] = []
    arms = 2 if settings.baseline else 1
    bar = await Progress.open(
        settings.progress, total=arms * len(scenario.methods), desc=scenario.name, unit="run"
    )
    try:
        for index, method in enumerate(scenario.methods):
            cached = await run_arm(
                method,
                puzzles,
                shared_model,
                os.path.join(cache, "cachesaver"),
                scenario.namespace,
                settings.batch_size,
                settings.timeout,
                settings.keep_records,
                book,
            )
            await bar.advance()
            baseline = None
            if settings.baseline:
                fresh = model_factory()
                try:
                    baseline = await run_arm(
                        method,
                        puzzles,
                        fresh,
                        os.path.join(cache, "baseline", f"{index + 1:02d}"),
                        scenario.namespace,
                        1,
                        0.0,
                        settings.keep_records,
                    )
                finally:
                    await _close(fresh)
                await bar.advance()
            results.append(ConfigResult(method.label, cached, baseline))
    finally:
        await bar.close()
        await _close(shared_model)
    return ScenarioResult(scenario, list(puzzles), results)


async def _close(model: object) -> None:
    close = getattr(model, "aclose", None)
    if close is not None:
        await close()
