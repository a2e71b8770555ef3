"""Pure handlers of the Gemini API's ``generateContent`` wire protocol.

``POST /v1beta/models/{model}:generateContent`` (and ``:streamGenerateContent`` with
``alt=sse``), as ``google-genai`` sends it: ``contents`` (required), ``systemInstruction``
and ``generationConfig`` (``candidateCount`` as n, ``temperature``, ``seed``,
``maxOutputTokens``, ``stopSequences``, ``responseMimeType`` with ``responseSchema`` or
``responseJsonSchema``: the answer is an instance of the schema). The answer has one
candidate per ``candidateCount`` and ``usageMetadata``. Draws work as for the OpenAI
handlers: the k-th draw of a content is the same for the same server seed.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from cachesaver.testing._wire import HTTPError
from cachesaver.testing.openai_protocol import _count_tokens, _text, instance_of

if TYPE_CHECKING:
    from cachesaver.testing._backend import Backend

__all__ = ["ENDPOINTS", "error_body", "generate_content", "route"]

ENDPOINTS = frozenset({"generate_content"})
_PATH = re.compile(
    r"^/(?:v1|v1beta|v1alpha)/models/([^/:]+):(generateContent|streamGenerateContent)$"
)
_MAX_CANDIDATES = 8
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def route(path: str) -> tuple[str, bool] | None:
    """``(model, stream)`` for a generateContent path, else None."""
    match = _PATH.match(path)
    if match is None:
        return None
    return match.group(1), match.group(2) == "streamGenerateContent"


def error_body(status: int, message: str) -> dict[str, Any]:
    """The Google API error object."""
    return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}


def _parts_text(content: Any) -> str:
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts") or []
    return " ".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))


def _lower_types(schema: Any) -> Any:
    """Gemini's OpenAPI-style schema (``type: OBJECT``) as JSON schema (``object``)."""
    if isinstance(schema, dict):
        return {
            k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_lower_types(item) for item in schema]
    return schema


def _candidate(config: dict[str, Any], rng: Any, index: int) -> tuple[dict[str, Any], int]:
    text, finish = _text(rng, config.get("maxOutputTokens"))
    reason = "MAX_TOKENS" if finish == "length" else "STOP"
    for stop in config.get("stopSequences") or []:
        if isinstance(stop, str) and stop and stop in text:
            text = text[: text.index(stop)]
            reason = "STOP"
            break
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema")
        if schema is None:
            schema = _lower_types(config.get("responseSchema"))
        value = instance_of(schema, rng) if isinstance(schema, dict) else {"answer": text}
        text = json.dumps(value)
        reason = "STOP"
    candidate = {
        "content": {"role": "model", "parts": [{"text": text}]},
        "finishReason": reason,
        "index": index,
    }
    return candidate, max(1, _count_tokens(text))


def generate_content(
    backend: Backend, body: dict[str, Any], model: str, stream: bool
) -> dict[str, Any] | list[bytes]:
    """Answer one generateContent call with ``candidateCount`` candidates."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise HTTPError(400, "contents must not be empty")
    config = body.get("generationConfig") or {}
    if not isinstance(config, dict):
        raise HTTPError(400, "generationConfig must be an object")
    n = config.get("candidateCount", 1)
    if type(n) is not int or not 1 <= n <= _MAX_CANDIDATES:
        raise HTTPError(400, f"candidateCount must be an integer between 1 and {_MAX_CANDIDATES}")
    if backend.max_choices is not None:
        n = min(n, backend.max_choices)
    keyed = {**body, "generationConfig": {k: v for k, v in config.items() if k != "candidateCount"}}
    content = json.dumps({"model": model, **keyed}, sort_keys=True, separators=(",", ":"))
    first = backend.take_draws(content, n)
    temperature, seed = config.get("temperature"), config.get("seed")
    candidates = []
    output_tokens = 0
    for j in range(n):
        draw = 0 if temperature == 0 else (j if seed is not None else first + j)
        candidate, tokens = _candidate(config, backend.rng(content, draw), j)
        candidates.append(candidate)
        output_tokens += tokens
    prompt_tokens = max(
        1,
        sum(_count_tokens(_parts_text(c)) for c in contents)
        + _count_tokens(_parts_text(body.get("systemInstruction"))),
    )
    backend.count(samples=n, prompt_tokens=prompt_tokens, completion_tokens=output_tokens)
    usage = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt_tokens + output_tokens,
    }
    digest = hashlib.sha256(f"{content}\x00{first}".encode()).hexdigest()[:24]
    answer = {
        "candidates": candidates,
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": digest,
    }
    if stream:
        return _events(answer)
    return answer


def _events(answer: dict[str, Any]) -> list[bytes]:
    """Server-sent chunks: each candidate's text word by word, then finish and usage."""
    chunks: list[dict[str, Any]] = []
    for candidate in answer["candidates"]:
        words = candidate["content"]["parts"][0]["text"].split(" ")
        for position, word in enumerate(words):
            piece = word if position == 0 else " " + word
            chunks.append(
                {
                    "candidates": [
                        {
                            "content": {"role": "model", "parts": [{"text": piece}]},
                            "index": candidate["index"],
                        }
                    ],
                    "modelVersion": answer["modelVersion"],
                    "responseId": answer["responseId"],
                }
            )
        chunks.append(
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": ""}]},
                        "finishReason": candidate["finishReason"],
                        "index": candidate["index"],
                    }
                ],
                "usageMetadata": answer["usageMetadata"],
                "modelVersion": answer["modelVersion"],
                "responseId": answer["responseId"],
            }
        )
    return [b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\r\n\r\n" for c in chunks]
