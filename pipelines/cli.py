"""Command line: ``python -m pipelines {sweep,ablation,benchmark,methods,all} [options]``.

Runs the scenario(s) on the benchmark's Game of 24 puzzles in both arms (with and
without cachesaver) and prints the tables on stdout; ``all`` runs the paper's three and
a summary. Offline by default (``--provider simulated``). With a real provider, the cost
is estimated first (a dry run with the simulated model) and confirmed before any spending.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from functools import partial

from pipelines.accounting import Prices
from pipelines.latency import LatencyProfile
from pipelines.providers import (
    PROVIDERS,
    ProviderError,
    check_provider,
    make_model,
    model_description,
)
from pipelines.puzzles import FIRST_RANK, Puzzle, load_puzzles
from pipelines.report import (
    PlotUnavailableError,
    format_report,
    format_summary,
    plot_results,
    require_matplotlib,
)
from pipelines.runner import RunSettings, ScenarioResult, run_scenario
from pipelines.scenarios import PAPER_SCENARIOS, SCENARIOS, Scenario, build

__all__ = ["build_parser", "main"]

DEFAULT_CACHE_ROOT = os.path.join("caches", "pipelines")
DEFAULT_TIME_SCALE = 0.01
PAPER_TIMEOUT = 2.0  # seconds, the paper's batch timeout


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (one positional scenario, shared options)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines",
        description="The CacheSaver paper's Game of 24 experiments, with and without cachesaver.",
    )
    parser.add_argument(
        "scenario",
        choices=(*SCENARIOS, "all"),
        help="sweep, ablation, benchmark (the paper's), methods (extra), all (the paper's three)",
    )
    run = parser.add_argument_group("run")
    run.add_argument("--puzzles", type=_positive, default=100, help="number of puzzles (100)")
    run.add_argument(
        "--first-rank", type=_positive, default=FIRST_RANK, help=f"first puzzle rank ({FIRST_RANK})"
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the simulated model (0)")
    run.add_argument("--provider", choices=PROVIDERS, default="simulated")
    run.add_argument("--model", help="model id for --provider openai/together")
    run.add_argument("--base-url", help="API base URL for a real provider (e.g. a local server)")
    run.add_argument("--yes", action="store_true", help="spend without asking (real providers)")
    run.add_argument(
        "--cache",
        help=f"cache directory, created if missing ({DEFAULT_CACHE_ROOT}/<scenario>; "
        "for all: DIR/<scenario>)",
    )
    run.add_argument("--plot", metavar="PNG", help="draw cost and wall-clock bars to this file")
    run.add_argument("--batch-size", type=_positive, default=300, help="cachesaver arm (300)")
    run.add_argument(
        "--timeout",
        type=_non_negative,
        help=f"batch timeout, seconds (the paper's {PAPER_TIMEOUT:g} s x time scale)",
    )
    run.add_argument("--no-baseline", action="store_true", help="price the baseline, do not run it")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    latency = parser.add_argument_group("latency of the simulated model")
    latency.add_argument(
        "--time-scale",
        type=_non_negative,
        default=DEFAULT_TIME_SCALE,
        help=f"real seconds per simulated second ({DEFAULT_TIME_SCALE:g}; 0: no waiting)",
    )
    latency.add_argument("--overhead", type=_non_negative, default=LatencyProfile.overhead)
    latency.add_argument("--per-token", type=_non_negative, default=LatencyProfile.per_token)
    prices = parser.add_argument_group("prices (USD per million tokens)")
    prices.add_argument("--price-prompt", type=_non_negative, default=Prices.prompt)
    prices.add_argument("--price-completion", type=_non_negative, default=Prices.completion)
    return parser


def _cache_for(args: argparse.Namespace, scenario: Scenario) -> str:
    if args.cache is None:
        return os.path.join(DEFAULT_CACHE_ROOT, scenario.name)
    if args.scenario == "all":
        return os.path.join(args.cache, scenario.name)
    return str(args.cache)


def _settings(args: argparse.Namespace, progress: bool) -> RunSettings:
    scale = args.time_scale if args.provider == "simulated" else 1.0
    timeout = args.timeout if args.timeout is not None else PAPER_TIMEOUT * scale
    return RunSettings(
        batch_size=args.batch_size,
        timeout=timeout,
        progress=progress,
        baseline=not args.no_baseline,
    )


async def _run(
    args: argparse.Namespace,
    scenarios: list[Scenario],
    puzzles: list[Puzzle],
    caches: list[str],
    settings: RunSettings,
    provider: str,
    time_scale: float,
) -> list[ScenarioResult]:
    latency = LatencyProfile(overhead=args.overhead, per_token=args.per_token)
    factory = partial(
        make_model,
        provider,
        args.model,
        args.seed,
        base_url=args.base_url,
        time_scale=time_scale,
        latency=latency,
    )
    return [
        await run_scenario(scenario, puzzles, factory, cache, settings)
        for scenario, cache in zip(scenarios, caches, strict=True)
    ]


def _confirm(args: argparse.Namespace, scenarios: list[Scenario], puzzles: list[Puzzle]) -> bool:
    """Estimate the spending with a simulated dry run; ask (or take --yes) before it."""
    prices = Prices(args.price_prompt, args.price_completion)
    with tempfile.TemporaryDirectory(prefix="pipelines-estimate-") as tmp:
        caches = [os.path.join(tmp, s.name) for s in scenarios]
        settings = dataclasses.replace(_settings(args, False), timeout=0.0)  # timing is moot
        dry = asyncio.run(_run(args, scenarios, puzzles, caches, settings, "simulated", 0.0))
    with_ = sum(r.with_.cost(prices) for r in dry)
    without = sum(r.without.cost(prices) for r in dry) if not args.no_baseline else 0.0
    print(
        f"estimated spending on {args.provider} {args.model}: ${without + with_:,.4f} "
        f"(baseline arm ${without:,.4f}, cachesaver arm ${with_:,.4f}; from a dry run with the "
        f"simulated model at ${prices.prompt:g}/${prices.completion:g} per M tokens: a real "
        "model's answers, and so its cost, differ)",
        file=sys.stderr,
    )
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print("error: not confirmed; pass --yes to spend without asking", file=sys.stderr)
        return False
    answer = input("Proceed? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenario(s) and print the tables; return the exit status."""
    args = build_parser().parse_args(argv)
    prices = Prices(args.price_prompt, args.price_completion)
    names = PAPER_SCENARIOS if args.scenario == "all" else (args.scenario,)
    try:
        if args.plot:
            require_matplotlib()  # fail before spending anything on the run
        check_provider(args.provider, args.model)
        puzzles = load_puzzles(args.puzzles, args.first_rank)
        scenarios = [build(name) for name in names]
    except (PlotUnavailableError, ProviderError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.provider != "simulated" and not _confirm(args, scenarios, puzzles):
        return 3
    caches = [_cache_for(args, scenario) for scenario in scenarios]
    for cache in caches:
        os.makedirs(cache, exist_ok=True)
    progress = not args.no_progress and sys.stderr.isatty() and sys.stdout.isatty()
    scale = args.time_scale if args.provider == "simulated" else 1.0
    results = asyncio.run(
        _run(args, scenarios, puzzles, caches, _settings(args, progress), args.provider, scale)
    )
    description = model_description(args.provider, args.model, args.seed)
    if args.provider == "simulated":
        description += f", latency x{args.time_scale:g}"
    ranks = f"ranks {puzzles[0].rank}-{puzzles[-1].rank}"
    for result, cache in zip(results, caches, strict=True):
        header = f"{len(puzzles)} puzzles ({ranks}), model {description}, cache {cache}"
        print(format_report(result, prices, header))
        print()
    if len(results) > 1:
        print(format_summary(results, prices))
        print()
    if args.plot:
        plot_results(results, prices, args.plot)
        print(f"plot written to {args.plot}")
    return 0
