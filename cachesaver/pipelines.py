"""Ready-made pipelines: cache, then batch, then deduplicate, then the user's model.

- `OnlineAPI` is for a `SingleRequestModel` (an API): each merged request of a batch is
  sent to ``model.request`` concurrently.
- `LocalAPI` is for a `BatchRequestModel` (a local model that wants hardware batches):
  each batch is sent to ``model.batch_request``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Literal

from cachesaver._models import ModelPort, Stats
from cachesaver.batcher import AsyncBatcher
from cachesaver.cacher import AsyncCacher
from cachesaver.deduplicator import AsyncDeduplicator
from cachesaver.stores import CacheLike, Store
from cachesaver.typedefs import Batch, Request, Response

__all__ = ["DEFAULT_CACHE", "LocalAPI", "OnlineAPI", "Pipeline"]

DEFAULT_CACHE = "caches/default"


class Pipeline:
    """Cache -> batch -> deduplicate -> model; the common part of the two pipelines."""

    _prefer: Literal["request", "batch"] = "request"

    def __init__(
        self,
        model: object,
        cache: CacheLike = DEFAULT_CACHE,
        batch_size: int = 16,
        timeout: float = 0.05,
    ) -> None:
        self.model = model
        self._cacher = AsyncCacher(
            AsyncBatcher(
                AsyncDeduplicator(ModelPort(model, prefer=self._prefer)),
                batch_size=batch_size,
                timeout=timeout,
            ),
            cache,
        )

    @property
    def store(self) -> Store:
        """The store the pipeline reads and writes."""
        return self._cacher.store

    @property
    def identity(self) -> Any:
        """The model's declared identity (part of every key), or None."""
        return self._cacher.identity

    def key_of(self, request: Request) -> str:
        """Return the cache key of ``request`` in this pipeline."""
        return self._cacher.key_of(request)

    async def request(self, request: Request) -> Response:
        """Return ``request.n`` samples, from the cache where it can."""
        return await self._cacher.request(request)

    async def batch_request(self, batch: Batch) -> list[Response]:
        """Return one response per request of ``batch``, in order."""
        return await self._cacher.batch_request(batch)

    def stats(self) -> Stats:
        """Counters of this pipeline so far; they agree with the response flags."""
        return self._cacher.stats()

    async def aclose(self) -> None:
        """Send what is waiting, wait for what is in flight, close what the pipeline opened."""
        await self._cacher.aclose()

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class OnlineAPI(Pipeline):
    """A pipeline for a `SingleRequestModel` (an API endpoint)."""

    _prefer = "request"


class LocalAPI(Pipeline):
    """A pipeline for a `BatchRequestModel` (a local model that takes whole batches)."""

    _prefer = "batch"
