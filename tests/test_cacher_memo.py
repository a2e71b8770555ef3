"""The in-process memory of stored sample texts: faster hits, never stale, bounded."""

from __future__ import annotations

from collections.abc import Sequence

from cachesaver import DiskStore, OnlineAPI, Request
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
        async def request(self, request: Request) -> object:
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
    kept = memo.get("k", range(50))
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
