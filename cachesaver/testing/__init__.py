"""Models for tests and offline demos: a simulated LLM and a recording fake.

Both satisfy `SingleRequestModel` and `BatchRequestModel`, so they fit every pipeline.
Use them in your own tests::

    model = RecordingModel(SimulatedLLM(seed=0))
    async with OnlineAPI(model, cache=tmp_path) as pipeline:
        await pipeline.request(Request("2+2?", n=3))
    assert model.samples_generated == 3
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable
from typing import Any

from cachesaver.typedefs import Batch, Request, Response, request_content

__all__ = ["InjectedFailure", "RecordingModel", "SimulatedLLM"]

Responder = Callable[[Request, random.Random], Any]


def _default_responder(request: Request, rng: random.Random) -> str:
    prompt = request.prompt if isinstance(request.prompt, str) else str(request.prompt)
    words = ("yes", "no", "maybe", "forty-two", "it depends", "probably", "certainly")
    return f"{prompt[:40]} -> {rng.choice(words)} #{rng.getrandbits(32):08x}"


class SimulatedLLM:
    """A stochastic model: every sample is a fresh draw, reproducible from ``seed``.

    The k-th sample this instance generates for a given request content depends only on
    the seed, the content and k: not on what else was asked before, nor on how the draws
    were split into calls (merging and batching never change the samples). A new
    instance with the same seed starts again at k=0, so over an existing cache give each
    process its own seed if its new draws must differ from the stored ones.
    ``latency`` (seconds) is slept once per call. ``responder(request, rng)`` makes one
    sample from an rng seeded for that sample (default: a short text).
    """

    def __init__(
        self,
        seed: int = 0,
        latency: float = 0.0,
        responder: Responder | None = None,
        name: str = "simulated-llm",
    ) -> None:
        self.seed = seed
        self.latency = latency
        self.responder = responder or _default_responder
        self.name = name
        self._drawn: dict[str, int] = {}

    @property
    def identity(self) -> dict[str, Any]:
        return {"provider": "cachesaver.testing", "model": self.name, "seed": self.seed}

    def _samples(self, request: Request) -> list[Any]:
        content = request_content(request)
        first = self._drawn.get(content, 0)
        self._drawn[content] = first + request.n
        samples = []
        for k in range(first, first + request.n):
            material = f"{self.seed}\x00{content}\x00{k}".encode()
            rng = random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))
            samples.append(self.responder(request, rng))
        return samples

    async def request(self, request: Request) -> Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        return Response(data=self._samples(request))

    async def batch_request(self, batch: Batch) -> list[Response]:
        if self.latency:
            await asyncio.sleep(self.latency)
        return [Response(data=self._samples(request)) for request in batch.requests]


class InjectedFailure(RuntimeError):
    """The error a `RecordingModel` raises when told to fail."""


class RecordingModel:
    """Wraps a model, records every call, and can fail or misbehave on demand.

    - ``calls``: every request the model received (a batch's requests included);
    - ``batches``: every batch received through ``batch_request``;
    - ``fail_next(count, error)``: the next ``count`` calls raise ``error``;
    - ``wrong_count_next(count)``: the next ``count`` calls return one sample too many;
    - ``hold()`` / ``release()``: calls wait at a gate until released, and
      ``await wait_entered(k)`` returns once ``k`` calls have arrived (for tests of
      in-flight behaviour).
    """

    def __init__(self, inner: Any = None, latency: float = 0.0) -> None:
        self.inner = inner if inner is not None else SimulatedLLM()
        self.latency = latency
        self.calls: list[Request] = []
        self.batches: list[Batch] = []
        self._failures: list[BaseException] = []
        self._wrong = 0
        self._held = False
        self._gate: asyncio.Event | None = None
        self._arrivals: list[tuple[int, asyncio.Future[None]]] = []
        self.entered = 0

    @property
    def identity(self) -> Any:
        return getattr(self.inner, "identity", None)

    @property
    def samples_generated(self) -> int:
        """Samples asked of the model so far (the sum of ``n`` over all calls)."""
        return sum(r.n for r in self.calls)

    def fail_next(self, count: int = 1, error: BaseException | None = None) -> None:
        self._failures.extend(
            [error if error is not None else InjectedFailure("injected failure")] * count
        )

    def wrong_count_next(self, count: int = 1) -> None:
        self._wrong += count

    def hold(self) -> None:
        self._held = True
        if self._gate is not None:
            self._gate.clear()

    def release(self) -> None:
        self._held = False
        if self._gate is not None:
            self._gate.set()

    async def wait_entered(self, count: int = 1) -> None:
        """Return once at least ``count`` calls have reached the model."""
        if self.entered >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._arrivals.append((count, future))
        await future

    async def _arrive(self) -> None:
        self.entered += 1
        for count, future in list(self._arrivals):
            if self.entered >= count:
                self._arrivals.remove((count, future))
                if not future.done():
                    future.set_result(None)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self._held:
            if self._gate is None:
                self._gate = asyncio.Event()
            await self._gate.wait()
        if self._failures:
            raise self._failures.pop(0)

    def _maybe_wrong(self, response: Response) -> Response:
        if self._wrong:
            self._wrong -= 1
            return Response(data=[*response.data, response.data[-1]])
        return response

    async def request(self, request: Request) -> Response:
        self.calls.append(request)
        await self._arrive()
        if callable(getattr(self.inner, "request", None)):
            response = await self.inner.request(request)
        else:
            response = (await self.inner.batch_request(Batch([request])))[0]
        return self._maybe_wrong(response)

    async def batch_request(self, batch: Batch) -> list[Response]:
        self.batches.append(batch)
        self.calls.extend(batch.requests)
        await self._arrive()
        if callable(getattr(self.inner, "batch_request", None)):
            responses = list(await self.inner.batch_request(batch))
        else:
            responses = [await self.inner.request(r) for r in batch.requests]
        if responses:
            responses[0] = self._maybe_wrong(responses[0])
        return responses
