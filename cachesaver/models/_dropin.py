"""The machinery of the drop-in clients (`AsyncOpenAI`, `AsyncTogether`).

A drop-in client owns the real SDK client (``client.sdk``) and shares a `DropInCore`
(store, pipelines, run options) with the clients derived from it by ``with_options`` /
``copy``. Chat calls go through one `OnlineAPI` pipeline per (model, base URL); each
call becomes a `ChatRequest` whose content is the messages plus every parameter that
can change the output. Nothing is silent: every attribute either is served through the
cache, is a plain setting of the SDK client (``api_key``, ``base_url``, ...), or raises
`UncachedPathError` naming the path, the cached alternative and ``client.sdk.<path>``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, ClassVar

from cachesaver import Stats
from cachesaver.cacher import Mode
from cachesaver.errors import InvalidRequestError
from cachesaver.manifest import RunManifest
from cachesaver.models._chat import ChatAdapter
from cachesaver.models._common import (
    CALL_OPTIONS_ATTR,
    SDK_ATTR,
    TokenUsage,
    base_url_of,
    is_omitted,
    jsonable,
)
from cachesaver.models._core import DropInCore
from cachesaver.models._errors import DropInOptionError, UncachedPathError
from cachesaver.models._stream import ChatStream
from cachesaver.models.requests import ChatRequest
from cachesaver.models.samples import ChatSample
from cachesaver.pipelines import OnlineAPI
from cachesaver.stores import CacheLike, Store
from cachesaver.typedefs import Response

__all__ = ["SETTINGS", "DropInClient", "refuse"]

_CHAT_FIELDS = frozenset(
    f
    for f in ChatRequest.__dataclass_fields__
    if f not in ("prompt", "n", "request_id", "namespace", "params", "extra_body")
)
_SENTINELS = ("NotGiven", "Omit")
_SCALARS = (str, int, float, bool)
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


class DropInClient:
    """The shared part of the drop-in clients; see `AsyncOpenAI` / `AsyncTogether`."""

    _provider: ClassVar[str] = ""
    # The SDK's chat/embeddings create() parameters, besides model/messages|input/n/stream.
    _chat_params: ClassVar[frozenset[str]] = frozenset()
    _chat_not_in_key: ClassVar[frozenset[str]] = frozenset()
    _embed_params: ClassVar[frozenset[str]] = frozenset()
    _embed_not_in_key: ClassVar[frozenset[str]] = frozenset()
    _role_in_every_delta: ClassVar[bool] = False
    _logprobs_in_chunks: ClassVar[bool] = True
    _has_encoding_format: ClassVar[bool] = False
    _served: ClassVar[str] = "chat.completions.create, embeddings.create"

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
        self._base_url = identity_base_url or base_url_of(sdk)
        self._make_resources()

    def _make_resources(self) -> None:
        raise NotImplementedError

    # -- provider hooks ------------------------------------------------------------------

    def _chat_adapter(self, model: str) -> ChatAdapter[Any]:
        raise NotImplementedError

    def _completion(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _chunk(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _structured(self, response_format: Any) -> tuple[Any, Any]:
        """(the JSON response_format sent and keyed, the user's type to parse into)."""
        return jsonable(response_format, "response_format"), None

    def _parse(self, completion: Any, parse_as: Any, tools: Any) -> Any:
        return completion

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
        for name in ("cache", "mode", "manifest", "run_id", "batch_size", "sdk_client"):
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
        await self._core.close(self.sdk.close if self._owns_sdk else None)

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
        if name in SETTINGS:
            return getattr(sdk, name)
        raise refuse(name, self._served)

    def cachesaver_stats(self) -> Stats:
        """Counters of every pipeline and embedding call of this client family, summed."""
        return self._core.stats()

    def token_usage(self) -> TokenUsage:
        """Tokens the API calls made by this client family reported (what it paid for)."""
        return self._core.usage()

    def chat_pipeline(self, model: str) -> OnlineAPI:
        """The pipeline that serves chat calls for ``model`` (created on first use)."""
        self._core.check_open()
        if type(model) is not str or not model:
            raise InvalidRequestError(
                f"chat.completions.create: model must be a non-empty str, got {model!r}"
            )
        return self._core.pipeline(
            ("chat", model, self._base_url), lambda: self._chat_adapter(model)
        )[1]

    # -- chat ----------------------------------------------------------------------------

    def _chat_request(
        self,
        messages: Any,
        n: Any,
        namespace: str | None,
        request_id: str | None,
        params: dict[str, Any],
    ) -> tuple[ChatRequest, dict[str, Any] | None]:
        """Split the call's parameters: key fields, other key params, call options."""
        fields: dict[str, Any] = {}
        others: dict[str, Any] | None = None
        options: dict[str, Any] | None = None
        extra_body: Any = None
        chat_params = self._chat_params
        for name, value in params.items():
            if value is None or type(value).__name__ in _SENTINELS:
                continue
            if name in _CHAT_FIELDS and name in chat_params:
                fields[name] = value if type(value) in _SCALARS else jsonable(value, name)
            elif name in self._chat_not_in_key:
                if options is None:
                    options = {}
                options[name] = value
            elif name == "extra_body":
                extra_body = jsonable(value, "extra_body")
                if not isinstance(extra_body, dict):
                    raise InvalidRequestError(
                        f"{self._provider} chat.completions.create: extra_body must be a "
                        f"dict, got {value!r}"
                    )
            elif name in chat_params:
                if others is None:
                    others = {}
                others[name] = jsonable(value, name)
            else:
                raise InvalidRequestError(
                    f"{self._provider} chat.completions.create() got an unexpected keyword "
                    f"argument {name!r}: it is not a parameter of the installed "
                    f"{self._provider} SDK; send provider-specific parameters in "
                    "extra_body={...} (they are part of the key)"
                )
        if n is None or type(n).__name__ in _SENTINELS:
            n = 1
        prompt = jsonable(messages, "messages")
        if type(prompt) is not list or not prompt:
            raise InvalidRequestError(
                f"{self._provider} chat.completions.create: messages must be a non-empty "
                "list of messages such as [{'role': 'user', 'content': 'Hello'}]"
            )
        request = ChatRequest(
            prompt,
            n=n,
            namespace=self.namespace if namespace is None else namespace,
            request_id=request_id,
            params=others,
            extra_body=extra_body,
            **fields,
        )
        return request, options

    def _prepare_chat(
        self,
        model: Any,
        messages: Any,
        stream: Any,
        namespace: str | None,
        request_id: str | None,
        params: dict[str, Any],
    ) -> tuple[OnlineAPI, ChatRequest, Any, Any, Any]:
        if stream not in (None, False, True) and not is_omitted(stream):
            raise InvalidRequestError(
                f"chat.completions.create: stream must be True or False, got {stream!r}"
            )
        n = params.pop("n", None)
        stream_options = params.pop("stream_options", None)
        parse_as = None
        tools = params.get("tools")
        response_format = params.get("response_format")
        if response_format is not None and not is_omitted(response_format):
            params["response_format"], parse_as = self._structured(response_format)
        pipeline = self.chat_pipeline(model)
        request, options = self._chat_request(messages, n, namespace, request_id, params)
        if options:
            object.__setattr__(request, CALL_OPTIONS_ATTR, options)
        object.__setattr__(request, SDK_ATTR, self.sdk)
        return pipeline, request, stream_options, parse_as, tools

    async def _chat_create(
        self,
        model: Any,
        messages: Any,
        stream: Any,
        namespace: str | None,
        request_id: str | None,
        params: dict[str, Any],
        parse: bool = False,
    ) -> Any:
        pipeline, request, stream_options, parse_as, tools = self._prepare_chat(
            model, messages, stream, namespace, request_id, params
        )
        if stream is True:
            if parse_as is not None or parse:
                raise InvalidRequestError(
                    "chat.completions: stream=True with a pydantic response_format is not "
                    "served by cachesaver; call without stream (the answer is parsed), or "
                    "use client.sdk.chat.completions.stream(...) uncached"
                )
            from cachesaver.models._live import live_stream

            include_usage = isinstance(stream_options, Mapping) and bool(
                stream_options.get("include_usage")
            )
            return await live_stream(self, pipeline, request, model, include_usage)
        response = await pipeline.request(request)
        completion = self._build_completion(response, model)
        if parse_as is not None or parse:
            return self._parse(completion, parse_as, tools)
        return completion

    def _replay(self, completion: Any, include_usage: bool) -> ChatStream[Any]:
        return ChatStream(
            completion,
            self._chunk,
            include_usage=include_usage,
            role_in_every_delta=self._role_in_every_delta,
            logprobs_in_chunks=self._logprobs_in_chunks,
        )

    def _build_completion(self, response: Response, model: str) -> Any:
        samples: list[ChatSample] = response.data
        count = len(samples)
        cached = response.cached or [False] * count
        duplicated = response.duplicated or [False] * count
        choices: list[dict[str, Any]] = []
        prompt_tokens = 0
        completion_tokens = 0
        for i, sample in enumerate(samples):
            choice = dict(sample["choice"])
            choice["index"] = i
            choice["cached"] = cached[i]
            choice["duplicated"] = duplicated[i]
            choices.append(choice)
            if not cached[i]:
                completion_tokens += sample["completion_tokens"] or 0
                if not duplicated[i]:
                    prompt_tokens += sample["prompt_tokens"] or 0
        first = samples[0]
        data: dict[str, Any] = {
            "id": first["id"],
            "object": "chat.completion",
            "created": first["created"],
            "model": first["model"] or model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if first.get("system_fingerprint") is not None:
            data["system_fingerprint"] = first["system_fingerprint"]
        return self._completion(data)


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
