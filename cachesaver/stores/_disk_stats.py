"""Statistics of a disk store: totals per model identity, a chunk of the key range at a time.

The key range is cut into chunks of about `CHUNK_ROWS` rows at boundaries no key
straddles. In each chunk one SQL statement walks the content rows in key order and, for
each, seeks to its key's samples (``cs:<key>:`` and a digit) and aggregates them: count,
UTF-8 bytes, rows not in cachesaver's form, and the token counts they report. Python
receives one row per key, not one per sample, and adds keys up per content head
(`IdentityCounter`). An index-only count then checks that every row of the chunk was
counted exactly once: a row outside every key's samples (an orphan sample, a foreign
name such as ``cs:<key>:x``, a key nested in another's range) shows as a difference.

A chunk where that fails, or that holds a row not in cachesaver's form, is counted
again row by row: damage raises `StoreError` naming the key, and each key is counted
from its own rows only. (A well-formed text row named like a sample but with letters
after its digits, ``cs:<key>:1x``, which only another program could write, counts as a
sample, as the aggregate count of earlier versions did; `verify` reports it.) Everything
here runs on the store's worker thread.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cachesaver.stores._disk_format import _COLUMNS, _END, _PREFIX, RowChecks
from cachesaver.stores._tally import HEAD_START, REQUEST_MARK, IdentityCounter, token_counts
from cachesaver.stores.base import IdentityTotals

if TYPE_CHECKING:
    from cachesaver.stores._disk_indexed import IndexedRows

__all__ = ["CHUNK_ROWS", "StatsChunk", "stats_chunk"]

CHUNK_ROWS = 50_000
"""Rows per chunk: bounds one statement's time (a progress step) and its memory."""

_SHARED = (
    "NOT ({k} >= 'cs:lease:' AND {k} < 'cs:lease;') AND NOT ({k} >= 'cs:run:' AND {k} < "
    "'cs:run;') AND {k} != 'cs:store'"
)  # shared-run state and the marker sit in the range but are not keys
_PREFIX_OF_C = "substr(c.key, 1, length(c.key) - 7)"  # "cs:<key>:" of a content row
_OURS = "{0}.raw = 1 AND {0}.mode = 1 AND {0}.filename IS NULL AND typeof({0}.value) = 'text'"
# Only JSON objects (which may start with white space) can report tokens: a comparison
# skips the search in every other sample.
_TOKEN = (
    "sum(CASE WHEN (s.value >= '{{' AND s.value < '|' OR s.value < '!') AND "
    "instr(s.value, '\"prompt_tokens\"') > 0 AND json_valid(s.value) AND "
    "json_type(s.value, '$.{0}') = 'integer' THEN json_extract(s.value, '$.{0}') END)"
)
# The samples of a key are the rows from "cs:<key>:0" up to "cs:<key>::" (a digit after
# the colon): SQLite computes those bounds once per key and seeks, so no expression runs
# per sample beyond the aggregates.
_PER_KEY = (
    "SELECT c.key, CASE WHEN substr(c.value, 1, {start}) = '{head}' AND "
    "instr(c.value, '{mark}') > 0 THEN substr(c.value, 1, instr(c.value, '{mark}') - 1) END, "
    "{content_ours}, length(CAST(c.value AS BLOB)), count(s.key), "
    "total(length(CAST(s.value AS BLOB))), sum(s.key IS NOT NULL AND NOT ({sample_ours})), "
    "{prompt}, {completion} "
    "FROM Cache AS c LEFT JOIN Cache AS s "
    "ON s.key >= {prefix} || '0' AND s.key < {prefix} || ':' "
    "WHERE c.key >= ? AND c.key < ? AND c.key GLOB '*:request' AND {shared} "
    "GROUP BY c.key"
).format(
    start=len(HEAD_START),
    head=HEAD_START,
    mark=REQUEST_MARK,
    content_ours=_OURS.format("c"),
    sample_ours=_OURS.format("s"),
    prefix=_PREFIX_OF_C,
    prompt=_TOKEN.format("prompt_tokens"),
    completion=_TOKEN.format("completion_tokens"),
    shared=_SHARED.format(k="c.key"),
)
_ROWS_IN = "SELECT count(*) FROM Cache WHERE key >= ? AND key < ? AND " + _SHARED.format(k="key")
_NTH = "SELECT key FROM Cache WHERE key >= ? AND key < ? ORDER BY key LIMIT 1 OFFSET ?"


@dataclass(frozen=True, slots=True)
class StatsChunk:
    """The totals of one chunk, how many keys it held, and where the next one starts."""

    totals: list[IdentityTotals]
    keys: int
    next: str | None


def _boundary(con: sqlite3.Connection, low: str, rows: int) -> str | None:
    """An entry about ``rows`` rows after ``low`` that no key's rows straddle (None: the end).

    A key's rows lie in ``[cs:<key>:, cs:<key>;)``; a boundary with no ':' after ``cs:``
    can fall inside no such range.
    """
    found = con.execute(_NTH, (low, _END, rows)).fetchone()
    if found is None:
        return None
    entry: str = found[0]
    return _PREFIX + entry[len(_PREFIX) :].split(":", 1)[0] + ";"


def stats_chunk(store: IndexedRows, con: sqlite3.Connection, low: str | None) -> StatsChunk:
    """Totals per identity of the chunk starting at entry ``low`` (None: the first)."""
    low = _PREFIX if low is None else low
    high = _boundary(con, low, CHUNK_ROWS)
    end = _END if high is None else high
    counter = IdentityCounter()
    keys = counted = 0
    examples: dict[str, str] = {}  # head -> one of its keys' content entry
    alone: list[tuple[str, int, int, int, int]] = []
    for row in con.execute(_PER_KEY, (low, end)):
        entry, head, content_ours, content_size, samples, size, bad, prompt, completion = row
        if bad or not content_ours:
            return _exact(store, con, low, end, high)
        keys += 1
        counted += samples + 1
        if isinstance(prompt, float) or isinstance(completion, float):
            return _exact(store, con, low, end, high)  # an integer past 64 bits
        size, prompt, completion = content_size + int(size), prompt or 0, completion or 0
        if counter.trusted(head):
            counter.add(head, 1, samples, size, prompt, completion)
            examples.setdefault(head, entry)
        else:
            alone.append((entry, samples, size, prompt, completion))
    (in_range,) = con.execute(_ROWS_IN, (low, end)).fetchone()
    if in_range != counted:
        return _exact(store, con, low, end, high)
    wanted = [examples[head] for head in counter.missing_examples()]
    contents = store.select(con, wanted + [entry for entry, *_ in alone])
    for head in counter.missing_examples():
        counter.example(head, contents[examples[head]])
    for entry, *sums in alone:
        counter.add_alone(contents[entry], *sums)
    return StatsChunk(counter.totals(), keys, high)


def _exact(
    store: RowChecks, con: sqlite3.Connection, low: str, end: str, high: str | None
) -> StatsChunk:
    """The chunk counted row by row: damage raises, orphans and shared-run rows are skipped."""
    found: dict[str, list[int]] = {}  # key -> samples, bytes, prompt, completion
    contents: dict[str, str] = {}
    sql = f"SELECT {_COLUMNS} FROM Cache WHERE key >= ? AND key < ? ORDER BY key"
    for row in con.execute(sql, (low, end)):
        body = row[0][len(_PREFIX) :]
        if body == "store" or body.startswith(("lease:", "run:")):
            continue
        key, _, suffix = body.rpartition(":")
        if suffix != "request" and not suffix.isdigit():
            raise store._damaged(row)
        text = store._text(row)
        totals = found.get(key)
        if totals is None:
            totals = found[key] = [0, 0, 0, 0]
        totals[1] += len(text.encode())
        if suffix == "request":
            contents[key] = text
        else:
            prompt, completion = token_counts(text)
            totals[0] += 1
            totals[2] += prompt
            totals[3] += completion
    counter = IdentityCounter()
    for key, content in contents.items():
        counter.add_content(content, *found[key])
    return StatsChunk(counter.totals(), len(contents), high)
