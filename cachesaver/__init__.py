"""cachesaver: cheaper, exactly reproducible LLM experiments.

Requests flow through composable async stages (`AsyncCacher`, `AsyncBatcher`,
`AsyncDeduplicator`) to your model; `OnlineAPI` and `LocalAPI` wire them for you.
"""

from typing import TYPE_CHECKING

from cachesaver._models import Stats
from cachesaver.batcher import AsyncBatcher
from cachesaver.cacher import AsyncCacher
from cachesaver.codec import decode_sample, encode_sample, register_type
from cachesaver.deduplicator import AsyncDeduplicator
from cachesaver.errors import (
    CacheMissError,
    CacheSaverError,
    CacheSaverWarning,
    DamagedSampleError,
    DurabilityWarning,
    ExportFileError,
    ExportTooLargeError,
    ImportConflictError,
    InvalidRequestError,
    ManifestError,
    MissingExtraError,
    ModelContractError,
    ModelTimeoutError,
    NotACacheError,
    PipelineClosedError,
    PipelineLoopError,
    StoreError,
    UnknownTypeTagError,
    UnmatchedRequestWarning,
    UnstorableSampleError,
)
from cachesaver.manifest import ManifestEntry, RunManifest, read_manifest
from cachesaver.pipelines import LocalAPI, OnlineAPI
from cachesaver.stores import DiskStore, Store
from cachesaver.typedefs import Batch, BatchRequestModel, Request, Response, SingleRequestModel

if TYPE_CHECKING:
    from cachesaver.stores.redis import RedisStore

__version__ = "0.1.0"

__all__ = [
    "AsyncBatcher",
    "AsyncCacher",
    "AsyncDeduplicator",
    "Batch",
    "BatchRequestModel",
    "CacheMissError",
    "CacheSaverError",
    "CacheSaverWarning",
    "DamagedSampleError",
    "DiskStore",
    "DurabilityWarning",
    "ExportFileError",
    "ExportTooLargeError",
    "ImportConflictError",
    "InvalidRequestError",
    "LocalAPI",
    "ManifestEntry",
    "ManifestError",
    "MissingExtraError",
    "ModelContractError",
    "ModelTimeoutError",
    "NotACacheError",
    "OnlineAPI",
    "PipelineClosedError",
    "PipelineLoopError",
    "RedisStore",
    "Request",
    "Response",
    "RunManifest",
    "SingleRequestModel",
    "Stats",
    "Store",
    "StoreError",
    "UnknownTypeTagError",
    "UnmatchedRequestWarning",
    "UnstorableSampleError",
    "__version__",
    "decode_sample",
    "encode_sample",
    "read_manifest",
    "register_type",
]


def __getattr__(name: str) -> object:
    # RedisStore is imported on first use: redis-py takes longer to import than the rest
    # of cachesaver together, and most runs use the disk store.
    if name == "RedisStore":
        from cachesaver.stores.redis import RedisStore

        return RedisStore
    raise AttributeError(f"module 'cachesaver' has no attribute {name!r}")
