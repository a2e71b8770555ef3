"""The paper's scenarios: grids, namespaces, counting rules, both arms, replay, methods."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cachesaver import OnlineAPI, Request, Response
from cachesaver.testing import InjectedFailure
from pipelines.accounting import Prices, Usage, sample_tokens
from pipelines.aio import gather_all
from pipelines.fleet import FleetOfAgents, resample
from pipelines.latency import LatencyModel, LatencyProfile
from pipelines.methods import Client, Direct, State
from pipelines.puzzles import load_puzzles
from pipelines.report import format_report, without_timing
from pipelines.runner import RunSettings, ScenarioResult, run_scenario
from pipelines.scenarios import Scenario, ablation, benchmark, build, sweep
from pipelines.search import GraphOfThoughts, TreeOfThoughts
from pipelines.simulated import simulated_model

PUZZLES = load_puzzles(3)
SETTINGS = RunSettings(batch_size=300, timeout=0.0, keep_records=True)
PRICES = Prices()
SMALL_FOA = FleetOfAgents(agents=4, steps=6)
SMALL_TOT = TreeOfThoughts(width=2, steps=4, evaluations=2)
SMALL_GOT = GraphOfThoughts(selections=2, steps=4, evaluations=2, best=2)


class Counting:
    """Makes models (simulated, no waiting) and counts every model call they receive."""

    def __init__(self, seed: int = 0, time_scale: float = 0.0) -> None:
        self.seed = seed
        self.time_scale = time_scale
        self.models: list[LatencyModel] = []

    def __call__(self) -> LatencyModel:
        model = LatencyModel(
            simulated_model(self.seed),
            LatencyProfile(overhead=0.001, per_token=0.0),
            self.time_scale,
        )
        self.models.append(model)
        return model

    @property
    def calls(self) -> int:
        return sum(model.calls for model in self.models)


def small_scenarios() -> list[Scenario]:
    return [
        sweep(widths=(2, 1), evaluations=(2, 1)),
        ablation(SMALL_FOA),
        benchmark(SMALL_FOA, SMALL_TOT, SMALL_GOT),
    ]


async def run(
    scenario: Scenario, cache: Path, factory: Counting | None = None, **options: Any
) -> ScenarioResult:
    settings = replace(SETTINGS, **options)
    return await run_scenario(scenario, PUZZLES, factory or Counting(), cache, settings)


def test_paper_scenarios_have_the_papers_grids_and_savings() -> None:
    """Sweep 9 ToT configurations in the paper's order; FoA minus one part; FoA/ToT/GoT."""
    grid = [(m.width, m.steps, m.evaluations) for m in sweep().methods]  # type: ignore[attr-defined]
    assert grid == [(w, 4, e) for w in (5, 3, 1) for e in (3, 1, 2)]
    foa = ablation().methods
    assert [(m.resampling, m.backtrack, m.k) for m in foa] == [  # type: ignore[attr-defined]
        ("max_unique", 0.5, 1),
        ("linear_filtered", 0.0, 1),
        ("linear_filtered", 0.5, 0),
    ]
    kinds = [type(m).__name__ for m in benchmark().methods]
    assert kinds == ["FleetOfAgents", "TreeOfThoughts", "GraphOfThoughts"]
    assert [build(n).paper_saving for n in ("sweep", "ablation", "benchmark")] == [6.0, 2.5, 2.0]
    assert build("methods").paper_saving is None
    with pytest.raises(ValueError, match="unknown scenario"):
        build("nope")


@pytest.mark.parametrize("index", [0, 1, 2], ids=["sweep", "ablation", "benchmark"])
async def test_counting_follows_the_papers_rules(tmp_path: Path, index: int) -> None:
    """One namespace per run; the baseline pays every sample's prompt; with = the flags."""
    scenario = small_scenarios()[index]
    result = await run(scenario, tmp_path)
    for config in result.results:
        assert config.baseline is not None
        for arm in (config.cached, config.baseline):
            assert {req.namespace for req, _ in arm.ledger.records} == {scenario.namespace}
        responses = [resp for _, resp in config.baseline.ledger.records]
        samples = [s for r in responses for s in r.data]
        assert config.without == Usage(
            len(responses),
            sum(sample_tokens(s)[0] for s in samples),
            sum(sample_tokens(s)[1] for s in samples),
        )
        assert config.baseline.stats.cached == 0  # a fresh cache, batch size 1: nothing reused
        assert config.baseline.stats.batches == config.baseline.stats.model_calls
        # on a fresh cache, the stamp-based bill equals the flag-based one
        assert config.with_ == config.paid_now
        flags = [
            (s, c, d)
            for _, r in config.cached.ledger.records
            for s, c, d in zip(r.data, r.cached or [], r.duplicated or [], strict=True)
        ]
        assert config.paid_now == Usage(
            sum(not c and not d for _, c, d in flags),
            sum(sample_tokens(s)[0] for s, c, d in flags if not c and not d),
            sum(sample_tokens(s)[1] for s, c, _ in flags if not c),
        )
        assert config.paid_now.calls == config.cached.stats.model_calls


async def test_both_arms_make_the_same_decisions(tmp_path: Path) -> None:
    """The baseline arm draws the same samples, so its answers and requests are the same."""
    result = await run(small_scenarios()[2], tmp_path)
    for config in result.results:
        assert config.baseline is not None
        assert config.baseline.attempts == config.cached.attempts
        assert config.baseline.ledger.baseline == config.cached.ledger.baseline


async def test_a_second_run_is_a_free_replay_with_the_same_report(tmp_path: Path) -> None:
    """Run twice on one cache: no model call the second time, the same tables."""
    scenario = small_scenarios()[2]
    first = await run(scenario, tmp_path)
    counting = Counting()
    second = await run(scenario, tmp_path, counting)
    assert counting.calls == 0 and second.model_calls == 0
    assert [c.cached.attempts for c in first.results] == [c.cached.attempts for c in second.results]
    report_one, report_two = format_report(first, PRICES), format_report(second, PRICES)
    assert without_timing(report_one) == without_timing(report_two)
    assert "free, exact replay" in report_two and "free, exact replay" not in report_one


async def test_results_do_not_depend_on_batching_or_latency(tmp_path: Path) -> None:
    """Batch size, timeout and latency never change a decision (merging changes prompts paid)."""
    scenario = small_scenarios()[1]
    one = await run(scenario, tmp_path / "a", batch_size=1, baseline=False)
    two = await run(
        scenario, tmp_path / "b", Counting(time_scale=0.001), timeout=0.002, baseline=False
    )
    assert [c.cached.attempts for c in one.results] == [c.cached.attempts for c in two.results]
    completions = [[c.with_.completion_tokens for c in r.results] for r in (one, two)]
    assert completions[0] == completions[1]
    assert [c.with_.calls for c in one.results] > [c.with_.calls for c in two.results]  # no merging
    assert [c.without for c in one.results] == [c.without for c in two.results]


async def test_later_configurations_reuse_earlier_samples(tmp_path: Path) -> None:
    """In the sweep, configurations after the first pay far less than their baseline."""
    result = await run(small_scenarios()[0], tmp_path, baseline=False)
    first, *rest = result.results
    assert first.with_.cost(PRICES) > 0
    assert sum(c.with_.cost(PRICES) for c in rest) < 0.5 * sum(c.without.cost(PRICES) for c in rest)


async def test_within_a_run_repeated_questions_get_fresh_samples(tmp_path: Path) -> None:
    """Within one run (one namespace) no request is served from another request's samples."""
    result = await run(benchmark(SMALL_FOA, SMALL_TOT, SMALL_GOT), tmp_path, baseline=False)
    first = result.results[0]
    prompts = Counter(req.prompt for req, _ in first.cached.ledger.records)
    assert max(prompts.values()) > 1  # FoA asks some questions several times ...
    assert first.cached.stats.cached == 0  # ... and each time gets new samples


async def test_value_cache_values_each_state_once_per_run(tmp_path: Path) -> None:
    """With the value cache on, no state is evaluated twice in a run; off, some are."""

    def evaluations(result: ScenarioResult) -> Counter[Any]:
        return Counter(
            r.prompt
            for r, _ in result.results[0].cached.ledger.records
            if getattr(r, "kind", "") in ("evaluate", "judge")
        )

    on = await run(Scenario("x", "x", (SMALL_TOT,)), tmp_path / "on", baseline=False)
    off = await run(
        Scenario("x", "x", (replace(SMALL_TOT, value_cache=False),)),
        tmp_path / "off",
        baseline=False,
    )
    assert max(evaluations(on).values()) == 1
    assert max(evaluations(off).values()) > 1


async def test_methods_share_step_and_evaluation_prompts(tmp_path: Path) -> None:
    """FoA, ToT and GoT ask the same propose and evaluate prompts; GoT aggregates and refines."""
    result = await run(benchmark(SMALL_FOA, SMALL_TOT, SMALL_GOT), tmp_path, baseline=False)
    asked = [{(r.kind, r.prompt) for r, _ in c.cached.ledger.records} for c in result.results]
    shared = asked[0] & asked[1] & asked[2]
    assert {kind for kind, _ in shared} >= {"propose", "evaluate"}
    assert {kind for kind, _ in asked[2]} >= {"aggregate", "refine"}
    assert result.results[1].with_.cost(PRICES) < result.results[1].without.cost(PRICES)


def test_resampling_rules() -> None:
    """linear_filtered drops states below half the best; max_unique picks among the best only."""
    puzzle = PUZZLES[0]
    states = [State(puzzle, (n,)) for n in (1, 2, 3)]
    rng = random.Random(0)
    picks = resample(
        [(10.0, states[0]), (4.0, states[1]), (6.0, states[2])], 200, "linear_filtered", rng
    )
    assert states[1] not in picks and {states[0], states[2]} <= set(picks)
    picks = resample([(5.0, states[0]), (5.0, states[0]), (9.0, states[2])], 50, "max_unique", rng)
    assert set(picks) == {states[2]}
    assert resample([], 3, "linear", rng) == []
    with pytest.raises(ValueError, match="resampling"):
        resample([(1.0, states[0])], 1, "magic", rng)


def test_invalid_method_parameters_are_refused() -> None:
    """Zero widths, steps, agents or evaluations, and bad FoA settings, are refused."""
    for build_bad in (
        lambda: TreeOfThoughts(width=0),
        lambda: GraphOfThoughts(best=0),
        lambda: FleetOfAgents(agents=0),
        lambda: FleetOfAgents(backtrack=1.5),
        lambda: FleetOfAgents(resampling="magic"),
        lambda: Direct(0),
    ):
        with pytest.raises(ValueError):
            build_bad()


class Failing:
    """A model that fails on the n-th call."""

    def __init__(self, fail_at: int) -> None:
        self.inner = simulated_model(0)
        self.count = 0
        self.fail_at = fail_at

    @property
    def identity(self) -> Any:
        return self.inner.identity

    async def request(self, request: Request) -> Response:
        self.count += 1
        if self.count == self.fail_at:
            raise InjectedFailure("the model is down")
        return await self.inner.request(request)


async def test_a_model_error_stops_the_run_and_leaves_no_task_behind(tmp_path: Path) -> None:
    """A failing model call surfaces as the run's error; no request task keeps running."""
    with pytest.raises(InjectedFailure):
        await run_scenario(small_scenarios()[2], PUZZLES, lambda: Failing(5), tmp_path, SETTINGS)
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []


async def test_gather_all_cancels_the_rest_on_failure() -> None:
    """When one coroutine fails, gather_all cancels and awaits the others before raising."""
    cancelled = asyncio.Event()

    async def slow() -> int:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 0

    async def bad() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await gather_all([slow(), bad()])
    assert cancelled.is_set()


async def test_direct_methods_answer_every_puzzle(tmp_path: Path) -> None:
    """io and self-consistency ask one request per puzzle, with 1 and k samples."""
    async with OnlineAPI(simulated_model(0), cache=tmp_path) as api:
        client = Client(api, "methods")
        io = await Direct(1).solve_all(PUZZLES, client)
        sc = await Direct(5).solve_all(PUZZLES, client)
    assert len(io) == len(sc) == len(PUZZLES)
    assert client.ledger.requests == 2 * len(PUZZLES) and client.ledger.samples == 6 * len(PUZZLES)


async def test_every_run_starts_cold(tmp_path: Path) -> None:
    """Each run of each arm starts with a cold model (the paper: one process per run)."""
    starts: list[int] = []

    class Cold(LatencyModel):
        def cold_start(self) -> None:
            starts.append(id(self))
            super().cold_start()

    def factory() -> Cold:
        return Cold(simulated_model(0), LatencyProfile(overhead=0.001, per_token=0.0), 0.0)

    scenario = Scenario("two", "two", (SMALL_TOT, replace(SMALL_TOT, evaluations=1)))
    await run_scenario(scenario, PUZZLES, factory, tmp_path, SETTINGS)
    assert len(starts) == 4 and len(set(starts)) == 3  # the cachesaver arm's model twice
