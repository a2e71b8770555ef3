"""The one exception hierarchy of cachesaver, rooted at :class:`CacheSaverError`.

Each error also subclasses the builtin whose meaning it shares, so ``except ValueError``
keeps working in user code that does not know about cachesaver.
"""

from __future__ import annotations

__all__ = [
    "CacheMissError",
    "CacheSaverError",
    "CacheSaverWarning",
    "DamagedSampleError",
    "DurabilityWarning",
    "ExportFileError",
    "ExportTooLargeError",
    "ImportConflictError",
    "InvalidRequestError",
    "ManifestError",
    "MissingExtraError",
    "ModelContractError",
    "ModelTimeoutError",
    "NotACacheError",
    "PipelineClosedError",
    "PipelineLoopError",
    "StoreError",
    "UnknownTypeTagError",
    "UnmatchedRequestWarning",
    "UnstorableSampleError",
]


class CacheSaverError(Exception):
    """Root of every error cachesaver raises on purpose."""


class InvalidRequestError(CacheSaverError, ValueError, TypeError):
    """A `Request` field has a wrong type or value; the message names the field."""


class UnstorableSampleError(CacheSaverError, TypeError):
    """A model returned a sample that cannot be stored as code-free JSON."""


class UnknownTypeTagError(CacheSaverError, ValueError):
    """A stored sample names a type that was never registered as safe to restore."""


class ModelContractError(CacheSaverError, RuntimeError):
    """A model broke its contract (wrong number of samples or responses, wrong type)."""


class ModelTimeoutError(CacheSaverError, TimeoutError):
    """A model call ran past its deadline (``call_timeout``); its callers got this error.

    The call's indices and leases are freed, so a later request makes its own call.
    """


class PipelineClosedError(CacheSaverError, RuntimeError):
    """A pipeline or stage was used after `aclose()`."""


class PipelineLoopError(CacheSaverError, RuntimeError):
    """A pipeline active in one event loop was used from another (one loop at a time)."""


class StoreError(CacheSaverError, RuntimeError):
    """The store could not be read or written (which store and what failed is named)."""


class DamagedSampleError(StoreError, ValueError):
    """A stored sample text cannot be decoded (not our JSON, too deep, a broken tag).

    The message names the key and index when a pipeline read it; nothing is changed.
    """


class ImportConflictError(CacheSaverError, ValueError):
    """An import would change a sample that is already stored; nothing was written."""


class ExportFileError(CacheSaverError, ValueError):
    """An export file is malformed or hostile; ``line`` is where (1-based)."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class ExportTooLargeError(ExportFileError):
    """An export file holds more text than the reader was allowed to load at once."""


class ManifestError(CacheSaverError, ValueError):
    """A run manifest cannot be read (missing, not JSON, not manifest lines)."""


class CacheMissError(CacheSaverError, LookupError):
    """Replay mode: the cache cannot serve a request and the model may not be called."""


class NotACacheError(StoreError):
    """A path or database is not a cachesaver store; nothing was read from or written to it."""


class CacheSaverWarning(UserWarning):
    """Root of every warning cachesaver issues."""


class DurabilityWarning(CacheSaverWarning):
    """The store's settings can lose samples already returned (e.g. Redis without AOF)."""


class MissingExtraError(CacheSaverError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class UnmatchedRequestWarning(CacheSaverWarning):
    """A run that reproduces a record met a request it cannot match (no request_id)."""
