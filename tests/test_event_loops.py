"""SEMANTICS "Batching": a pipeline serves one event loop at a time, and says so."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cachesaver import OnlineAPI, PipelineLoopError, Request, Response
from cachesaver.testing import SimulatedLLM


class Gated(SimulatedLLM):
    """Its calls wait (in a worker thread) until ``release`` is set; ``entered`` says one came."""

    def __init__(self) -> None:
        super().__init__(seed=5)
        self.entered = threading.Event()
        self.release = threading.Event()

    async def request(self, request: Request) -> Response:
        self.entered.set()
        await asyncio.to_thread(self.release.wait, 30)
        return await super().request(request)


def test_a_pipeline_active_in_one_loop_refuses_another_loop(cache_dir: str) -> None:
    """A second thread's loop gets PipelineLoopError at once; the first loop is unharmed."""
    model = Gated()
    api = OnlineAPI(model, cache=cache_dir, timeout=0)
    results: list[object] = []

    def first_loop() -> None:
        results.append(asyncio.run(api.request(Request("q", n=2, namespace="a"))))

    thread = threading.Thread(target=first_loop)
    thread.start()
    try:
        assert model.entered.wait(30), "the first loop's call reached the model"

        async def from_another_loop() -> None:
            with pytest.raises(PipelineLoopError, match="one event loop at a time"):
                await asyncio.wait_for(api.request(Request("q", namespace="b")), 10)
            with pytest.raises(PipelineLoopError):
                await asyncio.wait_for(api.aclose(), 10)

        asyncio.run(from_another_loop())
    finally:
        model.release.set()
        thread.join(30)
    assert not thread.is_alive()
    (first,) = results
    assert isinstance(first, Response) and first.cached == [False, False]
    # Once the first loop is done, consecutive asyncio.run() calls use it as before.
    again = asyncio.run(api.request(Request("q", n=2, namespace="b")))
    asyncio.run(api.aclose())
    assert again.data == first.data and again.cached == [True, True]
