"""The researcher notebook in shared/seeds/003: its own Together model class in OnlineAPI.

The notebook calls ``together.AsyncTogether().chat.completions.create(...,
top_logprobs=...)``. Only the together 1.x SDK takes ``top_logprobs`` (2.x and 3.x
refuse it), so cachesaver allows together 1.x and this test runs the notebook's code
against the test server with whatever together is installed: CI runs it in a venv with
together 1.x (``CACHESAVER_REQUIRE_TOGETHER1=1`` turns the skip into a failure there).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cachesaver.pipelines import OnlineAPI
from cachesaver.testing.server import FakeLLMServer
from cachesaver.typedefs import Batch, BatchRequestModel, Request, Response, SingleRequestModel

together: Any = pytest.importorskip("together")
VERSION = importlib.metadata.version("together")
MAJOR = int(VERSION.split(".")[0])


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as running:
        yield running


def _require_together1() -> None:
    if MAJOR >= 2:
        message = (
            f"the seed notebook passes top_logprobs, which together {VERSION} "
            "refuses; CI runs this test with together 1.x"
        )
        if os.environ.get("CACHESAVER_REQUIRE_TOGETHER1") == "1":
            pytest.fail(message + " and CACHESAVER_REQUIRE_TOGETHER1=1")
        pytest.skip(message)


# The notebook's own classes, as written there.
class OnlineLLM(SingleRequestModel, BatchRequestModel):
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
        requests = [self.request(request) for request in batch.requests]
        return list(await asyncio.gather(*requests))


@dataclass(frozen=True)
class SeedRequest(Request):
    temperature: float = 1
    max_completion_tokens: int | None = None


async def test_the_seed_notebook_runs_with_together_1(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    """The notebook's model and pipeline cells: same outputs and flags as its transcript."""
    _require_together1()
    from diskcache import Cache

    with pytest.raises(ImportError, match="needs the together SDK 2"):
        import cachesaver.models.together  # noqa: F401  (the adapters need together 2+)

    client = together.AsyncTogether(api_key="test", base_url=server.url + "/v1")
    model = OnlineLLM(client, model="meta-llama/Llama-3.3-70B-Instruct-Turbo-Free")
    direct = await model.request(
        SeedRequest(prompt="What is the meaning of life?", n=1, request_id="sth1", namespace="sth")
    )
    assert len(direct.data) == 1 and direct.data[0]
    request1 = SeedRequest(
        prompt="What is the meaning of life?",
        n=2,
        request_id="sth1",
        namespace="sth",
        max_completion_tokens=10,
    )
    request2 = SeedRequest(
        prompt="Cats or dogs?", n=1, request_id="sth2", namespace="sth", max_completion_tokens=10
    )
    cache = Cache(str(tmp_path / "developping"))
    try:
        pipeline = OnlineAPI(model=model, cache=cache, batch_size=2, timeout=1)
        first = await pipeline.request(request1)
        batch = await pipeline.batch_request(Batch(requests=[request1, request2]))
        await pipeline.aclose()
    finally:
        cache.close()
    assert first.cached == [False, False] and first.duplicated == [False, True]
    assert [r.cached for r in batch] == [[False, False], [False]]
    sent = server.received[-1].body
    assert "top_logprobs" not in sent or sent["top_logprobs"] is None
