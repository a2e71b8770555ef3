"""The ``client.chat`` / ``client.embeddings`` resources of the drop-in clients.

One generic implementation, bound to a provider's SDK types by a one-line subclass::

    class _ChatCompletions(ChatCompletionsProxy[ChatCompletion, ChatCompletionChunk]): ...

so ``await client.chat.completions.create(...)`` types as the SDK's own completion and,
with ``stream=True``, as a `ChatStream` of the SDK's own chunks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, Literal, Protocol, TypeVar, overload

from cachesaver.models._dropin import (
    UNCACHED_CHAT_METHODS,
    UNCACHED_EMBEDDING_METHODS,
    ResourceProxy,
)
from cachesaver.models._stream import ChatStream

__all__ = ["ChatCompletionsProxy", "ChatOwner", "ChatProxy", "EmbeddingsOwner", "EmbeddingsProxy"]

CompletionT = TypeVar("CompletionT")
ChunkT = TypeVar("ChunkT")
EmbeddingT = TypeVar("EmbeddingT")
CompletionsT = TypeVar("CompletionsT", bound="ChatCompletionsProxy[Any, Any]")


class ChatOwner(Protocol):
    """The drop-in client as its chat resources see it (see `DropInClient`)."""

    @property
    def sdk(self) -> Any: ...

    async def _chat_create(
        self,
        model: Any,
        messages: Any,
        stream: Any,
        namespace: str | None,
        request_id: str | None,
        params: dict[str, Any],
    ) -> Any: ...


class EmbeddingsOwner(Protocol):
    """The drop-in client as its embeddings resource sees it (see `DropInClient`)."""

    @property
    def sdk(self) -> Any: ...

    async def _embeddings_create(
        self, model: Any, input: Any, request_id: str | None, params: dict[str, Any]
    ) -> Any: ...


class ChatCompletionsProxy(ResourceProxy, Generic[CompletionT, ChunkT]):
    """``client.chat.completions``: ``create`` cached, the SDK's completion types."""

    def __init__(self, owner: ChatOwner) -> None:
        super().__init__(owner.sdk.chat.completions, UNCACHED_CHAT_METHODS, "chat.completions")
        self._owner = owner

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
    ) -> ChatStream[ChunkT]: ...

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Any],
        stream: bool | None = None,
        namespace: str | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> CompletionT | ChatStream[ChunkT]:
        """Like the SDK's ``chat.completions.create``, served through the cache.

        ``namespace`` and ``request_id`` are cachesaver's (never sent). Returns the SDK's
        ``ChatCompletion`` whose choices carry ``cached``/``duplicated`` extra fields and
        whose ``usage`` is what this call paid; ``stream=True`` returns a `ChatStream`.
        """
        result: CompletionT | ChatStream[ChunkT] = await self._owner._chat_create(
            model, messages, stream, namespace, request_id, params
        )
        return result


class ChatProxy(ResourceProxy, Generic[CompletionsT]):
    """``client.chat``: its ``completions`` are a `ChatCompletionsProxy`, the rest the SDK's."""

    #: The provider's `ChatCompletionsProxy` subclass (set by each provider).
    _completions_type: type[CompletionsT]

    def __init__(self, owner: ChatOwner) -> None:
        super().__init__(owner.sdk.chat, frozenset(), "chat")
        self.completions: CompletionsT = self._completions_type(owner)


class EmbeddingsProxy(ResourceProxy, Generic[EmbeddingT]):
    """``client.embeddings``: ``create`` cached per input, the SDK's response type."""

    def __init__(self, owner: EmbeddingsOwner) -> None:
        super().__init__(owner.sdk.embeddings, UNCACHED_EMBEDDING_METHODS, "embeddings")
        self._owner = owner

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
