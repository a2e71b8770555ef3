"""The ``migrate`` command: a disk store of the indexed layout becomes a log store."""

from __future__ import annotations

import argparse
import asyncio

from cachesaver.cli._output import CliError, ExitCode, emit, shown
from cachesaver.errors import NotACacheError
from cachesaver.stores._disk_open import migrate_to_log
from cachesaver.stores._locate import is_url

__all__ = ["cmd_migrate"]


async def cmd_migrate(args: argparse.Namespace) -> int:
    """Move a disk store made by an earlier cachesaver to the log layout, in place.

    Its key index leaves the file for memory, so writes cost the same at a million keys
    as in an empty store (in the indexed layout they slow down 5-6x). Nothing stored
    changes, and a failure leaves the store as it was. Run it while no process uses the
    store: a pipeline of this version that had it open stops with an error saying so;
    one of an earlier version would not notice. Earlier versions can still open the
    store afterwards (diskcache builds its key index again, and the next open here drops
    it). A log store, and every store this version makes, is left as it is.
    """
    if is_url(args.cache):
        raise CliError(ExitCode.USAGE, f"{shown(args.cache)}: only a disk store has layouts")
    try:
        done = await asyncio.to_thread(migrate_to_log, args.cache)
    except NotACacheError as exc:
        raise CliError(ExitCode.STORE, str(exc)) from None
    data = {
        "store": shown(args.cache),
        "migrated": not done.already,
        "rows": done.rows,
        "index_bytes": done.index_bytes,
        "seconds": round(done.seconds, 3),
    }
    mb = done.index_bytes / 2**20
    if done.already:
        line = f"{shown(args.cache)} is a log store already ({done.rows:,} rows)"
    else:
        line = f"migrated {shown(args.cache)} to the log layout: {done.rows:,} rows"
    emit(args, data, [f"{line}; key index saved ({mb:.1f} MB) in {done.seconds:.1f} s"])
    return ExitCode.OK
