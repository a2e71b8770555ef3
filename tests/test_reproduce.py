"""SEMANTICS rule 8: a recorded run is reproduced exactly, whatever the timing."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest

from cachesaver import (
    Batch,
    CacheMissError,
    LocalAPI,
    ManifestError,
    OnlineAPI,
    Request,
    Response,
    RunManifest,
    UnmatchedRequestWarning,
)
from cachesaver.pipelines import Pipeline
from cachesaver.testing import InjectedFailure, RecordingModel, SimulatedLLM

from .helpers import stored

AGENTS = 8


class Latency(SimulatedLLM):
    """An LLM whose answers to gated prompts wait until the test opens their gate.

    The test opens the gates in a random order: that order is the model's latency order.
    """

    def __init__(self, gated: list[str] | None = None) -> None:
        super().__init__(seed=11)
        self.gates = {prompt: asyncio.Event() for prompt in gated or []}

    async def _wait(self, requests: Any) -> None:
        for request in requests:
            gate = self.gates.get(request.prompt)
            if gate is not None:
                await gate.wait()

    async def request(self, request: Request) -> Response:
        await self._wait([request])
        return await super().request(request)

    async def batch_request(self, batch: Batch) -> list[Response]:
        await self._wait(batch.requests)
        return await super().batch_request(batch)


def own(trial: int, agent: int) -> str:
    return f"trial {trial}: agent {agent}, what is your own view?"


async def agents(
    api: Pipeline, trial: int, model: Latency, order: list[int] | None
) -> list[list[Any]]:
    """Eight agents ask their own question, then one shared question in one namespace.

    With ``order``, the model answers the agents' own questions in that order (each agent
    has issued its shared question before the next answer comes): the latency order.
    """
    issued = [asyncio.Event() for _ in range(AGENTS)]

    async def agent(i: int) -> list[Any]:
        await api.request(Request(own(trial, i), request_id=f"agent-{i}-own", namespace=f"a{i}"))
        shared = asyncio.ensure_future(
            api.request(
                Request(
                    f"trial {trial}: the shared question",
                    request_id=f"agent-{i}-shared",
                    namespace="shared",
                )
            )
        )
        await asyncio.sleep(0)  # its first step reserves its indices (rule 2)
        issued[i].set()
        return (await shared).data

    tasks = [asyncio.ensure_future(agent(i)) for i in range(AGENTS)]
    for i in order or []:
        model.gates[own(trial, i)].set()
        await issued[i].wait()
    return list(await asyncio.gather(*tasks))


@pytest.mark.parametrize("pipeline", [OnlineAPI, LocalAPI])
async def test_eight_agents_get_their_recorded_samples_in_eight_of_eight_trials(
    store_spec: str, tmp_path: Path, pipeline: type[Pipeline]
) -> None:
    """Reproducing the first run's manifest gives every agent its first-run sample."""
    rng = random.Random(8)
    exact_by_order = 0
    for trial in range(8):
        order = rng.sample(range(AGENTS), AGENTS)
        record = tmp_path / f"trial-{trial}.jsonl"
        model = Latency([own(trial, i) for i in range(AGENTS)])
        async with pipeline(
            model, cache=store_spec, batch_size=1, timeout=0, manifest=record
        ) as api:
            first = await agents(api, trial, model, order)
        async with pipeline(Latency(), cache=store_spec, batch_size=1, timeout=0) as api:
            by_order = await agents(api, trial, model, None)
        exact_by_order += by_order == first
        replay = RecordingModel(Latency())
        async with pipeline(
            replay, cache=store_spec, batch_size=1, timeout=0, reproduce=record, mode="replay"
        ) as api:
            again = await agents(api, trial, model, None)
        assert again == first, f"trial {trial}: every agent gets its first-run sample"
        assert replay.calls == [], "a replay of the record makes no model call"
    assert exact_by_order < 8, "without the record, issue order gave other agents' samples"


async def test_requests_the_record_lacks_draw_after_the_records_indices(
    cache_dir: str, tmp_path: Path
) -> None:
    """A new request gets indices after every index the record used, even if issued first."""
    record = tmp_path / "run.jsonl"
    async with OnlineAPI(RecordingModel(), cache=cache_dir, manifest=record) as api:
        first = await api.request(Request("q", n=2, namespace="n", request_id="old"))
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir, reproduce=record) as api:
        new = await api.request(Request("q", n=1, namespace="n", request_id="new"))
        old = await api.request(Request("q", n=2, namespace="n", request_id="old"))
        samples = await stored(api.store, api.key_of(Request("q")), 3)
    assert old.data == first.data == samples[:2] and old.cached == [True, True]
    assert new.data == samples[2:] and new.cached == [False], "index 2, after the record"
    assert [r.n for r in model.calls] == [1]


async def test_replay_of_a_record_refuses_requests_it_lacks_naming_them(
    cache_dir: str, tmp_path: Path
) -> None:
    """In replay mode a request the record lacks raises CacheMissError naming it."""
    record = tmp_path / "run.jsonl"
    async with OnlineAPI(RecordingModel(), cache=cache_dir, manifest=record) as api:
        await api.request(Request("q", n=2, namespace="n", request_id="known"))
        await api.request(Request("q", n=1, namespace="n", request_id="extra"))
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir, reproduce=record, mode="replay") as api:
        with pytest.raises(CacheMissError, match="'unknown'"):
            await api.request(Request("q", n=1, namespace="n", request_id="unknown"))
        with pytest.raises(CacheMissError, match="'known'"):  # same id, other n
            await api.request(Request("q", n=3, namespace="n", request_id="known"))
        extra = await api.request(Request("q", n=1, namespace="n", request_id="extra"))
    assert extra.cached == [True]
    assert model.calls == []


async def test_requests_without_request_id_are_warned_about_and_not_matched(
    cache_dir: str, tmp_path: Path
) -> None:
    """A reproducing run warns once that requests without request_id cannot be matched."""
    record = tmp_path / "run.jsonl"
    async with OnlineAPI(RecordingModel(), cache=cache_dir, manifest=record) as api:
        first = await api.request(Request("q", n=1, namespace="n"))
    async with OnlineAPI(RecordingModel(), cache=cache_dir, reproduce=record) as api:
        with pytest.warns(UnmatchedRequestWarning, match="request_id") as caught:
            again = await api.request(Request("q", n=1, namespace="n"))
            await api.request(Request("q", n=1, namespace="n"))
        samples = await stored(api.store, api.key_of(Request("q")), 3)
    assert len(caught) == 1, "one warning per run"
    assert first.data == samples[:1] and again.data == samples[1:2], "after the record's"


async def test_a_failed_matched_request_leaves_its_recorded_indices_to_the_retry(
    cache_dir: str, tmp_path: Path
) -> None:
    """A matched request that fails gives the recorded indices to its retry."""
    record = tmp_path / "run.jsonl"
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir, manifest=record) as api:
        a = await api.request(Request("q", n=1, namespace="n", request_id="a"))
        b = await api.request(Request("q", n=1, namespace="n", request_id="b"))
    store_miss = RecordingModel()
    store_miss.fail_next(1)
    async with OnlineAPI(store_miss, cache=cache_dir + "-other", reproduce=record) as api:
        with pytest.raises(InjectedFailure):
            await api.request(Request("q", n=1, namespace="n", request_id="b"))
        retried = await api.request(Request("q", n=1, namespace="n", request_id="b"))
        first = await api.request(Request("q", n=1, namespace="n", request_id="a"))
    assert retried.cached == [False] and first.cached == [False]
    async with OnlineAPI(model, cache=cache_dir, reproduce=record) as api:
        again_b = await api.request(Request("q", n=1, namespace="n", request_id="b"))
        again_a = await api.request(Request("q", n=1, namespace="n", request_id="a"))
    assert (again_a.data, again_b.data) == (a.data, b.data)


async def test_a_run_manifest_object_can_be_reproduced_in_the_same_process(
    cache_dir: str, tmp_path: Path
) -> None:
    """reproduce= takes the RunManifest the first run recorded into."""
    manifest = RunManifest(tmp_path / "run.jsonl")
    async with OnlineAPI(RecordingModel(), cache=cache_dir, manifest=manifest) as api:
        first = await asyncio.gather(
            *(api.request(Request("q", namespace="n", request_id=f"r{i}")) for i in range(3))
        )
    await manifest.aclose()
    async with OnlineAPI(RecordingModel(), cache=cache_dir, reproduce=manifest) as api:
        again = [
            await api.request(Request("q", namespace="n", request_id=f"r{i}"))
            for i in reversed(range(3))
        ]
    assert [r.data for r in reversed(again)] == [r.data for r in first]


def test_a_bad_record_is_a_clear_error(cache_dir: str, tmp_path: Path) -> None:
    """A missing or malformed manifest, or reproduce= with run_id=, is refused clearly."""
    with pytest.raises(ManifestError, match="no such manifest"):
        OnlineAPI(RecordingModel(), cache=cache_dir, reproduce=tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"cachesaver_manifest": 1}\n{"key": "k"}\n')
    with pytest.raises(ManifestError, match=r"bad\.jsonl:2"):
        OnlineAPI(RecordingModel(), cache=cache_dir, reproduce=bad)
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"key": "k", "namespace": "n", "request_id": "r", "indices": [0]}))
    with pytest.raises(ValueError, match="run_id"):
        OnlineAPI(RecordingModel(), cache=cache_dir, reproduce=good, run_id="x")
    with pytest.raises(ValueError, match="same file"):
        OnlineAPI(RecordingModel(), cache=cache_dir, reproduce=good, manifest=good)
