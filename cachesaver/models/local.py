"""A local Hugging Face transformers causal LM as a `BatchRequestModel` for `LocalAPI`.

::

    model = TransformersModel("Qwen/Qwen2.5-0.5B-Instruct", batch_size=16, max_new_tokens=128)
    async with LocalAPI(model, cache="caches/local", batch_size=16) as api:
        response = await api.request(Request("Name a prime number.", n=4))

The model and tokenizer are loaded with ``from_pretrained`` (a hub name or a local
directory) when the adapter is built; build it with ``await asyncio.to_thread(...)``
inside a running program to keep the event loop free. Each batch is generated with
sampling in padded ``generate`` calls of at most ``batch_size`` rows (one row per
sample), on a worker thread, so the event loop never blocks. Requires the ``local``
extra (``pip install "cachesaver[local]"``: torch and transformers).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from cachesaver.errors import InvalidRequestError, MissingExtraError
from cachesaver.models._common import request_label
from cachesaver.typedefs import Batch, Request, Response

__all__ = ["GenerationSettings", "TransformersModel"]

_DTYPES = ("float32", "float16", "bfloat16")
# Request fields a local model reads (besides prompt/n/request_id/namespace); any other
# field that is set is refused, since the model would silently ignore it.
_MAX_TOKENS_FIELDS = ("max_new_tokens", "max_tokens", "max_completion_tokens")
_SAMPLING_FIELDS = ("temperature", "top_p", "top_k")
_BASE_FIELDS = frozenset({"prompt", "n", "request_id", "namespace"})


@dataclass(frozen=True)
class GenerationSettings:
    """How one row is generated: the adapter's defaults, overridden by request fields."""

    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int

    def as_identity(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
        }


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingExtraError(
            f'TransformersModel needs {name}: pip install "cachesaver[local]" ({exc})'
        ) from exc


class TransformersModel:
    """A causal LM and its tokenizer, loaded with ``from_pretrained``, for `LocalAPI`.

    - ``model``: a hub name or a local directory; ``revision``: the hub revision;
    - ``dtype``: ``"float32"``, ``"float16"`` or ``"bfloat16"``; ``device``: e.g. ``"cpu"``,
      ``"cuda"``, ``"cuda:1"``;
    - ``batch_size``: the most rows (samples) one ``generate`` call takes: the hardware
      limit. A batch with more samples is generated in several calls, in order;
    - ``max_new_tokens``, ``temperature``, ``top_p``, ``top_k``: defaults; a request field
      of the same name (``max_tokens`` / ``max_completion_tokens`` also work) overrides
      them for that request. ``temperature=0`` is greedy decoding;
    - ``name``: the model name recorded in the identity (default: ``model`` as given).

    The ``identity`` (part of every key) holds the model name, revision, dtype, the
    default generation settings and a digest of the chat template. A prompt is a str
    (tokenized as it is) or a list of chat messages (rendered with the tokenizer's chat
    template). Sampling draws from torch's global random generator: seed it with
    ``torch.manual_seed`` for repeatable fresh generations (replays from the cache are
    exact either way).
    """

    provider = "transformers"

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        revision: str | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        batch_size: int = 8,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        name: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"TransformersModel: dtype must be one of {_DTYPES}, got {dtype!r}")
        if type(batch_size) is not int or batch_size < 1:
            raise ValueError(
                f"TransformersModel: batch_size must be a positive int (the most samples one "
                f"generate call takes), got {batch_size!r}"
            )
        self.defaults = _settings("TransformersModel", max_new_tokens, temperature, top_p, top_k)
        self._torch = _import("torch")
        transformers = _import("transformers")
        location = os.fspath(model)
        options: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(location, **options)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(
            location, dtype=getattr(self._torch, dtype), **options
        )
        self.model.to(device)
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(
                    f"TransformersModel: the tokenizer of {location!r} has neither a pad nor an "
                    "eos token, so a batch cannot be padded; set tokenizer.pad_token first"
                )
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"  # decoder-only models continue on the right
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.name = name or location
        self.revision = revision or getattr(self.model.config, "_commit_hash", None)
        template = getattr(self.tokenizer, "chat_template", None)
        self._template_digest = (
            hashlib.sha256(template.encode("utf-8")).hexdigest()[:16]
            if isinstance(template, str)
            else None
        )
        self._lock = threading.Lock()  # one generate() at a time on this model
        self._calls: list[int] = []

    @property
    def identity(self) -> dict[str, Any]:
        """Model name, revision, dtype, default generation settings, chat template digest."""
        return {
            "provider": self.provider,
            "model": self.name,
            "revision": self.revision,
            "dtype": self.dtype,
            "generation": self.defaults.as_identity(),
            "chat_template": self._template_digest,
        }

    @property
    def generate_calls(self) -> tuple[int, ...]:
        """The number of rows (samples) of every ``generate`` call so far, in order."""
        return tuple(self._calls)

    def __repr__(self) -> str:
        return f"TransformersModel({self.name!r}, dtype={self.dtype!r}, device={self.device!r})"

    # -- the BatchRequestModel contract -----------------------------------------------

    async def batch_request(self, batch: Batch) -> list[Response]:
        """Generate ``n`` samples for each request, in padded calls of <= batch_size rows."""
        groups: dict[GenerationSettings, list[tuple[int, str]]] = {}
        for position, request in enumerate(batch.requests):
            text = self._render(request)
            settings = self._settings_of(request)
            rows = groups.setdefault(settings, [])
            rows.extend((position, text) for _ in range(request.n))
        outputs: list[list[str]] = [[] for _ in batch.requests]
        for settings, rows in groups.items():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                texts = await asyncio.to_thread(
                    self._generate, [text for _, text in chunk], settings
                )
                for (position, _), generated in zip(chunk, texts, strict=True):
                    outputs[position].append(generated)
        return [Response(samples) for samples in outputs]

    # -- helpers ------------------------------------------------------------------------

    def _render(self, request: Request) -> str:
        prompt = request.prompt
        if isinstance(prompt, str):
            return prompt
        if (
            isinstance(prompt, (list, tuple))
            and prompt
            and all(isinstance(m, dict) for m in prompt)
        ):
            if self._template_digest is None:
                raise InvalidRequestError(
                    f"{request_label(request)}: prompt is a list of chat messages, but the "
                    f"tokenizer of {self.name!r} has no chat template; pass a str prompt"
                )
            rendered = self.tokenizer.apply_chat_template(
                list(prompt), add_generation_prompt=True, tokenize=False
            )
            return str(rendered)
        raise InvalidRequestError(
            f"{request_label(request)}: prompt must be a str or a non-empty list of chat "
            f"messages, got {type(prompt).__name__}"
        )

    def _settings_of(self, request: Request) -> GenerationSettings:
        for field_name in _field_names(type(request)):
            if field_name in _BASE_FIELDS or field_name in _MAX_TOKENS_FIELDS:
                continue
            if field_name not in _SAMPLING_FIELDS and getattr(request, field_name) is not None:
                raise InvalidRequestError(
                    f"{request_label(request)}: field {field_name!r} is set, but a local "
                    f"transformers model reads only {sorted(_SAMPLING_FIELDS)} and "
                    f"{list(_MAX_TOKENS_FIELDS)}; remove the field or leave it None"
                )
        limit = next(
            (getattr(request, f) for f in _MAX_TOKENS_FIELDS if getattr(request, f) is not None),
            self.defaults.max_new_tokens,
        )
        d = self.defaults
        return _settings(
            request_label(request),
            limit,
            _or(request.temperature, d.temperature),
            _or(request.top_p, d.top_p),
            _or(request.top_k, d.top_k),
        )

    def _generate(self, texts: Sequence[str], settings: GenerationSettings) -> list[str]:
        torch = self._torch
        with self._lock:
            self._calls.append(len(texts))
            inputs = self.tokenizer(list(texts), return_tensors="pt", padding=True)
            inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
            sampling = settings.temperature > 0
            options: dict[str, Any] = {
                "max_new_tokens": settings.max_new_tokens,
                "do_sample": sampling,
                "pad_token_id": self.tokenizer.pad_token_id,
            }
            if sampling:
                options.update(
                    temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k
                )
            with torch.no_grad():
                output = self.model.generate(**inputs, **options)
            prompt_length = inputs["input_ids"].shape[1]
            decoded = self.tokenizer.batch_decode(
                output[:, prompt_length:], skip_special_tokens=True
            )
        return [str(text) for text in decoded]


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _settings(
    owner: str, max_new_tokens: Any, temperature: Any, top_p: Any, top_k: Any
) -> GenerationSettings:
    if type(max_new_tokens) is not int or max_new_tokens < 1:
        raise InvalidRequestError(
            f"{owner}: max_new_tokens must be a positive int, got {max_new_tokens!r}"
        )
    if type(temperature) not in (int, float) or not 0 <= temperature <= 100:
        raise InvalidRequestError(
            f"{owner}: temperature must be a number >= 0 (0 is greedy), got {temperature!r}"
        )
    if type(top_p) not in (int, float) or not 0 < top_p <= 1:
        raise InvalidRequestError(f"{owner}: top_p must be a number in (0, 1], got {top_p!r}")
    if type(top_k) is not int or top_k < 0:
        raise InvalidRequestError(
            f"{owner}: top_k must be an int >= 0 (0 turns it off), got {top_k!r}"
        )
    return GenerationSettings(max_new_tokens, float(temperature), float(top_p), top_k)
