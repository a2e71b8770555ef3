"""Shared runs on a disk store: namespace positions and leases, as SQL on its connection.

A shared run (``run_id=``) keeps each (run, namespace, key)'s next index and the indices
given back in one ``cs:run:[...]`` entry, and who is generating an index right now in a
``cs:lease:<key>:<i>`` entry that expires. Each bulk call is one transaction. These run
on the store's worker thread (`DiskStore.reserve` and the others hand them over), over
either layout: the indexed layout keeps these entries as rows of diskcache's table, the
log layout in a table of its own (`Layout.state`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from cachesaver.errors import StoreError
from cachesaver.stores._disk_format import _PREFIX, Layout
from cachesaver.stores.base import LeaseRequest, Reservation, Unreservation

__all__ = ["lease", "reserve", "unlease", "unreserve"]


def _run_state(layout: Layout, con: sqlite3.Connection, entry: str) -> tuple[int, list[int]]:
    found = layout.state(con, [entry]).get(entry)
    if found is None:
        return 0, []
    try:
        state = json.loads(found[0])
        nxt, free = state["next"], state["free"]
        if type(nxt) is not int or not all(type(i) is int for i in free):
            raise TypeError("not integers")
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(
            f"disk cache {layout.directory!r}: shared-run entry {entry[:120]!r} is damaged "
            f"({exc!r}); start the run with a new run_id"
        ) from None
    return nxt, sorted(free)


def reserve(
    layout: Layout, con: sqlite3.Connection, items: Sequence[Reservation]
) -> list[list[int]]:
    out: list[list[int]] = []
    with layout.transact(con):
        for r in items:
            entry = _PREFIX + "run:" + json.dumps([r.run_id, r.namespace, r.key])
            start, free = _run_state(layout, con, entry)
            taken = free[: r.n]
            fresh = r.n - len(taken)
            state = json.dumps({"next": start + fresh, "free": free[len(taken) :]})
            layout.put_state(con, entry, state, None)
            out.append(taken + list(range(start, start + fresh)))
    return out


def unreserve(
    layout: Layout, con: sqlite3.Connection, items: Sequence[Unreservation]
) -> list[None]:
    with layout.transact(con):
        for u in items:
            entry = _PREFIX + "run:" + json.dumps([u.run_id, u.namespace, u.key])
            start, free = _run_state(layout, con, entry)
            state = json.dumps({"next": start, "free": sorted(set(free) | set(u.indices))})
            layout.put_state(con, entry, state, None)
    return [None] * len(items)


def _owners(
    layout: Layout, con: sqlite3.Connection, entries: Sequence[str], now: float
) -> dict[str, str]:
    """The live owner of each lease entry (an expired lease reads as absent)."""
    return {
        name: owner
        for name, (owner, expire) in layout.state(con, entries).items()
        if expire is not None and expire > now
    }


def lease(
    layout: Layout, con: sqlite3.Connection, requests: Sequence[LeaseRequest]
) -> list[list[int]]:
    out: list[list[int]] = []
    now = time.time()
    with layout.transact(con):
        for q in requests:
            held: list[int] = []
            # A sample already stored is never leased: its writer may have finished
            # between the caller's read and now.
            present = layout.stored_indices(con, q.key, q.indices)
            names = {i: f"{_PREFIX}lease:{q.key}:{i}" for i in q.indices}
            owners = _owners(layout, con, list(names.values()), now)
            for index in q.indices:
                if index in present:
                    continue
                owner = owners.get(names[index])
                if owner is None or owner == q.owner:
                    layout.put_state(con, names[index], q.owner, now + q.ttl)
                    held.append(index)
            out.append(held)
    return out


def unlease(
    layout: Layout, con: sqlite3.Connection, requests: Sequence[LeaseRequest]
) -> list[None]:
    now = time.time()
    with layout.transact(con):
        for q in requests:
            names = [f"{_PREFIX}lease:{q.key}:{i}" for i in q.indices]
            owners = _owners(layout, con, names, now)
            layout.drop_state(con, [name for name in names if owners.get(name) == q.owner])
    return [None] * len(requests)
