"""Shared runs on a disk store: namespace positions and leases, as SQL on its connection.

A shared run (``run_id=``) keeps each (run, namespace, key)'s next index and the indices
given back in one ``cs:run:[...]`` entry, and who is generating an index right now in a
``cs:lease:<key>:<i>`` entry that expires. Each bulk call is one transaction. These run
on the store's worker thread (`DiskStore.reserve` and the others hand them over).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cachesaver.errors import StoreError
from cachesaver.stores._disk_format import _PREFIX, _REPLACE, sample_entry
from cachesaver.stores.base import LeaseRequest, Reservation, Unreservation

if TYPE_CHECKING:
    from cachesaver.stores.disk import DiskStore

__all__ = ["lease", "reserve", "unlease", "unreserve"]


def _run_state(store: DiskStore, con: sqlite3.Connection, entry: str) -> tuple[int, list[int]]:
    text = store._layout.select(con, [entry]).get(entry)
    if text is None:
        return 0, []
    try:
        state = json.loads(text)
        nxt, free = state["next"], state["free"]
        if type(nxt) is not int or not all(type(i) is int for i in free):
            raise TypeError("not integers")
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(
            f"disk cache {store._directory!r}: shared-run entry {entry[:120]!r} is damaged "
            f"({exc!r}); start the run with a new run_id"
        ) from None
    return nxt, sorted(free)


def reserve(
    store: DiskStore, con: sqlite3.Connection, items: Sequence[Reservation]
) -> list[list[int]]:
    out: list[list[int]] = []
    now = time.time()
    with store._transact():
        for r in items:
            entry = _PREFIX + "run:" + json.dumps([r.run_id, r.namespace, r.key])
            start, free = _run_state(store, con, entry)
            taken = free[: r.n]
            fresh = r.n - len(taken)
            state = json.dumps({"next": start + fresh, "free": free[len(taken) :]})
            con.execute(_REPLACE, (entry, now, None, now, state))
            out.append(taken + list(range(start, start + fresh)))
    return out


def unreserve(
    store: DiskStore, con: sqlite3.Connection, items: Sequence[Unreservation]
) -> list[None]:
    now = time.time()
    with store._transact():
        for u in items:
            entry = _PREFIX + "run:" + json.dumps([u.run_id, u.namespace, u.key])
            start, free = _run_state(store, con, entry)
            state = json.dumps({"next": start, "free": sorted(set(free) | set(u.indices))})
            con.execute(_REPLACE, (entry, now, None, now, state))
    return [None] * len(items)


def _owners(
    store: DiskStore, con: sqlite3.Connection, entries: Sequence[str], now: float
) -> dict[str, str]:
    """The live owner of each lease entry (an expired lease reads as absent)."""
    owners: dict[str, str] = {}
    for row in store._layout.rows(con, entries):
        owner = store._layout._text(row)
        if row[6] is not None and row[6] > now:
            owners[row[0]] = owner
    return owners


def lease(
    store: DiskStore, con: sqlite3.Connection, requests: Sequence[LeaseRequest]
) -> list[list[int]]:
    out: list[list[int]] = []
    now = time.time()
    with store._transact():
        for q in requests:
            held: list[int] = []
            # A sample already stored is never leased: its writer may have finished
            # between the caller's read and now.
            present = store._layout.select(con, [sample_entry(q.key, i) for i in q.indices])
            names = {i: f"{_PREFIX}lease:{q.key}:{i}" for i in q.indices}
            owners = _owners(store, con, list(names.values()), now)
            for index in q.indices:
                if sample_entry(q.key, index) in present:
                    continue
                owner = owners.get(names[index])
                if owner is None or owner == q.owner:
                    con.execute(_REPLACE, (names[index], now, now + q.ttl, now, q.owner))
                    held.append(index)
            out.append(held)
    return out


def unlease(
    store: DiskStore, con: sqlite3.Connection, requests: Sequence[LeaseRequest]
) -> list[None]:
    now = time.time()
    with store._transact():
        for q in requests:
            names = [f"{_PREFIX}lease:{q.key}:{i}" for i in q.indices]
            owners = _owners(store, con, names, now)
            mine = [name for name in names if owners.get(name) == q.owner]
            con.executemany("DELETE FROM Cache WHERE key = ? AND raw = 1", [(n,) for n in mine])
    return [None] * len(requests)
