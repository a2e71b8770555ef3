"""Live streams for the drop-in clients' ``stream=True``.

A fresh answer streams to the caller as the provider sends it: the request carries a
`LiveSink`; the chat adapter, when it makes the API call for that request, calls the
SDK with ``stream=True`` through `LiveSink.pump`, which forwards every chunk to the
caller and accumulates the whole answer, returned to the pipeline to be stored like any
other (so it is stored only once complete). Choices that were already stored (a partial
hit) and whole hits are replayed as chunks after the live ones. If the caller closes the
stream early, or the connection breaks, the API call is abandoned: nothing partial is
stored and the request consumes no index (it failed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from cachesaver.errors import CacheSaverError

if TYPE_CHECKING:
    from cachesaver.models._dropin import DropInClient
    from cachesaver.pipelines import OnlineAPI
    from cachesaver.typedefs import Request

__all__ = ["STREAM_ATTR", "LiveSink", "LiveStream", "StreamAbandonedError", "live_stream"]

STREAM_ATTR = "_csm_stream"
_END = object()
ChunkT = TypeVar("ChunkT")


class StreamAbandonedError(CacheSaverError, RuntimeError):
    """The caller closed a live stream before it ended: nothing of it was stored."""


def _accumulate(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The completion JSON that a list of chunk JSONs adds up to."""
    completion: dict[str, Any] = {"object": "chat.completion", "choices": []}
    choices: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for name in ("id", "created", "model", "system_fingerprint"):
            if chunk.get(name) is not None:
                completion[name] = chunk[name]
        if chunk.get("usage"):
            completion["usage"] = chunk["usage"]
        for part in chunk.get("choices") or ():
            index = part.get("index", 0)
            choice = choices.get(index)
            if choice is None:
                choice = choices[index] = {
                    "index": index,
                    "message": {"role": "assistant", "content": None},
                    "finish_reason": None,
                    "logprobs": None,
                }
            message = choice["message"]
            delta = part.get("delta") or {}
            for text in ("content", "refusal", "reasoning", "reasoning_content"):
                piece = delta.get(text)
                if isinstance(piece, str):
                    message[text] = (message.get(text) or "") + piece
            for call in delta.get("tool_calls") or ():
                calls = message.setdefault("tool_calls", [])
                k = call.get("index", len(calls))
                while len(calls) <= k:
                    calls.append({"id": None, "type": "function", "function": {"arguments": ""}})
                slot = calls[k]
                for name in ("id", "type"):
                    if call.get(name) is not None:
                        slot[name] = call[name]
                function = call.get("function") or {}
                if function.get("name") is not None:
                    slot["function"]["name"] = function["name"]
                slot["function"]["arguments"] += function.get("arguments") or ""
            if part.get("finish_reason") is not None:
                choice["finish_reason"] = part["finish_reason"]
            logprobs = part.get("logprobs")
            if isinstance(logprobs, dict):
                mine = choice["logprobs"] = choice["logprobs"] or {}
                for name, items in logprobs.items():
                    if isinstance(items, list):
                        mine[name] = (mine.get(name) or []) + items
                    elif name not in mine:
                        mine[name] = items
    for choice in choices.values():
        message = choice["message"]
        if message.get("tool_calls") and message.get("content") == "":
            message["content"] = None
    completion["choices"] = [choices[i] for i in sorted(choices)]
    return completion


class LiveSink:
    """The channel from the adapter's streaming API call to one caller."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.abandoned = False
        self._call: asyncio.Future[Any] | None = None

    async def pump(self, adapter: Any, call: dict[str, Any]) -> dict[str, Any]:
        """Make the API call streaming, forward its chunks, return the whole completion."""
        if self.abandoned:
            raise StreamAbandonedError("the stream was closed before its API call started")
        asked = call.get("n", 1)
        offset = self.wanted - asked if asked <= self.wanted else None
        self.queue.put_nowait(("start", offset))
        self._call = asyncio.ensure_future(self._consume(adapter, call, offset))
        try:
            return await self._call  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            if self.abandoned:
                raise StreamAbandonedError(
                    "the caller closed the stream before it ended; nothing was stored"
                ) from None
            raise
        finally:
            self._call = None

    async def _consume(
        self, adapter: Any, call: dict[str, Any], offset: int | None
    ) -> dict[str, Any]:
        chunks: list[dict[str, Any]] = []
        stream = await adapter._stream(call)
        try:
            async for chunk in stream:
                data = chunk.model_dump(mode="json", exclude_unset=True)
                chunks.append(data)
                if offset is not None and data.get("choices"):
                    self.queue.put_nowait(("chunk", (data, chunk)))
        finally:
            with contextlib.suppress(Exception):
                await stream.close()
        return _accumulate(chunks)

    def abandon(self) -> None:
        self.abandoned = True
        if self._call is not None:
            self._call.cancel()


class LiveStream(Generic[ChunkT]):
    """What a drop-in ``create(stream=True)`` returns: an async iterator of SDK chunks.

    Use it like the SDK's stream: ``async for chunk in stream``, ``async with stream``,
    ``await stream.close()``. Once it has ended, ``completion`` is the whole answer
    with the per-choice ``cached``/``duplicated`` flags.
    """

    def __init__(
        self, client: DropInClient, pipeline: OnlineAPI, request: Request, model: str, usage: bool
    ) -> None:
        self._client = client
        self._model = model
        self._usage = usage
        self._sink = LiveSink(request.n)
        object.__setattr__(request, STREAM_ATTR, self._sink)
        self._task: asyncio.Future[Any] = asyncio.ensure_future(pipeline.request(request))
        self._task.add_done_callback(self._ended)
        self._offset: int | None = None
        self._live: set[int] = set()
        self._rest: Iterator[dict[str, Any]] | None = None
        self._closed = False
        self.completion: Any = None

    def _ended(self, task: asyncio.Future[Any]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved here; raised to the caller by __anext__
        self._sink.queue.put_nowait(("end", None))

    def __aiter__(self) -> AsyncIterator[ChunkT]:
        return self

    async def __anext__(self) -> ChunkT:
        while self._rest is None:
            if self._closed:
                raise StopAsyncIteration
            try:
                kind, value = await self._sink.queue.get()
            except asyncio.CancelledError:
                await self.close()  # the caller gave up: abandon, store nothing partial
                raise
            if kind == "start":
                self._offset = value
            elif kind == "chunk":
                data, chunk = value
                offset = self._offset or 0
                if not offset:
                    self._live.update(part.get("index", 0) for part in data["choices"])
                    return chunk  # type: ignore[no-any-return]
                # Renumber a copy: ``data`` is also the sink's record of the call, which
                # becomes the stored completion (in its own numbering) when the call ends.
                parts = [
                    {**part, "index": part.get("index", 0) + offset} for part in data["choices"]
                ]
                self._live.update(part["index"] for part in parts)
                return self._client._chunk({**data, "choices": parts})  # type: ignore[no-any-return]
            else:
                response = await self._task  # raises the call's error, if any
                self.completion = self._client._build_completion(response, self._model)
                replay = self._client._replay(self.completion, self._usage)
                self._rest = replay.chunks(skip=frozenset(self._live))
        if self._closed:
            raise StopAsyncIteration
        try:
            data = next(self._rest)
        except StopIteration:
            self._closed = True
            raise StopAsyncIteration from None
        return self._client._chunk(data)  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Stop the stream; a fresh answer not yet complete is abandoned (not stored)."""
        self._closed = True
        if not self._task.done():
            self._sink.abandon()
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def __aenter__(self) -> LiveStream[ChunkT]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def live_stream(
    client: DropInClient, pipeline: OnlineAPI, request: Request, model: str, usage: bool
) -> LiveStream[Any]:
    """Start serving ``request`` with live chunks (see `LiveStream`)."""
    stream: LiveStream[Any] = LiveStream(client, pipeline, request, model, usage)
    await asyncio.sleep(0)  # the request reserves its indices now, in issue order
    return stream
