"""The disk store's two layouts: which one a directory gets, and what only the log does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import diskcache
import pytest

from cachesaver import DiskStore, OnlineAPI, Request, StoreError
from cachesaver.stores._disk_indexed import IndexedRows
from cachesaver.stores._disk_log import LogRows
from cachesaver.stores._rowlog import INDEX_FILE
from cachesaver.stores.base import KeyRecord, SampleRead, SampleWrite
from cachesaver.testing import RecordingModel

from .helpers import make_indexed_store, schema

KEY = "ab" * 32
OTHER = "cd" * 32


def files(directory: str) -> dict[str, int]:
    """Each file's change time, but SQLite's own WAL files (any reader may make them)."""
    return {
        p.name: p.stat().st_mtime_ns
        for p in Path(directory).iterdir()
        if not p.name.endswith(("-wal", "-shm"))
    }


async def layout_of(directory: str) -> type:
    store = DiskStore(directory)
    try:
        await store.read([])
        return type(store._layout)
    finally:
        await store.aclose()


async def test_a_new_directory_becomes_a_log_and_an_old_store_stays_indexed(
    tmp_path: Path,
) -> None:
    """A store made now has no on-disk key index; one made by an earlier version keeps
    its layout, and so does another program's diskcache that holds rows."""
    new, old, foreign = (str(tmp_path / name) for name in ("new", "old", "foreign"))
    make_indexed_store(old)
    with diskcache.Cache(foreign) as cache:
        cache.set("theirs", 1)
    assert await layout_of(new) is LogRows
    assert "Cache_key_raw" not in schema(new) and "CachesaverLog" in schema(new)
    assert await layout_of(old) is IndexedRows
    assert await layout_of(foreign) is IndexedRows
    assert "Cache_key_raw" in schema(old) and "CachesaverLog" not in schema(old)
    with diskcache.Cache(foreign) as cache:
        assert cache.get("theirs") == 1


async def test_a_log_store_opened_by_diskcache_is_a_log_again_with_its_count_right(
    tmp_path: Path,
) -> None:
    """diskcache builds its key index and count triggers again when it opens a log; the
    next open drops them, and diskcache's len() still counts every row."""
    directory = str(tmp_path / "c")
    async with OnlineAPI(RecordingModel(), cache=directory, timeout=0) as api:
        await asyncio.gather(*(api.request(Request(f"q{i}", n=2)) for i in range(20)))
    with diskcache.Cache(directory) as cache:
        assert len(cache) == 1 + 20 * 3  # the marker, and per key its content and 2 samples
        assert cache.get(next(k for k in cache.iterkeys() if k.endswith(":request")))
    assert "Cache_key_raw" in schema(directory)
    async with OnlineAPI(RecordingModel(), cache=directory, timeout=0) as api:
        again = await asyncio.gather(*(api.request(Request(f"q{i}", n=3)) for i in range(20)))
        assert all(r.cached == [True, True, False] for r in again)
    assert "Cache_key_raw" not in schema(directory)
    assert not {name for name in schema(directory) if name.startswith("Settings_")}
    with diskcache.Cache(directory) as cache:
        assert len(cache) == 1 + 20 * 4


@pytest.mark.parametrize("layout", ["log", "indexed"])
async def test_one_batch_with_two_losers_of_a_key_stores_every_text_once(
    tmp_path: Path, layout: str
) -> None:
    """Two writes of one key in one batch that lose their indices: every text lands at
    exactly one index, no index is written twice, and what each write was told is stored
    is what a read returns."""
    directory = str(tmp_path / "c")
    if layout == "indexed":
        make_indexed_store(directory)
    store = DiskStore(directory)
    try:
        await store.write([SampleWrite(KEY, "{}", {0: '"a"', 1: '"b"'})])
        batch = [SampleWrite(KEY, "{}", {0: '"x"'}), SampleWrite(KEY, "{}", {1: '"y"', 2: '"z"'})]
        results = await store.write(batch)
        (got,) = await store.read([SampleRead(KEY, list(range(8)))])
        assert sorted(got) == list(range(5)), "five texts, at five distinct indices"
        assert sorted(got.values()) == sorted(['"a"', '"b"', '"x"', '"y"', '"z"'])
        for result in results:
            assert all(got[i] == text for i, text in result.stored.items())
        appended = [i for result in results for i in result.appended]
        assert len(appended) == len(set(appended)) and min(appended) >= 2
        twice = await store.write(
            [SampleWrite(OTHER, "{}", {0: '"p"'}), SampleWrite(OTHER, "{}", {0: '"q"'})]
        )
        assert twice[0].stored == twice[1].stored == {0: '"p"'}
        assert twice[1].appended == [1]
    finally:
        await store.aclose()


async def test_a_key_with_a_gap_is_read_and_deleted_by_its_rows_not_its_top(
    tmp_path: Path,
) -> None:
    """Records and deletes of a key whose highest index is huge cost its rows, not that
    index (the index reads such a key by one pass over the rows)."""
    store = DiskStore(str(tmp_path / "c"))
    try:
        await store.import_records([KeyRecord(KEY, "{}", {0: '"a"', 999_999_999: '"b"'})])
        (record,) = await store.records([KEY])
        assert record.samples == {0: '"a"', 999_999_999: '"b"'}
        assert await store.delete([KEY]) == 1
        assert await store.records([KEY]) == []
        assert await store.read([SampleRead(KEY, [0, 999_999_999])]) == [{}]
    finally:
        await store.aclose()


async def test_the_key_index_is_saved_at_close_and_loaded_by_the_next_open(
    tmp_path: Path,
) -> None:
    """A store that indexed many rows saves its key index when it closes; the next
    store opened loads it (it need not read every row), and a damaged one is rebuilt."""
    directory = str(tmp_path / "c")
    store = DiskStore(directory)
    writes = [SampleWrite(f"{i:064x}", "{}", {0: '"s"'}) for i in range(6000)]
    await store.write(writes)
    await store.aclose()
    saved = Path(directory) / INDEX_FILE
    assert saved.exists()
    for damage in (False, True):
        if damage:
            data = bytearray(saved.read_bytes())
            data[100] ^= 0xFF
            saved.write_bytes(bytes(data))
        store = DiskStore(directory)
        try:
            got = await store.read([SampleRead(w.key, [0]) for w in writes])
            assert all(g == {0: '"s"'} for g in got)
            log = store._layout._log  # type: ignore[attr-defined]
            assert log.loaded is (not damage)
        finally:
            await store.aclose()


async def test_read_only_opening_writes_nothing_to_a_log_store(tmp_path: Path) -> None:
    """A read-only store over a log reads every key without saving an index or changing
    the directory, and refuses writes."""
    directory = str(tmp_path / "c")
    store = DiskStore(directory)
    await store.write([SampleWrite(f"{i:064x}", "{}", {0: '"s"'}) for i in range(12_000)])
    await store.aclose()
    (Path(directory) / INDEX_FILE).unlink()
    before = files(directory)
    reader = DiskStore(directory, read_only=True)
    try:
        assert len(await reader.keys()) == 12_000
        (got,) = await reader.read([SampleRead(f"{5:064x}", [0])])
        assert got == {0: '"s"'}
        with pytest.raises(StoreError, match="read-only"):
            await reader.write([SampleWrite(KEY, "{}", {0: '"x"'})])
    finally:
        await reader.aclose()
    assert files(directory) == before
