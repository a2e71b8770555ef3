"""``python -m pipelines SCENARIO [options]``: see `pipelines.cli`."""

from pipelines.cli import main

raise SystemExit(main())
