"""Namespace positions of an in-process run stay exact when old keys are packed."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import pytest

from cachesaver import OnlineAPI, Request, _positions
from cachesaver._positions import Run
from cachesaver.testing import InjectedFailure, RecordingModel

from .helpers import stored


@dataclass
class Item:
    """What `Run.reserve_all` takes: a request and its key."""

    request: Request
    key: str


def key_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def small_run(hot: int, floors: dict[tuple[str, str], int] | None = None) -> Run:
    return Run(floors, hot_keys=hot)  # packs after a handful of keys


def held_once(run: Run, pairs: int) -> bool:
    """Every (namespace, key) drawn is held exactly once, in the dicts or in one record."""
    hot = sum(len(keys) for keys in run._next.values())
    packed_bytes = sum(run._packed.used)
    return hot + len(run._packed) == pairs and packed_bytes == 44 * len(run._packed)


class Model:
    """The allocation rules written plainly: a count per (namespace, key), given-back first."""

    def __init__(self) -> None:
        self.next: dict[tuple[str, str], int] = {}
        self.returned: dict[tuple[str, str], list[int]] = {}

    def reserve(self, namespace: str, key: str, n: int) -> list[int]:
        back = sorted(self.returned.get((namespace, key), []))
        taken, self.returned[(namespace, key)] = back[:n], back[n:]
        start = self.next.get((namespace, key), 0)
        self.next[(namespace, key)] = start + n - len(taken)
        return taken + list(range(start, start + n - len(taken)))


@pytest.mark.parametrize(
    ("mask", "keys", "namespaces"),
    [(0, 60, 5), (15, 60, 5), (15, 6, 2)],  # the last: few keys, so nothing is packed
)
def test_positions_match_the_plain_rules_across_many_packings(
    mask: int, keys: int, namespaces: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of draws and give-backs over many keys and namespaces get the indices the
    allocation rules give, bulk or one by one, packed or not."""
    # One bucket puts every record side by side (namespaces and keys must stay apart);
    # sixteen make every packing move buckets within the table.
    monkeypatch.setattr(_positions, "_MASK", mask)
    rng = random.Random(7)
    names = [key_of(f"k{i}") for i in range(keys)]
    spaces = [f"ns{i}" for i in range(namespaces)]
    run, model = small_run(hot=16), Model()
    packed_seen = 0
    for step in range(3000):
        picks = [
            (rng.choice(spaces), rng.choice(names), rng.randint(1, 3))
            for _ in range(4 if step % 3 == 0 else 1)
        ]
        if step % 3 == 0:  # a bulk reservation, as the cacher makes them
            grants = run.reserve_all(
                [Item(Request("x", n=n, namespace=ns), k) for ns, k, n in picks]
            )
        else:
            grants = [run.reserve(*picks[0])]
        for (ns, k, n), grant in zip(picks, grants, strict=True):
            assert grant == model.reserve(ns, k, n), (step, ns, k)
        for (ns, k, _), grant in zip(picks, grants, strict=True):
            if rng.random() < 0.05:  # a failed request gives its indices back
                run.release(ns, k, grant)
                model.returned[(ns, k)] += grant
        assert held_once(run, len(model.next)), step
        packed_seen = max(packed_seen, len(run._packed))
    assert (packed_seen > 100) == (keys * namespaces > 16), "packed exactly when it must be"


def test_given_back_indices_and_floors_hold_for_packed_keys() -> None:
    """A packed key's returned indices come back first, and a floor applies only once."""
    a, b = key_of("a"), key_of("b")
    run = small_run(hot=2, floors={("ns", b): 10})
    assert run.reserve("ns", a, 2) == [0, 1]
    assert run.reserve("ns", b, 1) == [10]
    for i in range(4):  # enough other keys to pack a and b away
        run.reserve("other", key_of(f"filler{i}"), 1)
    assert len(run._packed) > 0 and "ns" not in run._next
    run.release("ns", a, [1])
    assert run.reserve("ns", a, 2) == [1, 2]
    assert run.reserve("ns", b, 2) == [11, 12]


def test_keys_not_in_digest_form_are_never_confused_with_digests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Upper-case or odd keys stay apart from the lower-case digest they resemble."""
    monkeypatch.setattr(_positions, "_MASK", 0)  # one bucket and one filter bit:
    monkeypatch.setattr(_positions, "_BITS", 0)  # every lookup searches the records
    lower = "ab" * 32
    odd = ["AB" * 32, "ab " * 21 + "a", "0x" + "ab" * 31, "not a digest"]
    run = small_run(hot=1)
    assert run.reserve("ns", lower, 2) == [0, 1]
    run.reserve("filler", key_of("filler"), 1)  # packs the lower-case key
    assert len(run._packed) == 2
    for round_ in range(3):
        for key in odd:
            assert run.reserve("ns", key, 1) == [round_]
        run.reserve("filler", key_of(f"filler {round_}"), 1)
    assert run.reserve("ns", lower, 1) == [2]


def test_a_byte_match_straddling_two_records_is_not_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key whose bytes appear across two packed records is not found there."""
    monkeypatch.setattr(_positions, "_MASK", 0)  # one bucket: records side by side
    monkeypatch.setattr(_positions, "_BITS", 0)  # one filter bit: every lookup searches
    first = key_of("first")
    second = bytearray(hashlib.sha256(b"second").digest())
    second[20:24] = bytes(4)  # what namespace number 0 looks like
    second_key = second.hex()
    run = small_run(hot=1)
    run.reserve("ns", first, 5)  # record: digest, number 0, next index 5
    run.reserve("ns", second_key, 1)  # the second key packs both, in this order
    assert len(run._packed) == 2
    # The bytes from "number 0, next index 5" on, then the second digest's first
    # 20 bytes and its zero bytes, read as a digest and number 0:
    ghost = (bytes(4) + (5).to_bytes(8, "little") + bytes(second[:20])).hex()
    assert run.reserve("ns", ghost, 1) == [0]
    assert run.reserve("ns", first, 1) == [5]


async def test_a_long_run_keeps_every_allocation_rule_once_keys_are_packed(
    cache_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the packing point, draws stay successive, failures give back, replays match."""
    monkeypatch.setattr(Run, "HOT_KEYS", 4)
    requests = [Request(f"q{i % 9}", n=1 + i % 2, namespace=f"ns{i % 3}") for i in range(60)]
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir, timeout=0) as api:
        first = [await api.request(r) for r in requests]
        model.fail_next(1)
        with pytest.raises(InjectedFailure):
            await api.request(Request("q0", n=2, namespace="ns0"))
        retry = await api.request(Request("q0", n=2, namespace="ns0"))
        allocator = api._allocator
        assert len(allocator.run._packed) > 0  # type: ignore[attr-defined]
        drawn: dict[tuple[str, str], int] = {}
        for request, response in zip(requests, first, strict=True):
            key = api.key_of(request)
            start = drawn.get((request.namespace, key), 0)
            samples = await stored(api.store, key, start + request.n)
            assert response.data == samples[start:], (request, start)
            drawn[(request.namespace, key)] = start + request.n
        key = api.key_of(Request("q0"))
        start = drawn[("ns0", key)]
        assert retry.data == (await stored(api.store, key, start + 2))[start:]
    async with OnlineAPI(model, cache=cache_dir, timeout=0) as api:
        again = [await api.request(r) for r in requests]
    assert [r.data for r in again] == [r.data for r in first]
