"""What every command shares: exit codes, errors, output, progress bars, opening stores."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import json
import re
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from tqdm import tqdm

from cachesaver.errors import MissingExtraError, NotACacheError
from cachesaver.stores import Access, AdminStore, open_admin_store, redact

__all__ = [
    "CliError",
    "ExitCode",
    "bar",
    "confirm",
    "emit",
    "escaped",
    "key_count",
    "listed",
    "opened",
    "shown",
    "size",
]

SHOWN = 10  # problems / keys listed in human output before "... and N more"


class ExitCode(enum.IntEnum):
    """What the process exit status means."""

    OK = 0
    FAILED = 1  # verify found broken keys; an import/copy conflicts; a file write failed
    USAGE = 2  # bad arguments, ambiguous key prefix, output exists, input file missing
    STORE = 3  # the store cannot be opened or reached (wrong path, not a cache, Redis down)
    BAD_FILE = 4  # a malformed or hostile export file or manifest (the line is named)
    NOT_FOUND = 5  # no key matches; a manifest names samples the cache does not hold
    INTERNAL = 70  # an unexpected error (a bug): the traceback is printed
    INTERRUPTED = 130  # Ctrl-C


class CliError(Exception):
    """A failure the command reports in one message, with its exit code."""

    def __init__(self, code: ExitCode, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)


def shown(spec: str) -> str:
    """A store spec fit for output (a password in a URL becomes ``***``)."""
    return redact(spec)


def _open(spec: str, access: Access) -> AdminStore:
    try:
        return open_admin_store(spec, access=access)
    except NotACacheError as exc:
        raise CliError(ExitCode.STORE, str(exc)) from None
    except MissingExtraError as exc:
        raise CliError(ExitCode.STORE, f"{shown(spec)}: {exc}") from None
    except ModuleNotFoundError as exc:
        raise CliError(
            ExitCode.STORE,
            f"{shown(spec)}: this cachesaver has no Redis store ({exc}); install redis",
        ) from None
    except ValueError as exc:
        message = str(exc)
        if "Redis" in message or "redis" in message or "database" in message:
            message = f"bad Redis URL: {message}"
        raise CliError(ExitCode.USAGE, message) from None


@contextlib.asynccontextmanager
async def opened(spec: str, access: Access = "read") -> AsyncIterator[AdminStore]:
    """Open a store for one command (errors become `CliError`) and close it afterwards."""
    store = await asyncio.to_thread(_open, spec, access)
    try:
        yield store
    finally:
        await store.aclose()


def bars_shown(args: argparse.Namespace) -> bool:
    """Whether progress bars are drawn: stderr is a terminal and --no-progress is not given."""
    return not args.no_progress and sys.stderr.isatty()


async def key_count(args: argparse.Namespace, store: AdminStore) -> int | None:
    """How many keys ``store`` holds, for a bar's total (None when no bar is drawn)."""
    return len(await store.keys()) if bars_shown(args) else None


def bar(args: argparse.Namespace, total: int | None, desc: str, unit: str = "key") -> tqdm[Any]:
    """A progress bar on stderr, drawn only when stderr is a terminal (no escape codes else)."""
    enabled = bars_shown(args)
    progress: tqdm[Any] = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit == "B",
        file=sys.stderr,
        disable=not enabled,
        leave=False,
    )
    return progress


def size(count: int) -> str:
    """Bytes for people: ``812 B``, ``3.4 MiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def age(seconds: float | None) -> str:
    """An age for people: ``45s``, ``12m``, ``3h``, ``9d``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{int(seconds // length)}{unit}"
    return f"{int(seconds)}s"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def escaped(text: str) -> str:
    """``text`` with control characters (terminal escape codes) and lone surrogates escaped."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def indented(text: str, first: str, rest: str) -> list[str]:
    """Indent ``text`` for a terminal, escaping what could drive the terminal."""
    lines = escaped(text).split("\n")
    return [first + lines[0]] + [rest + line for line in lines[1:]]


def listed(items: Sequence[str], limit: int = SHOWN) -> list[str]:
    """Up to ``limit`` items, indented, then ``... and N more``."""
    lines = [f"  {escaped(item)}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more (use --json for all)")
    return lines


def emit(args: argparse.Namespace, data: dict[str, Any], lines: Sequence[str]) -> None:
    """Print the result: one JSON document with --json, else the lines for people."""
    if args.json:
        print(json.dumps(data, ensure_ascii=True, indent=2))
    else:
        print("\n".join(lines))


async def confirm(args: argparse.Namespace, question: str) -> None:
    """Ask before a destructive step; without a terminal, --yes is required."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CliError(
            ExitCode.USAGE,
            f"refusing to {question} without --yes: stdin is not a terminal, so nobody can "
            "confirm (run with --dry-run to see what would go)",
        )
    answer = await asyncio.to_thread(input, f"{question}? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError(ExitCode.USAGE, "nothing deleted (not confirmed)")
