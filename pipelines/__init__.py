"""Research pipelines on cachesaver: the CacheSaver paper's Game of 24 experiments.

Run ``python -m pipelines sweep --puzzles 5`` (offline, simulated model) and see
``docs/pipelines.md``. The modules, from data to report:

- `pipelines.puzzles`: puzzles, an exact solver and a deterministic generator;
- `pipelines.checker`: validates an answer with `ast` and `fractions` (never ``eval``);
- `pipelines.prompts`: the `GameRequest` type, prompts and parsers;
- `pipelines.simulated` (arithmetic in `pipelines.moves`), `pipelines.latency`,
  `pipelines.calibration`: the offline model, its latency and its calibration;
- `pipelines.providers`: real providers, through cachesaver's drop-in clients;
- `pipelines.methods`, `pipelines.search`, `pipelines.fleet`: io / self-consistency,
  ToT-BFS and GoT, Fleet of Agents;
- `pipelines.accounting`: calls, tokens and cost with and without cachesaver;
- `pipelines.scenarios` / `pipelines.runner`: sweep, ablation, benchmark, and running them;
- `pipelines.report` / `pipelines.cli`: tables, plots and the command line.
"""
