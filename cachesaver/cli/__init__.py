"""The ``cachesaver`` command: a thin layer over `cachesaver.admin`.

Every sub-command works on a store named by a disk path (a diskcache directory) or a
Redis URL (``redis://``, ``rediss://``, ``unix://``; add ``?prefix=P`` to pick a key
prefix). Modules: `_parser` (arguments and examples), `_output` (exit codes, printing,
progress bars, opening stores), and one module per group of commands (`_inspect`,
`_transfer`, `_trim`). Run ``cachesaver --help`` or see ``docs/cli.md``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

from cachesaver.cli._output import CliError, ExitCode, listed
from cachesaver.cli._parser import Handler, build_parser
from cachesaver.errors import (
    CacheSaverWarning,
    ExportFileError,
    ExportTooLargeError,
    StoreError,
)

__all__ = ["ExitCode", "build_parser", "main"]


def _store_failure(exc: BaseException) -> bool:
    if isinstance(exc, (StoreError, ConnectionError, TimeoutError)):
        return True
    redis_errors = sys.modules.get("redis.exceptions")
    base = getattr(redis_errors, "RedisError", None)
    return isinstance(base, type) and isinstance(exc, base)


def _report(json_out: bool, code: ExitCode, message: str, details: list[str]) -> int:
    print(f"cachesaver: error: {message}", file=sys.stderr)
    for line in listed(details):
        print(line, file=sys.stderr)
    if json_out:
        import json

        print(
            json.dumps({"ok": False, "exit_code": int(code), "error": message, "details": details})
        )
    return int(code)


def _quiet_closed_pipe() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as a filter should."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return int(ExitCode.OK)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cachesaver`` command with ``argv`` (default: the process arguments)."""
    with warnings.catch_warnings():
        # cachesaver's own warnings (e.g. Redis without AOF) read like its errors.
        warnings.simplefilter("default", CacheSaverWarning)
        shown = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> None:
            if issubclass(category, CacheSaverWarning):
                print(f"cachesaver: warning: {message}", file=sys.stderr)
            else:
                shown(message, category, *args, **kw)

        warnings.showwarning = show
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse exits 2)
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    handler: Handler = args.handler
    json_out = bool(getattr(args, "json", False))
    try:
        code = int(asyncio.run(handler(args)))
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _quiet_closed_pipe()
    except CliError as exc:
        return _report(json_out, exc.code, exc.message, exc.details)
    except ExportTooLargeError as exc:
        return _report(json_out, ExitCode.BAD_FILE, str(exc), [])
    except ExportFileError as exc:
        return _report(json_out, ExitCode.BAD_FILE, f"rejected, nothing was imported: {exc}", [])
    except KeyboardInterrupt:
        print("cachesaver: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:
        if _store_failure(exc):
            return _report(json_out, ExitCode.STORE, f"store failure: {exc}", [])
        if isinstance(exc, OSError):
            return _report(json_out, ExitCode.FAILED, f"I/O error: {exc}", [])
        # A bug (ours or the store's): keep the traceback, and an exit code of its own
        # so scripts never mistake it for a verification failure (Python's default is 1).
        traceback.print_exc()
        return _report(json_out, ExitCode.INTERNAL, f"internal error: {exc!r}", [])
