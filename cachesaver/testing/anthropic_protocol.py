"""Pure handlers of the Anthropic Messages wire protocol (``POST /v1/messages``).

The body is checked as the API checks it (``model``, ``max_tokens`` and a non-empty
``messages`` list are required) and answered with a `Message`: one text block (or a
``tool_use`` block when ``tools`` are given and the draw or ``tool_choice`` asks for
one), ``stop_reason`` (``end_turn``, ``max_tokens``, ``stop_sequence``, ``tool_use``)
and ``usage``. ``stream=True`` answers with the API's named server-sent events
(``message_start`` ... ``message_stop``). The Messages API has no ``n``: every call is
one sample, the k-th call for a content being draw k (``temperature=0``: always draw 0).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from cachesaver.models._anthropic import stream_payloads
from cachesaver.testing._wire import HTTPError
from cachesaver.testing.openai_protocol import _count_tokens, _text, instance_of

if TYPE_CHECKING:
    from cachesaver.testing._backend import Backend

__all__ = ["ENDPOINTS", "ROUTES", "error_body", "messages"]

ROUTES = {"/v1/messages": "messages"}
ENDPOINTS = frozenset({"messages"})
# Body fields that do not change what the model generates.
_NOT_OUTPUT = frozenset({"stream", "metadata", "service_tier", "cache_control"})
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    """The Messages API's error object."""
    kind = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return ""


def _input_tokens(body: dict[str, Any]) -> int:
    total = _count_tokens(_text_of(body.get("system")))
    for message in body["messages"]:
        if isinstance(message, dict):
            total += _count_tokens(_text_of(message.get("content"))) + 3
    return max(total, 1)


def _check(body: dict[str, Any]) -> tuple[str, int]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise HTTPError(400, "model: Field required")
    max_tokens = body.get("max_tokens")
    if type(max_tokens) is not int or max_tokens < 1:
        raise HTTPError(400, "max_tokens: Field required (a positive integer)")
    history = body.get("messages")
    if not isinstance(history, list) or not history:
        raise HTTPError(400, "messages: at least one message is required")
    for message in history:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise HTTPError(400, "messages: each message needs role 'user' or 'assistant'")
    return model, max_tokens


def _tool_block(body: dict[str, Any], rng: Any) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t]
    choice = body.get("tool_choice") or {}
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not tools or kind == "none":
        return None
    if kind not in ("any", "tool") and rng.random() >= 0.5:
        return None
    tool = tools[rng.randrange(len(tools))]
    if kind == "tool":
        tool = next((t for t in tools if t["name"] == choice.get("name")), tool)
    schema = tool.get("input_schema")
    return {
        "type": "tool_use",
        "id": f"toolu_{rng.getrandbits(48):012x}",
        "name": str(tool["name"]),
        "input": instance_of(schema, rng) if isinstance(schema, dict) else {},
    }


def messages(backend: Backend, body: dict[str, Any]) -> dict[str, Any] | list[bytes]:
    """Answer one Messages API call with one sample (or its stream of events)."""
    model, max_tokens = _check(body)
    content = json.dumps(
        {k: v for k, v in body.items() if k not in _NOT_OUTPUT},
        sort_keys=True,
        separators=(",", ":"),
    )
    first = backend.take_draws(content, 1)
    draw = 0 if body.get("temperature") == 0 else first
    rng = backend.rng(content, draw)
    stop_reason = "end_turn"
    stop_sequence = None
    block = _tool_block(body, rng)
    if block is not None:
        stop_reason = "tool_use"
        output_tokens = len(json.dumps(block["input"]).split()) + 1
    else:
        text, finish = _text(rng, max_tokens)
        if finish == "length":
            stop_reason = "max_tokens"
        for stop in body.get("stop_sequences") or []:
            if isinstance(stop, str) and stop and stop in text:
                text = text[: text.index(stop)]
                stop_reason, stop_sequence = "stop_sequence", stop
                break
        block = {"type": "text", "text": text}
        output_tokens = max(1, _count_tokens(text))
    input_tokens = _input_tokens(body)
    backend.count(samples=1, prompt_tokens=input_tokens, completion_tokens=output_tokens)
    digest = hashlib.sha256(f"{content}\x00{first}".encode()).hexdigest()[:24]
    message = {
        "id": f"msg_{digest}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    if body.get("stream"):
        return events_of(message)
    return message


def events_of(message: dict[str, Any]) -> list[bytes]:
    """The named server-sent events the API streams for ``message``."""
    out = []
    for payload in stream_payloads(message):
        data = json.dumps(payload, separators=(",", ":"))
        out.append(f"event: {payload['type']}\ndata: {data}\n\n".encode())
    return out
