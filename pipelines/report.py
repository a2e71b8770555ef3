"""Savings tables (text) and cost bar charts (matplotlib, optional) of scenario results."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from pipelines.accounting import Prices, Usage
from pipelines.runner import ScenarioResult

__all__ = ["PlotUnavailableError", "format_report", "plot_costs", "ratio", "require_matplotlib"]


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
        return "  ".join([first, *rest])

    return [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]


def _usage_row(label: str, usage: Usage, prices: Prices) -> list[str]:
    return [
        label,
        f"{usage.calls:,}",
        f"{usage.prompt_tokens:,}",
        f"{usage.completion_tokens:,}",
        _usd(usage.cost(prices)),
    ]


def format_report(result: ScenarioResult, prices: Prices, header: str = "") -> str:
    """Return the scenario's per-configuration table and its savings table."""
    lines = [result.scenario.title]
    if header:
        lines.append(header)
    lines.append("")
    rows = []
    for run in result.results:
        before, after = run.ledger.baseline, run.ledger.paid
        rows.append(
            [
                run.label,
                f"{100 * run.accuracy:.1f}%",
                f"{before.calls:,}",
                f"{after.calls:,}",
                _usd(before.cost(prices)),
                _usd(after.cost(prices)),
            ]
        )
    lines += _table(
        ["configuration", "accuracy", "calls without", "calls with", "cost without", "cost with"],
        rows,
    )
    lines.append("")
    before, after = result.baseline, result.paid
    savings = [
        "savings (without / with)",
        _times(ratio(before.calls, after.calls)),
        _times(ratio(before.prompt_tokens, after.prompt_tokens)),
        _times(ratio(before.completion_tokens, after.completion_tokens)),
        _times(ratio(before.cost(prices), after.cost(prices))),
    ]
    lines += _table(
        ["", "model calls", "prompt tokens", "completion tokens", "est. cost (USD)"],
        [
            _usage_row("without cachesaver", before, prices),
            _usage_row("with cachesaver", after, prices),
            savings,
        ],
    )
    stats = result.stats
    lines += [
        "",
        f"accuracy: {100 * result.accuracy:.1f}% (mean over {len(result.results)} configurations"
        f" x {len(result.puzzles)} puzzles)",
        f"pipeline stats: {stats.requests:,} requests, {stats.samples:,} samples, "
        f"{stats.cached:,} cached, {stats.duplicated:,} duplicated, "
        f"{stats.model_calls:,} model calls",
        f"prices: ${prices.prompt:g}/M prompt tokens, ${prices.completion:g}/M completion tokens",
    ]
    if after.calls == 0:
        lines.append("every sample came from the cache: this run was a free, exact replay")
    return "\n".join(lines)


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
    axis: Any, labels: Sequence[str], without: Sequence[float], with_: Sequence[float]
) -> None:
    positions = list(range(len(labels)))
    axis.bar([p - 0.2 for p in positions], without, 0.4, label="without cachesaver")
    axis.bar([p + 0.2 for p in positions], with_, 0.4, label="with cachesaver")
    axis.set_xticks(positions, labels, rotation=60, ha="right", fontsize=7)
    axis.set_ylabel("estimated cost (USD)")


def plot_costs(
    results: Sequence[ScenarioResult], prices: Prices, path: str | os.PathLike[str]
) -> None:
    """Draw the cost of every configuration without and with cachesaver, per scenario,
    and a last panel with each scenario's totals."""
    plt = require_matplotlib()
    count = len(results)
    figure, axes = plt.subplots(
        1,
        count + 1,
        figsize=(4.5 * count + 2.5, 4.8),
        squeeze=False,
        gridspec_kw={"width_ratios": [3] * count + [max(1, count)]},
    )
    totals: tuple[list[float], list[float]] = ([], [])
    for axis, result in zip(axes[0], results, strict=False):
        without = [run.ledger.baseline.cost(prices) for run in result.results]
        with_ = [run.ledger.paid.cost(prices) for run in result.results]
        _bars(axis, [run.label for run in result.results], without, with_)
        totals[0].append(sum(without))
        totals[1].append(sum(with_))
        axis.set_title(f"{result.scenario.name}: per configuration", fontsize=10)
        axis.legend(fontsize=7)
    summary = axes[0][count]
    names = [result.scenario.name for result in results]
    _bars(summary, names, *totals)
    for position, (a, b) in enumerate(zip(*totals, strict=True)):
        summary.annotate(_times(ratio(a, b)), (position, a), ha="center", va="bottom", fontsize=8)
    summary.set_ylim(0, max(totals[0], default=0) * 1.15 or 1)
    summary.set_title("total (times cheaper)", fontsize=10)
    figure.tight_layout()
    figure.savefig(os.fspath(path), dpi=120)
    plt.close(figure)
