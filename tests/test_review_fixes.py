"""Behaviours found missing by review: closing, sharing, composition, broken stores."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from typing import Any

from cachesaver import (
    AsyncBatcher,
    AsyncCacher,
    AsyncDeduplicator,
    DiskStore,
    OnlineAPI,
    Request,
    Response,
    StoreError,
    UnstorableSampleError,
)
from cachesaver.stores.base import SampleRead
from cachesaver.testing import RecordingModel


async def test_close_waits_for_requests_not_yet_at_the_model(cache_dir: str) -> None:
    """aclose() right after a request starts still answers it (it was in flight)."""
    api = OnlineAPI(RecordingModel(), cache=cache_dir, timeout=5)
    task = asyncio.ensure_future(api.request(Request("x", n=2)))
    await asyncio.sleep(0)
    await asyncio.wait_for(api.aclose(), 5)
    assert len((await task).data) == 2


async def test_concurrent_callers_never_share_a_sample_object(cache_dir: str) -> None:
    """Two requests served the same sample get separate objects: mutations stay private."""

    class Dicts(RecordingModel):
        async def request(self, request: Request) -> Any:
            response = await super().request(request)
            return Response(data=[{"text": t} for t in response.data])

    async with OnlineAPI(Dicts(), cache=cache_dir) as api:
        a, b = await asyncio.gather(
            api.request(Request("q", namespace="A")), api.request(Request("q", namespace="B"))
        )
    assert a.data == b.data and a.data[0] is not b.data[0]
    a.data[0]["text"] = "changed"
    assert b.data[0]["text"] != "changed"


async def test_bad_sample_fails_only_its_own_request(cache_dir: str) -> None:
    """An unstorable sample fails its request; a request written alongside it is kept."""

    class Mixed(RecordingModel):
        async def request(self, request: Request) -> Any:
            if request.prompt == "bad":
                return Response(data=["bad \ud800"])
            return await super().request(request)

    model = Mixed()
    async with OnlineAPI(model, cache=cache_dir, batch_size=10, timeout=0.01) as api:
        good, bad = await asyncio.gather(
            api.request(Request("good")), api.request(Request("bad")), return_exceptions=True
        )
        assert isinstance(bad, UnstorableSampleError)
        assert isinstance(good, Response)
        again = await api.request(Request("good", namespace="other"))
    assert again.data == good.data and again.cached == [True]


async def test_batcher_above_a_cacher_never_hands_a_sample_out_twice(cache_dir: str) -> None:
    """Stages compose in any order: a failure in a batch does not recycle others' samples."""
    model = RecordingModel()

    class Picky:
        async def request(self, request: Request) -> Response:
            if request.prompt == "bad":
                raise ValueError("bad prompt")
            return await model.request(request)

    chain = AsyncBatcher(AsyncCacher(Picky(), cache_dir), batch_size=4, timeout=0.01)
    async with chain:
        good, bad = await asyncio.gather(
            chain.request(Request("good", namespace="n")),
            chain.request(Request("bad", namespace="n")),
            return_exceptions=True,
        )
        assert isinstance(bad, ValueError) and isinstance(good, Response)
        nxt = await chain.request(Request("good", namespace="n"))
    assert nxt.data != good.data, "the next draw in the namespace is a fresh sample"


async def test_deduplicator_above_a_cacher_keeps_namespaces_and_flags(cache_dir: str) -> None:
    """AsyncDeduplicator(AsyncCacher(model)): namespaces still share samples, flags hold."""
    model = RecordingModel()
    chain = AsyncDeduplicator(AsyncCacher(model, cache_dir))
    async with chain:
        a, b = await asyncio.gather(
            chain.request(Request("q", namespace="A")), chain.request(Request("q", namespace="B"))
        )
        a2, a3 = await asyncio.gather(
            chain.request(Request("q", namespace="A")), chain.request(Request("q", namespace="A"))
        )
    assert b.data == a.data and b.cached == [True] and b.duplicated == [False]
    assert a.cached == [False] and a.duplicated == [False]
    assert len({a.data[0], a2.data[0], a3.data[0]}) == 3, "fresh draws within a namespace"
    assert (a2.duplicated, a3.duplicated) == ([False], [True]), "merged: one prompt"
    assert [r.n for r in model.calls] == [1, 2]


class ShortReads(DiskStore):
    """The real disk store, answering one read too few (a broken custom store)."""

    async def read(self, reads: Sequence[SampleRead]) -> list[dict[int, str]]:
        return (await super().read(reads))[:-1]


async def test_a_store_answering_too_few_results_fails_clearly(cache_dir: str) -> None:
    """A store that breaks the bulk contract gives every caller a StoreError, no hang."""
    store = ShortReads(cache_dir)
    async with OnlineAPI(RecordingModel(), cache=store) as api:
        results = await asyncio.wait_for(
            asyncio.gather(
                api.request(Request("a")), api.request(Request("b")), return_exceptions=True
            ),
            5,
        )
    await store.aclose()
    assert all(isinstance(r, StoreError) and "one per item" in str(r) for r in results)


def test_redis_pipeline_serves_consecutive_asyncio_runs(redis_url: str) -> None:
    """A Redis-backed pipeline made outside a loop works across asyncio.run() calls."""
    model = RecordingModel()
    api = OnlineAPI(model, cache=redis_url, timeout=0)
    first = asyncio.run(api.request(Request("q", namespace="a")))
    second = asyncio.run(api.request(Request("q", namespace="b")))
    third = asyncio.run(api.request(Request("p", namespace="a")))
    asyncio.run(api.aclose())
    gc.collect()  # no connection may outlive its loop (warnings are errors here)
    assert second.data == first.data and second.cached == [True]
    assert third.cached == [False]
    assert len(model.calls) == 2
