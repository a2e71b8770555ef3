"""The ``cachesaver`` command: inspect, check, move, share and trim caches.

Every sub-command works on a store named by a disk path (a diskcache directory) or a
Redis URL (``redis://``, ``rediss://``, ``unix://``; add ``?prefix=P`` to pick a key
prefix). Store I/O goes through the async `AdminStore` methods, 500 keys at a time;
file I/O runs on worker threads. Run ``cachesaver --help`` or see ``docs/cli.md``.

Exit codes (stable, for scripts): see `ExitCode`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import importlib
import json
import os
import re
import sqlite3
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from tqdm import tqdm

from cachesaver._canonical import CanonicalError, canonical_json
from cachesaver.codec import TAG, decode_sample
from cachesaver.errors import (
    ImportConflictError,
    NotACacheError,
    StoreError,
    UnknownTypeTagError,
)
from cachesaver.export import (
    MAX_IMPORT_BYTES,
    ExportFileError,
    ExportTooLargeError,
    ExportWriter,
    read_export,
    record_problems,
)
from cachesaver.manifest import read_manifest
from cachesaver.stores.base import AdminStore, KeyRecord
from cachesaver.stores.disk import DiskStore, open_read_only

__all__ = ["CHUNK_KEYS", "ExitCode", "main", "open_admin_store"]

CHUNK_KEYS = 500
"""Keys per `AdminStore.records` / `import_records` call: bounds memory on big caches."""

_T = TypeVar("_T")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_SHOWN = 10  # problems / keys listed in human output before "... and N more"


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


# -- opening stores ---------------------------------------------------------------------


def _redis_store(spec: str) -> AdminStore:
    try:
        module = importlib.import_module("cachesaver.stores.redis")
    except ModuleNotFoundError as exc:
        if exc.name not in ("cachesaver.stores.redis", "redis", "redis.asyncio"):
            raise
        raise CliError(
            ExitCode.STORE,
            f"{_shown(spec)}: this cachesaver has no Redis store ({exc}); install cachesaver with "
            "its Redis dependency",
        ) from None
    try:
        store = module.RedisStore(spec)  # it reads ?prefix= from the URL itself
    except ValueError as exc:
        raise CliError(ExitCode.USAGE, f"bad Redis URL: {exc}") from None
    if not isinstance(store, AdminStore):
        raise CliError(
            ExitCode.STORE, f"{_shown(spec)}: the Redis store lacks the admin operations"
        )
    return store


def open_admin_store(spec: str, *, create: bool = False, write: bool = False) -> AdminStore:
    """Open the store named by ``spec``: a diskcache directory or a Redis URL.

    A path must already be a cache directory unless ``create`` is true (a destination);
    even then an existing file, or a non-empty directory that is not a cache, is refused,
    so a typo never turns a random folder into a cache. Raises `CliError` (exit code
    `ExitCode.STORE` or `ExitCode.USAGE`) with a message saying what is wrong.
    """
    if _URL.match(spec):
        scheme = spec.split("://", 1)[0].lower()
        if scheme not in _REDIS_SCHEMES:
            raise CliError(
                ExitCode.USAGE,
                f"{_shown(spec)}: unsupported store URL scheme {scheme!r}; use a directory path or "
                "redis://, rediss:// or unix:// URL",
            )
        return _redis_store(spec)
    if not create or (os.path.isdir(spec) and os.listdir(spec)):
        # Reading (or writing into an existing directory) needs a cachesaver store: the
        # check opens its SQLite file read-only and changes nothing.
        try:
            open_read_only(spec).close()
        except NotACacheError as exc:
            suffix = "; refusing to write into it" if create else ""
            raise CliError(ExitCode.STORE, f"{exc}{suffix}") from None
        except sqlite3.Error as exc:
            raise CliError(ExitCode.STORE, f"cannot read {spec}: {exc}") from None
    elif os.path.lexists(spec) and not os.path.isdir(spec):
        raise CliError(
            ExitCode.STORE, f"{_shown(spec)} is not a directory, so not a cachesaver cache"
        )
    return DiskStore(spec, read_only=not (create or write))


def _shown(spec: str) -> str:
    """Return ``spec`` fit for output: a password in a URL is replaced by ``***``."""
    if not _URL.match(spec):
        return spec
    parts = urlsplit(spec)
    if parts.password is None:
        return spec
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@contextlib.asynccontextmanager
async def _opened(
    spec: str, *, create: bool = False, write: bool = False
) -> AsyncIterator[AdminStore]:
    store = await asyncio.to_thread(open_admin_store, spec, create=create, write=write)
    try:
        yield store
    finally:
        await store.aclose()


# -- small helpers ---------------------------------------------------------------------


def _chunks(items: Sequence[_T], size: int = CHUNK_KEYS) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _bar(args: argparse.Namespace, total: int | None, desc: str, unit: str = "key") -> tqdm[Any]:
    """A progress bar on stderr, drawn only when stderr is a terminal."""
    enabled = not args.no_progress and sys.stderr.isatty()
    bar: tqdm[Any] = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit == "B",
        file=sys.stderr,
        disable=not enabled,
        leave=False,
    )
    return bar


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _record_bytes(record: KeyRecord) -> int:
    return len(record.content.encode()) + sum(len(t.encode()) for t in record.samples.values())


def _parse_content(content: str) -> dict[str, Any] | None:
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


_NO_IDENTITY = "(no identity)"
_UNREADABLE = "(unreadable content)"


def _identity_label(content: str) -> str:
    data = _parse_content(content)
    if data is None:
        return _UNREADABLE
    if "identity" not in data:
        return _NO_IDENTITY
    return json.dumps(data["identity"], sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _listed(items: Sequence[str], limit: int = _SHOWN) -> list[str]:
    lines = [f"  {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more (use --json for all)")
    return lines


def _emit(args: argparse.Namespace, data: dict[str, Any], lines: Sequence[str]) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print("\n".join(lines))


# -- stats ------------------------------------------------------------------------------


async def _cmd_stats(args: argparse.Namespace) -> int:
    """Keys, samples and bytes, overall and per model identity."""
    per: dict[str, list[int]] = {}
    async with _opened(args.cache) as store:
        keys = sorted(await store.keys())
        with _bar(args, len(keys), "stats") as bar:
            for chunk in _chunks(keys):
                for record in await store.records(chunk):
                    tally = per.setdefault(_identity_label(record.content), [0, 0, 0])
                    tally[0] += 1
                    tally[1] += len(record.samples)
                    tally[2] += _record_bytes(record)
                bar.update(len(chunk))
        location = store.location
    rows = sorted(per.items(), key=lambda item: (-item[1][0], item[0]))
    total = [sum(t[i] for t in per.values()) for i in range(3)]
    data = {
        "store": location,
        "keys": total[0],
        "samples": total[1],
        "bytes": total[2],
        "identities": [
            {
                "identity": label if label.startswith("(") else json.loads(label),
                "keys": t[0],
                "samples": t[1],
                "bytes": t[2],
            }
            for label, t in rows
        ],
    }
    lines = [
        f"store    {location}",
        f"keys     {total[0]}",
        f"samples  {total[1]}",
        f"bytes    {_size(total[2])} of request content and sample text",
    ]
    if rows:
        lines += [
            "",
            "per model identity:",
            f"  {'keys':>8} {'samples':>9} {'bytes':>10}  identity",
        ]
        lines += [f"  {t[0]:>8} {t[1]:>9} {_size(t[2]):>10}  {label}" for label, t in rows]
    _emit(args, data, lines)
    return ExitCode.OK


# -- show -------------------------------------------------------------------------------


def _shown_sample(text: str) -> tuple[Any, str]:
    """Return a sample as JSON (for --json) and as text for people."""
    try:
        stored = json.loads(text)
    except (ValueError, RecursionError):
        return text, f"(not valid JSON) {text!r}"
    try:
        value = decode_sample(text)
    except UnknownTypeTagError:
        body = json.dumps(stored, ensure_ascii=False, indent=2)
        return stored, f"{body}\n(a type tag whose class is not registered here: shown as stored)"
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return stored, f"(does not decode: {exc!r}) {text}"
    if isinstance(value, str):
        return stored, value
    if TAG not in text:
        return stored, json.dumps(stored, ensure_ascii=False, indent=2)
    return stored, repr(value)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _indented(text: str, first: str, rest: str) -> list[str]:
    """Indent ``text`` for a terminal; control characters (escape codes) are shown escaped."""
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    lines = text.split("\n")
    return [first + lines[0]] + [rest + line for line in lines[1:]]


def _describe_record(record: KeyRecord) -> tuple[dict[str, Any], list[str]]:
    content = _parse_content(record.content)
    request = content.get("request") if content is not None else record.content
    identity = _identity_label(record.content)
    samples = {i: _shown_sample(t) for i, t in sorted(record.samples.items())}
    data = {
        "key": record.key,
        "identity": content.get("identity") if content is not None else None,
        "request": request,
        "samples": {str(i): stored for i, (stored, _) in samples.items()},
    }
    lines = [f"key       {record.key}", f"identity  {identity}", "request"]
    lines += _indented(json.dumps(request, ensure_ascii=False, indent=2), "  ", "  ")
    lines.append(f"samples   {len(samples)}")
    for index, (_, human) in samples.items():
        label = f"  [{index}] "
        lines += _indented(human, label, " " * len(label))
    return data, lines


def _summary(record: KeyRecord) -> str:
    content = _parse_content(record.content) or {}
    request = json.dumps(content.get("request"), ensure_ascii=False)
    if len(request) > 60:
        request = request[:57] + "..."
    return _indented(f"{record.key}  {len(record.samples):>4} samples  {request}", "", "")[0]


async def _cmd_show(args: argparse.Namespace) -> int:
    """The request content and decoded samples of the key(s) matching a prefix."""
    prefix = args.key_prefix.lower()
    if not re.fullmatch(r"[0-9a-f]{1,64}", prefix):
        raise CliError(ExitCode.USAGE, f"{args.key_prefix!r} is not a key prefix (hex digits)")
    async with _opened(args.cache) as store:
        matches = sorted(k for k in await store.keys() if k.startswith(prefix))
        if not matches:
            raise CliError(
                ExitCode.NOT_FOUND, f"no key starts with {prefix!r} in {_shown(args.cache)}"
            )
        if len(matches) > 1 and not args.all:
            listed = await store.records(matches[:_SHOWN])
            raise CliError(
                ExitCode.USAGE,
                f"{len(matches)} keys start with {prefix!r}; give more digits (or --all)",
                [_summary(r) for r in listed] + list(matches[_SHOWN:]),
            )
        records: list[KeyRecord] = []
        for chunk in _chunks(matches):
            records += await store.records(chunk)
    described = [_describe_record(r) for r in records]
    lines: list[str] = []
    for _, record_lines in described:
        lines += [*([""] if lines else []), *record_lines]
    data: dict[str, Any] = {"keys": [d for d, _ in described]}
    _emit(args, data, lines)
    return ExitCode.OK


# -- export -----------------------------------------------------------------------------


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


async def _cmd_export(args: argparse.Namespace) -> int:
    """Write the cache, or exactly the samples of a run's manifest, to a JSON-lines file."""
    compress = args.gzip or args.output.endswith(".gz")
    wanted: dict[str, set[int]] | None = None
    entries = 0
    if args.manifest:
        try:
            wanted, entries = await asyncio.to_thread(_manifest_wants, args.manifest)
        except OSError as exc:
            raise _input_file_error(exc.filename or args.manifest[0], exc) from None
        except ValueError as exc:
            raise CliError(ExitCode.BAD_FILE, f"bad manifest: {exc}") from None
    async with _opened(args.cache) as store:
        keys = sorted(wanted) if wanted is not None else sorted(await store.keys())
        try:
            writer = await asyncio.to_thread(
                ExportWriter, args.output, compress=compress, overwrite=args.force
            )
        except FileExistsError as exc:
            raise CliError(ExitCode.USAGE, str(exc)) from None
        except OSError as exc:
            raise CliError(
                ExitCode.USAGE, f"cannot write {args.output}: {exc.strerror or exc}"
            ) from None
        try:
            missing, broken = await _export_records(args, store, keys, wanted, writer)
            if missing:
                raise CliError(
                    ExitCode.NOT_FOUND,
                    f"the manifest names samples {_shown(args.cache)} does not hold "
                    f"({len(missing)} keys); nothing was written. Export from the cache the "
                    "run used",
                    missing,
                )
            if broken:
                raise CliError(
                    ExitCode.FAILED,
                    f"{len(broken)} keys of {_shown(args.cache)} are damaged; nothing was written. "
                    "Run `cachesaver verify` to see them, `cachesaver prune` to drop them",
                    broken,
                )
            await asyncio.to_thread(writer.commit)
        except OSError as exc:
            await asyncio.to_thread(writer.abort)
            raise CliError(
                ExitCode.FAILED, f"cannot write {args.output}: {exc.strerror or exc}"
            ) from None
        except BaseException:
            await asyncio.to_thread(writer.abort)
            raise
        location = store.location
    size = await asyncio.to_thread(os.path.getsize, args.output)
    data = {
        "store": location,
        "output": args.output,
        "keys": writer.keys,
        "samples": writer.samples,
        "bytes": size,
        "gzip": compress,
        "manifest_entries": entries if wanted is not None else None,
    }
    source = f" used by {entries} manifest entries" if wanted is not None else ""
    lines = [
        f"exported {writer.keys} keys, {writer.samples} samples{source} to {args.output} "
        f"({_size(size)}{', gzip' if compress else ''})"
    ]
    _emit(args, data, lines)
    return ExitCode.OK


async def _export_records(
    args: argparse.Namespace,
    store: AdminStore,
    keys: Sequence[str],
    wanted: dict[str, set[int]] | None,
    writer: ExportWriter,
) -> tuple[list[str], list[str]]:
    missing: list[str] = []
    broken: list[str] = []
    with _bar(args, len(keys), "export") as bar:
        for chunk in _chunks(keys):
            found = {r.key: r for r in await store.records(chunk)}
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
            bar.update(len(chunk))
    return missing, broken


# -- import -----------------------------------------------------------------------------


async def _conflicts(store: AdminStore, records: Sequence[KeyRecord]) -> tuple[list[str], int]:
    """Return the keys whose samples differ in ``store``, and how many samples are new."""
    conflicts: list[str] = []
    new = 0
    for chunk in _chunks(records):
        theirs = {r.key: r for r in await store.records([r.key for r in chunk])}
        for record in chunk:
            stored = theirs.get(record.key)
            if stored is None:
                new += len(record.samples)
                continue
            clashing = [i for i, t in record.samples.items() if stored.samples.get(i, t) != t]
            if stored.content != record.content:
                conflicts.append(f"{record.key}: the stored request content differs")
            elif clashing:
                conflicts.append(f"{record.key}: samples {clashing} differ from the stored ones")
            new += sum(i not in stored.samples for i in record.samples)
    return conflicts, new


def _plain_size(path: str) -> int | None:
    """Return the size of an uncompressed file (the bar's total), None for gzip."""
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
        return None if gzipped else os.fstat(handle.fileno()).st_size


async def _cmd_import(args: argparse.Namespace) -> int:
    """Check a whole export file, then load it into a store in one atomic operation."""
    try:
        total = await asyncio.to_thread(_plain_size, args.file)
    except OSError as exc:
        raise _input_file_error(args.file, exc) from None
    with _bar(args, total, "check", unit="B") as bar:
        try:
            contents = await asyncio.to_thread(
                read_export, args.file, max_bytes=args.max_bytes, progress=bar.update
            )
        except OSError as exc:
            raise _input_file_error(args.file, exc) from None
    records = contents.records
    if args.dry_run:
        conflicts: list[str] = []
        new = contents.samples
        exists = _URL.match(args.cache) is not None or await asyncio.to_thread(
            os.path.exists, args.cache
        )
        if exists:
            async with _opened(args.cache) as store:
                conflicts, new = await _conflicts(store, records)
        data = {
            "file": args.file,
            "keys": len(records),
            "samples": contents.samples,
            "new_samples": new,
            "conflicts": conflicts,
            "dry_run": True,
        }
        lines = [
            f"{args.file} is a valid export: {len(records)} keys, {contents.samples} samples",
            f"importing into {_shown(args.cache)} would write {new} new samples"
            + ("" if exists else " (the cache would be created)"),
        ]
        if conflicts:
            lines += [f"but {len(conflicts)} keys conflict with stored samples:"]
            lines += _listed(conflicts)
        _emit(args, data, lines)
        return ExitCode.FAILED if conflicts else ExitCode.OK
    async with _opened(args.cache, create=True) as store:
        try:
            written = await store.import_records(records)
        except ImportConflictError as exc:
            raise CliError(
                ExitCode.FAILED, f"import refused, the store is unchanged: {exc}"
            ) from None
        location = store.location
    data = {
        "file": args.file,
        "store": location,
        "keys": len(records),
        "samples": contents.samples,
        "written": written,
        "dry_run": False,
    }
    lines = [
        f"imported {args.file} into {_shown(args.cache)}: {len(records)} keys, {contents.samples} "
        f"samples, {written} new ({contents.samples - written} already stored)"
    ]
    _emit(args, data, lines)
    return ExitCode.OK


# -- copy -------------------------------------------------------------------------------


async def _cmd_copy(args: argparse.Namespace) -> int:
    """Copy every key of one store into another (e.g. a disk cache into Redis)."""
    async with _opened(args.src) as src, _opened(args.dst, create=True) as dst:
        if src.location == dst.location:
            raise CliError(
                ExitCode.USAGE, f"{_shown(args.src)} and {_shown(args.dst)} are the same store"
            )
        keys = sorted(await src.keys())
        problems: list[str] = []
        conflicts: list[str] = []
        with _bar(args, len(keys), "check") as bar:
            for chunk in _chunks(keys):
                records = await src.records(chunk)
                for record in records:
                    found = record_problems(record, contiguous=False)
                    if found:
                        problems.append(f"{record.key}: {'; '.join(found)}")
                conflicts += (await _conflicts(dst, records))[0]
                bar.update(len(chunk))
        if problems:
            raise CliError(
                ExitCode.FAILED,
                f"{len(problems)} keys of {_shown(args.src)} are damaged; nothing was copied. Run "
                "`cachesaver verify` to see them, `cachesaver prune` to drop them",
                problems,
            )
        if conflicts:
            raise CliError(
                ExitCode.FAILED,
                f"{len(conflicts)} keys of {_shown(args.src)} conflict with "
                f"{_shown(args.dst)}; nothing was copied (a stored sample is never changed)",
                conflicts,
            )
        written = samples = 0
        with _bar(args, len(keys), "copy") as bar:
            for chunk in _chunks(keys):
                records = await src.records(chunk)
                samples += sum(len(r.samples) for r in records)
                try:
                    written += await dst.import_records(records)
                except ImportConflictError as exc:
                    raise CliError(
                        ExitCode.FAILED,
                        f"{_shown(args.dst)} changed during the copy: {exc}; {written} "
                        "samples were copied before it. Re-run the copy once the writer is done",
                    ) from None
                bar.update(len(chunk))
        data = {
            "src": src.location,
            "dst": dst.location,
            "keys": len(keys),
            "samples": samples,
            "written": written,
        }
    lines = [
        f"copied {len(keys)} keys, {samples} samples from {_shown(args.src)} to {_shown(args.dst)} "
        f"({written} new, {samples - written} already there)"
    ]
    _emit(args, data, lines)
    return ExitCode.OK


# -- verify -----------------------------------------------------------------------------


async def _cmd_verify(args: argparse.Namespace) -> int:
    """Check every key: content hash, sample JSON and tags, contiguous sample lists."""
    broken: list[dict[str, Any]] = []
    samples = 0
    async with _opened(args.cache) as store:
        keys = sorted(await store.keys())
        with _bar(args, len(keys), "verify") as bar:
            for chunk in _chunks(keys):
                for record in await store.records(chunk):
                    samples += len(record.samples)
                    problems = record_problems(record)
                    if problems:
                        broken.append({"key": record.key, "problems": problems})
                bar.update(len(chunk))
        location = store.location
    data = {
        "store": location,
        "ok": not broken,
        "keys": len(keys),
        "samples": samples,
        "broken": broken,
    }
    if broken:
        lines = [f"{len(broken)} of {len(keys)} keys in {_shown(args.cache)} are broken:"]
        lines += _listed([f"{b['key']}: {'; '.join(b['problems'])}" for b in broken])
    else:
        lines = [f"ok: {len(keys)} keys, {samples} samples in {_shown(args.cache)}"]
    _emit(args, data, lines)
    return ExitCode.FAILED if broken else ExitCode.OK


# -- prune ------------------------------------------------------------------------------


def _identity_filter(args: argparse.Namespace) -> Callable[[dict[str, Any] | None], bool]:
    fields = {
        name: value
        for name, value in (("provider", args.provider), ("model", args.model))
        if value is not None
    }
    chosen = sum([bool(fields), args.identity_json is not None, args.no_identity])
    if chosen != 1:
        raise CliError(
            ExitCode.USAGE,
            "say which model's keys to prune: --provider/--model, --identity-json or "
            "--no-identity (exactly one of these)",
        )
    if args.no_identity:
        return lambda content: content is not None and "identity" not in content
    if args.identity_json is not None:
        try:
            target = canonical_json(json.loads(args.identity_json), "--identity-json")
        except (ValueError, CanonicalError) as exc:
            raise CliError(ExitCode.USAGE, f"--identity-json is not valid JSON: {exc}") from None

        def same(content: dict[str, Any] | None) -> bool:
            if content is None or "identity" not in content:
                return False
            try:
                return canonical_json(content["identity"]) == target
            except CanonicalError:
                return False

        return same

    def matches(content: dict[str, Any] | None) -> bool:
        identity = content.get("identity") if content is not None else None
        return isinstance(identity, dict) and all(identity.get(k) == v for k, v in fields.items())

    return matches


async def _cmd_prune(args: argparse.Namespace) -> int:
    """Delete every key of one model identity (all its samples)."""
    wanted = _identity_filter(args)
    chosen: list[str] = []
    samples = 0
    async with _opened(args.cache, write=not args.dry_run) as store:
        keys = sorted(await store.keys())
        with _bar(args, len(keys), "scan") as bar:
            for chunk in _chunks(keys):
                for record in await store.records(chunk):
                    if wanted(_parse_content(record.content)):
                        chosen.append(record.key)
                        samples += len(record.samples)
                bar.update(len(chunk))
        deleted = 0
        if chosen and not args.dry_run:
            if not args.yes and sys.stdin.isatty():
                answer = await asyncio.to_thread(
                    input, f"delete {len(chosen)} keys ({samples} samples)? [y/N] "
                )
                if answer.strip().lower() not in ("y", "yes"):
                    raise CliError(ExitCode.USAGE, "nothing deleted (not confirmed)")
            with _bar(args, len(chosen), "delete") as bar:
                for chunk in _chunks(chosen):
                    deleted += await store.delete(chunk)
                    bar.update(len(chunk))
        location = store.location
    data = {
        "store": location,
        "dry_run": args.dry_run,
        "keys": len(chosen),
        "samples": samples,
        "deleted": deleted,
        "matched": chosen,
    }
    verb = "would delete" if args.dry_run else "deleted"
    lines = [
        f"{verb} {len(chosen)} of {len(keys)} keys ({samples} samples) in {_shown(args.cache)}"
    ]
    if args.dry_run:
        lines += _listed(chosen)
    _emit(args, data, lines)
    return ExitCode.OK


# -- the parser and main ----------------------------------------------------------------

_STORE = "a cache directory, or a Redis URL (redis://host:6379/0[?prefix=P])"
_EPILOG = """\
exit codes:
  0  ok
  1  verification failed, an import/copy conflicts with stored samples, or an
     export met a damaged key or could not be written
  2  usage error (bad arguments, ambiguous key prefix, output file exists, ...)
  3  the store cannot be opened or reached (wrong path, not a cache, Redis down)
  4  malformed export file or manifest (the line is named)
  5  not found (no key matches; the manifest names samples the cache lacks)
  70 internal error (a bug; the traceback is printed)
  130 interrupted

docs: docs/cli.md
"""

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


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
        description="Inspect, verify, share and trim cachesaver caches.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cachesaver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, summary: str) -> argparse.ArgumentParser:
        doc = handler.__doc__ or summary
        p = sub.add_parser(name, parents=[common], help=summary, description=doc)
        p.set_defaults(handler=handler)
        return p

    p = command("stats", _cmd_stats, "keys, samples and bytes, per model identity")
    p.add_argument("cache", help=_STORE)

    p = command("show", _cmd_show, "print a key's request and decoded samples")
    p.add_argument("cache", help=_STORE)
    p.add_argument("key_prefix", metavar="KEY_PREFIX", help="the key or its first hex digits")
    p.add_argument("--all", action="store_true", help="show every key matching the prefix")

    p = command("export", _cmd_export, "write the cache (or a run's samples) to a file")
    p.add_argument("cache", help=_STORE)
    p.add_argument("output", help="the file to write (gzip when it ends in .gz)")
    p.add_argument(
        "--manifest",
        action="append",
        metavar="PATH",
        help="export exactly the samples this run manifest used (repeatable)",
    )
    p.add_argument("--gzip", action="store_true", help="compress even without a .gz name")
    p.add_argument("--force", action="store_true", help="replace an existing output file")

    p = command("import", _cmd_import, "load an export file into a store, all or nothing")
    p.add_argument("file", help="an export file (plain or gzip)")
    p.add_argument("cache", help=_STORE + "; created if missing")
    p.add_argument(
        "--dry-run", action="store_true", help="check the file and look for conflicts only"
    )
    p.add_argument(
        "--max-bytes",
        type=int,
        default=MAX_IMPORT_BYTES,
        metavar="N",
        help=f"most uncompressed text loaded at once (default {MAX_IMPORT_BYTES})",
    )

    p = command("copy", _cmd_copy, "copy every key of one store into another")
    p.add_argument("src", help=_STORE)
    p.add_argument("dst", help=_STORE + "; created if missing")

    p = command("verify", _cmd_verify, "check hashes, sample JSON and contiguous lists")
    p.add_argument("cache", help=_STORE)

    p = command("prune", _cmd_prune, "delete the keys of one model identity")
    p.add_argument("cache", help=_STORE)
    p.add_argument("--provider", help="identity field 'provider' equals this")
    p.add_argument("--model", help="identity field 'model' equals this")
    p.add_argument("--identity-json", metavar="JSON", help="the identity equals this JSON")
    p.add_argument("--no-identity", action="store_true", help="keys without a model identity")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask on a terminal")
    return parser


def _store_failure(exc: BaseException) -> bool:
    if isinstance(exc, (StoreError, ConnectionError, TimeoutError)):
        return True
    redis_errors = sys.modules.get("redis.exceptions")
    base = getattr(redis_errors, "RedisError", None)
    return isinstance(base, type) and isinstance(exc, base)


def _report(
    args: argparse.Namespace | None, code: ExitCode, message: str, details: list[str]
) -> int:
    print(f"cachesaver: error: {message}", file=sys.stderr)
    for line in _listed(details):
        print(line, file=sys.stderr)
    if args is not None and getattr(args, "json", False):
        print(
            json.dumps({"ok": False, "exit_code": int(code), "error": message, "details": details})
        )
    return int(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cachesaver`` command with ``argv`` (default: the process arguments)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse exits 2)
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    handler: Handler = args.handler
    try:
        return int(asyncio.run(handler(args)))
    except CliError as exc:
        return _report(args, exc.code, exc.message, exc.details)
    except ExportTooLargeError as exc:
        return _report(args, ExitCode.BAD_FILE, str(exc), [])
    except ExportFileError as exc:
        return _report(args, ExitCode.BAD_FILE, f"rejected, nothing was imported: {exc}", [])
    except KeyboardInterrupt:
        print("cachesaver: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:
        if _store_failure(exc):
            return _report(args, ExitCode.STORE, f"store failure: {exc}", [])
        if isinstance(exc, OSError):
            return _report(args, ExitCode.FAILED, f"I/O error: {exc}", [])
        # A bug (ours or the store's): keep the traceback, and an exit code of its own
        # so scripts never mistake it for a verification failure (Python's default is 1).
        traceback.print_exc()
        return _report(args, ExitCode.INTERNAL, f"internal error: {exc!r}", [])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
