"""``cachesaver migrate``: a store of the indexed layout becomes a log, losing nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from cachesaver import DiskStore, OnlineAPI, Request, StoreError
from cachesaver.cli import ExitCode
from cachesaver.stores import _disk_open
from cachesaver.stores._disk_indexed import IndexedRows
from cachesaver.stores._disk_log import LogRows
from cachesaver.stores._rowlog import INDEX_FILE, make_log_layout
from cachesaver.stores.base import SampleWrite
from cachesaver.testing import RecordingModel

from .helpers import make_indexed_store, schema
from .test_cli import cli, cli_json

PROMPTS = [f"q{i}" for i in range(30)]


async def fill(directory: str) -> list[list[object]]:
    """An indexed store with samples, and a shared run's positions and leases in it."""
    make_indexed_store(directory)
    async with OnlineAPI(RecordingModel(), cache=directory, run_id="r1", timeout=0) as api:
        responses = await asyncio.gather(*(api.request(Request(p, n=2)) for p in PROMPTS))
    return [r.data for r in responses]


def test_a_migrated_store_replays_every_sample_and_goes_on_with_its_shared_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After migrate, the store is a log with a saved key index; a new run replays every
    sample cached, the shared run draws the next samples, and a second migrate is a no-op."""
    directory = str(tmp_path / "c")
    first = asyncio.run(fill(directory))
    assert "Cache_key_raw" in schema(directory)
    code, data = cli_json(capsys, "migrate", directory)
    assert code == ExitCode.OK and data["migrated"] is True
    assert data["rows"] == 1 + 30 * 3  # the marker, and per key its content and 2 samples
    assert "Cache_key_raw" not in schema(directory) and "CachesaverState" in schema(directory)
    assert (Path(directory) / INDEX_FILE).exists()

    async def after() -> None:
        async with OnlineAPI(RecordingModel(), cache=directory, timeout=0) as api:
            again = await asyncio.gather(*(api.request(Request(p, n=2)) for p in PROMPTS))
            assert [r.data for r in again] == first
            assert all(r.cached == [True, True] for r in again)
            assert type(api.store._layout) is LogRows  # type: ignore[attr-defined]
        async with OnlineAPI(RecordingModel(), cache=directory, run_id="r1", timeout=0) as api:
            more = await api.request(Request("q0", n=2))
            assert more.cached == [False, False]  # the run's positions were moved, not lost

    asyncio.run(after())
    code, data = cli_json(capsys, "migrate", directory)
    assert code == ExitCode.OK and data["migrated"] is False


def test_migrate_refuses_what_is_not_a_disk_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing directory, a folder of other files, or a Redis URL: an error, and nothing
    is created or changed."""
    missing = tmp_path / "missing"
    code, _, err = cli(capsys, "migrate", str(missing))
    assert code == ExitCode.STORE and not missing.exists()
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "migrate", str(folder))
    assert code == ExitCode.STORE and sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    code, _, err = cli(capsys, "migrate", "redis://127.0.0.1:6379/0")
    assert code == ExitCode.USAGE and "only a disk store" in err


def test_a_failed_migration_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failure inside the migration rolls it back: the key index, the triggers and the
    shared-run rows are where they were, and the store still serves every sample."""
    directory = str(tmp_path / "c")
    first = asyncio.run(fill(directory))
    before = schema(directory)

    def failing(con: sqlite3.Connection) -> None:
        make_log_layout(con)
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    monkeypatch.setattr(_disk_open, "make_log_layout", failing)
    code, _, err = cli(capsys, "migrate", directory)
    assert code != ExitCode.OK and "disk I/O error" in err
    monkeypatch.undo()
    assert schema(directory) == before

    async def check() -> None:
        async with OnlineAPI(RecordingModel(), cache=directory, timeout=0) as api:
            again = await asyncio.gather(*(api.request(Request(p, n=2)) for p in PROMPTS))
            assert [r.data for r in again] == first
            assert type(api.store._layout) is IndexedRows  # type: ignore[attr-defined]

    asyncio.run(check())


async def test_a_pipeline_using_a_store_that_is_migrated_stops_with_an_error(
    tmp_path: Path,
) -> None:
    """A store of this version opened on the indexed layout notices the migration at its
    next write and raises StoreError saying to open the store again."""
    directory = str(tmp_path / "c")
    make_indexed_store(directory)
    store = DiskStore(directory)
    try:
        await store.write([SampleWrite("ab" * 32, "{}", {0: '"a"'})])
        await asyncio.to_thread(_disk_open.migrate_to_log, directory)
        with pytest.raises(StoreError, match="migrated to the log layout"):
            await store.write([SampleWrite("ab" * 32, "{}", {1: '"b"'})])
    finally:
        await store.aclose()
    reopened = DiskStore(directory)
    try:
        (result,) = await reopened.write([SampleWrite("ab" * 32, "{}", {1: '"b"'})])
        assert result.stored == {1: '"b"'}
    finally:
        await reopened.aclose()


def test_a_migration_that_cannot_take_the_store_says_so_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store another process holds (SQLite: database is locked) exits 3 with a message
    saying nothing changed and what to do, not as an internal error."""
    directory = str(tmp_path / "c")
    asyncio.run(fill(directory))
    before = schema(directory)

    def locked(con: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(_disk_open, "make_log_layout", locked)
    code, _, err = cli(capsys, "migrate", directory)
    assert code == ExitCode.STORE
    assert "nothing was changed" in err and "run `cachesaver migrate` again" in err
    assert schema(directory) == before
