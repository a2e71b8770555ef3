"""Statistics of a disk store in the log layout: totals per model identity, in one pass.

A log has no key order on disk, so one SQL statement groups every row by its key
(``cs:<key>:`` : the name without ``request`` or the sample index) and aggregates each
group as `_disk_stats` aggregates a key: its content's head, sample count, UTF-8 bytes,
rows not in cachesaver's form, and the token counts the samples report. Python receives
one row per key and adds keys up per content head (`IdentityCounter`).

A group with a row not in cachesaver's form, a name that is neither a content nor a
sample, or two content rows (only another program writes those) sends the whole store
to `_disk_stats`'s row-by-row count, which raises `StoreError` naming the damaged key.
Samples with no content (an orphan) are not counted, as in the indexed layout.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from cachesaver.stores._disk_format import _END, _MARKER, _PREFIX
from cachesaver.stores._disk_stats import _OURS, _TOKEN, StatsChunk, _exact
from cachesaver.stores._tally import HEAD_START, REQUEST_MARK, IdentityCounter

if TYPE_CHECKING:
    from cachesaver.stores._disk_log import LogRows

__all__ = ["log_stats"]

_SAMPLE_TOKEN = _TOKEN.replace("CASE WHEN ", "CASE WHEN NOT s.r AND ", 1)
_PER_KEY = (
    "SELECT s.k, "
    "max(CASE WHEN s.r AND substr(s.value, 1, {start}) = '{head}' AND "
    "instr(s.value, '{mark}') > 0 THEN substr(s.value, 1, instr(s.value, '{mark}') - 1) END), "
    "min(CASE WHEN s.r THEN {ours} END), "
    "total(CASE WHEN s.r THEN length(CAST(s.value AS BLOB)) END), "
    "sum(NOT s.r), total(CASE WHEN NOT s.r THEN length(CAST(s.value AS BLOB)) END), "
    "sum(NOT s.r AND (NOT ({ours}) OR length(s.key) = length(s.k))), "
    "{prompt}, {completion}, sum(s.r) "
    "FROM (SELECT key, raw, mode, filename, value, key GLOB '*:request' AS r, "
    "CASE WHEN key GLOB '*:request' THEN substr(key, 1, length(key) - 7) "
    "ELSE rtrim(key, '0123456789') END AS k FROM Cache "
    "WHERE key >= ? AND key < ? AND key != ?) AS s "
    "GROUP BY s.k"
).format(
    start=len(HEAD_START),
    head=HEAD_START,
    mark=REQUEST_MARK,
    ours=_OURS.format("s"),
    prompt=_SAMPLE_TOKEN.format("prompt_tokens"),
    completion=_SAMPLE_TOKEN.format("completion_tokens"),
)


def log_stats(rows: LogRows, con: sqlite3.Connection) -> StatsChunk:
    """Totals per identity of the whole store (one chunk: ``next`` is None)."""
    counter = IdentityCounter()
    keys = 0
    examples: dict[str, str] = {}  # head -> one of its keys
    alone: list[tuple[str, int, int, int, int]] = []
    for row in con.execute(_PER_KEY, (_PREFIX, _END, _MARKER)):
        prefix, head, content_ours, content_size, samples, size, bad, prompt, completion = row[:9]
        contents = row[9]
        if not prefix.endswith(":") or prefix.startswith(("cs:run:", "cs:lease:")):
            if prefix.startswith(("cs:run:", "cs:lease:")):
                continue  # shared-run state left by an earlier layout
            return _exact(rows, con, _PREFIX, _END, None)
        if contents == 0:
            continue  # an orphan sample
        if bad or contents > 1 or not content_ours:
            return _exact(rows, con, _PREFIX, _END, None)
        if isinstance(prompt, float) or isinstance(completion, float):
            return _exact(rows, con, _PREFIX, _END, None)  # an integer past 64 bits
        keys += 1
        key = prefix[len(_PREFIX) : -1]
        size, prompt, completion = int(content_size + size), prompt or 0, completion or 0
        if counter.trusted(head):
            counter.add(head, 1, samples, size, prompt, completion)
            examples.setdefault(head, key)
        else:
            alone.append((key, samples, size, prompt, completion))
    wanted = [examples[head] for head in counter.missing_examples()]
    contents_of = {r.key: r.content for r in rows.records(con, wanted + [k for k, *_ in alone])}
    for head in counter.missing_examples():
        counter.example(head, contents_of[examples[head]])
    for key, *sums in alone:
        counter.add_alone(contents_of[key], *sums)
    return StatsChunk(counter.totals(), keys, None)
