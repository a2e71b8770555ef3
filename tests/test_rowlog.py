"""The log layout's row index shared by processes (`cachesaver.stores._rowlog`)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import diskcache
import pytest

from cachesaver.errors import StoreError
from cachesaver.stores._entryhash import entry_hash
from cachesaver.stores._rowlog import DuplicateRow, RowLog, make_log_layout

ROOT = Path(__file__).resolve().parent.parent
INSERT = (
    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag,"
    " size, mode, filename, value) VALUES (?, 1, 0, NULL, 0, 0, NULL, 0, 1, NULL, ?)"
)


class View:
    """One connection's use of a log directory, as a store would make it: every read and
    write in a transaction that starts with a catch-up, first writer wins."""

    def __init__(self, directory: str) -> None:
        self.con = sqlite3.connect(
            os.path.join(directory, "cache.db"), isolation_level=None, timeout=30
        )
        self.log = RowLog(self.con, directory)
        self._begin("BEGIN")
        self.log.open()
        self.con.execute("COMMIT")

    def _begin(self, how: str) -> None:
        self.con.execute(how)

    def write(self, pairs: dict[str, str]) -> list[str]:
        """Store each entry not stored yet; the entries this call stored."""
        names = list(pairs)
        hashes = [entry_hash(name) for name in names]
        self._begin("BEGIN IMMEDIATE")
        try:
            self.log.catch_up()
            new = self.log.append_new([(n, pairs[n]) for n in names], hashes, INSERT)
        except BaseException:
            self.con.execute("ROLLBACK")
            self.log.forget()
            raise
        self.con.execute("COMMIT")
        return [row[0] for row in new]

    def read(self, names: Sequence[str]) -> dict[str, str]:
        self._begin("BEGIN")
        try:
            self.log.catch_up()
            found = self.log.find(names, [entry_hash(n) for n in names], "value")
        finally:
            self.con.execute("COMMIT")
        return {name: row[1] for name, row in found.items()}

    def delete(self, names: Sequence[str]) -> int:
        self._begin("BEGIN IMMEDIATE")
        self.log.catch_up()
        deleted = self.log.delete(self.log.matches(names, [entry_hash(n) for n in names]))
        self.con.execute("COMMIT")
        self.log.save()
        return deleted

    def rows(self) -> list[tuple[str, str]]:
        return self.con.execute("SELECT key, value FROM Cache ORDER BY rowid").fetchall()

    def close(self) -> None:
        self.con.close()


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[str]:
    directory = str(tmp_path / "log")
    diskcache.Cache(directory, eviction_policy="none").close()
    con = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
    make_log_layout(con)
    con.close()
    yield directory


def names(tag: str, count: int) -> list[str]:
    return [f"cs:{tag * 64}:{i}" if len(tag) == 1 else f"cs:{tag}:{i}" for i in range(count)]


def test_the_layout_has_no_key_index_and_counts_rows_itself(log_dir: str) -> None:
    """make_log_layout drops the unique key index and the count triggers, and the log
    keeps diskcache's row count right (what diskcache's len() reads)."""
    view = View(log_dir)
    view.write({n: '"x"' for n in names("a", 30)})
    view.delete(names("a", 30)[:5])
    schema = {row[0] for row in view.con.execute("SELECT name FROM sqlite_master")}
    assert "Cache_key_raw" not in schema
    assert not {name for name in schema if name.startswith("Settings_")}
    view.close()
    with diskcache.Cache(log_dir) as cache:
        assert len(cache) == 25  # (diskcache re-creates its index here; a store drops it)


def test_a_write_stores_each_entry_once_and_the_first_text_wins(log_dir: str) -> None:
    """Writing an entry that is stored keeps the stored text and appends nothing."""
    view = View(log_dir)
    assert view.write({"cs:k:0": '"first"', "cs:k:1": '"one"'}) == ["cs:k:0", "cs:k:1"]
    assert view.write({"cs:k:0": '"second"', "cs:k:2": '"two"'}) == ["cs:k:2"]
    assert view.read(["cs:k:0", "cs:k:1", "cs:k:2", "cs:k:3"]) == {
        "cs:k:0": '"first"',
        "cs:k:1": '"one"',
        "cs:k:2": '"two"',
    }
    assert len(view.rows()) == 3


def test_another_connection_sees_appended_rows_at_its_next_transaction(log_dir: str) -> None:
    """Rows one view appends are found by another view, which catches up by rowid."""
    first, second = View(log_dir), View(log_dir)
    first.write({n: '"1"' for n in names("b", 100)})
    assert len(second.read(names("b", 100))) == 100
    assert second.write({n: '"2"' for n in names("b", 101)}) == [names("b", 101)[-1]]


def test_a_hash_that_names_another_row_is_not_taken_for_it(log_dir: str) -> None:
    """A candidate row whose name differs (a hash collision) is never returned."""
    view = View(log_dir)
    view.write({"cs:x:0": '"x"'})
    (rowid,) = view.log.index.candidates(entry_hash("cs:x:0"))
    view.log.index.add([(entry_hash("cs:y:0"), rowid)])  # y now "collides" with x's row
    assert view.read(["cs:y:0"]) == {}
    assert view.write({"cs:y:0": '"y"'}) == ["cs:y:0"]
    assert view.read(["cs:x:0", "cs:y:0"]) == {"cs:x:0": '"x"', "cs:y:0": '"y"'}


def test_a_second_row_of_one_name_is_reported_and_deleted_with_it(log_dir: str) -> None:
    """A second row for a name (only another program appends one) raises DuplicateRow
    naming it, wherever it lands among the rows read; deleting the name removes both."""
    view = View(log_dir)
    view.write({"cs:d:0": '"first"'})
    view.write({n: '"filler"' for n in names("g", 600)})  # the copy lands past 500 rows
    view.con.execute(INSERT, ("cs:d:0", '"foreign"'))
    everything = ["cs:d:0", *names("g", 600)]
    for reader in (View(log_dir), view):
        with pytest.raises(DuplicateRow) as info:
            reader.read(everything)  # rows read 500 at a time
        assert info.value.entry == "cs:d:0"
        assert reader.read(names("g", 600)) == {n: '"filler"' for n in names("g", 600)}
    assert view.delete(["cs:d:0"]) == 2
    assert view.read(everything) == {n: '"filler"' for n in names("g", 600)}


def test_a_delete_is_seen_by_other_connections_and_rowids_given_again_are_found(
    log_dir: str,
) -> None:
    """After the last rows are deleted, SQLite reuses their rowids: other views, and the
    deleting one, still find what is appended next and no longer find what was deleted."""
    first, second = View(log_dir), View(log_dir)
    first.write({n: '"old"' for n in names("c", 10)})
    assert len(second.read(names("c", 10))) == 10
    assert first.delete(names("c", 10)[5:]) == 5  # the last five rows
    first.write({"cs:new:0": '"new"'})  # takes a deleted rowid
    for view in (first, second):
        assert view.read(names("c", 10)) == {n: '"old"' for n in names("c", 5)}
        assert view.read(["cs:new:0"]) == {"cs:new:0": '"new"'}
    second.write({"cs:new:1": '"newer"'})
    assert first.read(["cs:new:1"]) == {"cs:new:1": '"newer"'}


def test_a_view_opening_after_a_delete_loads_the_index_the_deleter_saved(log_dir: str) -> None:
    """The deleting view saves its index, so a view opened next need not read every row."""
    first = View(log_dir)
    first.write({n: '"v"' for n in names("e", 50)})
    first.delete(names("e", 50)[:10])
    opened = View(log_dir)
    assert opened.log.loaded
    assert opened.read(names("e", 50)) == {n: '"v"' for n in names("e", 50)[10:]}


def test_a_saved_index_that_does_not_match_the_file_is_not_used(log_dir: str) -> None:
    """A saved index from another epoch, or whose last row changed, is ignored and the
    index is built from every row instead; a damaged one too."""
    view = View(log_dir)
    view.write({n: '"v"' for n in names("f", 20)})
    view.log.save()
    saved = Path(view.log.saved_index)
    good = saved.read_bytes()
    assert View(log_dir).log.loaded
    view.con.execute("UPDATE Cache SET key = 'cs:f:changed' WHERE rowid = ?", (view.log.seen,))
    assert not View(log_dir).log.loaded
    view.con.execute(
        "UPDATE Cache SET key = ? WHERE rowid = ?", (names("f", 20)[-1], view.log.seen)
    )
    assert View(log_dir).log.loaded
    view.con.execute("UPDATE CachesaverLog SET epoch = epoch + 7")
    assert not View(log_dir).log.loaded
    view.con.execute("UPDATE CachesaverLog SET epoch = epoch - 7")
    saved.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    rebuilt = View(log_dir)
    assert not rebuilt.log.loaded
    assert len(rebuilt.read(names("f", 20))) == 20


def test_a_rolled_back_write_leaves_nothing_indexed(log_dir: str) -> None:
    """A write that fails after appending is rolled back, and the view indexes afresh, so
    what the rollback removed is not found and a later write stores it."""
    view = View(log_dir)
    view.write({"cs:r:0": '"kept"'})

    def failing_append(*args: Any) -> None:
        RowLog.append(view.log, *args)
        raise sqlite3.OperationalError("disk I/O error (simulated after the append)")

    view.log.append = failing_append  # type: ignore[method-assign,assignment]
    with pytest.raises(sqlite3.OperationalError):
        view.write({"cs:r:1": '"lost"'})
    del view.log.append
    assert view.read(["cs:r:0", "cs:r:1"]) == {"cs:r:0": '"kept"'}
    assert View(log_dir).write({"cs:r:2": '"other"'}) == ["cs:r:2"]  # takes the freed rowid
    assert view.write({"cs:r:1": '"stored"'}) == ["cs:r:1"]
    assert view.read(["cs:r:2"]) == {"cs:r:2": '"other"'}
    assert view.read(["cs:r:1"]) == {"cs:r:1": '"stored"'}


def test_a_file_not_in_the_log_layout_is_refused_by_name(tmp_path: Path) -> None:
    """Opening a row log on a plain diskcache file raises StoreError saying so."""
    directory = str(tmp_path / "plain")
    diskcache.Cache(directory).close()
    con = sqlite3.connect(os.path.join(directory, "cache.db"), isolation_level=None)
    with pytest.raises(StoreError, match="log layout"):
        RowLog(con, directory).open()


RACER = """
import sys, time
from tests.test_rowlog import View
directory, worker, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
view = View(directory)
while time.time() < start:
    time.sleep(0.001)
stored = []
for wave in range(20):
    # every worker writes the same 50 entries of each wave, with its own text
    stored += view.write({f"cs:race{wave}:{i}": f'"{worker}"' for i in range(50)})
    view.read([f"cs:race{wave}:{i}" for i in range(50)])
print(len(stored))
"""


def test_processes_racing_on_the_same_entries_store_each_once(log_dir: str) -> None:
    """Four processes writing the same entries at once store each exactly once, and every
    process reads the text the one stored row holds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, log_dir, str(w), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for w in range(4)
    ]
    counts = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        counts.append(int(out))
    assert sum(counts) == 20 * 50
    view = View(log_dir)
    rows = view.rows()
    assert len(rows) == len({name for name, _ in rows}) == 20 * 50
    assert view.read([name for name, _ in rows]) == dict(rows)
