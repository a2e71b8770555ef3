"""Moving samples between stores: copy, merge, and renumbering a run's manifest."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cachesaver.admin._records import CHUNK_KEYS, Progress, iter_records
from cachesaver.errors import ImportConflictError
from cachesaver.export import record_problems
from cachesaver.manifest import HEADER, ManifestEntry
from cachesaver.stores.base import AdminStore, KeyRecord

__all__ = [
    "CopyReport",
    "copy_store",
    "import_into",
    "merge_record",
    "remap_manifest",
    "write_manifest",
]


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What a copy or merge did (or, with ``dry_run``, would do).

    ``written`` counts samples written (with ``dry_run``: that would be written).
    ``renumbered`` maps each key whose source samples now live at other indices to
    ``{source index: target index}`` (with ``merge``: the source's samples appended after
    the target's). ``conflicts`` and ``damaged`` list keys that stopped a copy: then
    nothing was written (``written`` is 0).
    """

    source: str
    target: str
    keys: int
    samples: int
    written: int
    merge: bool
    dry_run: bool
    renumbered: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    conflicts: tuple[str, ...] = ()
    damaged: tuple[str, ...] = ()

    @property
    def appended(self) -> int:
        """Samples placed at indices other than their source index."""
        return sum(1 for moves in self.renumbered.values() for s, t in moves.items() if s != t)


def merge_record(
    source: KeyRecord, target: KeyRecord | None
) -> tuple[KeyRecord, dict[int, int]] | str:
    """Return what to write so ``target`` also holds ``source``'s samples, and the moves.

    The target's samples never move. Where the two lists agree from index 0, the
    source's samples are already there. The rest of the source's samples are appended
    after the target's last index, in order (so they become later draws), unless the
    target already holds them as one run of samples (a previous merge): then they map
    there. Returns a problem (a str) when the contents differ.
    """
    if target is None:
        return source, {}
    if target.content != source.content:
        return "the stored request content differs"
    ours, theirs = source.samples, target.samples
    moves: dict[int, int] = {}
    common = 0
    while common in ours and common in theirs and ours[common] == theirs[common]:
        common += 1
    rest = [ours[i] for i in sorted(ours) if i >= common]
    rest_indices = [i for i in sorted(ours) if i >= common]
    if not rest:
        return KeyRecord(source.key, source.content, {}), moves
    top = max(theirs, default=-1)
    if top < common:  # the target is a prefix of the source: plain continuation
        return KeyRecord(source.key, source.content, {i: ours[i] for i in rest_indices}), moves
    # A previous merge may have appended these samples already: find the longest run.
    best_at, best_len = -1, 0
    for start in range(common, top + 1):
        length = 0
        while length < len(rest) and theirs.get(start + length) == rest[length]:
            length += 1
        if length > best_len:
            best_at, best_len = start, length
    writes: dict[int, str] = {}
    for offset in range(best_len):
        moves[rest_indices[offset]] = best_at + offset
    nxt = top + 1
    for offset in range(best_len, len(rest)):
        moves[rest_indices[offset]] = nxt
        writes[nxt] = rest[offset]
        nxt += 1
    return KeyRecord(source.key, source.content, writes), {s: t for s, t in moves.items() if s != t}


@dataclass
class _Plan:
    records: list[KeyRecord] = field(default_factory=list)
    moves: dict[str, dict[int, int]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    new: int = 0  # samples the target does not hold yet


async def _plan(records: Sequence[KeyRecord], target: AdminStore, merge: bool) -> _Plan:
    theirs = {r.key: r for r in await target.records([r.key for r in records])}
    plan = _Plan()
    for record in records:
        stored = theirs.get(record.key)
        have = stored.samples if stored is not None else {}
        if merge:
            merged = merge_record(record, stored)
            if isinstance(merged, str):
                plan.conflicts.append(f"{record.key}: {merged}")
                continue
            plan.records.append(merged[0])
            plan.new += sum(i not in have for i in merged[0].samples)
            if merged[1]:
                plan.moves[record.key] = merged[1]
            continue
        if stored is not None:
            clashing = [i for i, t in record.samples.items() if stored.samples.get(i, t) != t]
            if stored.content != record.content:
                plan.conflicts.append(f"{record.key}: the stored request content differs")
                continue
            if clashing:
                plan.conflicts.append(
                    f"{record.key}: samples {clashing[:10]} differ from the stored ones "
                    "(use --merge to append them as later draws)"
                )
                continue
        plan.records.append(record)
        plan.new += sum(i not in have for i in record.samples)
    return plan


async def copy_store(
    source: AdminStore,
    target: AdminStore,
    *,
    merge: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every key of ``source`` into ``target``; with ``merge``, combine diverged keys.

    Without ``merge`` a key whose samples differ between the two is a conflict. First a
    full pass checks every key (damage, conflicts) and writes nothing; if all is well a
    second pass writes, 500 keys per all-or-nothing import. A concurrent writer that
    changes the target in between makes that import fail (`ImportConflictError`); what
    was written before it stays (every written sample is a correct one).
    """
    keys = samples = new = 0
    damaged: list[str] = []
    conflicts: list[str] = []
    renumbered: dict[str, dict[int, int]] = {}
    async for records in iter_records(source, progress=progress):
        for record in records:
            keys += 1
            samples += len(record.samples)
            problems = record_problems(record, contiguous=merge)
            if problems:
                damaged.append(f"{record.key}: {'; '.join(problems)}")
        plan = await _plan(records, target, merge)
        conflicts += plan.conflicts
        renumbered.update(plan.moves)
        new += plan.new
    report = CopyReport(
        source=source.location,
        target=target.location,
        keys=keys,
        samples=samples,
        written=new if dry_run else 0,
        merge=merge,
        dry_run=dry_run,
        renumbered=renumbered,
        conflicts=tuple(conflicts),
        damaged=tuple(damaged),
    )
    if dry_run or conflicts or damaged:
        return report
    written = 0
    renumbered = {}
    async for records in iter_records(source):
        written += await _write(records, target, merge, renumbered)
    return CopyReport(
        source=source.location,
        target=target.location,
        keys=keys,
        samples=samples,
        written=written,
        merge=merge,
        dry_run=False,
        renumbered=renumbered,
    )


async def _write(
    records: Sequence[KeyRecord],
    target: AdminStore,
    merge: bool,
    renumbered: dict[str, dict[int, int]],
) -> int:
    plan = await _plan(records, target, merge)
    if plan.conflicts:
        raise ImportConflictError(
            f"{target.location} changed while copying: {plan.conflicts[0]}; what was copied "
            "before is kept. Run the copy again once the other writer is done"
        )
    written = await target.import_records(plan.records)
    renumbered.update(plan.moves)
    return written


async def import_into(
    records: Sequence[KeyRecord],
    target: AdminStore,
    *,
    source: str = "export file",
    merge: bool = False,
    dry_run: bool = False,
) -> CopyReport:
    """Load checked records (e.g. an export file's) into ``target``.

    Without ``merge`` the import is all or nothing: one conflict and nothing is written.
    With ``merge`` diverged keys are combined as `copy_store` does, then written in one
    all-or-nothing import.
    """
    plan: list[KeyRecord] = []
    renumbered: dict[str, dict[int, int]] = {}
    conflicts: list[str] = []
    new = 0
    for start in range(0, len(records), CHUNK_KEYS):
        found = await _plan(records[start : start + CHUNK_KEYS], target, merge)
        plan += found.records
        renumbered.update(found.moves)
        conflicts += found.conflicts
        new += found.new
    written = new if dry_run else 0
    if not dry_run and not conflicts:
        written = await target.import_records(plan)
    return CopyReport(
        source=source,
        target=target.location,
        keys=len(records),
        samples=sum(len(r.samples) for r in records),
        written=written,
        merge=merge,
        dry_run=dry_run,
        renumbered=renumbered,
        conflicts=tuple(conflicts),
    )


def remap_manifest(
    entries: Iterable[ManifestEntry], renumbered: Mapping[str, Mapping[int, int]]
) -> list[ManifestEntry]:
    """A run's manifest with each sample index moved where a merge put that sample."""
    out: list[ManifestEntry] = []
    for entry in entries:
        moves = renumbered.get(entry.key)
        if moves:
            indices = tuple(moves.get(i, i) for i in entry.indices)
            entry = ManifestEntry(entry.key, entry.namespace, entry.request_id, indices)
        out.append(entry)
    return out


def write_manifest(path: str | os.PathLike[str], entries: Iterable[ManifestEntry]) -> None:
    """Write a manifest file (blocking I/O: call it from a worker thread in async code)."""
    lines = [json.dumps(HEADER)]
    for e in entries:
        lines.append(
            json.dumps(
                {
                    "key": e.key,
                    "namespace": e.namespace,
                    "request_id": e.request_id,
                    "indices": list(e.indices),
                },
                separators=(",", ":"),
            )
        )
    with open(path, "x", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
