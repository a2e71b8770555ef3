"""The administration library (`cachesaver.admin`) and savings accounting, called directly."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import FrozenInstanceError
from typing import Any, ClassVar

import pytest

from cachesaver import OnlineAPI, Request, Response, StoreError
from cachesaver._canonical import digest
from cachesaver.admin import (
    KeyFilter,
    content_of,
    explain,
    merge_record,
    parse_duration,
    remap_manifest,
    select_keys,
    store_stats,
    verify_store,
)
from cachesaver.manifest import ManifestEntry
from cachesaver.savings import Price, SavingsCounter
from cachesaver.stores import _disk_stats, _redis_stats, is_redis_url, open_admin_store
from cachesaver.stores.base import KeyRecord, StatsStore

from .test_cli import OPENAI, _fill, make_record


def rec(*texts: str) -> KeyRecord:
    return KeyRecord("k" * 64, "{}", {i: t for i, t in enumerate(texts)})


@pytest.mark.parametrize(
    ("source", "target", "writes", "moves"),
    [
        (("a", "b"), None, {0: "a", 1: "b"}, {}),  # new key: copied as it is
        (("a", "b"), ("a", "b"), {}, {}),  # same samples: nothing to do
        (("a", "b", "c"), ("a",), {1: "b", 2: "c"}, {}),  # the target is a prefix: continued
        (("a", "x", "y"), ("a", "b", "c"), {3: "x", 4: "y"}, {1: 3, 2: 4}),  # diverged at 1
        (("x",), ("b", "c"), {2: "x"}, {0: 2}),
        (("a", "x", "y"), ("a", "b", "x", "y"), {}, {1: 2, 2: 3}),  # merged before: found
        (("a", "x", "y", "z"), ("a", "b", "x", "y"), {4: "z"}, {1: 2, 2: 3, 3: 4}),
    ],
)
def test_merge_keeps_the_target_and_appends_the_source(
    source: tuple[str, ...],
    target: tuple[str, ...] | None,
    writes: dict[int, str],
    moves: dict[int, int],
) -> None:
    """The target's samples never move; the source's go after them (or where they already are)."""
    result = merge_record(rec(*source), None if target is None else rec(*target))
    assert not isinstance(result, str)
    assert dict(result[0].samples) == writes and result[1] == moves


def test_merge_refuses_different_content_for_one_key() -> None:
    """Two contents under one key is damage, never merged."""
    other = KeyRecord("k" * 64, '{"request":1}', {0: "a"})
    assert merge_record(rec("a"), other) == "the stored request content differs"


def test_remap_manifest_moves_only_renumbered_indices() -> None:
    """A manifest entry keeps its indices unless the merge moved them."""
    entries = [ManifestEntry("k", "a", "r1", (0, 1)), ManifestEntry("j", "a", None, (0,))]
    out = remap_manifest(entries, {"k": {1: 7}})
    assert [e.indices for e in out] == [(0, 7), (0,)]


def test_durations() -> None:
    """--older-than accepts 30d, 12h, 90m, 45s, 2w and 1d12h; anything else is refused."""
    assert parse_duration("30d") == 30 * 86400 and parse_duration("1d12h") == 36 * 3600
    assert parse_duration("1.5h") == 5400 and parse_duration("2w") == 14 * 86400
    for bad in ("", "d", "10", "3x", "1d 2h", "-1d"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


async def test_select_by_age_picks_keys_written_long_enough_ago(cache_dir: str) -> None:
    """older_than picks keys whose last sample is at least that old, and nothing else."""
    await _fill(cache_dir, [make_record("a", ["x"]), make_record("b", ["y"])])
    store = open_admin_store(cache_dir)
    try:
        assert (await select_keys(store, KeyFilter(older_than=3600))).keys == ()
        later = time.time() + 7200
        picked = await select_keys(store, KeyFilter(older_than=3600), now=later)
        assert len(picked.keys) == 2 and picked.samples == 2 and picked.scanned == 2
    finally:
        await store.aclose()
    with pytest.raises(ValueError, match="key prefix"):
        KeyFilter(prefix="XYZ")


class Chat:
    """A chat model whose samples carry provider token counts, as the adapters store them."""

    identity: ClassVar[dict[str, str]] = {"provider": "test", "model": "m1"}

    def __init__(self) -> None:
        self.calls = 0

    async def request(self, request: Request) -> Response:
        self.calls += 1
        samples = [
            {
                "text": f"answer {self.calls}.{i}",
                "prompt_tokens": 10 if i == 0 else None,
                "completion_tokens": 5,
            }
            for i in range(request.n)
        ]
        return Response(samples)


async def test_explain_takes_a_request_and_the_model_identity(cache_dir: str) -> None:
    """explain(store, Request, identity=...) finds the key a pipeline stored it under."""
    model = Chat()
    async with OnlineAPI(model, cache=cache_dir, timeout=0) as api:
        await api.request(Request("hello", n=2))
        key = api.key_of(Request("hello"))
    store = open_admin_store(cache_dir)
    try:
        found = await explain(store, Request("hello"), identity=Chat.identity)
        assert (found.key, found.stored, found.samples) == (key, True, 2)
        missed = await explain(store, Request("hello!"), identity=Chat.identity)
        assert not missed.stored and missed.nearest[0].key == key
        assert missed.nearest[0].differences == ('prompt: "hello!" vs "hello" (yours vs stored)',)
        assert content_of(Request("hello"), Chat.identity) == content_of(
            {"prompt": "hello"}, Chat.identity
        )
        stats = await store_stats(store, prices={"m1": Price(1.0, 2.0)})
        row = stats.identities[0]
        assert (row.keys, row.samples, row.prompt_tokens, row.completion_tokens) == (1, 2, 10, 10)
        assert row.dollars == pytest.approx((10 * 1 + 10 * 2) / 1e6)
        with pytest.raises(FrozenInstanceError):
            stats.keys = 3  # type: ignore[misc]
        assert (await verify_store(store)).ok
    finally:
        await store.aclose()


async def test_savings_follow_the_flags(cache_dir: str) -> None:
    """What a run paid and saved agrees with the flags and the samples' token counts."""
    counter = SavingsCounter(prices={"m1": Price(1.0, 2.0)})
    async with OnlineAPI(Chat(), cache=cache_dir, timeout=0) as api:
        first = await api.request(Request("q", n=2, namespace="a"))
        again = await api.request(Request("q", n=2, namespace="b"))
    for response in (first, again):
        counter.add(response, model="m1")
    s = counter.summary()
    assert (s.samples_paid, s.samples_saved, s.calls_paid, s.calls_saved) == (2, 2, 1, 1)
    assert (s.prompt_tokens_paid, s.completion_tokens_paid) == (10, 10)
    assert (s.prompt_tokens_saved, s.completion_tokens_saved) == (10, 10)
    assert s.dollars_paid == pytest.approx(30 / 1e6) and s.dollars_saved == s.dollars_paid
    unpriced = SavingsCounter()
    unpriced.add(first, model="unknown")
    assert unpriced.summary().dollars_paid is None


def test_savings_without_token_counts_still_count_samples() -> None:
    """Plain-text samples count as samples and calls, with zero tokens."""
    counter = SavingsCounter()
    counter.add(Response(["a", "b"], cached=[False, False], duplicated=[False, True]))
    counter.add(Response(["a"], cached=[True], duplicated=[False]))
    s = counter.summary()
    assert (s.samples_paid, s.calls_paid, s.samples_saved) == (2, 1, 1)
    assert s.prompt_tokens_paid == 0 and s.dollars_paid is None


def _by_hand(records: list[KeyRecord]) -> dict[str, list[int]]:
    """Keys, samples, bytes and reported tokens per identity label, counted record by record."""
    out: dict[str, list[int]] = {}
    for r in records:
        try:
            data = json.loads(r.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            label = "(unreadable content)"
        elif "identity" not in data:
            label = "(no identity)"
        else:
            label = json.dumps(data["identity"], sort_keys=True, separators=(",", ":"))
        row = out.setdefault(label, [0, 0, 0, 0, 0])
        row[0] += 1
        row[1] += len(r.samples)
        row[2] += len(r.content.encode()) + sum(len(t.encode()) for t in r.samples.values())
        for text in r.samples.values():
            try:
                sample = json.loads(text)
            except ValueError:
                continue  # not JSON: no tokens
            if isinstance(sample, dict) and "prompt_tokens" in sample:
                for n, field in ((3, "prompt_tokens"), (4, "completion_tokens")):
                    row[n] += sample[field] if type(sample.get(field)) is int else 0
    return out


def _odd_keys() -> list[KeyRecord]:
    """Keys of several identities with unusual samples, contents and sample counts."""
    tokens = [
        '{"text":"a","prompt_tokens":7,"completion_tokens":3}',
        '{"text":"b","prompt_tokens":true,"completion_tokens":2.0}',  # not integers
        '{"text":"c","usage":{"prompt_tokens":5}}',  # not at the top
        '"plain text mentioning \\"prompt_tokens\\": 9"',
        '"d\\u00e9j\\u00e0 \\u65e5\\u672c"',  # JSON escapes
        '"d\u00e9j\u00e0 vu, 日本"',  # multi-byte UTF-8
        '{"prompt_tokens":25.0,"completion_tokens":-3}',  # a float; a negative integer
        '{"a":{"prompt_tokens":6.5},"prompt_tokens":6,"completion_tokens":1e3}',  # nested
        '{"prompt_tokens" : 8 ,"completion_tokens":"9"}',  # spaces; a string
        ' {"prompt_tokens":2}',  # JSON may start with a space
        '{"prompt_tokens":3,"t":"a\\tb","u":{"v":[1,{"completion_tokens":4}]}}',
    ]
    records = []
    for i in range(40):
        identity = {"provider": "test", "model": f"m{1 + i % 3}"}
        texts = {j: tokens[(i + j) % len(tokens)] for j in range(i % 6)}  # 0 to 5 samples
        records.append(make_record(f"question {i}", texts, identity=identity))
    # Identities whose text holds ',"request":' share the text before it: counted apart.
    records.append(make_record("x", {0: tokens[0]}, identity={"a": 1, "request": 2}))
    records.append(make_record("y", {0: tokens[0], 1: tokens[4]}, identity={"a": 1, "request": 3}))
    records.append(make_record("z", {0: tokens[5]}, identity=None))
    unreadable = 'not json, {"identity":'
    records.append(KeyRecord(digest(unreadable), unreadable, {0: tokens[0]}))
    return records


@pytest.mark.parametrize("chunked", [False, True], ids=["one-chunk", "small-chunks"])
async def test_stats_count_each_of_several_identities_right(
    store_spec: str, chunked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """store_stats agrees, identity by identity, with counting every record by hand."""
    records = _odd_keys()
    if chunked:  # many chunks, pages and round trips, one key's rows never split
        monkeypatch.setattr(_disk_stats, "CHUNK_ROWS", 7)
        monkeypatch.setattr(_redis_stats, "PAGE_KEYS", 3)
        # A count past 64 bits: SQLite's sum turns float, so its chunk is counted again.
        big = '{"prompt_tokens":123456789012345678901234,"completion_tokens":2}'
        records.append(make_record("big", {0: big, 1: big}, identity=Chat.identity))
    await _fill(store_spec, records)
    async with OnlineAPI(Chat(), cache=store_spec, timeout=0, run_id="run-1") as api:
        for i in range(12):  # shared-run state and leases sit beside the keys
            await api.request(Request(f"q{i}", n=1 + i % 3, namespace=f"ns{i % 2}"))
    if chunked and not is_redis_url(store_spec):  # an orphan sample is no key's sample
        con = sqlite3.connect(os.path.join(store_spec, "cache.db"))
        with con:
            con.execute(
                "INSERT INTO Cache(key, raw, store_time, expire_time, access_time,"
                " access_count, tag, size, mode, filename, value)"
                " VALUES (?, 1, 0, NULL, 0, 0, NULL, 0, 1, NULL, '\"orphan\"')",
                (f"cs:{'5' * 64}:0",),
            )
        con.close()
    store = open_admin_store(store_spec)
    counted: list[int] = []
    try:
        stats = await store_stats(store, progress=counted.append)
        expected = _by_hand(await store.records(await store.keys()))
    finally:
        await store.aclose()
    got = _per_identity(stats)
    assert got == expected
    assert len(got) == 7 and got['{"model":"m1","provider":"test"}'][3] > 0
    keys = len(records) + 12
    assert (stats.keys, stats.samples) == (keys, sum(row[1] for row in expected.values()))
    assert sum(counted) == keys


def _per_identity(stats: Any) -> dict[str, list[int]]:
    """Keys, samples, bytes and tokens of each identity row of a `StoreStats`."""
    return {
        row.label: [row.keys, row.samples, row.bytes, row.prompt_tokens, row.completion_tokens]
        for row in stats.identities
    }


class RecordsOnly:
    """An `AdminStore` that cannot add up its own statistics (a store of another library)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.location = inner.location
        self.keys, self.records = inner.keys, inner.records
        self.read, self.write = inner.read, inner.write
        self.import_records, self.delete = inner.import_records, inner.delete

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_stats_of_a_store_without_its_own_totals_count_its_records(cache_dir: str) -> None:
    """A store without identity_totals is counted from its records, to the same numbers."""
    await _fill(cache_dir, _odd_keys())
    store = open_admin_store(cache_dir)
    try:
        plain = RecordsOnly(store)
        assert not isinstance(plain, StatsStore)
        counted: list[int] = []
        stats = await store_stats(plain, progress=counted.append)
        expected = _by_hand(await store.records(await store.keys()))
    finally:
        await store.aclose()
    got = _per_identity(stats)
    assert got == expected and sum(counted) == len(_odd_keys())


@pytest.mark.parametrize("damage", ["foreign-name", "content-in-a-file"])
async def test_stats_refuse_a_damaged_key_naming_it(cache_dir: str, damage: str) -> None:
    """A row named like no sample (``cs:<key>:x``) or a content row in another form is damage."""
    records = [make_record(f"question {i}", ['"a"', '"b"']) for i in range(3)]
    await _fill(cache_dir, records)
    record = max(records, key=lambda r: r.key)  # not the first key of its identity
    con = sqlite3.connect(os.path.join(cache_dir, "cache.db"))
    with con:
        if damage == "foreign-name":
            con.execute(
                "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count,"
                " tag, size, mode, filename, value) VALUES (?, 1, 0, NULL, 0, 0, NULL, 0, 1,"
                " NULL, '\"x\"')",
                (f"cs:{record.key}:x",),
            )
        else:
            con.execute(
                "UPDATE Cache SET filename = '../secret.json' WHERE key = ?",
                (f"cs:{record.key}:request",),
            )
    con.close()
    store = open_admin_store(cache_dir)
    try:
        with pytest.raises(StoreError, match=record.key[:16]):
            await store_stats(store)
    finally:
        await store.aclose()


async def test_explain_ranks_equally_different_keys_by_how_close_the_text_is(
    cache_dir: str,
) -> None:
    """With one differing field each, the stored key whose text is closest comes first."""
    await _fill(
        cache_dir,
        [
            make_record("Name three prime numbers.", ["2 3 5"]),
            make_record("What is the capital of France?", ["Paris"]),
        ],
    )
    store = open_admin_store(cache_dir)
    try:
        found = await explain(
            store, {"request": {"prompt": "What is the capital of France ?"}, "identity": OPENAI}
        )
    finally:
        await store.aclose()
    assert [len(n.differences) for n in found.nearest] == [1, 1]
    assert "France?" in found.nearest[0].differences[0]
