"""The argument parser of the ``cachesaver`` command, with an example for every command."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from typing import Any

from cachesaver.cli._inspect import cmd_explain, cmd_ls, cmd_show, cmd_stats, cmd_verify
from cachesaver.cli._migrate import cmd_migrate
from cachesaver.cli._transfer import cmd_copy, cmd_export, cmd_import
from cachesaver.cli._trim import cmd_delete, cmd_prune
from cachesaver.export import MAX_IMPORT_BYTES

__all__ = ["Handler", "build_parser"]

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _count(text: str) -> int:
    """A whole number >= 0 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _positive(text: str) -> int:
    """A whole number >= 1 (argparse type)."""
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


STORE = "a cache directory, or a Redis URL (redis://host:6379/0[?prefix=P])"
EPILOG = """\
exit codes:
  0  ok
  1  verification failed, an import/copy conflicts with stored samples, or an
     export met a damaged key or could not be written
  2  usage error (bad arguments, ambiguous key prefix, output file exists,
     a destructive command without --yes and without a terminal, ...)
  3  the store cannot be opened or reached (wrong path, not a cachesaver cache,
     Redis down or evicting)
  4  malformed export file, manifest or request file (the line is named)
  5  not found (no key matches; explain: the key is not stored; the manifest
     names samples the cache lacks)
  70 internal error (a bug; the traceback is printed)
  130 interrupted
A closed pipe (`cachesaver ls CACHE | head`) ends the command quietly with 0.

docs: docs/cli.md
"""

EXAMPLES = {
    "stats": "cachesaver stats caches/eval --json --prices prices.json",
    "ls": "cachesaver ls caches/eval --grep 'capital of France' --model gpt-4o-mini",
    "show": "cachesaver show caches/eval 3f2a9c",
    "explain": "cachesaver explain caches/eval request.json",
    "verify": "cachesaver verify redis://cache-host:6379/0?prefix=eval",
    "export": "cachesaver export caches/eval - --manifest runs/exp1.jsonl | gzip > exp1.jsonl.gz",
    "import": "cachesaver import exp1.jsonl.gz caches/mine --merge",
    "copy": "cachesaver copy caches/alice caches/bob --merge --manifest runs/alice.jsonl",
    "delete": "cachesaver delete caches/eval 3f2a9c --dry-run",
    "prune": "cachesaver prune caches/eval --older-than 90d --model gpt-4o --yes",
    "migrate": "cachesaver migrate caches/eval",
}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``cachesaver`` command."""
    from cachesaver import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument(
        "--no-progress", action="store_true", help="no progress bars (shown on a terminal)"
    )
    parser = argparse.ArgumentParser(
        prog="cachesaver",
        description="Inspect, search, explain, verify, share, merge and trim cachesaver caches.",
        epilog="examples:\n"
        + "\n".join(f"  {line}" for line in EXAMPLES.values())
        + "\n\n"
        + EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cachesaver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, summary: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            parents=[common],
            help=summary,
            description=handler.__doc__ or summary,
            epilog=f"example:\n  {EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(handler=handler)
        return p

    def destructive(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
        p.add_argument(
            "--yes", "-y", action="store_true", help="do not ask (required without a terminal)"
        )

    p = command("stats", cmd_stats, "keys, samples, bytes and tokens, per model identity")
    p.add_argument("cache", help=STORE)
    p.add_argument(
        "--prices",
        metavar="PRICES.json",
        help='value stored tokens: {"MODEL": {"prompt": USD/1M, "completion": USD/1M}}',
    )

    p = command("ls", cmd_ls, "list keys, newest first: prompt, model, samples, age")
    p.add_argument("cache", help=STORE)
    p.add_argument("--grep", metavar="TEXT", help="only requests containing TEXT (any case)")
    p.add_argument("--model", help="only keys whose identity has this 'model'")
    p.add_argument("--provider", help="only keys whose identity has this 'provider'")
    p.add_argument("--limit", type=_positive, default=20, metavar="N", help="keys per page (20)")
    p.add_argument("--offset", type=_count, default=0, metavar="N", help="skip the first N keys")

    p = command("show", cmd_show, "print a key's request and decoded samples")
    p.add_argument("cache", help=STORE)
    p.add_argument("key_prefix", metavar="KEY_PREFIX", help="the key or its first hex digits")
    p.add_argument("--all", action="store_true", help="show every key matching the prefix")

    p = command("explain", cmd_explain, "why a request misses: its key and the nearest keys")
    p.add_argument("cache", help=STORE)
    p.add_argument(
        "request",
        metavar="REQUEST.json",
        help="the request's fields as JSON, or {'request': ..., 'identity': ...}; - for stdin",
    )
    p.add_argument("--identity-json", metavar="JSON", help="the model identity of the request")
    p.add_argument(
        "--nearest", type=_positive, default=3, metavar="N", help="nearest keys shown (3)"
    )

    p = command("verify", cmd_verify, "check hashes, sample JSON and contiguous lists")
    p.add_argument("cache", help=STORE)

    p = command("export", cmd_export, "write the cache (or a run's samples) to a file")
    p.add_argument("cache", help=STORE)
    p.add_argument("output", help="the file to write (gzip when it ends in .gz); - for stdout")
    p.add_argument(
        "--manifest",
        action="append",
        metavar="PATH",
        help="export exactly the samples this run manifest used (repeatable)",
    )
    p.add_argument("--gzip", action="store_true", help="compress even without a .gz name")
    p.add_argument("--force", action="store_true", help="replace an existing output file")

    p = command("import", cmd_import, "load an export file into a store, all or nothing")
    p.add_argument("file", help="an export file (plain or gzip); - for stdin")
    p.add_argument("cache", help=STORE + "; created if missing")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keys that differ: keep the store's samples, append the file's after them",
    )
    p.add_argument(
        "--manifest",
        action="append",
        metavar="PATH",
        help="with --merge: write PATH's run renumbered to NAME.merged.jsonl (repeatable)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="check the file and look for conflicts only"
    )
    p.add_argument(
        "--max-bytes",
        type=_positive,
        default=MAX_IMPORT_BYTES,
        metavar="N",
        help=f"most uncompressed text loaded at once (default {MAX_IMPORT_BYTES})",
    )

    p = command("copy", cmd_copy, "copy (or --merge) every key of one store into another")
    p.add_argument("src", help=STORE)
    p.add_argument("dst", help=STORE + "; created if missing")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keys that differ: keep dst's samples, append src's after them (later draws)",
    )
    p.add_argument(
        "--manifest",
        action="append",
        metavar="PATH",
        help="with --merge: a run manifest of src's owner, written renumbered to "
        "NAME.merged.jsonl so that run still finds its samples (repeatable)",
    )
    p.add_argument("--dry-run", action="store_true", help="check and count only; write nothing")

    p = command("delete", cmd_delete, "delete the keys starting with a prefix")
    p.add_argument("cache", help=STORE)
    p.add_argument("key_prefix", metavar="KEY_PREFIX", help="the key or its first hex digits")
    destructive(p)

    p = command("prune", cmd_prune, "delete keys by age and/or model identity")
    p.add_argument("cache", help=STORE)
    p.add_argument("--older-than", metavar="AGE", help="not written for AGE (30d, 12h, 90m, 2w)")
    p.add_argument("--provider", help="identity field 'provider' equals this")
    p.add_argument("--model", help="identity field 'model' equals this")
    p.add_argument("--identity-json", metavar="JSON", help="the identity equals this JSON")
    p.add_argument("--no-identity", action="store_true", help="keys without a model identity")
    destructive(p)

    p = command("migrate", cmd_migrate, "move a store made by an earlier version to the log layout")
    p.add_argument("cache", help="a cache directory")
    return parser
