"""Savings tables (text) and cost / latency bar charts (matplotlib, optional).

A report has a results part (accuracy, calls, tokens, cost, the saving beside the
paper's) that a replay reproduces exactly, and a part about this invocation (model calls
made now, wall-clock, requests per second) that is measured, so it changes from one
invocation to the next. That part starts with `TIMING_HEADER` and ends at the next blank
line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from pipelines.accounting import Prices, Usage
from pipelines.runner import ScenarioResult

__all__ = [
    "TIMING_HEADER",
    "PlotUnavailableError",
    "format_report",
    "format_summary",
    "plot_results",
    "ratio",
    "require_matplotlib",
    "without_timing",
]

TIMING_HEADER = "This invocation (measured; changes between invocations)"
RULES = (
    "paper's rules: gpt-4.1-nano prices by default; without cachesaver every sample pays "
    "its full prompt, each configuration runs on a fresh cache with batch size 1; one "
    "namespace per run, shared by all puzzles; the methods' value caches on in both arms"
)


class PlotUnavailableError(RuntimeError):
    """``--plot`` was asked for but matplotlib is not installed."""


def ratio(without: float, with_: float) -> float:
    """Return ``without / with_``: how many times cheaper (inf when nothing was paid)."""
    if with_ == 0:
        return math.inf if without else 1.0
    return without / with_


def _times(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}x"


def _usd(value: float) -> str:
    return f"${value:,.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[k]) for row in [header, *rows]) for k in range(len(header))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(widths[k + 1]) for k, cell in enumerate(row[1:]))
        return "  ".join([first, *rest]).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]


def _usage_row(label: str, usage: Usage, prices: Prices) -> list[str]:
    return [
        label,
        f"{usage.calls:,}",
        f"{usage.prompt_tokens:,}",
        f"{usage.completion_tokens:,}",
        _usd(usage.cost(prices)),
    ]


def saving(result: ScenarioResult, prices: Prices) -> float:
    """The scenario's saving in cost: without / with cachesaver."""
    return ratio(result.without.cost(prices), result.with_.cost(prices))


def format_report(result: ScenarioResult, prices: Prices, header: str = "") -> str:
    """Return the scenario's tables: per configuration, totals, saving vs the paper, timing."""
    lines = [result.scenario.title]
    if header:
        lines.append(header)
    lines.append("")
    rows = [
        [
            run.label,
            f"{100 * run.accuracy:.1f}%",
            f"{run.cached.ledger.requests:,}",
            f"{run.without.calls:,}",
            f"{run.with_.calls:,}",
            _usd(run.without.cost(prices)),
            _usd(run.with_.cost(prices)),
        ]
        for run in result.results
    ]
    lines += _table(
        [
            "configuration",
            "solved",
            "requests",
            "calls without",
            "calls with",
            "cost without",
            "cost with",
        ],
        rows,
    )
    lines.append("")
    before, after = result.without, result.with_
    lines += _table(
        ["", "model calls", "prompt tokens", "completion tokens", "cost (USD)"],
        [
            _usage_row("without cachesaver", before, prices),
            _usage_row("with cachesaver", after, prices),
            [
                "saving (without / with)",
                _times(ratio(before.calls, after.calls)),
                _times(ratio(before.prompt_tokens, after.prompt_tokens)),
                _times(ratio(before.completion_tokens, after.completion_tokens)),
                _times(ratio(before.cost(prices), after.cost(prices))),
            ],
        ],
    )
    lines.append("")
    paper = result.scenario.paper_saving
    ours = _times(saving(result, prices))
    if paper is None:
        lines.append(f"saving in cost: {ours} (extra scenario: not in the paper)")
    else:
        lines.append(f"saving in cost: paper ~{paper:g}x, ours {ours}")
    lines.append(f"({RULES})")
    lines += [
        f"solved: {100 * result.accuracy:.1f}% (mean over {len(result.results)} configurations"
        f" x {len(result.puzzles)} puzzles; solved = a returned state holds a correct answer)",
        f"prices: ${prices.prompt:g}/M prompt tokens, ${prices.completion:g}/M completion tokens",
    ]
    lines += ["", *_timing(result, prices)]
    return "\n".join(lines)


def _timing(result: ScenarioResult, prices: Prices) -> list[str]:
    stats = result.stats
    now = sum((run.paid_now for run in result.results), Usage())
    lines = [
        TIMING_HEADER,
        f"cachesaver arm: {stats.requests:,} requests, {stats.samples:,} samples, "
        f"{stats.cached:,} cached, {stats.duplicated:,} duplicated, "
        f"{stats.model_calls:,} model calls; both arms: {result.model_calls:,} model calls",
    ]
    if result.model_calls == 0:
        lines.append("every sample came from the caches: a free, exact replay")
    else:
        lines.append(f"paid now in the cachesaver arm: {_usd(now.cost(prices))}")
    rows = []
    for run in result.results:
        base = run.baseline
        rows.append(
            [
                run.label,
                f"{base.seconds:.2f}s" if base else "-",
                f"{run.cached.seconds:.2f}s",
                f"{base.requests_per_second:,.0f}" if base else "-",
                f"{run.cached.requests_per_second:,.0f}",
            ]
        )
    without, with_ = result.seconds("without"), result.seconds("with")
    rows.append(
        [
            "total",
            f"{without:.2f}s" if without else "-",
            f"{with_:.2f}s",
            f"{result.requests('without') / without:,.0f}" if without else "-",
            f"{result.requests('with') / with_:,.0f}" if with_ else "-",
        ]
    )
    lines += _table(
        ["configuration", "time without", "time with", "requests/s without", "requests/s with"],
        rows,
    )
    if without and with_:
        lines.append(f"speed-up in wall-clock (without / with): {_times(without / with_)}")
    busy_without, busy_with = result.model_seconds("without"), result.model_seconds("with")
    if busy_without or busy_with:
        lines.append(
            f"simulated model time of the calls made (unscaled, summed over calls): "
            f"{busy_without:,.0f}s without, {busy_with:,.0f}s with"
        )
    return lines


def format_summary(results: Sequence[ScenarioResult], prices: Prices) -> str:
    """Return one line per scenario: the paper's saving beside ours; then the speed-ups."""
    rows, timing = [], []
    for result in results:
        paper = result.scenario.paper_saving
        without, with_ = result.seconds("without"), result.seconds("with")
        rows.append(
            [
                result.scenario.name,
                f"~{paper:g}x" if paper is not None else "-",
                _times(saving(result, prices)),
            ]
        )
        timing.append(
            [
                result.scenario.name,
                f"{without:.2f}s" if without else "-",
                f"{with_:.2f}s",
                _times(without / with_) if without and with_ else "-",
            ]
        )
    lines = ["Summary: saving in cost under the paper's rules", ""]
    lines += _table(["scenario", "paper", "ours"], rows)
    lines += ["", TIMING_HEADER]
    lines += _table(["scenario", "time without", "time with", "speed-up"], timing)
    return "\n".join(lines)


def without_timing(text: str) -> str:
    """Return a report with its measured timing blocks removed (what a replay reproduces)."""
    kept, skipping = [], False
    for line in text.splitlines():
        if line == TIMING_HEADER:
            skipping = True
        elif skipping and not line.strip():
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def require_matplotlib() -> Any:
    """Return ``matplotlib.pyplot`` (Agg backend), or raise `PlotUnavailableError`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailableError(
            "--plot needs matplotlib, which is not installed; install the optional extra "
            "with: pip install -e '.[plot]'  (or: pip install matplotlib)"
        ) from None
    return plt


def _bars(
    axis: Any, labels: Sequence[str], without: Sequence[float], with_: Sequence[float], unit: str
) -> None:
    positions = list(range(len(labels)))
    axis.bar([p - 0.2 for p in positions], without, 0.4, label="without cachesaver")
    axis.bar([p + 0.2 for p in positions], with_, 0.4, label="with cachesaver")
    axis.set_xticks(positions, labels, rotation=60, ha="right", fontsize=7)
    axis.set_ylabel(unit)


def plot_results(
    results: Sequence[ScenarioResult], prices: Prices, path: str | os.PathLike[str]
) -> None:
    """Draw cost (top row) and wall-clock (bottom row) per configuration, per scenario,
    without and with cachesaver, and a last column with each scenario's totals."""
    plt = require_matplotlib()
    count = len(results)
    figure, axes = plt.subplots(
        2,
        count + 1,
        figsize=(4.5 * count + 2.5, 9.0),
        squeeze=False,
        gridspec_kw={"width_ratios": [3] * count + [max(1, count)]},
    )
    totals: dict[str, tuple[list[float], list[float]]] = {"cost": ([], []), "time": ([], [])}
    for column, result in enumerate(results):
        labels = [run.label for run in result.results]
        cost = (
            [run.without.cost(prices) for run in result.results],
            [run.with_.cost(prices) for run in result.results],
        )
        time = (
            [run.baseline.seconds if run.baseline else 0.0 for run in result.results],
            [run.cached.seconds for run in result.results],
        )
        for row, (name, values, unit) in enumerate(
            (("cost", cost, "estimated cost (USD)"), ("time", time, "wall-clock (s)"))
        ):
            axis = axes[row][column]
            _bars(axis, labels, *values, unit)
            axis.set_title(f"{result.scenario.name}: {name} per configuration", fontsize=10)
            axis.legend(fontsize=7)
            totals[name][0].append(sum(values[0]))
            totals[name][1].append(sum(values[1]))
    names = [result.scenario.name for result in results]
    for row, (name, unit) in enumerate((("cost", "USD"), ("time", "s"))):
        summary = axes[row][count]
        _bars(summary, names, *totals[name], unit)
        for position, (a, b) in enumerate(zip(*totals[name], strict=True)):
            summary.annotate(
                _times(ratio(a, b)), (position, a), ha="center", va="bottom", fontsize=8
            )
        summary.set_ylim(0, max(totals[name][0], default=0) * 1.15 or 1)
        summary.set_title(f"total {name} (without / with)", fontsize=10)
    figure.tight_layout()
    figure.savefig(os.fspath(path), dpi=120)
    plt.close(figure)
