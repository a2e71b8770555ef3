"""SEMANTICS "Flags": cached and duplicated per sample, and stats that agree with them."""

from __future__ import annotations

import asyncio

from cachesaver import (
    AsyncBatcher,
    AsyncCacher,
    AsyncDeduplicator,
    Batch,
    OnlineAPI,
    Request,
    Response,
    Stats,
)
from cachesaver.testing import RecordingModel


def agree(stats: Stats, responses: list[Response]) -> None:
    flags_cached = sum(sum(r.cached or []) for r in responses)
    flags_dup = sum(sum(r.duplicated or []) for r in responses)
    assert stats.requests == len(responses)
    assert stats.samples == sum(len(r.data) for r in responses)
    assert stats.cached == flags_cached
    assert stats.duplicated == flags_dup
    assert stats.generated == stats.samples - flags_cached


async def test_first_sample_of_a_call_is_not_duplicated_the_rest_are(cache_dir: str) -> None:
    """n > 1: the first fresh sample paid the prompt, later ones only output."""
    async with OnlineAPI(RecordingModel(), cache=cache_dir) as api:
        r = await api.request(Request("q", n=3))
    assert r.cached == [False, False, False]
    assert r.duplicated == [False, True, True]


async def test_cached_samples_are_never_duplicated(cache_dir: str) -> None:
    """A sample served from the store is cached=True, duplicated=False."""
    async with OnlineAPI(RecordingModel(), cache=cache_dir) as api:
        await api.request(Request("q", n=3, namespace="a"))
        r = await api.request(Request("q", n=3, namespace="b"))
    assert r.cached == [True, True, True]
    assert r.duplicated == [False, False, False]


async def test_merged_requests_share_one_prompt(cache_dir: str) -> None:
    """Of two merged requests, only the first sample of the call has neither flag."""
    async with OnlineAPI(RecordingModel(), cache=cache_dir, batch_size=10, timeout=0.01) as api:
        a, b = await asyncio.gather(
            api.request(Request("q", n=2, namespace="n")),
            api.request(Request("q", n=2, namespace="n")),
        )
    assert (a.duplicated, b.duplicated) == ([False, True], [True, True])
    assert (a.cached, b.cached) == ([False, False], [False, False])


async def test_samples_generated_by_another_request_are_cached(cache_dir: str) -> None:
    """A sample produced by another request's model call cost this request nothing."""
    model = RecordingModel()
    model.hold()
    async with OnlineAPI(model, cache=cache_dir, timeout=0) as api:
        first = asyncio.ensure_future(api.request(Request("q", n=1, namespace="a")))
        await model.wait_entered()
        second = asyncio.ensure_future(api.request(Request("q", n=1, namespace="b")))
        await asyncio.sleep(0.01)
        model.release()
        assert (await first).cached == [False]
        assert (await second).cached == [True]


async def test_flags_are_none_without_cache_or_dedup_stage() -> None:
    """cached is None without a caching stage; duplicated None without a dedup stage."""
    model = RecordingModel()
    async with AsyncDeduplicator(model) as dedup:
        r = await dedup.request(Request("q", n=2))
    assert r.cached is None and r.duplicated == [False, True]
    async with AsyncBatcher(RecordingModel(), batch_size=4, timeout=0) as batcher:
        r = await batcher.request(Request("q", n=2))
    assert r.cached is None and r.duplicated is None


async def test_cacher_without_dedup_reports_no_duplicated_flags(cache_dir: str) -> None:
    """A cacher straight over the model has cached flags and duplicated None."""
    async with AsyncCacher(RecordingModel(), cache_dir) as cacher:
        r = await cacher.request(Request("q", n=2))
        again = await cacher.request(Request("q", n=2))
    assert r.cached == [False, False] and r.duplicated is None
    assert again.cached == [False, False] and again.duplicated is None


async def test_stats_agree_with_flags(cache_dir: str) -> None:
    """requests, samples, cached, duplicated and generated agree with the flags."""
    requests = [Request(f"q{i % 4}", n=1 + i % 3, namespace=f"n{i % 2}") for i in range(20)]
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir, batch_size=5, timeout=0.005) as api:
        responses = list(await asyncio.gather(*(api.request(r) for r in requests)))
        responses += await api.batch_request(Batch(requests[:7]))
        stats = api.stats()
    agree(stats, responses)
    assert stats.generated == model.samples_generated
    assert stats.model_calls == len(model.calls)
    assert stats.batches >= 1


async def test_stats_is_a_frozen_value(cache_dir: str) -> None:
    """stats() returns a frozen snapshot that later requests do not change."""
    async with OnlineAPI(RecordingModel(), cache=cache_dir) as api:
        before = api.stats()
        await api.request(Request("q"))
        after = api.stats()
    assert before == Stats()
    assert after.requests == 1 and after.model_calls == 1 and after.batches == 1
    try:
        after.requests = 5  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("Stats must be frozen")


async def test_composed_stages_work_in_any_order(cache_dir: str) -> None:
    """AsyncCacher(AsyncDeduplicator(AsyncBatcher(model))) composes like the pipelines."""
    model = RecordingModel()
    chain = AsyncCacher(
        AsyncDeduplicator(AsyncBatcher(model, batch_size=4, timeout=0.01)), cache_dir
    )
    async with chain:
        a, b = await asyncio.gather(
            chain.request(Request("q", n=2, namespace="n")),
            chain.request(Request("q", n=1, namespace="n")),
        )
        replay = await chain.request(Request("q", n=3, namespace="other"))
    assert a.duplicated == [False, True] and b.duplicated == [True]
    assert replay.data == a.data + b.data and replay.cached == [True] * 3
    assert len(model.calls) == 1
