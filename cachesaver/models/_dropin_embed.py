"""Embeddings for the drop-in clients: each input is cached on its own.

Every input is one `EmbeddingRequest`, read at sample 0 (embeddings are deterministic,
so every namespace reads the same stored embedding), and only the missing inputs are
sent, in one API call per ``max_embedding_inputs``.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from cachesaver.batcher import AsyncBatcher
from cachesaver.cacher import AsyncCacher
from cachesaver.errors import InvalidRequestError
from cachesaver.models._common import CALL_OPTIONS_ATTR, SDK_ATTR, is_omitted, jsonable
from cachesaver.models._core import DropInCore, add_stats
from cachesaver.models._embed import EmbeddingAdapter
from cachesaver.models.requests import EmbeddingRequest
from cachesaver.models.samples import EmbeddingSample
from cachesaver.typedefs import Batch

__all__ = ["EmbeddingsMixin"]


class EmbeddingsMixin:
    """``embeddings.create`` of a drop-in client (mixed into `DropInClient`)."""

    _provider: ClassVar[str]
    _embed_params: ClassVar[frozenset[str]]
    _embed_not_in_key: ClassVar[frozenset[str]]
    _has_encoding_format: ClassVar[bool]
    _core: DropInCore
    _base_url: str
    sdk: Any

    def _embedding_adapter(self, model: str) -> EmbeddingAdapter[Any]:
        raise NotImplementedError

    def _embedding_response(self, vectors: list[Any], model: str, prompt_tokens: int | None) -> Any:
        raise NotImplementedError

    def _embedding_inputs(self, value: Any) -> list[str | list[int]]:
        where = f"{self._provider} embeddings.create"
        if isinstance(value, (set, frozenset)) or any(
            isinstance(x, (set, frozenset)) for x in (value if isinstance(value, list) else ())
        ):
            raise InvalidRequestError(
                f"{where}: input holds a set, whose order depends on the process, so it "
                "cannot enter a cache key; pass a list"
            )
        if isinstance(value, str):
            inputs: list[Any] = [value]
        elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
            items = list(value)
            if items and all(type(t) is int for t in items):
                inputs = [items]  # one input given as token ids
            else:
                inputs = [list(x) if isinstance(x, tuple) else x for x in items]
        else:
            inputs = []
        if not inputs:
            raise InvalidRequestError(
                f"{where}: input must be a non-empty str or a non-empty list of inputs"
            )
        for i, item in enumerate(inputs):
            ok = (isinstance(item, str) and item) or (
                isinstance(item, list) and item and all(type(t) is int for t in item)
            )
            if not ok:
                raise InvalidRequestError(
                    f"{where}: input[{i}] must be a non-empty str or a list of token ids, "
                    f"got {item!r}"
                )
        return inputs

    def _embedding_adapter_for(self, model: Any) -> EmbeddingAdapter[Any]:
        self._core.check_open()
        if type(model) is not str or not model:
            raise InvalidRequestError(
                f"embeddings.create: model must be a non-empty str, got {model!r}"
            )
        return self._core.embedder(  # type: ignore[no-any-return]
            ("embeddings", model, self._base_url), lambda: self._embedding_adapter(model)
        )

    async def _embeddings_create(
        self, model: Any, input: Any, request_id: str | None, params: dict[str, Any]
    ) -> Any:
        where = f"{self._provider} embeddings.create"
        adapter = self._embedding_adapter_for(model)
        inputs = self._embedding_inputs(input)
        fields: dict[str, Any] = {}
        others: dict[str, Any] = {}
        options: dict[str, Any] = {}
        extra_body: Any = None
        encoding_format = params.pop("encoding_format", None) if self._has_encoding_format else None
        if encoding_format not in (None, "float", "base64") and not is_omitted(encoding_format):
            raise InvalidRequestError(
                f"{where}: encoding_format must be 'float' or 'base64', got {encoding_format!r}"
            )
        for name, value in params.items():
            if is_omitted(value):
                continue
            if name == "dimensions" and name in self._embed_params:
                fields[name] = value
            elif name in self._embed_not_in_key:
                options[name] = value
            elif name == "extra_body":
                extra_body = jsonable(value, "extra_body")
            elif name in self._embed_params:
                others[name] = jsonable(value, name)
            else:
                raise InvalidRequestError(
                    f"{where}() got an unexpected keyword argument {name!r}: it is not a "
                    f"parameter of the installed {self._provider} SDK; send provider-specific "
                    "parameters in extra_body={...}"
                )
        unique: dict[str, int] = {}
        requests: list[EmbeddingRequest] = []
        slots: list[int] = []
        for item in inputs:
            label = json.dumps(item)
            slot = unique.get(label)
            if slot is None:
                slot = unique[label] = len(requests)
                request = EmbeddingRequest(
                    item,
                    request_id=request_id,
                    params=others or None,
                    extra_body=extra_body,
                    **fields,
                )
                if options:
                    object.__setattr__(request, CALL_OPTIONS_ATTR, options)
                object.__setattr__(request, SDK_ATTR, self.sdk)
                requests.append(request)
            slots.append(slot)
        # A new run per call: every input reads sample 0 of its key, whatever was asked
        # before (embeddings are deterministic), and the batcher sends all missing
        # inputs in one API call.
        core = self._core
        run = AsyncCacher(
            AsyncBatcher(adapter, batch_size=core.max_embedding_inputs, timeout=0),
            cache=core.store,
            mode=core.mode,
        )
        core.embed_runs.add(run)
        try:
            async with run:
                responses = await run.batch_request(Batch(list(requests)))
        finally:
            core.embed_runs.discard(run)
            core.embed_stats = add_stats(core.embed_stats, run.stats())
        paid: int | None = 0
        for response in responses:
            sample: EmbeddingSample = response.data[0]
            if response.cached and not response.cached[0]:
                tokens = sample["prompt_tokens"]
                if tokens is None:
                    paid = None
                elif paid is not None:
                    paid += tokens
        vectors: list[Any] = []
        served_model = model
        for slot in slots:
            sample = responses[slot].data[0]
            served_model = sample["model"] or model
            vector = sample["embedding"]
            if encoding_format == "base64":
                packed = struct.pack(f"<{len(vector)}f", *vector)
                vectors.append(base64.b64encode(packed).decode("ascii"))
            else:
                vectors.append(list(vector))
        return self._embedding_response(vectors, served_model, paid)
