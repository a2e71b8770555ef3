"""Gemini: a drop-in ``google.genai.Client`` and the `GeminiModel` pipeline adapter.

Change one import and existing code becomes cached, deduplicated and reproducible::

    from cachesaver.models.gemini import Client      # was: from google.genai import Client

    client = Client(cache="caches/exp1")               # api_key, http_options, ... as before
    answer = await client.aio.models.generate_content(
        model="gemini-2.5-flash", contents="Hi",
        config={"candidate_count": 2, "temperature": 0.9},
        namespace="run-1",                             # cachesaver's own keywords
    )
    answer.cached, answer.duplicated                   # one flag per candidate

``models.generate_content`` and ``models.generate_content_stream`` are served through
the cache, async (``client.aio.models``) and sync (``client.models``, on a background
loop the client owns); every other path raises `UncachedPathError` naming
``client.sdk.<path>``. Requires the ``gemini`` extra. See ``docs/providers.md``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from functools import cache
from types import TracebackType
from typing import Any

from cachesaver import Stats
from cachesaver.cacher import Mode
from cachesaver.errors import InvalidRequestError
from cachesaver.manifest import RunManifest
from cachesaver.models._common import CALL_OPTIONS_ATTR, SDK_ATTR, TokenUsage, is_omitted, jsonable
from cachesaver.models._dropin_base import DropInBase, ResourceProxy, refuse
from cachesaver.models._errors import DropInOptionError
from cachesaver.models._gemini import (
    GENERATE_NOT_IN_KEY,
    GeminiModel,
    GeminiRequest,
    _sdk,
    candidate_text,
    endpoint_of,
)
from cachesaver.models._sync import SyncStream
from cachesaver.pipelines import DEFAULT_CACHE, OnlineAPI
from cachesaver.savings import Price
from cachesaver.stores import CacheLike
from cachesaver.sync import BackgroundLoop

__all__ = [
    "GENERATE_NOT_IN_KEY",
    "AsyncGemini",
    "Client",
    "GeminiModel",
    "GeminiRequest",
    "ResponseStream",
]

_SERVED = "models.generate_content, models.generate_content_stream (and the same on aio)"
_SETTINGS = frozenset({"vertexai"})


@cache
def _response_type() -> Any:
    """``GenerateContentResponse`` with one ``cached`` / ``duplicated`` flag per candidate
    (the SDK's models forbid unknown fields, so the flags are declared on a subclass)."""
    base: Any = _sdk().types.GenerateContentResponse

    class CachedGenerateContentResponse(base):  # type: ignore[misc]
        cached: list[bool] | None = None
        duplicated: list[bool] | None = None

    return CachedGenerateContentResponse


class ResponseStream:
    """The chunks of one answer (``GenerateContentResponse`` objects), text word by word.

    A fresh answer was fetched whole and stored before the first chunk, so stopping early
    loses nothing. ``completion`` is the whole answer with its flags.
    """

    def __init__(self, answer: Any) -> None:
        self.completion = answer
        self._chunks = _chunks_of(answer)
        self._position = 0

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        if self._position >= len(self._chunks):
            raise StopAsyncIteration
        self._position += 1
        return self._chunks[self._position - 1]

    async def close(self) -> None:
        self._position = len(self._chunks)

    def _cs_sync_view(self, loop: BackgroundLoop) -> SyncStream:
        return SyncStream(self, loop)


def _chunks_of(answer: Any) -> list[Any]:
    kind = _sdk().types.GenerateContentResponse
    chunks: list[Any] = []
    for candidate in answer.candidates or []:
        words = (candidate_text(candidate) or "").split(" ")
        for position, word in enumerate(words):
            piece = word if position == 0 else " " + word
            part = {"content": {"role": "model", "parts": [{"text": piece}]}}
            chunks.append(
                kind.model_validate(
                    {
                        "candidates": [{**part, "index": candidate.index}],
                        "model_version": answer.model_version,
                        "response_id": answer.response_id,
                    }
                )
            )
        chunks.append(
            kind.model_validate(
                {
                    "candidates": [
                        {"index": candidate.index, "finish_reason": candidate.finish_reason}
                    ],
                    "usage_metadata": answer.usage_metadata,
                    "model_version": answer.model_version,
                    "response_id": answer.response_id,
                }
            )
        )
    return chunks


class _AsyncModels(ResourceProxy):
    """``client.aio.models``: generateContent through the cache."""

    _served = _SERVED

    def __init__(self, client: AsyncGemini) -> None:
        super().__init__("aio.models")
        self._client = client

    async def generate_content(
        self,
        *,
        model: Any,
        contents: Any,
        config: Any = None,
        namespace: str | None = None,
        request_id: str | None = None,
    ) -> Any:
        """``generate_content`` through the cache: the SDK's response, flagged."""
        c = self._client
        pipeline = c.generate_pipeline(model)
        request = c._request(contents, config, namespace, request_id)
        response = await pipeline.request(request)
        return c._answer(response)

    async def generate_content_stream(self, **kwargs: Any) -> ResponseStream:
        """``generate_content_stream`` through the cache (``async for`` its chunks)."""
        return ResponseStream(await self.generate_content(**kwargs))


class _SyncModels(ResourceProxy):
    """``client.models``: the async calls, run on the client's own background loop."""

    _served = _SERVED

    def __init__(self, client: Client) -> None:
        super().__init__("models")
        self._client = client

    def generate_content(self, **kwargs: Any) -> Any:
        loop = self._client._background()
        return loop.call(self._client.aio.models.generate_content, **kwargs)

    def generate_content_stream(self, **kwargs: Any) -> SyncStream:
        loop = self._client._background()
        stream = loop.call(self._client.aio.models.generate_content_stream, **kwargs)
        return SyncStream(stream, loop)


class AsyncGemini(DropInBase):
    """The async side of the drop-in `Client` (``client.aio``): ``models`` served through
    the cache, ``aclose()`` / ``async with`` to close, ``with_options`` as for the other
    drop-in clients."""

    _provider = "gemini"
    _served = _SERVED
    _settings = _SETTINGS

    def __init__(self, make_sdk: Any, owns_sdk: bool, **options: Any) -> None:
        super().__init__(make_sdk, owns_sdk, max_embedding_inputs=1, **options)

    def _make_resources(self) -> None:
        self._config_fields = frozenset(_sdk().types.GenerateContentConfig.model_fields)
        self.models = _AsyncModels(self)

    def _endpoint(self, sdk: Any) -> str:
        return endpoint_of(sdk)

    def _sdk_closer(self) -> Any:
        return self.sdk.aio.aclose

    async def aclose(self) -> None:
        """Finish calls in flight, close the pipelines, the store and an SDK client the
        drop-in made."""
        await self.close()

    async def __aenter__(self) -> AsyncGemini:
        return self

    def with_options(self, *, namespace: str | None = None, **sdk_options: Any) -> AsyncGemini:
        raise DropInOptionError(
            "gemini.Client has no with_options; build another cachesaver Client (over the same "
            "cache) with the other options"
        )

    copy = with_options

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise refuse(f"aio.{name}", _SERVED)

    def generate_pipeline(self, model: Any) -> OnlineAPI:
        """The pipeline that serves ``generate_content`` for ``model``."""
        self._core.check_open()
        if type(model) is not str or not model:
            raise InvalidRequestError(
                f"generate_content: model must be a non-empty str, got {model!r}"
            )
        return self._core.pipeline(
            ("generate_content", model, self._base_url),
            lambda: GeminiModel(
                self.sdk,
                model,
                sample="full",
                max_concurrency=self._core.max_concurrency,
                identity_base_url=self._base_url,
            ),
        )[1]

    # -- mapping a call ------------------------------------------------------------------

    def _request(
        self, contents: Any, config: Any, namespace: str | None, request_id: str | None
    ) -> GeminiRequest:
        fields: dict[str, Any] = {}
        options: dict[str, Any] = {}
        n = 1
        if config is not None and not is_omitted(config):
            dump = getattr(config, "model_dump", None)
            raw = dump(mode="json", exclude_none=True) if callable(dump) else config
            if not isinstance(raw, dict):
                raise InvalidRequestError(
                    f"generate_content: config must be a GenerateContentConfig or a dict, got "
                    f"{type(config).__name__}"
                )
            for name, value in raw.items():
                if value is None:
                    continue
                if name == "candidate_count":
                    n = value
                elif name == "http_options":
                    raise InvalidRequestError(
                        "generate_content: config.http_options is not served by cachesaver "
                        "(it could change where the call goes); set http_options on the Client"
                    )
                elif name in GENERATE_NOT_IN_KEY:
                    options[name] = value  # sent with the call, not part of the key
                elif name in self._config_fields:
                    fields[name] = jsonable(value, f"config.{name}")
                else:
                    raise InvalidRequestError(
                        f"generate_content: config.{name} is not a GenerateContentConfig field "
                        "of the installed google-genai"
                    )
        request = GeminiRequest(
            jsonable(contents, "contents"),
            n=n,
            namespace=self.namespace if namespace is None else namespace,
            request_id=request_id,
            config=fields or None,
        )
        object.__setattr__(request, SDK_ATTR, self.sdk)
        if options:
            object.__setattr__(request, CALL_OPTIONS_ATTR, options)
        return request

    def _answer(self, response: Any) -> Any:
        samples: list[dict[str, Any]] = response.data
        count = len(samples)
        cached = list(response.cached or [False] * count)
        duplicated = list(response.duplicated or [False] * count)
        candidates = []
        prompt = output = 0
        for i, sample in enumerate(samples):
            candidates.append({**sample["candidate"], "index": i})
            if not cached[i]:
                output += sample["completion_tokens"] or 0
                if not duplicated[i]:
                    prompt += sample["prompt_tokens"] or 0
        first = samples[0]
        return _response_type().model_validate(
            {
                "candidates": candidates,
                "usage_metadata": {
                    "prompt_token_count": prompt,
                    "candidates_token_count": output,
                    "total_token_count": prompt + output,
                },
                "model_version": first.get("model_version"),
                "response_id": first.get("response_id"),
                "cached": cached,
                "duplicated": duplicated,
            }
        )


class Client:
    """``google.genai.Client`` with a persistent, reproducible cache in front.

    Construct it as the SDK's client (``api_key``, ``vertexai``, ``project``,
    ``location``, ``http_options``, ...) plus cachesaver's options: ``cache``,
    ``namespace``, ``batch_size`` / ``batch_timeout``, ``max_concurrency``, ``mode``,
    ``manifest``, ``run_id``, ``identity_base_url``, or ``sdk_client`` (a
    ``genai.Client`` to use). Use either the async side (``client.aio``; close with
    ``await client.aio.aclose()`` or ``async with client.aio``) or the sync side
    (``client.models``; close with ``client.close()`` or ``with``) in one program, not
    both at once.
    """

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
        genai = _sdk()
        make_sdk, owns_sdk = DropInBase.sdk_factory(
            "gemini.Client()", sdk_client, sdk_options, genai.Client
        )
        self.aio = AsyncGemini(
            make_sdk,
            owns_sdk,
            cache=cache,
            namespace=namespace,
            batch_size=batch_size,
            batch_timeout=batch_timeout,
            max_concurrency=max_concurrency,
            identity_base_url=identity_base_url,
            mode=mode,
            manifest=manifest,
            run_id=run_id,
            reproduce=reproduce,
            prices=prices,
        )
        self.sdk = self.aio.sdk
        self.models = _SyncModels(self)
        self._loop: BackgroundLoop | None = None

    @property
    def namespace(self) -> str:
        return self.aio.namespace

    def __getattr__(self, name: str) -> Any:
        sdk = self.__dict__.get("sdk")
        if name.startswith("_") or sdk is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if name in _SETTINGS:
            return getattr(sdk, name)
        raise refuse(name, _SERVED)

    def cachesaver_stats(self) -> Stats:
        return self.aio.cachesaver_stats()

    def token_usage(self) -> TokenUsage:
        return self.aio.token_usage()

    def _background(self) -> BackgroundLoop:
        if self._loop is None:
            self.aio._core.check_open()
            self._loop = BackgroundLoop(name="cachesaver-gemini")
        return self._loop

    def close(self) -> None:
        """Close the sync side: its pipelines, its store and SDK client, then its loop."""
        loop = self._loop
        if loop is None:
            if self.aio._core.pipelines:
                raise DropInOptionError(
                    "gemini.Client.close(): this client was used through client.aio; close "
                    "it with await client.aio.aclose()"
                )
            return
        try:
            loop.call(self.aio.aclose)
        finally:
            loop.close()
            if self.aio._owns_sdk:
                self.sdk.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
