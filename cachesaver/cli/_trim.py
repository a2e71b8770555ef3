"""Commands that delete: delete (by key prefix) and prune (by age and model)."""

from __future__ import annotations

import argparse
import json

from cachesaver import admin
from cachesaver.cli._output import (
    CliError,
    ExitCode,
    bar,
    confirm,
    emit,
    key_count,
    listed,
    opened,
    shown,
)

__all__ = ["cmd_delete", "cmd_prune"]


async def _run(args: argparse.Namespace, where: admin.KeyFilter, what: str) -> int:
    async with opened(args.cache, "read" if args.dry_run else "write") as store:
        total = await key_count(args, store)
        with bar(args, total, "scan") as progress:
            chosen = await admin.select_keys(store, where, progress=progress.update)
        deleted = 0
        if chosen.keys and not args.dry_run:
            await confirm(args, f"delete {len(chosen.keys)} keys ({chosen.samples} samples)")
            with bar(args, len(chosen.keys), "delete") as progress:
                deleted = await admin.delete_keys(store, chosen.keys, progress=progress.update)
        location = store.location
    data = {
        "store": location,
        "dry_run": args.dry_run,
        "keys": len(chosen.keys),
        "samples": chosen.samples,
        "deleted": deleted,
        "matched": list(chosen.keys),
    }
    verb = "would delete" if args.dry_run else "deleted"
    lines = [
        f"{verb} {len(chosen.keys)} of {chosen.scanned} keys ({chosen.samples} samples) "
        f"{what} in {shown(args.cache)}"
    ]
    if args.dry_run:
        lines += listed(list(chosen.keys))
    emit(args, data, lines)
    if not chosen.keys and args.not_found_is_error:
        return ExitCode.NOT_FOUND
    return ExitCode.OK


async def cmd_delete(args: argparse.Namespace) -> int:
    """Delete every key starting with a prefix (its content and all its samples)."""
    prefix = args.key_prefix.lower()
    try:
        where = admin.KeyFilter(prefix=prefix)
    except ValueError as exc:
        raise CliError(ExitCode.USAGE, str(exc)) from None
    args.not_found_is_error = True
    return await _run(args, where, f"starting with {prefix!r}")


async def cmd_prune(args: argparse.Namespace) -> int:
    """Delete the keys of a model identity and/or not written for some time."""
    older = None
    if args.older_than is not None:
        try:
            older = admin.parse_duration(args.older_than)
        except ValueError as exc:
            raise CliError(ExitCode.USAGE, f"--older-than: {exc}") from None
    identity = None
    if args.identity_json is not None:
        try:
            identity = json.loads(args.identity_json)
        except ValueError as exc:
            raise CliError(ExitCode.USAGE, f"--identity-json is not valid JSON: {exc}") from None
    if args.no_identity and (args.provider or args.model or identity is not None):
        raise CliError(ExitCode.USAGE, "--no-identity excludes --provider/--model/--identity-json")
    where = admin.KeyFilter(
        older_than=older,
        provider=args.provider,
        model=args.model,
        identity=identity,
        no_identity=args.no_identity,
    )
    if where.empty:
        raise CliError(
            ExitCode.USAGE,
            "say which keys to prune: --older-than, --provider/--model, --identity-json or "
            "--no-identity (several combine: all must hold)",
        )
    args.not_found_is_error = False
    parts = []
    if older is not None:
        parts.append(f"not written for {args.older_than}")
    if where.needs_content():
        parts.append("of the chosen model")
    return await _run(args, where, " and ".join(parts))
