"""What every drop-in client shares, whatever its provider.

`DropInBase` holds the options, the `DropInCore` (store, pipelines, run options),
derived clients (``with_options`` / ``copy``), the lifecycle and the nothing-silent
attribute rule; `ResourceProxy` refuses every attribute of a resource that is not served;
`refuse` is the error both raise. The OpenAI-shaped clients (`DropInClient`) and the
Anthropic and Gemini ones build on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, ClassVar

from cachesaver import Stats
from cachesaver.cacher import Mode
from cachesaver.manifest import RunManifest
from cachesaver.models._common import TokenUsage, base_url_of
from cachesaver.models._core import DropInCore
from cachesaver.models._errors import DropInOptionError, UncachedPathError
from cachesaver.savings import Price, Savings
from cachesaver.stores import CacheLike, Store

__all__ = ["CACHED_PATHS", "SETTINGS", "DropInBase", "ResourceProxy", "refuse"]

#: Plain settings of the SDK client, read through the drop-in client (no API call).
SETTINGS = frozenset(
    {
        "api_key",
        "base_url",
        "organization",
        "project",
        "timeout",
        "max_retries",
        "default_headers",
        "default_query",
        "auth_headers",
        "user_agent",
        "websocket_base_url",
        "webhook_secret",
    }
)
CACHED_PATHS = (
    "chat.completions.create",
    "chat.completions.parse",
    "embeddings.create",
    "responses.create",
)


def refuse(path: str, served: str, uncached: str | None = None) -> UncachedPathError:
    """The error for an attribute path that would reach the API uncached."""
    return UncachedPathError(
        f"client.{path} is not served by cachesaver: it would reach the API uncached. "
        f"Cached here: {served}. For the SDK's own, uncached call use "
        f"client.sdk.{uncached or path}"
    )


class DropInBase:
    """What every drop-in client shares: options, the `DropInCore`, derived clients
    (``with_options`` / ``copy``), lifecycle and the nothing-silent attribute rule.

    A provider subclass sets ``_served`` (what it caches, for error messages),
    ``_settings`` (plain SDK settings read through) and builds its resources in
    ``_make_resources``.
    """

    _provider: ClassVar[str] = ""
    _served: ClassVar[str] = ""
    _settings: ClassVar[frozenset[str]] = SETTINGS

    sdk: Any
    _core: DropInCore

    def __init__(
        self,
        make_sdk: Callable[[], Any],
        owns_sdk: bool,
        *,
        cache: CacheLike,
        namespace: str,
        batch_size: int,
        batch_timeout: float,
        max_concurrency: int | None,
        max_embedding_inputs: int,
        identity_base_url: str | None,
        mode: Mode = "readwrite",
        manifest: str | os.PathLike[str] | RunManifest | None = None,
        run_id: str | None = None,
        reproduce: str | os.PathLike[str] | RunManifest | None = None,
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        where = f"{type(self).__name__}()"
        if not isinstance(namespace, str):
            raise DropInOptionError(f"{where}: namespace must be a str, got {namespace!r}")
        if identity_base_url is not None and (
            type(identity_base_url) is not str or not identity_base_url
        ):
            raise DropInOptionError(
                f"{where}: identity_base_url must be a non-empty str or None, got "
                f"{identity_base_url!r}"
            )
        # Options are checked before anything is opened (the disk store opens lazily).
        core = DropInCore(
            type(self).__name__,
            cache,
            batch_size=batch_size,
            batch_timeout=batch_timeout,
            max_concurrency=max_concurrency,
            max_embedding_inputs=max_embedding_inputs,
            mode=mode,
            manifest=manifest,
            run_id=run_id,
            reproduce=reproduce,
            prices=prices,
        )
        self._setup(make_sdk(), owns_sdk, core, namespace, identity_base_url)

    def _setup(
        self,
        sdk: Any,
        owns_sdk: bool,
        core: DropInCore,
        namespace: str,
        identity_base_url: str | None,
        derived: bool = False,
    ) -> None:
        self.sdk = sdk
        self._derived = derived
        self._owns_sdk = owns_sdk
        self._core = core
        self.namespace = namespace
        self._identity_base_url = identity_base_url
        self._base_url = identity_base_url or self._endpoint(sdk)
        self._make_resources()

    def _make_resources(self) -> None:
        raise NotImplementedError

    def _endpoint(self, sdk: Any) -> str:
        """Where ``sdk`` sends its calls (part of every key): its base URL by default."""
        return base_url_of(sdk)

    @staticmethod
    def sdk_factory(
        where: str, sdk_client: Any, sdk_options: dict[str, Any], construct: Callable[..., Any]
    ) -> tuple[Callable[[], Any], bool]:
        """``(make_sdk, owns_sdk)``: the SDK client passed in, or one built from options."""
        if sdk_client is not None and sdk_options:
            raise DropInOptionError(
                f"{where}: pass either sdk_client or SDK options, not both (got "
                f"{sorted(sdk_options)}); configure the client you pass in instead"
            )

        def make_sdk() -> Any:
            if sdk_client is not None:
                return sdk_client
            try:
                return construct(**sdk_options)
            except TypeError as exc:  # an option the SDK client does not take
                raise DropInOptionError(f"{where}: {exc}") from exc

        return make_sdk, sdk_client is None

    # -- options and derived clients -----------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._core.mode

    @property
    def run_id(self) -> str | None:
        return self._core.run_id

    @property
    def manifest(self) -> RunManifest | None:
        return self._core.manifest

    @property
    def batch_size(self) -> int:
        return self._core.batch_size

    @property
    def batch_timeout(self) -> float:
        return self._core.batch_timeout

    @property
    def max_concurrency(self) -> int | None:
        return self._core.max_concurrency

    @property
    def max_embedding_inputs(self) -> int:
        return self._core.max_embedding_inputs

    def with_options(self, *, namespace: str | None = None, **sdk_options: Any) -> Any:
        """A drop-in client on the same cache and run, with other SDK options.

        ``sdk_options`` go to the SDK client's ``with_options`` (``timeout``,
        ``max_retries``, ``default_headers``, ``base_url``, ...): transport options stay
        out of the key, a new ``base_url`` is part of it. ``namespace`` sets the derived
        client's default namespace. Closing a derived client does nothing: the client
        it was derived from owns the cache and the connections.
        """
        if namespace is not None and not isinstance(namespace, str):
            raise DropInOptionError(
                f"{type(self).__name__}.with_options: namespace must be a str, got {namespace!r}"
            )
        for name in (
            "cache",
            "mode",
            "manifest",
            "run_id",
            "reproduce",
            "prices",
            "batch_size",
            "sdk_client",
        ):
            if name in sdk_options:
                raise DropInOptionError(
                    f"{type(self).__name__}.with_options({name}=...): a derived client shares "
                    f"its cache and run with this one; construct a new client for another {name}"
                )
        sdk = self.sdk.with_options(**sdk_options)
        derived = object.__new__(type(self))
        derived._setup(
            sdk,
            False,
            self._core,
            self.namespace if namespace is None else namespace,
            self._identity_base_url,
            derived=True,
        )
        return derived

    copy = with_options

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store every call of this client reads and writes."""
        return self._core.store

    async def close(self) -> None:
        """Finish calls in flight, close the pipelines, the store and the SDK client.

        A store or SDK client passed in by the caller stays open. A client derived by
        ``with_options`` / ``copy`` owns nothing: closing it does nothing.
        """
        if self._derived:
            return
        await self._core.close(self._sdk_closer() if self._owns_sdk else None)

    def _sdk_closer(self) -> Callable[[], Any]:
        """The coroutine function that closes the SDK client (``sdk.close`` by default)."""
        closer: Callable[[], Any] = self.sdk.close
        return closer

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        sdk = self.__dict__.get("sdk")
        if name.startswith("_") or sdk is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if name in self._settings:
            return getattr(sdk, name)
        raise refuse(name, self._served)

    def cachesaver_stats(self) -> Stats:
        """Counters of every pipeline and embedding call of this client family, summed."""
        return self._core.stats()

    def savings(self) -> Savings:
        """What this client family paid and what the cache saved (tokens; dollars for
        models named in ``prices=``)."""
        return self._core.savings.summary()

    def token_usage(self) -> TokenUsage:
        """Tokens the API calls made by this client family reported (what it paid for)."""
        return self._core.usage()


class ResourceProxy:
    """A resource of a drop-in client: served methods are defined, the rest refused."""

    #: What this resource serves, for error messages.
    _served: ClassVar[str] = ", ".join(CACHED_PATHS)

    def __init__(self, path: str) -> None:
        self._path = path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if name == "with_streaming_response":
            raise refuse(
                f"{self._path}.{name}",
                f"{self._served} (stream=True streams through the cache; "
                f"{self._path}.with_raw_response gives a raw response)",
            )
        raise refuse(f"{self._path}.{name}", self._served)
