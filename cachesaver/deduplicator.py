"""The deduplication stage: requests for the same content become one model call.

Requests with the same content (same key) and the same namespace that travel together
(in one batch, or issued in the same event-loop iteration) are merged into one request
whose ``n`` is the sum; the call's samples are handed out in issue order. The first
sample the call paid for is flagged ``duplicated=False``, every later one ``True`` (its
prompt was not paid again); samples a caching stage below served are never duplicated,
and their ``cached`` flags are passed on.
"""

from __future__ import annotations

import asyncio
import math

from cachesaver._models import Outcome, Stats
from cachesaver._stage import Stage
from cachesaver.batcher import AsyncBatcher
from cachesaver.typedefs import Batch, Request, Response, request_content, with_n

__all__ = ["AsyncDeduplicator"]

_new = object.__new__


class AsyncDeduplicator(Stage):
    """Merge same-content requests into one model call with their ``n`` summed."""

    def __init__(self, model: object) -> None:
        super().__init__(model)
        # Single requests are gathered per loop iteration, so `asyncio.gather` of
        # identical requests still makes one call.
        self._tick = AsyncBatcher(_Merger(self), batch_size=math.inf, timeout=0)

    @property
    def _cs_dedup(self) -> bool:
        return True

    async def request(self, request: Request) -> Response:
        self._enter()
        return await self._tick.request(request)

    async def _cs_batch_each(self, batch: Batch) -> list[Outcome]:
        self._enter()
        return await self._merge(batch)

    def _cs_submit(self, request: Request) -> asyncio.Future[Outcome]:
        self._enter()
        return self._tick._cs_submit(request)

    async def _merge(self, batch: Batch) -> list[Outcome]:
        # Same namespace too: a cacher below allocates by namespace, so merging across
        # namespaces would change which samples each request receives.
        requests = batch.requests
        first: dict[tuple[str, str], int] = {}  # each content's first position
        more: dict[int, list[int]] | None = None  # first position -> all its positions
        for position, request in enumerate(requests):
            at = first.setdefault((request.namespace, request_content(request)), position)
            if at != position:
                if more is None:
                    more = {}
                more.setdefault(at, [at]).append(position)
        if more is None:  # nothing to merge (the usual case): no group lists at all
            outcomes = await self._inner._cs_batch_each(batch)
            results: list[Outcome] = []
            for outcome in outcomes:
                results.append(
                    outcome if isinstance(outcome, BaseException) else self._own(outcome)
                )
            return results
        groups = [more.get(at) or [at] for at in first.values()]
        merged: list[Request] = []
        for positions in groups:
            head = requests[positions[0]]
            if len(positions) == 1:
                merged.append(head)
            else:
                merged.append(with_n(head, sum(requests[p].n for p in positions)))
        outcomes = await self._inner._cs_batch_each(Batch(merged))
        results = [None] * len(requests)  # type: ignore[list-item]
        for positions, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                for p in positions:
                    results[p] = outcome
                continue
            if len(positions) == 1:  # nothing merged: the whole outcome is its answer
                results[positions[0]] = self._own(outcome)
                continue
            cached = outcome.cached
            duplicated = _duplicated_flags(cached, len(outcome.data), outcome.duplicated)
            offset = 0
            for p in positions:
                n = requests[p].n
                end = offset + n
                response = Response(
                    data=outcome.data[offset:end],
                    cached=None if cached is None else cached[offset:end],
                    duplicated=duplicated[offset:end],
                )
                offset = end
                self._tally(response)
                results[p] = response
        return results

    def _own(self, outcome: Response) -> Response:
        """The answer of a request merged with no other: its call's samples and flags."""
        cached = outcome.cached
        response = _new(Response)
        response.__dict__.update(
            data=outcome.data,
            cached=cached,
            duplicated=_duplicated_flags(cached, len(outcome.data), outcome.duplicated),
        )
        self._tally(response)
        return response

    def _cs_closing(self) -> None:
        self._tick._cs_closing()

    async def aclose(self) -> None:
        if self._closed:
            return
        await self._tick.aclose()
        await super().aclose()


def _duplicated_flags(
    cached: list[bool] | None, count: int, declared: list[bool] | None
) -> list[bool]:
    """Every sample the call paid for after its first paid one shares that prompt.

    A model that makes several provider calls for one request (an API without ``n``)
    declares per sample whether its prompt was paid again (``declared``, from its
    `Response`); its samples are then duplicated only where it says so.
    """
    if cached is None and declared is None:  # a model's own call: all paid, one prompt
        return [False] + [True] * (count - 1) if count else []
    flags: list[bool] = []
    paid = False
    for j in range(count):
        if cached is not None and cached[j]:
            flags.append(False)
        else:
            flags.append(paid and (declared is None or bool(declared[j])))
            paid = True
    return flags


class _Merger:
    """The per-iteration batcher's model: merges what it gets, without closing anything."""

    _cs_stage = True

    def __init__(self, owner: AsyncDeduplicator) -> None:
        self._owner = owner

    @property
    def identity(self) -> object:
        return self._owner.identity

    @property
    def _cs_dedup(self) -> bool:
        return True

    async def _cs_batch_each(self, batch: Batch) -> list[Outcome]:
        return await self._owner._merge(batch)

    def _cs_submit(self, request: Request) -> asyncio.Future[Outcome]:
        return self._owner._tasks.spawn(self._first(request))

    async def _first(self, request: Request) -> Outcome:
        return (await self._owner._merge(Batch([request])))[0]

    def _cs_stats(self) -> Stats:
        return Stats()

    def _cs_closing(self) -> None:
        self._owner._inner._cs_closing()

    async def aclose(self) -> None:
        return None
