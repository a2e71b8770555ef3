"""What a drop-in client shares with its ``with_options`` / ``copy`` clients.

One `DropInCore` per client constructed by the user: the store, one `OnlineAPI` pipeline
per (endpoint, model, base URL), the embedding adapters, the run options (``mode``,
``manifest``, ``run_id``, ``reproduce``) and the counters. Clients derived with
``with_options`` share it, so a namespace keeps drawing fresh samples whichever of them
makes the call.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from cachesaver import Stats
from cachesaver.cacher import AsyncCacher, Mode
from cachesaver.errors import PipelineClosedError
from cachesaver.manifest import RunManifest
from cachesaver.models._common import TokenUsage
from cachesaver.models._errors import DropInOptionError
from cachesaver.pipelines import DEFAULT_CACHE, OnlineAPI
from cachesaver.savings import Price, SavingsCounter
from cachesaver.stores import CacheLike, open_store

__all__ = ["DropInCore", "add_stats"]

logger = logging.getLogger("cachesaver")
PipelineKey = tuple[str, str, str]  # endpoint, model, base URL


def add_stats(stats: Stats, other: Stats) -> Stats:
    return Stats(
        requests=stats.requests + other.requests,
        samples=stats.samples + other.samples,
        cached=stats.cached + other.cached,
        duplicated=stats.duplicated + other.duplicated,
        generated=stats.generated + other.generated,
        model_calls=stats.model_calls + other.model_calls,
        batches=stats.batches + other.batches,
    )


def _positive_int(where: str, name: str, value: Any, what: str) -> None:
    if type(value) is not int or value < 1:
        raise DropInOptionError(f"{where}: {name} must be a positive int ({what}), got {value!r}")


class DropInCore:
    """The store, pipelines, run options and counters of a drop-in client family."""

    def __init__(
        self,
        where: str,
        cache: CacheLike,
        *,
        batch_size: int,
        batch_timeout: float,
        max_concurrency: int | None,
        max_embedding_inputs: int,
        mode: Mode,
        manifest: str | os.PathLike[str] | RunManifest | None,
        run_id: str | None,
        reproduce: str | os.PathLike[str] | RunManifest | None = None,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        _positive_int(where, "batch_size", batch_size, "samples per batch")
        _positive_int(where, "max_embedding_inputs", max_embedding_inputs, "inputs per call")
        if max_concurrency is not None:
            _positive_int(where, "max_concurrency", max_concurrency, "API calls at once")
        if (
            isinstance(batch_timeout, bool)
            or not isinstance(batch_timeout, (int, float))
            or not math.isfinite(batch_timeout)
            or batch_timeout < 0
        ):
            raise DropInOptionError(
                f"{where}: batch_timeout must be a finite number of seconds >= 0, got "
                f"{batch_timeout!r}; it bounds how long a fresh call waits for its batch"
            )
        if mode not in ("readwrite", "replay"):
            raise DropInOptionError(
                f"{where}: mode must be 'readwrite' (the default) or 'replay' (serve only "
                f"from the cache; a miss raises CacheMissError), got {mode!r}"
            )
        if run_id is not None and (type(run_id) is not str or not run_id):
            raise DropInOptionError(
                f"{where}: run_id must be a non-empty str (the id every worker of a shared "
                f"run passes), got {run_id!r}"
            )
        if reproduce is not None:
            if not isinstance(reproduce, (str, os.PathLike, RunManifest)) or (
                not isinstance(reproduce, RunManifest) and not os.fspath(reproduce)
            ):
                raise DropInOptionError(
                    f"{where}: reproduce must be the path of a run manifest (or a RunManifest) "
                    f"that an earlier run wrote with manifest=, got {reproduce!r}"
                )
            if run_id is not None:
                raise DropInOptionError(
                    f"{where}: reproduce= and run_id= cannot be combined: reproduce a shared "
                    "run from its manifest in one process"
                )
        owns_manifest = False
        if manifest is not None and not isinstance(manifest, RunManifest):
            if not isinstance(manifest, (str, os.PathLike)) or not os.fspath(manifest):
                raise DropInOptionError(
                    f"{where}: manifest must be a file path or a RunManifest, got {manifest!r}"
                )
            manifest = RunManifest(manifest)
            owns_manifest = True
        self.where = where
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.max_concurrency = max_concurrency
        self.max_embedding_inputs = max_embedding_inputs
        self.mode: Mode = mode
        self.manifest: RunManifest | None = manifest
        self._owns_manifest = owns_manifest
        self.run_id = run_id
        self.reproduce = reproduce
        try:
            self.savings = SavingsCounter(prices)
        except (TypeError, ValueError) as exc:
            raise DropInOptionError(f"{where}: prices: {exc}") from exc
        self._cache_spec = cache
        self.store, self._owns_store = open_store(cache)
        self.pipelines: dict[PipelineKey, tuple[Any, OnlineAPI]] = {}
        self.embedders: dict[PipelineKey, Any] = {}
        self.embed_stats = Stats()
        self.embed_runs: set[AsyncCacher] = set()
        self.closed = False
        self._announced = False

    def check_open(self) -> None:
        if self.closed:
            raise PipelineClosedError(
                f"{self.where} is closed; create a new client to send more requests"
            )

    def announce(self) -> None:
        """Say once, at INFO, where this client's cache is (the default is relative)."""
        if self._announced:
            return
        self._announced = True
        spec = self._cache_spec
        if isinstance(spec, (str, os.PathLike)) and "://" not in os.fspath(spec):
            where = os.path.abspath(os.fspath(spec))
            default = " (the default; pass cache=... to choose)" if spec == DEFAULT_CACHE else ""
            logger.info("cachesaver: %s caches in %s%s", self.where, where, default)
        else:
            logger.info("cachesaver: %s caches in %r", self.where, self.store)

    def pipeline(self, key: PipelineKey, make_adapter: Callable[[], Any]) -> tuple[Any, OnlineAPI]:
        """The adapter and pipeline for ``key`` (created on first use)."""
        entry = self.pipelines.get(key)
        if entry is None:
            self.check_open()
            self.announce()
            adapter = make_adapter()
            pipeline = OnlineAPI(
                adapter,
                cache=self.store,
                batch_size=self.batch_size,
                timeout=self.batch_timeout,
                mode=self.mode,
                manifest=self.manifest,
                run_id=self.run_id,
                reproduce=self.reproduce,
                savings=self.savings,
            )
            entry = self.pipelines[key] = (adapter, pipeline)
        return entry

    def embedder(self, key: PipelineKey, make_adapter: Callable[[], Any]) -> Any:
        adapter = self.embedders.get(key)
        if adapter is None:
            self.check_open()
            self.announce()
            adapter = self.embedders[key] = make_adapter()
        return adapter

    def stats(self) -> Stats:
        total = self.embed_stats
        for _, pipeline in self.pipelines.values():
            total = add_stats(total, pipeline.stats())
        return total

    def usage(self) -> TokenUsage:
        total = TokenUsage()
        for adapter, _ in self.pipelines.values():
            total = total + adapter.usage
        for embedder in self.embedders.values():
            total = total + embedder.usage
        return total

    async def close(self, close_sdk: Callable[[], Any] | None) -> None:
        """Finish calls in flight, close the pipelines, the manifest, the store, the SDK."""
        if self.closed:
            return
        self.closed = True
        try:
            for run in list(self.embed_runs):
                await run.aclose()  # embedding calls in flight finish first
            for _, pipeline in list(self.pipelines.values()):
                await pipeline.aclose()
        finally:
            try:
                if self._owns_manifest and self.manifest is not None:
                    await self.manifest.aclose()
                if self._owns_store:
                    await self.store.aclose()
            finally:
                if close_sdk is not None:
                    await close_sdk()
