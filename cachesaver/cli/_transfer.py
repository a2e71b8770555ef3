"""Commands that move samples: export, import, copy (and merge)."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import cast

from cachesaver import admin
from cachesaver.cli._output import (
    CliError,
    ExitCode,
    bar,
    emit,
    key_count,
    listed,
    opened,
    shown,
    size,
)
from cachesaver.errors import ImportConflictError
from cachesaver.export import ExportWriter, read_export, record_problems
from cachesaver.manifest import read_manifest
from cachesaver.stores import is_url
from cachesaver.stores.base import AdminStore, KeyRecord

__all__ = ["cmd_copy", "cmd_export", "cmd_import"]


def _manifest_wants(paths: Sequence[str]) -> tuple[dict[str, set[int]], int]:
    wanted: dict[str, set[int]] = {}
    entries = 0
    for path in paths:
        for entry in read_manifest(path):
            wanted.setdefault(entry.key, set()).update(entry.indices)
            entries += 1
    return wanted, entries


def _input_file_error(path: str, exc: OSError) -> CliError:
    return CliError(ExitCode.USAGE, f"cannot read {path}: {exc.strerror or exc}")


async def cmd_export(args: argparse.Namespace) -> int:
    """Write the cache, or exactly the samples of a run's manifest, to a JSON-lines file."""
    to_stdout = args.output == "-"
    compress = args.gzip or (not to_stdout and args.output.endswith(".gz"))
    wanted: dict[str, set[int]] | None = None
    entries = 0
    if args.manifest:
        try:
            wanted, entries = await asyncio.to_thread(_manifest_wants, args.manifest)
        except OSError as exc:
            raise _input_file_error(exc.filename or args.manifest[0], exc) from None
        except ValueError as exc:
            raise CliError(ExitCode.BAD_FILE, f"bad manifest: {exc}") from None
    async with opened(args.cache) as store:
        keys = sorted(wanted) if wanted is not None else None
        total = len(keys) if keys is not None else await key_count(args, store)
        try:
            writer = await asyncio.to_thread(
                ExportWriter,
                args.output,
                compress=compress,
                overwrite=args.force,
                stream=sys.stdout.buffer if to_stdout else None,
            )
        except FileExistsError as exc:
            raise CliError(ExitCode.USAGE, str(exc)) from None
        except OSError as exc:
            raise CliError(
                ExitCode.USAGE, f"cannot write {args.output}: {exc.strerror or exc}"
            ) from None
        try:
            missing, broken = await _export(args, store, keys, total, wanted, writer)
            if missing:
                raise CliError(
                    ExitCode.NOT_FOUND,
                    f"the manifest names samples {shown(args.cache)} does not hold "
                    f"({len(missing)} keys); nothing was written. Export from the cache the "
                    "run used",
                    missing,
                )
            if broken:
                raise CliError(
                    ExitCode.FAILED,
                    f"{len(broken)} keys of {shown(args.cache)} are damaged; nothing was "
                    "written. Run `cachesaver verify` to see them, `cachesaver delete` to "
                    "drop them",
                    broken,
                )
            await asyncio.to_thread(writer.commit)
        except OSError as exc:
            await asyncio.to_thread(writer.abort)
            if isinstance(exc, BrokenPipeError):
                raise
            raise CliError(
                ExitCode.FAILED, f"cannot write {args.output}: {exc.strerror or exc}"
            ) from None
        except BaseException:
            await asyncio.to_thread(writer.abort)
            raise
        location = store.location
    written = None if to_stdout else await asyncio.to_thread(os.path.getsize, args.output)
    data = {
        "store": location,
        "output": args.output,
        "keys": writer.keys,
        "samples": writer.samples,
        "bytes": written,
        "gzip": compress,
        "manifest_entries": entries if wanted is not None else None,
    }
    source = f" used by {entries} manifest entries" if wanted is not None else ""
    where = "stdout" if to_stdout else f"{args.output} ({size(written or 0)}"
    where += "" if to_stdout else (", gzip)" if compress else ")")
    message = f"exported {writer.keys} keys, {writer.samples} samples{source} to {where}"
    if to_stdout:  # stdout holds the export itself: the report goes to stderr
        print(message, file=sys.stderr)
    else:
        emit(args, data, [message])
    return ExitCode.OK


async def _chunks(
    store: AdminStore, keys: Sequence[str] | None, progress: Callable[[int], object]
) -> AsyncIterator[tuple[list[str], dict[str, KeyRecord]]]:
    """(the keys asked for, their records) per chunk; every key when ``keys`` is None."""
    if keys is None:
        async for records in admin.iter_records(store, progress=progress):
            yield [r.key for r in records], {r.key: r for r in records}
        return
    for start in range(0, len(keys), admin.CHUNK_KEYS):
        chunk = list(keys[start : start + admin.CHUNK_KEYS])
        records = await store.records(chunk)
        progress(len(chunk))
        yield chunk, {r.key: r for r in records}


async def _export(
    args: argparse.Namespace,
    store: AdminStore,
    keys: Sequence[str] | None,
    total: int | None,
    wanted: Mapping[str, set[int]] | None,
    writer: ExportWriter,
) -> tuple[list[str], list[str]]:
    missing: list[str] = []
    broken: list[str] = []
    with bar(args, total, "export") as progress:
        async for chunk, found in _chunks(store, keys, progress.update):
            out: list[KeyRecord] = []
            for key in chunk:
                record = found.get(key)
                if wanted is not None:
                    want = sorted(wanted[key])
                    if record is None:
                        missing.append(f"{key}: the key is not in the cache")
                        continue
                    lacking = [i for i in want if i not in record.samples]
                    if lacking:
                        missing.append(f"{key}: samples {lacking} are not in the cache")
                        continue
                    # Every index up to the last one used, so the file's sample lists
                    # start at 0 and have no gaps, like a store's.
                    top = max(want, default=-1)
                    kept = {i: t for i, t in record.samples.items() if i <= top}
                    record = KeyRecord(key, record.content, kept)
                elif record is None:
                    continue  # deleted since the key list was read
                problems = record_problems(record)
                if problems:
                    broken.append(f"{key}: {'; '.join(problems)}")
                    continue
                out.append(record)
            if not missing and not broken:
                await asyncio.to_thread(writer.write, out)
    return missing, broken


def _merged_name(path: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}.merged{ext or '.jsonl'}"


def _renumber_manifests(
    paths: Sequence[str], renumbered: Mapping[str, Mapping[int, int]]
) -> list[str]:
    written: list[str] = []
    for path in paths:
        out = _merged_name(path)
        admin.write_manifest(out, admin.remap_manifest(read_manifest(path), renumbered))
        written.append(out)
    return written


def _check_manifest_outputs(paths: Sequence[str]) -> None:
    for path in paths:
        if not os.path.isfile(path):
            raise CliError(ExitCode.USAGE, f"cannot read {path}: no such file")
        if os.path.lexists(_merged_name(path)):
            raise CliError(
                ExitCode.USAGE, f"{_merged_name(path)} exists; move it away first (nothing done)"
            )


def _report_lines(report: admin.CopyReport, what: str, manifests: Sequence[str]) -> list[str]:
    verb = "would write" if report.dry_run else "wrote"
    lines = [f"{what}: {report.keys} keys, {report.samples} samples; {verb} {report.written} new"]
    if report.merge:
        lines.append(
            f"merged: {report.appended} of the source's samples in {len(report.renumbered)} "
            "keys sit after the target's own (later draws; the target's replays are unchanged)"
        )
    lines += [f"renumbered manifest written: {m}" for m in manifests]
    return lines


def _report_data(report: admin.CopyReport, manifests: Sequence[str]) -> dict[str, object]:
    return {
        "source": report.source,
        "target": report.target,
        "keys": report.keys,
        "samples": report.samples,
        "written": report.written,
        "merge": report.merge,
        "dry_run": report.dry_run,
        "appended": report.appended,
        "renumbered": {k: {str(s): t for s, t in m.items()} for k, m in report.renumbered.items()},
        "conflicts": list(report.conflicts),
        "damaged": list(report.damaged),
        "manifests": list(manifests),
    }


async def cmd_copy(args: argparse.Namespace) -> int:
    """Copy every key of one store into another; --merge combines diverged keys."""
    if args.manifest and not args.merge:
        raise CliError(ExitCode.USAGE, "--manifest renumbers a run's manifest for --merge only")
    await asyncio.to_thread(_check_manifest_outputs, args.manifest or [])
    fresh = not is_url(args.dst) and not await asyncio.to_thread(os.path.lexists, args.dst)
    if args.dry_run and fresh:
        # Nothing to open (a dry run creates nothing): the copy would write everything.
        async with opened(args.src) as src:
            empty = cast(AdminStore, _Empty(args.dst))  # only records() and location are used
            report = await admin.copy_store(src, empty, merge=args.merge, dry_run=True)
        return await _finish_copy(args, report)
    async with (
        opened(args.src) as src,
        opened(args.dst, "read" if args.dry_run else "create") as dst,
    ):
        if src.location == dst.location:
            raise CliError(
                ExitCode.USAGE, f"{shown(args.src)} and {shown(args.dst)} are the same store"
            )
        total = await key_count(args, src)
        with bar(args, total, "check" if args.dry_run else "copy") as progress:
            try:
                report = await admin.copy_store(
                    src, dst, merge=args.merge, dry_run=args.dry_run, progress=progress.update
                )
            except ImportConflictError as exc:
                raise CliError(ExitCode.FAILED, str(exc)) from None
    return await _finish_copy(args, report)


class _Empty:
    """A destination that does not exist yet, for a dry run: it holds nothing."""

    def __init__(self, spec: str) -> None:
        self.location = spec

    async def records(self, keys: Sequence[str]) -> list[KeyRecord]:
        return []


async def _finish_copy(args: argparse.Namespace, report: admin.CopyReport) -> int:
    if report.damaged:
        raise CliError(
            ExitCode.FAILED,
            f"{len(report.damaged)} keys of {shown(args.src)} are damaged; nothing was copied. "
            "Run `cachesaver verify` to see them, `cachesaver delete` to drop them",
            list(report.damaged),
        )
    if report.conflicts:
        raise CliError(
            ExitCode.FAILED,
            f"{len(report.conflicts)} keys of {shown(args.src)} conflict with "
            f"{shown(args.dst)}; nothing was copied (a stored sample is never changed; "
            "--merge appends the source's samples as later draws)",
            list(report.conflicts),
        )
    manifests: list[str] = []
    if args.manifest and not args.dry_run:
        manifests = await asyncio.to_thread(_renumber_manifests, args.manifest, report.renumbered)
    what = f"{'checked' if args.dry_run else 'copied'} {shown(args.src)} -> {shown(args.dst)}"
    emit(args, _report_data(report, manifests), _report_lines(report, what, manifests))
    return ExitCode.OK


def _file_size(path: str) -> int | None:
    if path == "-":
        return None
    return os.stat(path).st_size


async def cmd_import(args: argparse.Namespace) -> int:
    """Check a whole export file, then load it into a store in one atomic operation."""
    if args.manifest and not args.merge:
        raise CliError(ExitCode.USAGE, "--manifest renumbers a run's manifest for --merge only")
    await asyncio.to_thread(_check_manifest_outputs, args.manifest or [])
    source: str | io.BufferedReader = args.file
    if args.file == "-":
        stdin = sys.stdin.buffer
        source = stdin if isinstance(stdin, io.BufferedReader) else io.BufferedReader(stdin)  # type: ignore[arg-type]
    try:
        total = await asyncio.to_thread(_file_size, args.file)
    except OSError as exc:
        raise _input_file_error(args.file, exc) from None
    with bar(args, total, "check", unit="B") as progress:
        try:
            contents = await asyncio.to_thread(
                read_export, source, max_bytes=args.max_bytes, progress=progress.update
            )
        except OSError as exc:
            raise _input_file_error(args.file, exc) from None
    exists = is_url(args.cache) or await asyncio.to_thread(os.path.exists, args.cache)
    if args.dry_run and not exists:
        report = admin.CopyReport(
            source=args.file,
            target=args.cache,
            keys=len(contents.records),
            samples=contents.samples,
            written=0,
            merge=args.merge,
            dry_run=True,
        )
    else:
        async with opened(args.cache, "read" if args.dry_run else "create") as store:
            if not args.dry_run and sys.stderr.isatty() and not args.no_progress:
                print(
                    f"writing {contents.samples} samples in one atomic step...",
                    file=sys.stderr,
                    end="\r",
                )
            try:
                report = await admin.import_into(
                    contents.records,
                    store,
                    source=args.file,
                    merge=args.merge,
                    dry_run=args.dry_run,
                )
            except ImportConflictError as exc:
                raise CliError(
                    ExitCode.FAILED, f"import refused, the store is unchanged: {exc}"
                ) from None
    if report.conflicts and not args.dry_run:
        raise CliError(
            ExitCode.FAILED,
            f"import refused, the store is unchanged: {len(report.conflicts)} keys conflict "
            "with stored samples (--merge appends the file's samples as later draws)",
            list(report.conflicts),
        )
    manifests: list[str] = []
    if args.manifest and not args.dry_run:
        manifests = await asyncio.to_thread(_renumber_manifests, args.manifest, report.renumbered)
    data = _report_data(report, manifests)
    data["file"] = args.file
    new = report.samples if not exists else report.written
    if args.dry_run:
        lines = [
            f"{args.file} is a valid export: {report.keys} keys, {report.samples} samples",
            f"importing into {shown(args.cache)} would write {new} new samples"
            + (" (the cache would be created)" if not exists else ""),
        ]
        if report.conflicts:
            lines += [f"but {len(report.conflicts)} keys conflict with stored samples:"]
            lines += listed(list(report.conflicts))
        data["new_samples"] = new
    else:
        lines = [
            f"imported {args.file} into {shown(args.cache)}: {report.keys} keys, "
            f"{report.samples} samples, {report.written} new "
            f"({report.samples - report.written} already stored)"
        ]
        if report.merge:
            lines += _report_lines(report, "merge", manifests)[1:]
    emit(args, data, lines)
    return ExitCode.FAILED if report.conflicts else ExitCode.OK
