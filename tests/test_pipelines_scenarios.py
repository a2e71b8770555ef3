"""The three scenarios: savings tables agree with the pipeline stats, flags and model; replay."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from cachesaver import OnlineAPI, Request, Response
from cachesaver.testing import InjectedFailure, RecordingModel
from pipelines.accounting import Prices, Usage, sample_tokens
from pipelines.aio import gather_all
from pipelines.methods import Client, Direct, TreeOfThoughts
from pipelines.prompts import propose_prompt
from pipelines.puzzles import generate_puzzles
from pipelines.report import format_report, ratio
from pipelines.runner import RunSettings, ScenarioResult, run_scenario
from pipelines.scenarios import Scenario, ablation, benchmark, namespace_for, sweep
from pipelines.simulated import simulated_model

PUZZLES = generate_puzzles(3)
SMALL_TOT = TreeOfThoughts(width=3, depth=3, evaluations=2)
SETTINGS = RunSettings(keep_records=True)
PRICES = Prices(prompt=0.5, completion=1.5)


class Tap:
    """Wraps the simulated model and records every call and every sample it returned."""

    def __init__(self, seed: int = 0) -> None:
        self.inner = simulated_model(seed)
        self.calls: list[Request] = []
        self.samples: list[Any] = []

    @property
    def identity(self) -> Any:
        return self.inner.identity

    async def request(self, request: Request) -> Response:
        response = await self.inner.request(request)
        self.calls.append(request)
        self.samples.extend(response.data)
        return response


def scenarios() -> list[Scenario]:
    return [
        sweep(widths=(1, 2), depths=(3,), evaluations=(1, 2)),
        ablation(SMALL_TOT),
        benchmark(sc_samples=4, tot=SMALL_TOT),
    ]


def _flags(response: Response) -> tuple[list[bool], list[bool]]:
    assert response.cached is not None and response.duplicated is not None
    return response.cached, response.duplicated


def check_against_flags(result: ScenarioResult) -> None:
    """Recompute every number of the ledgers from the raw responses and the stats."""
    for run in result.results:
        responses = [response for _, response in run.ledger.records]
        stats = run.stats
        samples = [(s, c, d) for r in responses for s, c, d in zip(r.data, *_flags(r), strict=True)]
        assert stats.requests == len(responses) == run.ledger.baseline.calls
        assert stats.samples == len(samples)
        assert stats.cached == sum(c for _, c, _ in samples)
        assert stats.duplicated == sum(d for _, _, d in samples)
        assert stats.generated == sum(not c for _, c, _ in samples)
        prompt_paid = [s for s, c, d in samples if not c and not d]
        assert run.ledger.paid == Usage(
            calls=len(prompt_paid),
            prompt_tokens=sum(sample_tokens(s)[0] for s in prompt_paid),
            completion_tokens=sum(sample_tokens(s)[1] for s, c, _ in samples if not c),
        )
        assert run.ledger.paid.calls == stats.model_calls
        assert run.ledger.baseline == Usage(
            calls=len(responses),
            prompt_tokens=sum(sample_tokens(r.data[0])[0] for r in responses),
            completion_tokens=sum(sample_tokens(s)[1] for s, _, _ in samples),
        )


def check_table(result: ScenarioResult) -> None:
    """The printed savings table shows exactly the ledgers' totals and their ratios."""
    text = format_report(result, PRICES)
    before, after = result.baseline, result.paid
    rows = {
        label: re.split(r"\s{2,}", line.strip())[1:]
        for line in text.splitlines()
        for label in ("without cachesaver", "with cachesaver", "savings (without / with)")
        if line.startswith(label)
    }
    for label, usage in (("without cachesaver", before), ("with cachesaver", after)):
        assert rows[label] == [
            f"{usage.calls:,}",
            f"{usage.prompt_tokens:,}",
            f"{usage.completion_tokens:,}",
            f"${usage.cost(PRICES):,.4f}",
        ]
    cost_ratio = ratio(before.cost(PRICES), after.cost(PRICES))
    assert rows["savings (without / with)"][-1] == f"{cost_ratio:.2f}x"
    assert rows["savings (without / with)"][0] == f"{before.calls / after.calls:.2f}x"
    for run in result.results:
        assert any(
            line.startswith(run.label) and f"{100 * run.accuracy:.1f}%" in line
            for line in text.splitlines()
        )


@pytest.mark.parametrize("index", [0, 1, 2], ids=["sweep", "ablation", "benchmark"])
async def test_scenario_table_matches_stats_flags_and_model(tmp_path: Path, index: int) -> None:
    """Each scenario's table equals the flags, the pipeline stats and what the model produced."""
    scenario = scenarios()[index]
    model = Tap()
    result = await run_scenario(scenario, PUZZLES, model, tmp_path / "cache", SETTINGS)
    check_against_flags(result)
    check_table(result)
    paid = result.paid
    assert paid.calls == len(model.calls) == result.stats.model_calls
    assert paid.prompt_tokens == sum(sample_tokens(s)[0] for s in _first_samples(model))
    assert paid.completion_tokens == sum(sample_tokens(s)[1] for s in model.samples)
    assert paid.cost(PRICES) < result.baseline.cost(PRICES)
    assert len(result.results) == len(scenario.methods)
    assert all(len(run.attempts) == len(PUZZLES) for run in result.results)


def _first_samples(model: Tap) -> list[Any]:
    """The first sample of every model call: the one whose prompt was paid."""
    firsts, position = [], 0
    for call in model.calls:
        firsts.append(model.samples[position])
        position += call.n
    return firsts


def by_request(records: list[tuple[Request, Response]]) -> dict[tuple[str, str], list[Any]]:
    """The samples of every request, by namespace and request id (unique within a run)."""
    found = {(q.namespace, str(q.request_id)): r.data for q, r in records}
    assert len(found) == len(records)
    return found


@pytest.mark.parametrize("index", [0, 1, 2], ids=["sweep", "ablation", "benchmark"])
async def test_scenario_replays_exactly_with_zero_model_calls(tmp_path: Path, index: int) -> None:
    """Running a scenario again over its cache gives identical answers and calls no model."""
    scenario = scenarios()[index]
    first = await run_scenario(scenario, PUZZLES, simulated_model(0), tmp_path, SETTINGS)
    model = Tap()
    second = await run_scenario(scenario, PUZZLES, model, tmp_path, SETTINGS)
    assert second.stats.model_calls == 0
    assert model.calls == []
    assert second.paid == Usage()
    assert second.baseline == first.baseline
    for a, b in zip(first.results, second.results, strict=True):
        assert [x.answer for x in a.attempts] == [x.answer for x in b.attempts]
        assert [x.correct for x in a.attempts] == [x.correct for x in b.attempts]
        assert by_request(a.ledger.records) == by_request(b.ledger.records)
    assert "free, exact replay" in format_report(second, PRICES)


async def test_methods_reuse_each_others_samples(tmp_path: Path) -> None:
    """Self-consistency's first vote is the direct answer's sample, flagged cached."""
    result = await run_scenario(
        benchmark(sc_samples=4, tot=SMALL_TOT), PUZZLES, simulated_model(0), tmp_path, SETTINGS
    )
    direct, voting = ([r for _, r in run.ledger.records] for run in result.results[:2])
    assert len(direct) == len(voting) == len(PUZZLES)
    direct_texts = {r.data[0]["text"] for r in direct}
    for response in voting:
        assert response.cached == [True, False, False, False]
        assert response.duplicated == [False, False, True, True]
        assert response.data[0]["text"] in direct_texts


async def test_samples_within_one_run_stay_independent(tmp_path: Path) -> None:
    """Asking the same question twice for one puzzle in one run draws fresh samples."""
    scenario = Scenario("twice", "same method twice", (Direct(2), Direct(2)))
    result = await run_scenario(scenario, PUZZLES[:1], simulated_model(0), tmp_path, SETTINGS)
    first, second = (run.ledger.records[0][1].data for run in result.results)
    assert first == second  # two runs: the second reuses the first's samples
    assert result.results[1].stats.model_calls == 0

    async with OnlineAPI(simulated_model(0), cache=tmp_path) as pipeline:
        client = Client(pipeline)
        namespace = namespace_for(PUZZLES[0])
        prompt = propose_prompt(PUZZLES[0].numbers)
        texts = [await client.ask("propose", prompt, 2, namespace, "q") for _ in range(2)]
    assert texts[0] != texts[1]


async def test_tree_of_thoughts_issues_requests_in_a_fixed_order(tmp_path: Path) -> None:
    """Two fresh runs of ToT send the model the same requests in the same order."""
    orders = []
    for name in ("a", "b"):
        model = Tap()
        scenario = Scenario("one", "ToT", (SMALL_TOT,))
        await run_scenario(scenario, PUZZLES[:1], model, tmp_path / name, SETTINGS)
        orders.append([(c.kind, c.prompt, c.n) for c in model.calls])
    assert orders[0] == orders[1]
    assert {kind for kind, _, _ in orders[0]} == {"propose", "evaluate", "answer"}


def test_invalid_method_parameters_are_refused() -> None:
    """Zero width, depth, proposals, evaluations or samples is an error, not an empty run."""
    for field in ("width", "depth", "proposals", "evaluations"):
        zero: dict[str, Any] = {field: 0}
        with pytest.raises(ValueError, match=field):
            TreeOfThoughts(**zero)
    with pytest.raises(ValueError):
        Direct(0)
    with pytest.raises(ValueError, match="unknown"):
        benchmark(methods=("io", "nope"))


async def test_a_model_error_stops_the_run_and_leaves_no_task_behind(tmp_path: Path) -> None:
    """If a model call fails, the run raises it and every other request is cancelled."""
    model = RecordingModel(simulated_model(0))
    model.fail_next(1)
    scenario = Scenario("one", "ToT", (SMALL_TOT,))
    with pytest.raises(InjectedFailure):
        await run_scenario(scenario, PUZZLES, model, tmp_path, SETTINGS)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_gather_all_cancels_the_rest_on_failure() -> None:
    """gather_all returns results in order, and on an error cancels and awaits the others."""
    cancelled: list[int] = []

    async def slow(i: int) -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    async def fail() -> int:
        raise ValueError("boom")

    assert await gather_all(asyncio.sleep(0, result=i) for i in range(3)) == [0, 1, 2]
    with pytest.raises(ValueError, match="boom"):
        await gather_all([slow(1), fail(), slow(2)])
    assert sorted(cancelled) == [1, 2]


async def test_progress_bars_go_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With progress on, tqdm bars over configurations and puzzles are written to stderr."""
    settings = RunSettings(progress=True)
    await run_scenario(ablation(SMALL_TOT), PUZZLES[:2], simulated_model(0), tmp_path, settings)
    captured = capsys.readouterr()
    assert "ablation" in captured.err and "config" in captured.err and "puzzle" in captured.err
    assert captured.out == ""


async def test_results_do_not_depend_on_batching(tmp_path: Path) -> None:
    """Fresh runs with different batch sizes and timeouts give the same answers and costs."""
    outcomes = []
    for name, settings in (
        ("one", RunSettings(batch_size=1, timeout=0.0)),
        ("big", RunSettings(batch_size=256, timeout=0.02)),
    ):
        result = await run_scenario(
            ablation(SMALL_TOT), PUZZLES, simulated_model(0), tmp_path / name, settings
        )
        answers = [[a.answer for a in run.attempts] for run in result.results]
        outcomes.append((answers, result.baseline, result.accuracy))
    assert outcomes[0] == outcomes[1]
