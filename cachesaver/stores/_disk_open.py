"""Opening a disk store's SQLite file, and which layout it is in.

A disk store is in one of two layouts (`_disk_indexed`, `_disk_log`), told apart by
the log's epoch table (`is_log_layout`):

- a directory with no store yet, opened by path, becomes a log store: diskcache makes
  its files, then one ``BEGIN IMMEDIATE`` transaction (`settle_layout`) turns the empty
  table into a log and writes the marker row, so processes creating one store at once
  agree on its layout (the others find the epoch table when they get the lock);
- a file with cachesaver's marker or any row (a store made by an earlier version, or
  another program's diskcache) keeps the indexed layout until ``cachesaver migrate``;
- a log store is never opened through ``diskcache.Cache`` again (`log_file` peeks
  first): diskcache would build the unique key index again on every open. It gets a
  connection of its own (`connect_log`), with diskcache's SQLite settings.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from urllib.parse import quote

from cachesaver.errors import NotACacheError, StoreError
from cachesaver.stores._disk_format import (
    _DB,
    _DISKCACHE_COLUMNS,
    _END,
    _INSERT,
    _INSERT_NEW,
    _MARKER,
    _MARKER_TEXT,
    _PREFIX,
)
from cachesaver.stores._disk_log import STATE_TABLE
from cachesaver.stores._rowlog import diskcache_was_here, is_log_layout, make_log_layout

__all__ = [
    "Migration",
    "connect_log",
    "log_file",
    "make_log_store",
    "migrate_to_log",
    "open_read_only",
    "settle_layout",
]

_LOG_PAGES = 2048  # pages of SQLite's cache on a log's connection (8 MB of 4 KB pages)
_SHARED_RANGES = (("cs:run:", "cs:run;"), ("cs:lease:", "cs:lease;"))


def log_file(directory: str) -> bool:
    """Whether ``directory`` holds a disk store in the log layout (a read-only peek)."""
    path = os.path.join(directory, _DB)
    if not os.path.isfile(path):
        return False
    try:
        con = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True, timeout=60)
    except sqlite3.Error:
        return False
    try:
        return is_log_layout(con)
    except sqlite3.DatabaseError:
        return False  # not a database: the caller's open reports it
    finally:
        con.close()


def connect_log(directory: str) -> sqlite3.Connection:
    """A connection of our own to a log store's file, with diskcache's settings: WAL,
    ``synchronous`` as its ``Settings`` table says, a page cache of at most 8 MB, and no
    memory map."""
    path = os.path.join(directory, _DB)
    try:
        con = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        settings = dict(
            con.execute(
                "SELECT key, value FROM Settings WHERE key IN "
                "('sqlite_synchronous', 'sqlite_cache_size')"
            ).fetchall()
        )
        if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            con.execute("PRAGMA journal_mode = wal")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the disk cache at {directory!r}: {exc}") from exc
    synchronous = settings.get("sqlite_synchronous", 1)
    cache_size = settings.get("sqlite_cache_size", _LOG_PAGES)
    # only integers from the file reach a PRAGMA (a hostile Settings row is no SQL)
    con.execute(f"PRAGMA synchronous = {synchronous if type(synchronous) is int else 1}")
    # A log appends at the end of its table and reads rows by rowid, so a big page cache
    # buys little (the key index is in memory): at most 8 MB instead of diskcache's 32.
    pages = min(cache_size, _LOG_PAGES) if type(cache_size) is int else _LOG_PAGES
    con.execute(f"PRAGMA cache_size = {pages}")
    con.execute("PRAGMA mmap_size = 0")
    return con


def make_log_store(con: sqlite3.Connection) -> None:
    """Turn a diskcache file into a log store, in the caller's write transaction: the
    log layout, the shared-run state table, shared-run rows moved into it (a store made
    by an earlier version keeps them in the table), and the marker row."""
    make_log_layout(con)
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE}"
        "(name TEXT PRIMARY KEY, value TEXT NOT NULL, expire_time REAL)"
    )
    moved = 0
    for low, high in _SHARED_RANGES:
        con.execute(
            f"INSERT OR REPLACE INTO {STATE_TABLE}(name, value, expire_time) SELECT key, "
            "value, expire_time FROM Cache WHERE key >= ? AND key < ? AND raw = 1 AND "
            "typeof(value) = 'text'",
            (low, high),
        )
        moved += con.execute("DELETE FROM Cache WHERE key >= ? AND key < ?", (low, high)).rowcount
    if moved:
        con.execute("UPDATE Settings SET value = value - ? WHERE key = 'count'", (moved,))
    if con.execute("SELECT 1 FROM Cache WHERE key = ?", (_MARKER,)).fetchone() is None:
        now = time.time()  # (no unique index: OR IGNORE would not ignore)
        con.execute(_INSERT, (_MARKER, now, None, now, _MARKER_TEXT))
        con.execute("UPDATE Settings SET value = value + 1 WHERE key = 'count'")


def settle_layout(con: sqlite3.Connection, *, new_stores_log: bool) -> bool:
    """Decide the layout of the file diskcache just opened (True: the log layout), in
    one write transaction, and finish it: a log store diskcache opened gets its key
    index and triggers dropped again; an empty unmarked file becomes a log store when
    ``new_stores_log``; any other file gets the marker row and stays indexed."""
    con.execute("BEGIN IMMEDIATE")
    try:
        log = is_log_layout(con)
        if not log and new_stores_log:
            log = con.execute("SELECT 1 FROM Cache LIMIT 1").fetchone() is None
        if log:
            make_log_store(con)
        else:
            now = time.time()
            con.execute(_INSERT_NEW, (_MARKER, now, None, now, _MARKER_TEXT))
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return log


def open_read_only(directory: str) -> sqlite3.Connection:
    """Open the SQLite file of a cachesaver disk store read-only, or raise `NotACacheError`.

    Never creates the directory, the file or a table, and never changes a setting.
    """
    path = os.path.join(directory, _DB)
    if not os.path.isdir(directory):
        if os.path.lexists(directory):
            raise NotACacheError(f"{directory} is not a directory, so not a cachesaver cache")
        raise NotACacheError(
            f"{directory}: no such cache directory (check the path; reading never creates a cache)"
        )
    if not os.path.isfile(path):
        raise NotACacheError(
            f"{directory} is a directory but not a cachesaver cache (no {_DB} inside)"
        )
    uri = "file:" + quote(os.path.abspath(path)) + "?mode=ro"
    con = sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False, isolation_level=None)
    try:
        columns = {row[1] for row in con.execute("PRAGMA table_info(Cache)")}
        if not columns >= _DISKCACHE_COLUMNS:
            raise NotACacheError(
                f"{directory} holds a SQLite {_DB} that is not a diskcache (no Cache table "
                "with diskcache's columns): not a cachesaver cache; it was not changed"
            )
        ours = con.execute(
            "SELECT 1 FROM Cache WHERE key >= ? AND key < ? LIMIT 1", (_PREFIX, _END)
        ).fetchone()
        if ours is None:
            raise NotACacheError(
                f"{directory} is a diskcache with no cachesaver entries: not a cachesaver "
                "cache (another program's cache, or an empty one); it was not changed"
            )
    except sqlite3.DatabaseError as exc:
        con.close()
        raise NotACacheError(
            f"{directory}: {path} is not a readable SQLite database ({exc}): not a cachesaver cache"
        ) from None
    except BaseException:
        con.close()
        raise
    return con


@dataclass(frozen=True, slots=True)
class Migration:
    """What `migrate_to_log` did: the store, its rows, and whether it was a log already."""

    directory: str
    rows: int
    already: bool
    index_bytes: int
    seconds: float


def migrate_to_log(directory: str) -> Migration:
    """Turn a disk store of the indexed layout into a log store, in place, and save its
    key index (so the first open does not read every row).

    One ``BEGIN IMMEDIATE`` transaction drops diskcache's unique key index and count
    triggers and moves shared-run state into its own table; a failure leaves the store as
    it was. Raises `NotACacheError` for a directory that is not a cachesaver store. No
    process may use the store through an earlier cachesaver version meanwhile (this
    version's pipelines notice the change and stop with a `StoreError`).
    """
    from cachesaver.stores._rowlog import RowLog

    started = time.perf_counter()
    open_read_only(directory).close()  # refuses what is not a cachesaver store
    try:
        con = sqlite3.connect(os.path.join(directory, _DB), timeout=60, isolation_level=None)
        try:
            already = is_log_layout(con) and not diskcache_was_here(con)
            if not already:
                con.execute("BEGIN IMMEDIATE")
                try:
                    make_log_store(con)
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot migrate the disk store {directory!r} ({exc}); nothing was changed. "
            "If another process uses the store, stop it and run `cachesaver migrate` again"
        ) from exc
    con = connect_log(directory)
    try:
        log = RowLog(con, directory)
        con.execute("BEGIN")
        try:
            log.open()
            rows = con.execute("SELECT count(*) FROM Cache").fetchone()[0]
        finally:
            con.execute("COMMIT")
        log.save()
        index_bytes = log.index.nbytes + log.tops.nbytes
    except sqlite3.Error as exc:
        raise StoreError(
            f"the disk store {directory!r} is now a log, but its key index could not be "
            f"built ({exc}); the next open builds it"
        ) from exc
    finally:
        con.close()
    return Migration(directory, rows, already, index_bytes, time.perf_counter() - started)
