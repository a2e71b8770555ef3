"""Anthropic: drop-in `AsyncAnthropic` / `Anthropic` clients and the `AnthropicModel` adapter.

Change one import and existing code becomes cached, deduplicated and reproducible::

    from cachesaver.models.anthropic import AsyncAnthropic  # was: from anthropic import ...

    client = AsyncAnthropic(cache="caches/exp1")             # api_key, base_url, ... as before
    message = await client.messages.create(
        model="claude-sonnet-4-5", max_tokens=256,
        messages=[{"role": "user", "content": "Hi"}],
        namespace="run-1",                                   # cachesaver's own keywords
    )
    message.cached, message.duplicated                       # how this answer was paid

``messages.create`` (``stream=True`` too) and ``messages.stream`` are served through the
cache; every other path raises `UncachedPathError` naming ``client.sdk.<path>``. See
``docs/providers.md``. Requires the ``anthropic`` extra.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from cachesaver.cacher import Mode
from cachesaver.errors import InvalidRequestError
from cachesaver.manifest import RunManifest
from cachesaver.models._anthropic import (
    MESSAGES_NOT_IN_KEY,
    AnthropicModel,
    AnthropicRequest,
    stream_payloads,
)
from cachesaver.models._common import (
    CALL_OPTIONS_ATTR,
    SDK_ATTR,
    is_omitted,
    jsonable,
)
from cachesaver.models._dropin_base import DropInBase, ResourceProxy
from cachesaver.models._sync import SyncDropIn, SyncStream
from cachesaver.pipelines import DEFAULT_CACHE, OnlineAPI
from cachesaver.savings import Price
from cachesaver.stores import CacheLike
from cachesaver.sync import BackgroundLoop

__all__ = [
    "MESSAGES_NOT_IN_KEY",
    "Anthropic",
    "AnthropicModel",
    "AnthropicRequest",
    "AsyncAnthropic",
    "MessageEventStream",
]

_SERVED = "messages.create (stream=True too), messages.stream"
_SETTINGS = frozenset(
    {"api_key", "auth_token", "base_url", "timeout", "max_retries", "default_headers"}
)
_KEYED = frozenset({"system", "temperature", "top_p", "top_k", "stop_sequences"})


def _sdk() -> Any:
    from cachesaver.models._anthropic import _sdk as load

    return load()


class MessageEventStream:
    """The events of one answer, as the SDK's ``RawMessageStreamEvent`` objects.

    ``async for event in stream`` yields them; ``text_stream`` yields the text pieces;
    ``get_final_message()`` / ``get_final_text()`` give the whole answer (with its
    ``cached`` / ``duplicated`` flags). A fresh answer was fetched whole and stored before
    its first event, so closing early loses nothing and costs nothing more.
    """

    def __init__(self, message: Any, events: list[Any]) -> None:
        self._message = message
        self._events = events
        self._position = 0

    @property
    def completion(self) -> Any:
        return self._message

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        if self._position >= len(self._events):
            raise StopAsyncIteration
        event = self._events[self._position]
        self._position += 1
        return event

    @property
    def text_stream(self) -> AsyncIterator[str]:
        """The text pieces of the answer, in order."""
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        async for event in self:
            text = _text_delta(event)
            if text is not None:
                yield text

    async def get_final_message(self) -> Any:
        self._position = len(self._events)
        return self._message

    async def get_final_text(self) -> str:
        texts = [b.text for b in self._message.content if getattr(b, "type", None) == "text"]
        return "".join(texts)

    async def until_done(self) -> None:
        self._position = len(self._events)

    async def close(self) -> None:
        self._position = len(self._events)

    async def __aenter__(self) -> MessageEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _cs_sync_view(self, loop: BackgroundLoop) -> Any:
        return _SyncMessageStream(self, loop)


def _text_delta(event: Any) -> str | None:
    delta: Any = getattr(event, "delta", None)
    if getattr(delta, "type", None) == "text_delta":
        return str(delta.text)
    return None


class _SyncMessageStream(SyncStream):
    """`MessageEventStream` for the sync client."""

    @property
    def text_stream(self) -> Any:
        """The text pieces of the answer, in order."""
        return (text for text in map(_text_delta, self) if text is not None)

    def get_final_message(self) -> Any:
        self.close()
        return self.completion

    def get_final_text(self) -> str:
        message = self.get_final_message()
        return "".join(b.text for b in message.content if getattr(b, "type", None) == "text")

    def until_done(self) -> None:
        self.close()


class _StreamManager:
    """What ``messages.stream(...)`` returns: ``async with`` gives the event stream."""

    def __init__(self, messages: _Messages, kwargs: dict[str, Any]) -> None:
        self._messages = messages
        self._kwargs = kwargs
        self._stream: MessageEventStream | None = None

    async def __aenter__(self) -> MessageEventStream:
        self._stream = await self._messages.create(stream=True, **self._kwargs)
        return self._stream

    async def __aexit__(self, *exc: object) -> None:
        if self._stream is not None:
            await self._stream.close()

    def _cs_sync_view(self, loop: BackgroundLoop) -> Any:
        return _SyncStreamManager(self._messages, self._kwargs, loop)


class _SyncStreamManager:
    def __init__(self, messages: _Messages, kwargs: dict[str, Any], loop: BackgroundLoop):
        self._messages = messages
        self._kwargs = kwargs
        self._loop = loop

    def __enter__(self) -> _SyncMessageStream:
        stream = self._loop.call(self._messages.create, stream=True, **self._kwargs)
        return _SyncMessageStream(stream, self._loop)

    def __exit__(self, *exc: object) -> None:
        return None


class _Messages(ResourceProxy):
    """``client.messages``: ``create`` and ``stream`` through the cache."""

    _served = _SERVED

    def __init__(self, client: AsyncAnthropic) -> None:
        super().__init__("messages")
        self._client = client

    async def create(
        self,
        *,
        model: Any,
        max_tokens: Any,
        messages: Any,
        stream: Any = False,
        namespace: str | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> Any:
        """``messages.create`` through the cache: a ``Message`` (or its event stream)."""
        client = self._client
        if stream not in (None, False, True) and not is_omitted(stream):
            raise InvalidRequestError(
                f"messages.create: stream must be True or False, got {stream!r}"
            )
        pipeline = client.messages_pipeline(model)
        request, options = client._request(max_tokens, messages, namespace, request_id, params)
        if options:
            object.__setattr__(request, CALL_OPTIONS_ATTR, options)
        object.__setattr__(request, SDK_ATTR, client.sdk)
        response = await pipeline.request(request)
        message = client._message(response)
        if stream is True:
            return client._events(message)
        return message

    def stream(self, **kwargs: Any) -> _StreamManager:
        """``messages.stream`` through the cache (``async with`` it, as with the SDK)."""
        if "stream" in kwargs:
            raise InvalidRequestError("messages.stream() streams already; do not pass stream=")
        return _StreamManager(self, kwargs)


class AsyncAnthropic(DropInBase):
    """``anthropic.AsyncAnthropic`` with a persistent, reproducible cache in front.

    Construct it as the SDK's client (``api_key``, ``base_url``, ``timeout``,
    ``max_retries``, ...) plus cachesaver's options: ``cache`` (a directory, a
    ``redis://`` URL or a store), ``namespace``, ``batch_size`` / ``batch_timeout`` (how
    identical concurrent calls are merged), ``max_concurrency``, ``mode``
    (``"replay"``: serve only from the cache), ``manifest``, ``run_id``,
    ``identity_base_url``, or ``sdk_client`` (an ``anthropic.AsyncAnthropic`` to use).
    ``with_options(...)`` / ``copy(...)`` give a client on the same cache and run.

    A call is one sample: calling again in the same namespace draws a fresh one; another
    namespace reuses stored ones. Each ``Message`` carries ``cached`` and ``duplicated``,
    and its ``usage`` counts only what this call paid.
    """

    _provider = "anthropic"
    _served = _SERVED
    _settings = _SETTINGS

    def __init__(
        self,
        *,
        cache: CacheLike = DEFAULT_CACHE,
        namespace: str = "default",
        batch_size: int = 16,
        batch_timeout: float = 0.0,
        max_concurrency: int | None = None,
        identity_base_url: str | None = None,
        mode: Mode = "readwrite",
        manifest: str | os.PathLike[str] | RunManifest | None = None,
        run_id: str | None = None,
        reproduce: str | os.PathLike[str] | RunManifest | None = None,
        prices: Mapping[str, Price] | None = None,
        sdk_client: Any = None,
        **sdk_options: Any,
    ) -> None:
        anthropic = _sdk()
        make_sdk, owns_sdk = self.sdk_factory(
            "AsyncAnthropic()", sdk_client, sdk_options, anthropic.AsyncAnthropic
        )
        super().__init__(
            make_sdk,
            owns_sdk,
            cache=cache,
            namespace=namespace,
            batch_size=batch_size,
            batch_timeout=batch_timeout,
            max_concurrency=max_concurrency,
            max_embedding_inputs=1,
            identity_base_url=identity_base_url,
            mode=mode,
            manifest=manifest,
            run_id=run_id,
            reproduce=reproduce,
            prices=prices,
        )

    def _make_resources(self) -> None:
        self._message_type = _sdk().types.Message
        self.messages = _Messages(self)

    async def __aenter__(self) -> AsyncAnthropic:
        return self

    def with_options(self, *, namespace: str | None = None, **sdk_options: Any) -> AsyncAnthropic:
        derived: AsyncAnthropic = super().with_options(namespace=namespace, **sdk_options)
        return derived

    copy = with_options

    def messages_pipeline(self, model: Any) -> OnlineAPI:
        """The pipeline that serves ``messages.create`` for ``model``."""
        self._core.check_open()
        if type(model) is not str or not model:
            raise InvalidRequestError(
                f"messages.create: model must be a non-empty str, got {model!r}"
            )
        return self._core.pipeline(
            ("messages", model, self._base_url),
            lambda: AnthropicModel(
                self.sdk,
                model,
                sample="full",
                max_concurrency=self._core.max_concurrency,
                identity_base_url=self._base_url,
            ),
        )[1]

    # -- mapping a call ------------------------------------------------------------------

    def _request(
        self,
        max_tokens: Any,
        messages: Any,
        namespace: str | None,
        request_id: str | None,
        params: dict[str, Any],
    ) -> tuple[AnthropicRequest, dict[str, Any] | None]:
        if type(max_tokens) is not int or max_tokens < 1:
            raise InvalidRequestError(
                f"messages.create: max_tokens must be a positive int, got {max_tokens!r}"
            )
        prompt = jsonable(messages, "messages")
        if type(prompt) is not list or not prompt:
            raise InvalidRequestError(
                "messages.create: messages must be a non-empty list such as "
                "[{'role': 'user', 'content': 'Hello'}]"
            )
        fields: dict[str, Any] = {}
        others: dict[str, Any] = {}
        options: dict[str, Any] = {}
        extra_body: Any = None
        known = AnthropicModel.sdk_parameters()
        for name, value in params.items():
            if is_omitted(value):
                continue
            if name in MESSAGES_NOT_IN_KEY:
                options[name] = value
            elif name == "extra_body":
                extra_body = jsonable(value, "extra_body")
                if not isinstance(extra_body, dict):
                    raise InvalidRequestError(
                        f"messages.create: extra_body must be a dict, got {value!r}"
                    )
            elif name in _KEYED:
                fields[name] = jsonable(value, name)
            elif name in known:
                others[name] = jsonable(value, name)
            else:
                raise InvalidRequestError(
                    f"messages.create() got an unexpected keyword argument {name!r}: it is not a "
                    "parameter of the installed anthropic SDK; send provider parameters in "
                    "extra_body={...} (they are part of the key)"
                )
        request = AnthropicRequest(
            prompt,
            namespace=self.namespace if namespace is None else namespace,
            request_id=request_id,
            max_tokens=max_tokens,
            params=others or None,
            extra_body=extra_body,
            **fields,
        )
        return request, options or None

    def _message(self, response: Any) -> Any:
        data = dict(response.data[0])
        cached = bool(response.cached[0]) if response.cached else False
        duplicated = bool(response.duplicated[0]) if response.duplicated else False
        usage = dict(data.get("usage") or {})
        if cached:  # this call paid nothing
            for name in ("input_tokens", "output_tokens"):
                usage[name] = 0
            for name in ("cache_creation_input_tokens", "cache_read_input_tokens"):
                if name in usage:
                    usage[name] = 0
        data["usage"] = usage
        data["cached"] = cached
        data["duplicated"] = duplicated
        return self._message_type.model_validate(data)

    def _events(self, message: Any) -> MessageEventStream:
        from pydantic import TypeAdapter

        adapter: Any = TypeAdapter(_sdk().types.RawMessageStreamEvent)
        data = message.model_dump(mode="json", exclude_none=True)
        events = [adapter.validate_python(p) for p in stream_payloads(data)]
        return MessageEventStream(message, events)


class Anthropic(SyncDropIn):
    """``anthropic.Anthropic`` (sync) with the same caching as `AsyncAnthropic`.

    Same options; calls block until the answer is there; ``messages.create(stream=True)``
    returns an iterator of events and ``with client.messages.stream(...) as s`` works as
    with the SDK (``s.text_stream``, ``s.get_final_message()``). Runs the async client on
    one background event loop it owns; close with ``close()`` or ``with``.
    """

    _async_type = AsyncAnthropic  # type: ignore[assignment]
