"""Sync drop-in clients: the async ones, served on one owned background loop.

``OpenAI(...)`` builds an ``AsyncOpenAI`` drop-in on its own `BackgroundLoop` and
exposes the same surface synchronously: every cached method blocks until its answer is
there, ``stream=True`` returns an iterator of chunks (live, as for the async client),
uncached paths raise the same `UncachedPathError`. Calls may come from any thread (and
from Jupyter, whose loop is running); ``close()`` (or ``with``) closes the client and
stops the loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from cachesaver.models._dropin import DropInClient, ResourceProxy
from cachesaver.models._live import LiveStream
from cachesaver.models._stream import ChatStream
from cachesaver.sync import BackgroundLoop

__all__ = ["SyncDropIn", "SyncStream"]


class SyncStream:
    """A sync iterator over a drop-in stream's chunks (``for chunk in stream``)."""

    def __init__(self, stream: Any, loop: BackgroundLoop) -> None:
        self._stream = stream
        self._loop = loop
        self._done = False

    @property
    def completion(self) -> Any:
        """The whole answer with its flags, once the stream has ended."""
        return self._stream.completion

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            return self._loop.call(self._stream.__anext__)
        except StopAsyncIteration:
            self._done = True
            raise StopIteration from None

    def close(self) -> None:
        """Stop the stream (a fresh answer not yet complete is abandoned, not stored)."""
        self._done = True
        if not self._loop.closed:
            self._loop.call(self._stream.close)

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _wrap(value: Any, loop: BackgroundLoop) -> Any:
    sync_view = getattr(type(value), "_cs_sync_view", None)
    if sync_view is not None:  # an object that knows its own sync form (provider streams)
        return sync_view(value, loop)
    if isinstance(value, (LiveStream, ChatStream)):
        return SyncStream(value, loop)
    if isinstance(value, DropInClient):
        return None  # handled by SyncDropIn
    if isinstance(value, ResourceProxy) or _is_sdk_resource(value):
        return _SyncProxy(value, loop)
    if callable(value) and not isinstance(value, type):
        return _blocking(value, loop)
    return value


def _is_sdk_resource(value: Any) -> bool:
    # The SDKs' resources (client.sdk.models, ...) and clients: objects with methods.
    # Looked up on the class: an answer (a pydantic object) would raise and catch an
    # AttributeError for every call.
    return hasattr(type(value), "with_raw_response") and not isinstance(value, type)


# Types whose values a blocking call returns as they are (answers, plain data): `_wrap`
# decides by type alone, so each type is looked at once.
_AS_IS: set[type] = set()


def _blocking(func: Any, loop: BackgroundLoop) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        result = loop.call(func, *args, **kwargs)
        kind = type(result)
        if kind in _AS_IS:
            return result
        if inspect.isasyncgen(result):
            raise TypeError(f"{func!r} returned an async generator; iterate it in async code")
        wrapped = _wrap(result, loop)
        if wrapped is result and not callable(result):
            _AS_IS.add(kind)
        return result if callable(result) or wrapped is None else wrapped

    call.__name__ = getattr(func, "__name__", "call")
    call.__doc__ = getattr(func, "__doc__", None)
    return call


class _SyncProxy:
    """A resource of a sync client: the async resource's attributes, made blocking."""

    def __init__(self, target: Any, loop: BackgroundLoop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = _wrap(getattr(self._target, name), self._loop)
        self.__dict__[name] = value  # resources and methods do not change
        return value

    def __repr__(self) -> str:
        return f"sync({self._target!r})"


class SyncDropIn:
    """The shared part of the sync drop-in clients (`OpenAI`, `Together`)."""

    _async_type: type[DropInClient]

    def __init__(self, **options: Any) -> None:
        loop = BackgroundLoop(name=f"cachesaver-{type(self).__name__}")
        try:
            client = loop.call(self._async_type, **options)
        except BaseException:
            loop.close()
            raise
        self._setup(client, loop, owns_loop=True)

    def _setup(self, client: DropInClient, loop: BackgroundLoop, owns_loop: bool) -> None:
        self._async = client
        self._loop = loop
        self._owns_loop = owns_loop
        self._proxy = _SyncProxy(client, loop)

    @property
    def async_client(self) -> Any:
        """The async drop-in client this one runs (on `loop`)."""
        return self._async

    @property
    def loop(self) -> BackgroundLoop:
        """The background loop this client runs on."""
        return self._loop

    @property
    def sdk(self) -> Any:
        """The SDK client (uncached), with its methods made blocking."""
        return _SyncProxy(self._async.sdk, self._loop)

    @property
    def namespace(self) -> str:
        return self._async.namespace

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self._proxy, name)

    def with_options(self, **options: Any) -> Any:
        """A sync client on the same cache, run and loop, with other SDK options."""
        derived = object.__new__(type(self))
        derived._setup(self._async.with_options(**options), self._loop, owns_loop=False)
        return derived

    copy = with_options

    def cachesaver_stats(self) -> Any:
        return self._async.cachesaver_stats()

    def token_usage(self) -> Any:
        return self._async.token_usage()

    def close(self) -> None:
        """Close the client (as the async one does), then stop its loop."""
        if self._loop.closed:
            return
        if not self._owns_loop:
            return
        try:
            self._loop.call(self._async.close)
        finally:
            self._loop.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.namespace!r}, loop={self._loop!r})"
