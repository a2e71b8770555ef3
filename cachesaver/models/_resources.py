"""The resources of the drop-in clients: ``client.chat``, ``.embeddings``, ``.responses``.

One generic implementation, bound to a provider's SDK types by a one-line subclass::

    class _ChatCompletions(ChatCompletionsProxy[ChatCompletion, ChatCompletionChunk]): ...

so ``await client.chat.completions.create(...)`` types as the SDK's own completion and,
with ``stream=True``, as a `LiveStream` of the SDK's own chunks. Every attribute a
resource does not serve raises `UncachedPathError` (see `ResourceProxy`).
``with_raw_response`` gives the same calls wrapped in a `CachedRawResponse`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Literal, TypeVar, overload

from cachesaver.errors import InvalidRequestError
from cachesaver.models._dropin import ResourceProxy
from cachesaver.models._live import LiveStream

__all__ = [
    "CachedRawResponse",
    "ChatCompletionsProxy",
    "ChatProxy",
    "EmbeddingsProxy",
    "RawClient",
    "ResponsesProxy",
]

CompletionT = TypeVar("CompletionT")
ChunkT = TypeVar("ChunkT")
EmbeddingT = TypeVar("EmbeddingT")
ResponseT = TypeVar("ResponseT")
CompletionsT = TypeVar("CompletionsT", bound="ChatCompletionsProxy[Any, Any]")


class CachedRawResponse(Generic[CompletionT]):
    """What ``with_raw_response`` calls return: a synthetic raw response.

    Like the SDK's raw response: ``headers``, ``status_code``, ``parse()`` (the SDK
    object), ``text``/``content``/``json()``. There was no HTTP exchange to show (a
    hit makes none; a fresh answer went through the pipeline), so the headers say what
    cachesaver did: ``x-cachesaver-cached`` is ``true`` (every sample came from the
    cache), ``false`` (none) or ``partial``, and ``x-cachesaver-flags`` lists the
    ``[cached, duplicated]`` flags per sample (JSON).
    """

    status_code = 200
    retries_taken = 0
    request_id: str | None = None
    http_response = None

    def __init__(self, parsed: CompletionT, flags: list[tuple[bool, bool]]) -> None:
        import httpx

        self._parsed = parsed
        if flags and all(c for c, _ in flags):
            cached = "true"
        elif any(c for c, _ in flags):
            cached = "partial"
        else:
            cached = "false"
        self.headers = httpx.Headers(
            {
                "content-type": "application/json",
                "x-cachesaver-cached": cached,
                "x-cachesaver-flags": json.dumps([list(f) for f in flags]),
            }
        )

    def parse(self) -> CompletionT:
        """The SDK object the call would have returned without ``with_raw_response``."""
        return self._parsed

    @property
    def text(self) -> str:
        dump = getattr(self._parsed, "model_dump_json", None)
        return str(dump()) if callable(dump) else json.dumps(self._parsed)

    @property
    def content(self) -> bytes:
        return self.text.encode()

    def json(self) -> Any:
        return json.loads(self.text)


def _flags_of(result: Any) -> list[tuple[bool, bool]]:
    choices = getattr(result, "choices", None)
    if isinstance(choices, list):
        flags = []
        for choice in choices:
            extra = getattr(choice, "model_extra", None) or {}
            flags.append((bool(extra.get("cached")), bool(extra.get("duplicated"))))
        return flags
    extra = getattr(result, "model_extra", None) or {}
    if "cached" in extra:
        return [(bool(extra["cached"]), bool(extra.get("duplicated")))]
    return list(getattr(result, "_cs_flags", []))


def _raw(method: Callable[..., Awaitable[Any]], path: str) -> Callable[..., Awaitable[Any]]:
    async def call(**kwargs: Any) -> CachedRawResponse[Any]:
        if kwargs.get("stream") is True:
            raise InvalidRequestError(
                f"client.with_raw_response.{path}(stream=True) is not served by cachesaver; "
                f"call client.{path}(stream=True) for a cached stream"
            )
        result = await method(**kwargs)
        return CachedRawResponse(result, _flags_of(result))

    call.__name__ = call.__qualname__ = path.rsplit(".", 1)[-1]
    call.__doc__ = f"``{path}`` through the cache, wrapped in a `CachedRawResponse`."
    return call


class _RawResource(ResourceProxy):
    def __init__(self, path: str, methods: dict[str, Callable[..., Awaitable[Any]]]) -> None:
        super().__init__(f"with_raw_response.{path}")
        for name, method in methods.items():
            setattr(self, name, _raw(method, f"{path}.{name}"))


class ChatCompletionsProxy(ResourceProxy, Generic[CompletionT, ChunkT]):
    """``client.chat.completions``: ``create`` (and ``parse``) cached, the SDK's types."""

    def __init__(self, owner: Any) -> None:
        super().__init__("chat.completions")
        self._owner = owner
        methods: dict[str, Callable[..., Awaitable[Any]]] = {"create": self.create}
        if owner._has_parse:
            methods["parse"] = self._parse
        self.with_raw_response = _RawResource("chat.completions", methods)

    def __getattr__(self, name: str) -> Any:
        if name == "stream":
            from cachesaver.models._dropin import refuse

            raise refuse(
                f"{self._path}.stream",
                "chat.completions.create(stream=True), which streams through the cache",
            )
        if name == "parse":
            from cachesaver.models._dropin import refuse

            raise refuse(
                f"{self._path}.parse",
                f"chat.completions.create (the installed {self._owner._provider} SDK has no parse)",
            )
        return super().__getattr__(name)

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Any],
        stream: Literal[False] | None = None,
        namespace: str | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> CompletionT: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Any],
        stream: Literal[True],
        namespace: str | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> LiveStream[ChunkT]: ...

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Any],
        stream: bool | None = None,
        namespace: str | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> CompletionT | LiveStream[ChunkT]:
        """Like the SDK's ``chat.completions.create``, served through the cache.

        ``namespace`` and ``request_id`` are cachesaver's (never sent). Returns the SDK's
        ``ChatCompletion`` whose choices carry ``cached``/``duplicated`` extra fields and
        whose ``usage`` is what this call paid; ``stream=True`` returns a `LiveStream`
        (a fresh answer streams as it arrives). A pydantic class as ``response_format``
        (OpenAI) returns the parsed completion, as ``parse`` does.
        """
        result: CompletionT | LiveStream[ChunkT] = await self._owner._chat_create(
            model, messages, stream, namespace, request_id, params
        )
        return result

    async def _parse(
        self,
        *,
        model: str,
        messages: Iterable[Any],
        namespace: str | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> Any:
        """Like the SDK's ``chat.completions.parse``, served through the cache.

        The JSON schema of ``response_format`` (and of strict tools) is part of the key;
        a hit rebuilds the SDK's ``ParsedChatCompletion`` (``message.parsed`` is an
        instance of your model).
        """
        if params.get("stream"):
            raise InvalidRequestError("chat.completions.parse does not take stream=True")
        return await self._owner._chat_create(
            model, messages, None, namespace, request_id, params, parse=True
        )


class ChatProxy(ResourceProxy, Generic[CompletionsT]):
    """``client.chat``: its ``completions`` are a `ChatCompletionsProxy`."""

    #: The provider's `ChatCompletionsProxy` subclass (set by each provider).
    _completions_type: type[CompletionsT]

    def __init__(self, owner: Any, path: str = "chat") -> None:
        super().__init__(path)
        self.completions: CompletionsT = self._completions_type(owner)


class EmbeddingsProxy(ResourceProxy, Generic[EmbeddingT]):
    """``client.embeddings``: ``create`` cached per input, the SDK's response type."""

    def __init__(self, owner: Any) -> None:
        super().__init__("embeddings")
        self._owner = owner
        self.with_raw_response = _RawResource("embeddings", {"create": self.create})

    async def create(
        self,
        *,
        model: str,
        input: str | Iterable[Any],
        namespace: str | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> EmbeddingT:
        """Like the SDK's ``embeddings.create``; each input is cached on its own.

        Only inputs not in the cache are sent (in one call). Embeddings are
        deterministic: every namespace reads the same stored embedding, so
        ``namespace`` is accepted and ignored. ``usage`` counts the inputs sent.
        """
        del namespace
        result: EmbeddingT = await self._owner._embeddings_create(model, input, request_id, params)
        return result


class ResponsesProxy(ResourceProxy, Generic[ResponseT]):
    """``client.responses``: ``create`` cached per sample, the SDK's ``Response`` type."""

    def __init__(self, owner: Any) -> None:
        super().__init__("responses")
        self._owner = owner
        self.with_raw_response = _RawResource("responses", {"create": self.create})

    async def create(
        self,
        *,
        model: str,
        input: Any,
        namespace: str | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> ResponseT:
        """Like the SDK's ``responses.create``, served through the cache.

        Returns the SDK's ``Response`` with ``cached``/``duplicated`` extra fields and
        ``usage`` = what this call paid. ``previous_response_id``, ``conversation``,
        ``background`` and ``stream`` are refused (see `cachesaver.models._responses`).
        """
        result: ResponseT = await self._owner._responses_create(
            model, input, namespace, request_id, params
        )
        return result


class RawClient(ResourceProxy):
    """``client.with_raw_response``: the cached calls, each returning a raw response."""

    def __init__(self, owner: Any) -> None:
        super().__init__("with_raw_response")
        self.chat = ResourceProxy("with_raw_response.chat")
        self.chat.completions = owner.chat.completions.with_raw_response  # type: ignore[attr-defined]
        self.embeddings = owner.embeddings.with_raw_response
        responses = getattr(type(owner), "responses", None)
        if responses is not None or "responses" in owner.__dict__:
            self.responses = owner.responses.with_raw_response


class BetaProxy(ResourceProxy):
    """``client.beta``: ``beta.chat.completions`` is ``chat.completions`` (parse, create)."""

    def __init__(self, owner: Any) -> None:
        super().__init__("beta")
        self.chat = ResourceProxy("beta.chat")
        completions = type(owner.chat.completions)(owner)
        completions._path = "beta.chat.completions"
        self.chat.completions = completions  # type: ignore[attr-defined]
