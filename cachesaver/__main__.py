"""``python -m cachesaver``: the same command as the ``cachesaver`` console script."""

from __future__ import annotations

import sys

from cachesaver.cli import main

if __name__ == "__main__":
    sys.exit(main())
