"""SEMANTICS "Storage": a tampered disk cache never runs code and never opens a file.

Each test plants a row diskcache itself would unpickle (a pickle that creates a marker
file when loaded) or open (a value "in a file" named ``../secret.json``) and drives one
path that reads rows: pipeline reads and replays, racing writes, imports, shared-run
reservations and leases, and every command. Each must refuse with a `StoreError` (exit 3
for commands) naming the key, run nothing and leak nothing.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cachesaver import DiskStore, OnlineAPI, Request, StoreError
from cachesaver.cli import ExitCode, main
from cachesaver.stores.base import KeyRecord, LeaseRequest, Reservation, SampleWrite
from cachesaver.testing import RecordingModel

from .helpers import make_indexed_store

SECRET = "TOP-SECRET-CONTENT"
MODE_TEXT, MODE_PICKLE = 3, 4  # diskcache's modes: value in a text file; pickled value


class Plant:
    """A real cache with key K (2 samples) whose rows a test then tampers with."""

    def __init__(self, tmp_path: Path, layout: str = "log") -> None:
        self.root = tmp_path
        self.cache = str(tmp_path / "cache")
        if layout == "indexed":  # a store as earlier versions made it
            make_indexed_store(self.cache)
        self.marker = tmp_path / "code-ran"
        (tmp_path / "secret.json").write_text(SECRET)
        self.request = Request("what is 6 x 7?", n=2)

        async def fill() -> str:
            async with OnlineAPI(RecordingModel(), cache=self.cache, timeout=0) as api:
                await api.request(self.request)
                return api.key_of(self.request)

        self.key = asyncio.run(fill())

    def pickle_bytes(self) -> bytes:
        """A pickle that creates the marker file when it is loaded."""
        marker = str(self.marker)

        class Evil:
            def __reduce__(self) -> tuple[Any, ...]:
                return (open, (marker, "w"))

        return pickle.dumps(Evil())

    def _sql(self, statement: str, params: tuple[Any, ...]) -> None:
        con = sqlite3.connect(str(Path(self.cache) / "cache.db"))
        try:
            con.execute(statement, params)
            con.commit()
        finally:
            con.close()

    def _state(self, entry: str) -> bool:
        """Plant a shared-run entry where a log store keeps them (its own table, where
        the one hostile form is a non-text value); False for an indexed store."""
        if not entry.startswith(("cs:run:", "cs:lease:")):
            return False
        con = sqlite3.connect(str(Path(self.cache) / "cache.db"))
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
        finally:
            con.close()
        if "CachesaverState" not in tables:
            return False
        self._sql(
            "INSERT OR REPLACE INTO CachesaverState(name, value, expire_time) VALUES (?, ?, ?)",
            (entry, sqlite3.Binary(self.pickle_bytes()), 1e12),
        )
        return True

    def as_pickle(self, entry: str) -> None:
        """Make ``entry`` a pickled row (inserted if it does not exist yet)."""
        if self._state(entry):
            return
        self._sql(
            "INSERT OR REPLACE INTO Cache(key, raw, store_time, expire_time, access_time,"
            " access_count, tag, size, mode, filename, value)"
            " VALUES (?, 1, 0, NULL, 0, 0, NULL, 0, ?, NULL, ?)",
            (entry, MODE_PICKLE, sqlite3.Binary(self.pickle_bytes())),
        )

    def as_file(self, entry: str) -> None:
        """Make ``entry`` a row whose value lives "in" ../secret.json."""
        if self._state(entry):
            return
        self._sql(
            "INSERT OR REPLACE INTO Cache(key, raw, store_time, expire_time, access_time,"
            " access_count, tag, size, mode, filename, value)"
            " VALUES (?, 1, 0, NULL, 0, 0, NULL, 0, ?, '../secret.json', NULL)",
            (entry, MODE_TEXT),
        )

    def sample(self, index: int) -> str:
        return f"cs:{self.key}:{index}"

    def nothing_ran(self) -> None:
        assert not self.marker.exists(), "a pickle from the cache was loaded"
        assert (self.root / "secret.json").read_text() == SECRET


@pytest.fixture(params=["log", "indexed"])
def plant(tmp_path: Path, request: pytest.FixtureRequest) -> Plant:
    """A planted cache in each disk layout."""
    return Plant(tmp_path, request.param)


TAMPER = ["as_pickle", "as_file"]


@pytest.mark.parametrize("how", TAMPER)
async def test_pipeline_read_and_replay_refuse_a_foreign_sample_row(plant: Plant, how: str) -> None:
    """A request (and a replay) over a tampered sample fails naming the key; nothing runs."""
    getattr(plant, how)(plant.sample(1))
    for mode in ("readwrite", "replay"):
        async with OnlineAPI(RecordingModel(), cache=plant.cache, mode=mode) as api:
            with pytest.raises(StoreError) as info:
                await api.request(plant.request)
        assert plant.key[:16] in str(info.value) and "not in cachesaver's format" in str(info.value)
        assert SECRET not in str(info.value)
    plant.nothing_ran()


@pytest.mark.parametrize("how", TAMPER)
async def test_a_racing_write_and_an_import_refuse_a_foreign_row(plant: Plant, how: str) -> None:
    """Writing to a taken index reads what is there: a foreign row is refused, not loaded."""
    getattr(plant, how)(plant.sample(1))
    store = DiskStore(plant.cache)
    try:
        content = (await store.records([]), plant.key)[1]
        with pytest.raises(StoreError, match=plant.key[:16]):
            await store.write([SampleWrite(plant.key, content, {1: '"mine"'})])
        with pytest.raises(StoreError, match=plant.key[:16]):
            await store.import_records([KeyRecord(plant.key, "{}", {1: '"mine"'})])
        with pytest.raises(StoreError, match=plant.key[:16]):
            await store.records([plant.key])
    finally:
        await store.aclose()
    plant.nothing_ran()


@pytest.mark.parametrize("how", TAMPER)
async def test_shared_run_reserve_and_lease_refuse_foreign_rows(plant: Plant, how: str) -> None:
    """Shared-run state and leases are read by SQL too: planted rows are refused."""
    entry = "cs:run:" + json.dumps(["run-1", "ns", plant.key])
    getattr(plant, how)(entry)
    getattr(plant, how)(f"cs:lease:{plant.key}:5")
    store = DiskStore(plant.cache)
    try:
        with pytest.raises(StoreError, match="run-1"):
            await store.reserve([Reservation("run-1", "ns", plant.key, 2)])
        with pytest.raises(StoreError, match=plant.key[:16]):
            await store.lease([LeaseRequest(plant.key, [5], "me", 30.0)])
        with pytest.raises(StoreError, match=plant.key[:16]):
            await store.unlease([LeaseRequest(plant.key, [5], "me", 30.0)])
    finally:
        await store.aclose()
    request = Request("what is 6 x 7?", n=2, namespace="ns")
    async with OnlineAPI(RecordingModel(), cache=plant.cache, run_id="run-1") as api:
        with pytest.raises(StoreError, match="run-1"):
            await api.request(request)
    plant.nothing_ran()


@pytest.mark.parametrize("how", TAMPER)
@pytest.mark.parametrize(
    "command", [["stats"], ["show", "KEY"], ["verify"], ["export", "OUT"], ["copy", "OUT"]]
)
def test_commands_refuse_a_tampered_cache_naming_the_key(
    plant: Plant, how: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """stats/show/verify/export/copy exit 3 naming the key; no code runs, no file leaks."""
    getattr(plant, how)(plant.sample(0))
    out = plant.root / "out"
    args = [command[0], plant.cache]
    args += [plant.key if a == "KEY" else str(out) if a == "OUT" else a for a in command[1:]]
    code = main(args)
    captured = capsys.readouterr()
    assert code == ExitCode.STORE, captured.err
    assert plant.key[:16] in captured.err and "not in cachesaver's format" in captured.err
    assert SECRET not in captured.out + captured.err
    if out.is_file():
        assert SECRET not in out.read_text()
    for written in out.rglob("*") if out.is_dir() else []:
        if written.is_file():
            assert SECRET.encode() not in written.read_bytes()
    plant.nothing_ran()


@pytest.mark.parametrize("how", TAMPER)
async def test_deleting_a_tampered_key_removes_rows_and_never_the_file(
    plant: Plant, how: str
) -> None:
    """Deleting a damaged key drops its rows only; the file a row names is left alone."""
    getattr(plant, how)(plant.sample(0))
    store = DiskStore(plant.cache)
    try:
        assert await store.delete([plant.key]) == 1
        assert await store.keys() == []
    finally:
        await store.aclose()
    plant.nothing_ran()
