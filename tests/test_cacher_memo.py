"""The in-process memory of stored sample texts: faster hits, never stale, bounded."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from cachesaver import DiskStore, OnlineAPI, Request, Response, UnknownTypeTagError, codec
from cachesaver._coordination import Memo
from cachesaver.stores.base import SampleRead
from cachesaver.testing import RecordingModel


class CountingReads(DiskStore):
    """The real disk store, counting how many bulk reads reach it."""

    reads = 0

    async def read(self, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
        self.reads += 1
        return await super().read(reads)


async def test_hits_on_remembered_samples_skip_the_store(cache_dir: str) -> None:
    """A sample this process already stored or read is served without a store read."""
    store = CountingReads(cache_dir)
    async with OnlineAPI(RecordingModel(), cache=store, timeout=0) as api:
        first = await api.request(Request("q", n=3, namespace="a"))
        reads = store.reads
        again = await api.request(Request("q", n=3, namespace="b"))
    await store.aclose()
    assert again.data == first.data and again.cached == [True] * 3
    assert store.reads == reads


async def test_returned_samples_are_fresh_copies(cache_dir: str) -> None:
    """Mutating a returned sample never changes what later requests receive."""

    class DictModel(RecordingModel):
        async def request(self, request: Request) -> Response:
            response = await super().request(request)
            return type(response)(data=[{"text": t} for t in response.data])

    async with OnlineAPI(DictModel(), cache=cache_dir) as api:
        first = await api.request(Request("q", namespace="a"))
        first.data[0]["text"] = "mutated by the caller"
        second = await api.request(Request("q", namespace="b"))
    assert second.data[0]["text"] != "mutated by the caller"


def test_memory_is_bounded_and_drops_the_oldest() -> None:
    """The memo keeps at most max_bytes of texts, dropping the oldest first."""
    memo = Memo(max_bytes=1000)
    for i in range(50):
        memo.put("k", i, "x" * 50)
    kept = memo.get("k", range(50)) or {}
    assert 0 < len(kept) < 50
    assert max(kept) == 49 and 0 not in kept


async def test_a_new_run_sees_keys_pruned_meanwhile(cache_dir: str) -> None:
    """Memory lives with its pipeline: after a key is deleted, a new run regenerates it."""
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir) as api:
        first = await api.request(Request("q", namespace="a"))
        await api.store.delete([api.key_of(Request("q"))])  # type: ignore[attr-defined]
    async with OnlineAPI(model, cache=cache_dir) as api:
        again = await api.request(Request("q", namespace="a"))
    assert again.cached == [False] and again.data != first.data
    assert len(model.calls) == 2


def test_the_byte_bound_counts_the_memory_really_held() -> None:
    """With short samples, the memory the memo really holds stays within max_bytes."""
    import hashlib
    import tracemalloc

    memo = Memo(max_bytes=2 * 2**20)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for i in range(60_000):
            key = hashlib.sha256(str(i // 2).encode()).hexdigest()
            memo.put(key, 300 + i % 2, f'"s{i}"')
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(memo) < 60_000, "the bound was reached, so entries were dropped"
    assert memo.bytes <= memo.max_bytes
    assert held - before <= memo.max_bytes, f"holds {held - before} bytes"
    assert peak - before <= 1.25 * memo.max_bytes, "even while its dict grows"


def test_eviction_drops_entries_in_insertion_order_at_any_size() -> None:
    """Eviction is first in, first out, and a repeated put neither moves nor recharges."""
    memo = Memo(max_bytes=10 * (Memo.ENTRY_BYTES + 60))
    for i in range(10):
        memo.put("k", i, "x")
    charged = memo.bytes
    memo.put("k", 0, "x")
    assert memo.bytes == charged
    for i in range(10, 25):
        memo.put("k", i, "x")
    kept = memo.get("k", range(25)) or {}
    assert sorted(kept) == list(range(25 - len(kept), 25))
    memo.put("big", 0, "y" * (memo.max_bytes + 1))
    assert memo.get("big", [0]) is None, "a text larger than the bound is not remembered"


async def test_a_remembered_text_that_no_longer_decodes_names_its_key_and_index(
    cache_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remembered sample whose class was unregistered since raises the decoding error
    with the key and index it came from, as a store read would."""

    @dataclasses.dataclass
    class Tagged:
        text: str

    class TaggedModel(RecordingModel):
        async def request(self, request: Request) -> Response:
            response = await super().request(request)
            return type(response)(data=[Tagged(t) for t in response.data])

    request = Request("q", n=2, namespace="a")
    async with OnlineAPI(TaggedModel(), cache=cache_dir) as api:
        await api.request(request)
        key = api.key_of(request)
        monkeypatch.delitem(codec._registry, codec._tag_for[Tagged])
        with pytest.raises(UnknownTypeTagError) as caught:
            await api.request(Request("q", n=2, namespace="b"))
    assert f"[key={key[:12]}, index 0]" in str(caught.value)
