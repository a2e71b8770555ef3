"""Command line: ``python -m pipelines {sweep,ablation,benchmark,all} [options]``.

Runs the scenario on Game of 24 puzzles, shows progress bars on stderr and prints the
savings table on stdout. Offline by default (``--provider simulated``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from pipelines.accounting import Prices
from pipelines.methods import TreeOfThoughts
from pipelines.providers import (
    PROVIDERS,
    ProviderError,
    check_provider,
    make_model,
    model_description,
)
from pipelines.puzzles import Puzzle, generate_puzzles
from pipelines.report import PlotUnavailableError, format_report, plot_costs, require_matplotlib
from pipelines.runner import RunSettings, ScenarioResult, run_scenario
from pipelines.scenarios import (
    BENCHMARK_METHODS,
    SCENARIOS,
    Scenario,
    ablation,
    benchmark,
    sweep,
)

__all__ = ["build_parser", "main"]

DEFAULT_CACHE_ROOT = os.path.join("caches", "pipelines")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in BENCHMARK_METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown methods {text!r}; choose from {','.join(BENCHMARK_METHODS)}"
        )
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _common_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    run = parent.add_argument_group("run")
    run.add_argument("--puzzles", type=_positive, default=20, help="number of puzzles (20)")
    run.add_argument("--puzzle-seed", type=int, default=0, help="which puzzles (0)")
    run.add_argument("--seed", type=int, default=0, help="seed of the simulated model (0)")
    run.add_argument("--provider", choices=PROVIDERS, default="simulated")
    run.add_argument("--model", help="model id for --provider openai/together")
    run.add_argument(
        "--cache",
        help=f"cache directory, created if missing ({DEFAULT_CACHE_ROOT}/<scenario>); "
        "scenarios pointed at one directory reuse each other's samples",
    )
    run.add_argument("--plot", metavar="PNG", help="draw the cost bars to this file")
    run.add_argument("--concurrency", type=_positive, default=16, help="puzzles in flight (16)")
    run.add_argument("--batch-size", type=_positive, default=64, help="samples per batch (64)")
    run.add_argument("--timeout", type=float, default=0.01, help="batch timeout, seconds (0.01)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    prices = parent.add_argument_group("prices (USD per million tokens)")
    prices.add_argument("--price-prompt", type=float, default=Prices.prompt)
    prices.add_argument("--price-completion", type=float, default=Prices.completion)
    return parent


def _tot_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    tot = parent.add_argument_group("Tree of Thoughts of the ablation and the benchmark")
    tot.add_argument("--width", type=_positive, default=5, help="states kept per level (5)")
    tot.add_argument("--depth", type=_positive, default=3, help="search levels (3)")
    tot.add_argument("--proposals", type=_positive, default=1, help="propose samples (1)")
    tot.add_argument("--evaluations", type=_positive, default=3, help="evaluate samples (3)")
    tot.add_argument("--sc-samples", type=_positive, default=10, help="self-consistency votes (10)")
    tot.add_argument(
        "--methods",
        type=_names,
        default=("io", "sc", "tot"),
        help=f"benchmark methods, from {','.join(BENCHMARK_METHODS)} (io,sc,tot)",
    )
    return parent


def _grid_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    grid = parent.add_argument_group("grid of the sweep")
    grid.add_argument("--widths", type=_ints, default=(1, 3, 5), help="(1,3,5)")
    grid.add_argument("--depths", type=_ints, default=(2, 3), help="(2,3)")
    grid.add_argument("--eval-grid", type=_ints, default=(1, 2, 3), help="evaluate samples (1,2,3)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with one sub-command per scenario (and ``all``)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines",
        description="Game of 24 research pipelines on cachesaver, with a savings report.",
    )
    commands = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    common, tot, grid = _common_options(), _tot_options(), _grid_options()
    commands.add_parser(
        "sweep", parents=[common, grid], help="Tree of Thoughts over width x depth x evaluations"
    )
    commands.add_parser("ablation", parents=[common, tot], help="Tree of Thoughts minus one part")
    commands.add_parser(
        "benchmark", parents=[common, tot], help="direct, self-consistency, Tree of Thoughts"
    )
    commands.add_parser("all", parents=[common, grid, tot], help="the three scenarios in turn")
    return parser


def _scenarios(args: argparse.Namespace) -> list[Scenario]:
    names = SCENARIOS if args.scenario == "all" else (args.scenario,)
    chosen = []
    for name in names:
        if name == "sweep":
            chosen.append(sweep(args.widths, args.depths, args.eval_grid))
            continue
        tot = TreeOfThoughts(args.width, args.depth, args.proposals, args.evaluations)
        if name == "ablation":
            chosen.append(ablation(tot))
        else:
            chosen.append(benchmark(args.sc_samples, tot, args.methods))
    return chosen


def _cache_for(args: argparse.Namespace, scenario: Scenario) -> str:
    if args.cache is None:
        return os.path.join(DEFAULT_CACHE_ROOT, scenario.name)
    if args.scenario == "all":
        return os.path.join(args.cache, scenario.name)
    return str(args.cache)


async def _run_all(
    args: argparse.Namespace, scenarios: list[Scenario], puzzles: list[Puzzle]
) -> list[ScenarioResult]:
    settings = RunSettings(
        batch_size=args.batch_size,
        timeout=args.timeout,
        concurrency=args.concurrency,
        progress=not args.no_progress,
    )
    results = []
    for scenario in scenarios:
        # A new model per scenario: the simulated model counts its draws, so sharing one
        # across scenarios (each with its own cache) would make a scenario's samples
        # depend on the scenarios run before it in the same process.
        model = make_model(args.provider, args.model, args.seed)
        try:
            cache = _cache_for(args, scenario)
            results.append(await run_scenario(scenario, puzzles, model, cache, settings))
        finally:
            close = getattr(model, "aclose", None)
            if close is not None:
                await close()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenario(s) and print the savings tables; return the exit status."""
    args = build_parser().parse_args(argv)
    prices = Prices(args.price_prompt, args.price_completion)
    try:
        if args.plot:
            require_matplotlib()  # fail before spending anything on the run
        check_provider(args.provider, args.model)
        puzzles = generate_puzzles(args.puzzles, args.puzzle_seed)
    except (PlotUnavailableError, ProviderError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scenarios = _scenarios(args)
    for scenario in scenarios:
        os.makedirs(_cache_for(args, scenario), exist_ok=True)
    results = asyncio.run(_run_all(args, scenarios, puzzles))
    description = model_description(args.provider, args.model, args.seed)
    for scenario, result in zip(scenarios, results, strict=True):
        header = (
            f"{len(puzzles)} puzzles (puzzle seed {args.puzzle_seed}), model {description}, "
            f"cache {_cache_for(args, scenario)}"
        )
        print(format_report(result, prices, header))
        print()
    if args.plot:
        plot_costs(results, prices, args.plot)
        print(f"cost plot written to {args.plot}")
    return 0
