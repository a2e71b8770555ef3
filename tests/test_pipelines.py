"""OnlineAPI and LocalAPI as users meet them: the notebook, lifecycles, faults."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import diskcache
import pytest

import cachesaver
from cachesaver import ModelContractError, PipelineClosedError, UnstorableSampleError
from cachesaver.pipelines import LocalAPI, OnlineAPI
from cachesaver.testing import InjectedFailure, RecordingModel, SimulatedLLM
from cachesaver.typedefs import Batch, BatchRequestModel, Request, Response, SingleRequestModel


class FakeCompletions:
    """Stands in for client.chat.completions of an SDK (the LLM is the only fake)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.counter = 0

    async def create(self, **kwargs: Any) -> Any:
        self.seen.append(kwargs)
        choices = []
        for _ in range(kwargs["n"]):
            self.counter += 1
            content = f"answer {self.counter} to {kwargs['messages'][0]['content']}"
            choices.append(type("C", (), {"message": type("M", (), {"content": content})()}))
        return type("Completion", (), {"choices": choices})()


class FakeClient:
    def __init__(self) -> None:
        self.chat = type("Chat", (), {"completions": FakeCompletions()})()


class OnlineLLM(SingleRequestModel, BatchRequestModel):
    """The researcher's notebook model, as written there."""

    def __init__(self, client: Any, model: str):
        self.client = client
        self.model = model

    async def request(self, request: Request) -> Response:
        completion = await self.client.chat.completions.create(
            messages=[{"role": "user", "content": request.prompt}],
            model=self.model,
            n=request.n,
            max_tokens=request.max_completion_tokens or None,
            temperature=request.temperature or 1,
            stop=request.stop or None,
            top_p=request.top_p or 1,
            seed=request.seed or None,
            logprobs=request.logprobs or False,
            top_logprobs=request.top_logprobs or None,
        )
        return Response(data=[choice.message.content for choice in completion.choices])

    async def batch_request(self, batch: Batch) -> list[Response]:
        return list(await asyncio.gather(*(self.request(r) for r in batch.requests)))


async def test_the_notebook_works_as_written(tmp_path: Any) -> None:
    """The seed notebook's code runs unchanged and shows the documented flags."""

    @dataclass(frozen=True)
    class Request(cachesaver.typedefs.Request):  # the notebook shadows the name
        temperature: float = 1
        max_completion_tokens: int = None  # type: ignore[assignment]

    client = FakeClient()
    model = OnlineLLM(client, model="meta-llama/Llama-3.3-70B-Instruct-Turbo-Free")
    request1 = Request(
        prompt="What is the meaning of life?",
        n=2,
        request_id="sth1",
        namespace="sth",
        max_completion_tokens=10,
    )
    request2 = Request(
        prompt="Cats or dogs?", n=1, request_id="sth2", namespace="sth", max_completion_tokens=10
    )
    batch = Batch(requests=[request1, request2])
    cache = diskcache.Cache(str(tmp_path / "developping"))
    pipeline = OnlineAPI(model=model, cache=cache, batch_size=2, timeout=1)

    first = await pipeline.request(request1)
    assert first.cached == [False, False] and first.duplicated == [False, True]
    responses = await pipeline.batch_request(batch)
    assert [len(r.data) for r in responses] == [2, 1]
    assert responses[0].data != first.data, "fresh draws within a namespace"
    assert responses[1].cached == [False] and responses[1].duplicated == [False]
    assert client.chat.completions.seen[0]["max_tokens"] == 10
    assert client.chat.completions.seen[0]["stop"] is None
    await pipeline.aclose()

    replay = OnlineAPI(model=model, cache=cache, batch_size=2, timeout=1)
    assert (await replay.request(request1)).data == first.data
    assert [r.data for r in await replay.batch_request(batch)] == [r.data for r in responses]
    assert replay.stats().model_calls == 0
    await replay.aclose()
    cache.close()


async def test_closing_leaves_a_user_cache_open(tmp_path: Any) -> None:
    """A pipeline closes only what it opened: a diskcache.Cache passed in stays usable."""
    cache = diskcache.Cache(str(tmp_path / "c"))
    async with OnlineAPI(RecordingModel(), cache=cache) as api:
        await api.request(Request("q"))
    cache.set("still", "open")
    assert cache.get("still") == "open"
    cache.close()


async def test_use_after_close_raises_a_clear_error(cache_dir: str) -> None:
    """request() after aclose() raises PipelineClosedError saying what to do."""
    api = OnlineAPI(RecordingModel(), cache=cache_dir)
    await api.request(Request("q"))
    await api.aclose()
    await api.aclose()  # closing twice is harmless
    with pytest.raises(PipelineClosedError, match="create a new pipeline"):
        await api.request(Request("q"))
    with pytest.raises(PipelineClosedError):
        await api.batch_request(Batch([Request("q")]))


def test_pipeline_made_outside_a_loop_works_across_asyncio_runs(cache_dir: str) -> None:
    """A pipeline created at module level serves several consecutive asyncio.run() calls."""
    model = RecordingModel()
    api = OnlineAPI(model, cache=cache_dir, batch_size=2, timeout=0.01)
    first = asyncio.run(api.request(Request("q", n=2, namespace="n")))
    second = asyncio.run(api.request(Request("q", n=2, namespace="n")))
    third = asyncio.run(api.request(Request("q", n=4, namespace="m")))
    asyncio.run(api.aclose())
    assert first.data != second.data, "one run: the namespace position carried over"
    assert third.data == first.data + second.data
    assert len(model.calls) == 2


async def test_model_error_fails_promptly_and_the_pipeline_stays_usable(cache_dir: str) -> None:
    """A raising model fails its callers quickly; the next request works."""
    model = RecordingModel()
    model.fail_next(1)
    async with OnlineAPI(model, cache=cache_dir, timeout=0) as api:
        with pytest.raises(InjectedFailure):
            await asyncio.wait_for(api.request(Request("q")), 2)
        assert len((await api.request(Request("q"))).data) == 1


async def test_wrong_sample_count_is_a_contract_error(cache_dir: str) -> None:
    """A model that returns the wrong number of samples gets a clear error, nobody hangs."""
    model = RecordingModel()
    model.wrong_count_next(1)
    async with OnlineAPI(model, cache=cache_dir, timeout=0) as api:
        with pytest.raises(ModelContractError, match=r"returned 3 samples.*n=2") as info:
            await asyncio.wait_for(api.request(Request("q", n=2, request_id="r7")), 2)
        message = str(info.value)
        assert "request_id='r7'" in message and f"key={api.key_of(Request('q'))[:12]}" in message
        ok = await api.request(Request("q", n=2, request_id="r7"))
    assert len(ok.data) == 2


async def test_a_model_returning_not_a_response_is_named(cache_dir: str) -> None:
    """A model returning something other than Response gets an error naming it."""

    class Bad:
        async def request(self, request: Request) -> Any:
            return ["not", "a", "response"]

    async with OnlineAPI(Bad(), cache=cache_dir, timeout=0) as api:
        with pytest.raises(ModelContractError, match=r"Bad returned list.*Response\(data="):
            await api.request(Request("q"))


async def test_batch_model_returning_nothing_is_a_contract_error(cache_dir: str) -> None:
    """LocalAPI over a batch_request that returns None fails with a clear error."""

    class Stub:
        async def batch_request(self, batch: Batch) -> Any:
            return None

    async with LocalAPI(Stub(), cache=cache_dir, timeout=0) as api:
        with pytest.raises(ModelContractError, match="one Response per request"):
            await api.request(Request("q"))


async def test_unstorable_sample_fails_the_request_clearly(cache_dir: str) -> None:
    """A sample that cannot be stored fails the request naming its type and the request."""

    class SetModel:
        async def request(self, request: Request) -> Response:
            return Response(data=[{1, 2}])

    async with OnlineAPI(SetModel(), cache=cache_dir, timeout=0) as api:
        with pytest.raises(UnstorableSampleError, match=r"set.*request_id='r1'"):
            await api.request(Request("q", request_id="r1"))


async def test_closing_during_in_flight_batches_answers_every_caller(cache_dir: str) -> None:
    """aclose() while batches are waiting and in flight returns with every caller answered."""
    model = RecordingModel(SimulatedLLM(latency=0.05))
    api = OnlineAPI(model, cache=cache_dir, batch_size=3, timeout=10)
    callers = [asyncio.ensure_future(api.request(Request(f"q{i}"))) for i in range(7)]
    await asyncio.sleep(0.01)
    await asyncio.wait_for(api.aclose(), 2)
    assert all(c.done() and not c.cancelled() and len(c.result().data) == 1 for c in callers)


async def test_local_api_needs_a_batch_model(cache_dir: str) -> None:
    """LocalAPI over a model without batch_request says a BatchRequestModel is needed."""

    class OnlySingle:
        async def request(self, request: Request) -> Response:
            return Response(data=["x"])

    with pytest.raises(TypeError, match="BatchRequestModel"):
        LocalAPI(OnlySingle(), cache=cache_dir)


def test_bad_cache_argument_says_what_is_accepted() -> None:
    """cache= must be a path, a diskcache.Cache or a Store; anything else is explained."""
    not_a_cache: Any = 42
    with pytest.raises(TypeError, match="directory path"):
        OnlineAPI(RecordingModel(), cache=not_a_cache)


def test_default_cache_lives_under_caches(tmp_path: Any, monkeypatch: Any) -> None:
    """Without cache=, samples go to caches/default in the working directory."""
    monkeypatch.chdir(tmp_path)

    async def use() -> None:
        async with OnlineAPI(RecordingModel()) as api:
            await api.request(Request("q"))

    asyncio.run(use())
    assert os.path.isdir(tmp_path / "caches" / "default")
