"""Commands that read a store: stats, ls, show, explain, verify."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from typing import Any

from cachesaver import admin
from cachesaver.admin._records import identity_label, parse_content
from cachesaver.cli._output import (
    SHOWN,
    CliError,
    ExitCode,
    age,
    bar,
    emit,
    escaped,
    indented,
    key_count,
    listed,
    opened,
    shown,
    size,
)
from cachesaver.codec import TAG, decode_sample
from cachesaver.errors import UnknownTypeTagError
from cachesaver.savings import Price
from cachesaver.stores.base import KeyRecord

__all__ = ["cmd_explain", "cmd_ls", "cmd_show", "cmd_stats", "cmd_verify"]


def _read_json(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        raise CliError(ExitCode.USAGE, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CliError(ExitCode.BAD_FILE, f"{path} is not valid JSON: {exc}") from None


def _prices(path: str | None) -> dict[str, Price] | None:
    if path is None:
        return None
    data = _read_json(path)
    prices: dict[str, Price] = {}
    if isinstance(data, dict):
        for model, entry in data.items():
            if isinstance(entry, dict) and {"prompt", "completion"} <= set(entry):
                try:
                    prices[model] = Price(float(entry["prompt"]), float(entry["completion"]))
                    continue
                except (TypeError, ValueError):
                    pass
            break
        else:
            return prices
    raise CliError(
        ExitCode.BAD_FILE,
        f"{path}: prices must be a JSON object of model -> "
        '{"prompt": USD per 1M tokens, "completion": USD per 1M tokens}',
    )


async def cmd_stats(args: argparse.Namespace) -> int:
    """Keys, samples, bytes and reported tokens, overall and per model identity."""
    prices = await asyncio.to_thread(_prices, args.prices)
    async with opened(args.cache) as store:
        total = await key_count(args, store)
        with bar(args, total, "stats") as progress:
            stats = await admin.store_stats(store, prices=prices, progress=progress.update)
    data = {
        "store": stats.location,
        "keys": stats.keys,
        "samples": stats.samples,
        "bytes": stats.bytes,
        "identities": [
            {
                "identity": row.identity if not row.label.startswith("(") else row.label,
                "keys": row.keys,
                "samples": row.samples,
                "bytes": row.bytes,
                "prompt_tokens": row.prompt_tokens,
                "completion_tokens": row.completion_tokens,
                "dollars": row.dollars,
            }
            for row in stats.identities
        ],
    }
    lines = [
        f"store    {stats.location}",
        f"keys     {stats.keys}",
        f"samples  {stats.samples}",
        f"bytes    {size(stats.bytes)} of request content and sample text",
    ]
    if stats.identities:
        lines += [
            "",
            "per model identity:",
            f"  {'keys':>8} {'samples':>9} {'bytes':>10} {'tokens in/out':>17}  identity",
        ]
        for row in stats.identities:
            tokens = f"{row.prompt_tokens}/{row.completion_tokens}"
            money = "" if row.dollars is None else f"  ${row.dollars:.4f}"
            lines.append(
                f"  {row.keys:>8} {row.samples:>9} {size(row.bytes):>10} {tokens:>17}  "
                f"{escaped(row.label)}{money}"
            )
    emit(args, data, lines)
    return ExitCode.OK


async def cmd_ls(args: argparse.Namespace) -> int:
    """List keys, newest first, with the start of their prompt, model, samples and age."""
    async with opened(args.cache) as store:
        total = await key_count(args, store)
        with bar(args, total, "ls") as progress:
            found = await admin.search(
                store,
                grep=args.grep,
                provider=args.provider,
                model=args.model,
                progress=progress.update,
            )
    now = time.time()
    page = found[args.offset : args.offset + args.limit]
    data = {
        "total": len(found),
        "offset": args.offset,
        "keys": [
            {
                "key": s.key,
                "prompt": s.prompt,
                "identity": s.identity,
                "samples": s.samples,
                "updated": s.updated,
                "age_seconds": s.age(now),
            }
            for s in page
        ],
    }
    lines = [f"{'key':<12}  {'age':>5} {'samples':>7}  {'model':<20}  prompt"]
    for s in page:
        model = s.identity.get("model") if isinstance(s.identity, dict) else None
        label = str(model) if model is not None else s.label
        label = label if len(label) <= 20 else label[:17] + "..."
        lines.append(
            escaped(f"{s.key[:12]}  {age(s.age(now)):>5} {s.samples:>7}  {label:<20}  {s.prompt}")
        )
    shown_to = args.offset + len(page)
    lines.append(f"({len(page)} of {len(found)} keys shown)")
    if shown_to < len(found):
        lines[-1] = (
            f"({args.offset + 1}-{shown_to} of {len(found)}; next page: --offset {shown_to})"
        )
    emit(args, data, lines)
    return ExitCode.OK if found else ExitCode.NOT_FOUND


def _shown_sample(text: str) -> tuple[Any, str]:
    """A sample as JSON (for --json) and as text for people."""
    try:
        stored = json.loads(text)
    except (ValueError, RecursionError):
        return text, f"(not valid JSON) {text!r}"
    try:
        value = decode_sample(text)
    except UnknownTypeTagError:
        body = json.dumps(stored, ensure_ascii=False, indent=2)
        return stored, f"{body}\n(a type tag whose class is not registered here: shown as stored)"
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        return stored, f"(does not decode: {exc!r}) {text}"
    if isinstance(value, str):
        return stored, value
    if TAG not in text:
        return stored, json.dumps(stored, ensure_ascii=False, indent=2)
    return stored, repr(value)


def _describe(record: KeyRecord) -> tuple[dict[str, Any], list[str]]:
    content = parse_content(record.content)
    request = content.get("request") if content is not None else record.content
    samples = {i: _shown_sample(t) for i, t in sorted(record.samples.items())}
    data = {
        "key": record.key,
        "identity": content.get("identity") if content is not None else None,
        "request": request,
        "samples": {str(i): stored for i, (stored, _) in samples.items()},
    }
    lines = [f"key       {record.key}", f"identity  {identity_label(record.content)}", "request"]
    lines += indented(json.dumps(request, ensure_ascii=False, indent=2), "  ", "  ")
    lines.append(f"samples   {len(samples)}")
    for index, (_, human) in samples.items():
        label = f"  [{index}] "
        lines += indented(human, label, " " * len(label))
    return data, lines


async def cmd_show(args: argparse.Namespace) -> int:
    """The request content and decoded samples of the key(s) matching a prefix."""
    prefix = args.key_prefix.lower()
    if not re.fullmatch(r"[0-9a-f]{1,64}", prefix):
        raise CliError(
            ExitCode.USAGE,
            f"{args.key_prefix!r} is not a key prefix (hex digits); to find a key by what "
            "was asked, use `cachesaver ls CACHE --grep TEXT`",
        )
    async with opened(args.cache) as store:
        matches = sorted(k for k in await store.keys() if k.startswith(prefix))
        if not matches:
            raise CliError(
                ExitCode.NOT_FOUND, f"no key starts with {prefix!r} in {shown(args.cache)}"
            )
        if len(matches) > 1 and not args.all:
            listed_ = await store.records(matches[:SHOWN])
            raise CliError(
                ExitCode.USAGE,
                f"{len(matches)} keys start with {prefix!r}; give more digits (or --all)",
                [f"{r.key}  {len(r.samples):>4} samples" for r in listed_] + matches[SHOWN:],
            )
        records: list[KeyRecord] = []
        async for chunk in admin.iter_records(store, matches):
            records += chunk
    described = [_describe(r) for r in records]
    lines: list[str] = []
    for _, record_lines in described:
        lines += [*([""] if lines else []), *record_lines]
    emit(args, {"keys": [d for d, _ in described]}, lines)
    return ExitCode.OK


async def cmd_explain(args: argparse.Namespace) -> int:
    """Say what key a request has, whether it is stored, and how the nearest keys differ."""
    request = await asyncio.to_thread(_read_json, args.request)
    if not isinstance(request, dict):
        raise CliError(
            ExitCode.BAD_FILE,
            f"{args.request}: expected a JSON object: the request's fields "
            '({"prompt": ..., "temperature": ...}) or {"request": {...}, "identity": {...}}',
        )
    identity = None
    if args.identity_json is not None:
        try:
            identity = json.loads(args.identity_json)
        except ValueError as exc:
            raise CliError(ExitCode.USAGE, f"--identity-json is not valid JSON: {exc}") from None
    try:
        content = admin.content_of(request, identity)
    except ValueError as exc:
        raise CliError(ExitCode.BAD_FILE, f"{args.request}: {exc}") from None
    async with opened(args.cache) as store:
        total = await key_count(args, store)
        with bar(args, total, "compare") as progress:
            found = await admin.explain(
                store, content, nearest=args.nearest, progress=progress.update
            )
    data = {
        "key": found.key,
        "stored": found.stored,
        "samples": found.samples,
        "content": json.loads(found.content),
        "nearest": [
            {"key": n.key, "samples": n.samples, "differences": list(n.differences)}
            for n in found.nearest
        ],
    }
    if found.stored:
        lines = [f"key {found.key} is stored, with {found.samples} samples"]
    else:
        lines = [f"key {found.key} is not stored in {shown(args.cache)}"]
        if found.nearest:
            lines.append("nearest stored keys:")
        for n in found.nearest:
            lines.append(f"  {n.key[:16]}  {n.samples} samples, {len(n.differences)} differences")
            lines += [f"      {escaped(d)}" for d in n.differences[:SHOWN]]
    emit(args, data, lines)
    return ExitCode.OK if found.stored else ExitCode.NOT_FOUND


async def cmd_verify(args: argparse.Namespace) -> int:
    """Check every key: content hash, sample JSON and tags, depth, text, contiguous lists."""
    async with opened(args.cache) as store:
        total = await key_count(args, store)
        with bar(args, total, "verify") as progress:
            report = await admin.verify_store(store, progress=progress.update)
    data = {
        "store": report.location,
        "ok": report.ok,
        "keys": report.keys,
        "samples": report.samples,
        "broken": [{"key": b.key, "problems": list(b.problems)} for b in report.broken],
    }
    if report.broken:
        lines = [f"{len(report.broken)} of {report.keys} keys in {shown(args.cache)} are broken:"]
        lines += listed([f"{b.key}: {'; '.join(b.problems)}" for b in report.broken])
    else:
        lines = [f"ok: {report.keys} keys, {report.samples} samples in {shown(args.cache)}"]
    emit(args, data, lines)
    return ExitCode.FAILED if report.broken else ExitCode.OK
