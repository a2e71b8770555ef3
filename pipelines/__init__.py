"""Research pipelines on cachesaver: Game of 24 with direct answers and Tree of Thoughts.

Run ``python -m pipelines sweep --puzzles 5`` (offline, simulated model) and see
``docs/pipelines.md``. The modules, from data to report:

- `pipelines.puzzles`: puzzles, an exact solver and a deterministic generator;
- `pipelines.checker`: validates an answer with `ast` and `fractions` (never ``eval``);
- `pipelines.prompts`: the `GameRequest` type, prompts and parsers;
- `pipelines.simulated` / `pipelines.providers`: the offline model and real providers;
- `pipelines.methods`: direct answer / self-consistency and Tree of Thoughts;
- `pipelines.accounting`: calls, tokens and cost with and without cachesaver;
- `pipelines.scenarios` / `pipelines.runner`: sweep, ablation, benchmark, and running them;
- `pipelines.report` / `pipelines.cli`: tables, plots and the command line.
"""
