"""A finished drop-in answer replayed as SDK chunks (cache hits of ``stream=True``).

Stored samples are replayed as the SDK's own ``ChatCompletionChunk`` objects (fresh
answers stream live: see `cachesaver.models._live`): per choice a role chunk,
content pieces (word by word), tool calls, and a last chunk with ``finish_reason``;
with ``stream_options={"include_usage": True}`` a final chunk carries ``usage``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

__all__ = ["ChatStream"]

_ChunkT = TypeVar("_ChunkT")
_PIECES = re.compile(r"\S+\s*|\s+")


class ChatStream(Generic[_ChunkT]):
    """An async iterator of chunks replaying ``completion`` (a drop-in answer).

    Use it like the SDK's stream: ``async for chunk in stream``, ``async with stream``,
    ``await stream.close()``. ``completion`` is the whole answer, with the per-choice
    ``cached``/``duplicated`` flags (`cachesaver.models.cache_flags`).
    """

    def __init__(
        self,
        completion: Any,
        make_chunk: Callable[[dict[str, Any]], _ChunkT],
        *,
        include_usage: bool,
        role_in_every_delta: bool = False,
        logprobs_in_chunks: bool = True,
    ) -> None:
        self.completion = completion
        self._make_chunk = make_chunk
        self._include_usage = include_usage
        self._role_always = role_in_every_delta
        self._logprobs = logprobs_in_chunks
        self._chunks: Iterator[dict[str, Any]] = self.chunks()
        self._closed = False

    def _base(self) -> dict[str, Any]:
        c = self.completion
        base: dict[str, Any] = {
            "id": c.id,
            "object": "chat.completion.chunk",
            "created": c.created,
            "model": c.model,
        }
        fingerprint = getattr(c, "system_fingerprint", None)
        if fingerprint is not None:
            base["system_fingerprint"] = fingerprint
        return base

    def _delta(self, **fields: Any) -> dict[str, Any]:
        if self._role_always and "role" not in fields:
            fields["role"] = "assistant"
        return fields

    def chunks(self, skip: frozenset[int] = frozenset()) -> Iterator[dict[str, Any]]:
        """The chunk JSONs of the answer, leaving out the choices whose index is in skip."""
        base = self._base()
        for choice in self.completion.choices:
            data = choice.model_dump(mode="json", exclude_unset=True)
            index = data.get("index", 0)
            if index in skip:
                continue
            message = data.get("message") or {}

            def chunk(delta: dict[str, Any], index: int = index, **extra: Any) -> dict[str, Any]:
                return {**base, "choices": [{"index": index, "delta": delta, **extra}]}

            yield chunk(self._delta(role="assistant", content=""))
            content = message.get("content")
            if isinstance(content, str):
                for piece in _PIECES.findall(content):
                    yield chunk(self._delta(content=piece))
            refusal = message.get("refusal")
            if isinstance(refusal, str):
                yield chunk(self._delta(refusal=refusal))
            for k, call in enumerate(message.get("tool_calls") or ()):
                yield chunk(self._delta(tool_calls=[{**call, "index": k}]))
            last: dict[str, Any] = {"finish_reason": data.get("finish_reason")}
            if self._logprobs and data.get("logprobs") is not None:
                last["logprobs"] = data["logprobs"]
            yield chunk(self._delta(), **last)
        usage = getattr(self.completion, "usage", None)
        if self._include_usage and usage is not None:
            yield {**base, "choices": [], "usage": usage.model_dump(mode="json")}

    def __aiter__(self) -> AsyncIterator[_ChunkT]:
        return self

    async def __anext__(self) -> _ChunkT:
        if self._closed:
            raise StopAsyncIteration
        try:
            data = next(self._chunks)
        except StopIteration:
            self._closed = True
            raise StopAsyncIteration from None
        return self._make_chunk(data)

    async def close(self) -> None:
        """Stop the stream (nothing is open: the answer is already complete and stored)."""
        self._closed = True

    async def __aenter__(self) -> ChatStream[_ChunkT]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
