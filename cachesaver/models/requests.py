"""Ready-made `Request` subclasses whose fields are API parameters.

Any `Request` subclass works with the adapters: each field is sent as the API parameter
of the same name (and, like every field, is part of the key). These two cover the usual
parameters; the drop-in clients build them, so a pipeline that uses them with a
``sample="full"`` adapter shares its cache with drop-in code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cachesaver.typedefs import Request

__all__ = ["ChatRequest", "EmbeddingRequest", "ResponsesRequest"]


@dataclass(frozen=True, kw_only=True)
class ChatRequest(Request):
    """A chat request: ``prompt`` is a str (one user message) or a list of messages.

    Each field is the chat-completions parameter of the same name; ``None`` means "not
    sent" (and keeps it out of the key). ``params`` holds any other parameter that
    changes the output (``reasoning_effort``, ``top_k``, ...) and ``extra_body`` is sent
    as the SDK's ``extra_body``; both are part of the key.
    """

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: Any = None
    params: dict[str, Any] | None = None
    extra_body: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class EmbeddingRequest(Request):
    """An embedding request: ``prompt`` is one input (a str, or a list of token ids).

    ``dimensions`` is sent when set; ``params`` and ``extra_body`` as for `ChatRequest`.
    """

    dimensions: int | None = None
    params: dict[str, Any] | None = None
    extra_body: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class ResponsesRequest(Request):
    """A Responses API request: ``prompt`` is the ``input`` (a str or a list of items).

    ``instructions`` is sent when set; ``params`` holds every other parameter that
    changes the output (``tools``, ``text``, ``temperature``, ``max_output_tokens``,
    ``reasoning``, ...) and ``extra_body`` is sent as the SDK's ``extra_body``.
    """

    instructions: str | None = None
    params: dict[str, Any] | None = None
    extra_body: dict[str, Any] | None = None
