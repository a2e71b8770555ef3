"""The boundary to the user's model: calling it, checking its answers, counting calls.

Every stage talks to the next layer through ``_cs_batch_each`` (one outcome per request:
a `Response` or the exception meant for that request's caller), so one bad request in a
batch fails only its own callers. The user's model is wrapped in a `ModelPort`, the one
place where its answers are checked against the contract.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from cachesaver._tasks import TaskOwner
from cachesaver.errors import ModelContractError, ModelTimeoutError
from cachesaver.typedefs import Batch, Request, Response

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "Layer",
    "ModelPort",
    "Stats",
    "as_layer",
    "describe",
    "first_error",
    "then",
]

Outcome = Response | BaseException

_LATE = object()  # a model call still running at its deadline

DEFAULT_CALL_TIMEOUT = 1800.0
"""Seconds a model call may take before its callers get `ModelTimeoutError` (30 min)."""


def check_call_timeout(value: object) -> float:
    """Return ``value`` as a deadline in seconds, or raise naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise ValueError(
            f"call_timeout must be a positive, finite number of seconds, got {value!r}; "
            "every model call has a deadline (raise it for a slow model)"
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class Stats:
    """Counters of a pipeline; they agree with the flags of the responses it returned.

    - ``requests`` / ``samples``: responses returned and the samples in them;
    - ``cached``: samples flagged cached (cost this request nothing);
    - ``duplicated``: samples flagged duplicated (output paid, prompt not);
    - ``generated``: samples produced by calls to the user's model;
    - ``model_calls``: requests sent to the user's model after merging;
    - ``batches``: batches the batching stage sent.
    """

    requests: int = 0
    samples: int = 0
    cached: int = 0
    duplicated: int = 0
    generated: int = 0
    model_calls: int = 0
    batches: int = 0


def describe(request: Request, key: str | None = None) -> str:
    """Name a request in error messages: request_id, namespace and key prefix."""
    text = f"request_id={request.request_id!r}, namespace={request.namespace!r}"
    return f"{text}, key={key[:12]}" if key else text


def then(future: asyncio.Future[Outcome], callback: Callable[[Outcome], None]) -> None:
    """Hand ``future``'s outcome (a cancellation becomes CancelledError) to ``callback``."""

    def deliver(done: asyncio.Future[Outcome]) -> None:
        callback(asyncio.CancelledError() if done.cancelled() else done.result())

    future.add_done_callback(deliver)


def first_error(outcomes: Sequence[Outcome]) -> BaseException | None:
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            return outcome
    return None


@runtime_checkable
class Layer(Protocol):
    """What a stage needs from the layer below it (stages and ports both have it)."""

    @property
    def identity(self) -> Any: ...

    @property
    def _cs_dedup(self) -> bool: ...

    async def _cs_batch_each(self, batch: Batch) -> list[Outcome]: ...

    def _cs_submit(self, request: Request) -> asyncio.Future[Outcome]: ...

    def _cs_submit_then(self, request: Request, callback: Callable[[Outcome], None]) -> None: ...

    def _cs_closing(self) -> None: ...

    def _cs_stats(self) -> Stats: ...

    async def aclose(self) -> None: ...


def _check(response: Any, request: Request, model: object) -> Outcome:
    name = type(model).__name__
    if not isinstance(response, Response):
        return ModelContractError(
            f"{name} returned {type(response).__name__} for ({describe(request)}); "
            "a model must return cachesaver.Response(data=[...])"
        )
    data = response.data
    if not isinstance(data, list):
        return ModelContractError(
            f"{name} returned Response.data of type {type(data).__name__} for "
            f"({describe(request)}); it must be a list of {request.n} samples"
        )
    if len(data) != request.n:
        return ModelContractError(
            f"{name} returned {len(data)} samples for ({describe(request)}) that asked for "
            f"n={request.n}; a model must return exactly n samples"
        )
    declared = response.duplicated
    if declared is not None and (not isinstance(declared, list) or len(declared) != request.n):
        return ModelContractError(
            f"{name} returned Response.duplicated={declared!r} for ({describe(request)}); "
            f"it must be None or a list of {request.n} bools (True: that sample's prompt was "
            "not paid again)"
        )
    return response


class ModelPort:
    """Wraps a user's model: calls it the way the pipeline wants, checks, and counts.

    ``prefer="request"`` sends each request of a batch to ``model.request`` concurrently
    (an API); ``prefer="batch"`` sends the whole batch to ``model.batch_request`` (a
    local model). Without a preference, ``batch_request`` is used if the model has it.

    Every call has a deadline (``call_timeout`` seconds): a call past it is cancelled and
    its callers get `ModelTimeoutError` at once; nothing waits for it any longer (a model
    that ignores the cancellation is left to finish on its own, unawaited).
    """

    _cs_stage = True

    def __init__(
        self,
        model: object,
        prefer: Literal["request", "batch"] | None = None,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> None:
        has_single = callable(getattr(model, "request", None))
        has_batch = callable(getattr(model, "batch_request", None))
        if prefer is None:
            prefer = "batch" if has_batch else "request"
        if prefer == "request" and not has_single:
            raise TypeError(
                f"{type(model).__name__} has no async request(request) method; "
                "a SingleRequestModel is needed here"
            )
        if prefer == "batch" and not has_batch:
            raise TypeError(
                f"{type(model).__name__} has no async batch_request(batch) method; "
                "a BatchRequestModel is needed here"
            )
        self.model = model
        self.prefer = prefer
        self.call_timeout = check_call_timeout(call_timeout)
        self._calls = 0
        self._generated = 0
        self._tasks = TaskOwner()
        self._abandoned: set[asyncio.Task[Any]] = set()

    @property
    def identity(self) -> Any:
        return getattr(self.model, "identity", None)

    @property
    def _cs_dedup(self) -> bool:
        return False

    def _cs_stats(self) -> Stats:
        return Stats(generated=self._generated, model_calls=self._calls)

    async def _within_deadline(self, calls: list[Coroutine[Any, Any, Any]]) -> list[Any]:
        """Run the model calls at once; return each result, error, or `_LATE` (past it)."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(call) for call in calls]
        try:
            _, pending = await asyncio.wait(tasks, timeout=self.call_timeout)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        results: list[Any] = []
        for task in tasks:
            if task in pending:
                task.cancel()  # nobody waits for it: not aclose(), not a caller
                self._abandoned.add(task)
                task.add_done_callback(self._forget)
                results.append(_LATE)
            elif task.cancelled():
                results.append(asyncio.CancelledError())
            else:
                error = task.exception()
                results.append(error if error is not None else task.result())
        return results

    def _late(self, request: Request) -> ModelTimeoutError:
        return ModelTimeoutError(
            f"the call to {type(self.model).__name__} for ({describe(request)}) ran past its "
            f"deadline of {self.call_timeout:g} s and was cancelled; nothing it would have "
            "returned is stored and its samples are free, so the next request makes its own "
            "call (give the pipeline a larger call_timeout if the model is just slow)"
        )

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()

    async def _one(self, request: Request) -> Outcome:
        return (await self._each([request]))[0]

    async def _each(self, requests: Sequence[Request]) -> list[Outcome]:
        self._calls += len(requests)
        model: Any = self.model
        results = await self._within_deadline([model.request(r) for r in requests])
        outcomes: list[Outcome] = []
        for request, result in zip(requests, results, strict=True):
            if result is _LATE:
                outcomes.append(self._late(request))
                continue
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                outcomes.append(result)
                continue
            outcome = _check(result, request, self.model)
            if isinstance(outcome, Response):
                self._generated += request.n
            outcomes.append(outcome)
        return outcomes

    def _cs_submit(self, request: Request) -> asyncio.Future[Outcome]:
        if self.prefer == "request":
            return self._tasks.spawn(self._one(request))
        return self._tasks.spawn(self._first(request))

    async def _first(self, request: Request) -> Outcome:
        return (await self._cs_batch_each(Batch([request])))[0]

    def _cs_submit_then(self, request: Request, callback: Callable[[Outcome], None]) -> None:
        then(self._cs_submit(request), callback)

    async def _cs_batch_each(self, batch: Batch) -> list[Outcome]:
        requests = batch.requests
        if not requests:
            return []
        if self.prefer == "request":
            return await self._each(requests)
        self._calls += len(requests)
        model: Any = self.model
        (responses,) = await self._within_deadline([model.batch_request(batch)])
        if responses is _LATE:
            return [self._late(request) for request in requests]
        if isinstance(responses, BaseException):
            if not isinstance(responses, Exception):
                raise responses
            return [responses] * len(requests)
        if not isinstance(responses, (list, tuple)) or len(responses) != len(requests):
            got = len(responses) if isinstance(responses, (list, tuple)) else responses
            error = ModelContractError(
                f"{type(self.model).__name__}.batch_request returned {got!r} responses for "
                f"a batch of {len(requests)}; it must return one Response per request, "
                "in order"
            )
            return [error] * len(requests)
        outcomes = [
            _check(resp, req, self.model) for resp, req in zip(responses, requests, strict=True)
        ]
        self._generated += sum(
            req.n for req, out in zip(requests, outcomes, strict=True) if isinstance(out, Response)
        )
        return outcomes

    def _cs_closing(self) -> None:
        return None

    async def aclose(self) -> None:
        """Wait for calls in flight; the user's model is the user's and stays open."""
        await self._tasks.wait()


def as_layer(model: object) -> Layer:
    """Return ``model`` if it is a cachesaver stage, else wrap it in a `ModelPort`."""
    if getattr(model, "_cs_stage", False):
        return model  # type: ignore[return-value]
    return ModelPort(model)
