"""Ready-made pipelines: cache, then batch, then deduplicate, then the user's model.

- `OnlineAPI` is for a `SingleRequestModel` (an API): each merged request of a batch is
  sent to ``model.request`` concurrently.
- `LocalAPI` is for a `BatchRequestModel` (a local model that wants hardware batches):
  each batch is sent to ``model.batch_request``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from cachesaver._models import DEFAULT_CALL_TIMEOUT, ModelPort
from cachesaver.batcher import AsyncBatcher
from cachesaver.cacher import AsyncCacher, Mode
from cachesaver.deduplicator import AsyncDeduplicator
from cachesaver.manifest import RunManifest
from cachesaver.savings import Price, SavingsCounter
from cachesaver.stores import CacheLike

__all__ = ["DEFAULT_CACHE", "LocalAPI", "OnlineAPI", "Pipeline"]

DEFAULT_CACHE = "caches/default"


class Pipeline(AsyncCacher):
    """Cache -> batch -> deduplicate -> model; the common part of the two pipelines.

    A pipeline is an `AsyncCacher` over an `AsyncBatcher` over an `AsyncDeduplicator`
    over the user's model, so it has the cacher's ``request``, ``batch_request``,
    ``stats``, ``key_of`` and ``aclose``.

    ``reproduce`` (a manifest path or a `RunManifest`) reproduces that recorded run
    exactly, whatever the timing: see `AsyncCacher` and docs/semantics.md.

    ``call_timeout`` (seconds, default 30 minutes) is every model call's deadline: a call
    past it fails its callers with `ModelTimeoutError` (a `CacheSaverError` and a
    `TimeoutError`), its indices and leases are freed, and a later request makes its own
    call; nobody, ``aclose()`` included, waits for it any longer.
    """

    _prefer: Literal["request", "batch"] = "request"

    def __init__(
        self,
        model: object,
        cache: CacheLike = DEFAULT_CACHE,
        batch_size: int = 16,
        timeout: float = 0.05,
        *,
        mode: Mode = "readwrite",
        manifest: str | os.PathLike[str] | RunManifest | None = None,
        run_id: str | None = None,
        lease_ttl: float = 30.0,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        reproduce: str | os.PathLike[str] | RunManifest | None = None,
        prices: Mapping[str, Price] | None = None,
        savings: SavingsCounter | None = None,
        explain_misses: bool = False,
    ) -> None:
        self.model = model
        chain = AsyncBatcher(
            AsyncDeduplicator(ModelPort(model, prefer=self._prefer, call_timeout=call_timeout)),
            batch_size=batch_size,
            timeout=timeout,
            split=self._prefer == "batch",  # a local model's batch size is a hard limit
        )
        super().__init__(
            chain,
            cache,
            mode=mode,
            manifest=manifest,
            run_id=run_id,
            lease_ttl=lease_ttl,
            reproduce=reproduce,
            prices=prices,
            savings=savings,
            explain_misses=explain_misses,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, store={self.store!r})"


class OnlineAPI(Pipeline):
    """A pipeline for a `SingleRequestModel` (an API endpoint)."""

    _prefer = "request"


class LocalAPI(Pipeline):
    """A pipeline for a `BatchRequestModel` (a local model that takes whole batches)."""

    _prefer = "batch"
