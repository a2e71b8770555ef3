"""Pure handlers of the OpenAI wire protocol (also what Together's SDK speaks).

Each handler takes the `Backend` (for draws and counters) and the JSON body and returns
the JSON answer, or a list of server-sent events for ``stream=True``:

- ``/v1/chat/completions``: ``n``, ``max_tokens``/``max_completion_tokens``, ``stop``,
  ``temperature``, ``seed``, ``tools``/``tool_choice``, ``logprobs``,
  ``response_format`` (``json_object``, and ``json_schema``: the answer is an instance
  of the schema), ``stream`` (+ ``stream_options.include_usage``), ``usage``;
- ``/v1/responses``: ``input`` (str or items), ``instructions``, function ``tools``,
  ``text.format`` (json_schema), ``max_output_tokens``, ``previous_response_id`` (must
  be an id this server gave);
- ``/v1/embeddings``: a string or a list; ``dimensions``; ``encoding_format="base64"``;
- ``GET /v1/models``.

Outputs are stochastic but reproducible: the k-th draw for a given request content (the
body without ``n`` and the fields that do not change the output) is the same for the
same server seed. ``temperature=0`` always gives draw 0; a ``seed`` fixes choice j.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cachesaver.testing._wire import HTTPError, sse

if TYPE_CHECKING:
    from cachesaver.testing._backend import Backend

__all__ = ["ENDPOINTS", "HANDLERS", "ROUTES", "models"]

# Request fields that do not change what the model generates.
_NOT_OUTPUT = frozenset(
    {
        "n",
        "stream",
        "stream_options",
        "user",
        "store",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "safety_identifier",
        "encoding_format",
    }
)
_WORDS = (
    "the", "answer", "is", "forty-two", "maybe", "certainly", "not", "quite", "because",
    "cats", "prefer", "boxes", "and", "dogs", "like", "walks", "it", "depends", "on",
    "context", "yes", "no", "probably", "so", "we", "think", "carefully", "first",
)  # fmt: skip
_MAX_N = 128

ROUTES = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/embeddings": "embeddings",
    "/v1/responses": "responses",
    "/responses": "responses",
    "/v1/models": "models",
    "/models": "models",
}
ENDPOINTS = frozenset({"chat", "embeddings", "responses"})


def models() -> list[dict[str, Any]]:
    return [
        {"id": name, "object": "model", "created": 0, "owned_by": "cachesaver"}
        for name in ("fake-chat", "fake-embed")
    ]


def _count_tokens(text: str) -> int:
    return len(text.split())


def _message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _content(body: dict[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in body.items() if k not in _NOT_OUTPUT},
        sort_keys=True,
        separators=(",", ":"),
    )


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise HTTPError(400, "you must provide a model parameter", "model")
    return model


def _text(rng: random.Random, limit: Any) -> tuple[str, str]:
    words = [_WORDS[rng.randrange(len(_WORDS))] for _ in range(rng.randint(3, 12))]
    words.append(f"#{rng.getrandbits(32):08x}")
    finish = "stop"
    if isinstance(limit, int) and 0 < limit < len(words):
        words = words[:limit]
        finish = "length"
    return " ".join(words), finish


def instance_of(schema: Any, rng: random.Random, defs: dict[str, Any] | None = None) -> Any:
    """A value matching a JSON schema (the subset structured outputs use)."""
    if not isinstance(schema, dict):
        return None
    defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return instance_of(defs.get(ref.rsplit("/", 1)[-1]), rng, defs)
    for union in ("anyOf", "oneOf", "allOf"):
        options = schema.get(union)
        if isinstance(options, list) and options:
            return instance_of(options[0], rng, defs)
    if schema.get("enum"):
        return schema["enum"][rng.randrange(len(schema["enum"]))]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: instance_of(sub, rng, defs) for name, sub in props.items()}
    if kind == "array":
        return [instance_of(schema.get("items"), rng, defs) for _ in range(rng.randint(1, 3))]
    if kind == "integer":
        return rng.randrange(100)
    if kind == "number":
        return round(rng.random() * 100, 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return " ".join(_WORDS[rng.randrange(len(_WORDS))] for _ in range(rng.randint(1, 4)))


# -- chat completions ------------------------------------------------------------------


def _choice(body: dict[str, Any], rng: random.Random, index: int) -> tuple[dict[str, Any], int]:
    tools = body.get("tools") or []
    tool_choice = body.get("tool_choice")
    names = [
        t["function"]["name"]
        for t in tools
        if isinstance(t, dict)
        and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
    ]
    wants_tool = (
        bool(names)
        and tool_choice != "none"
        and (tool_choice == "required" or isinstance(tool_choice, dict) or rng.random() < 0.5)
    )
    if wants_tool:
        name = names[rng.randrange(len(names))]
        if isinstance(tool_choice, dict):
            name = str(tool_choice.get("function", {}).get("name", name))
        tool = next(t["function"] for t in tools if t["function"].get("name") == name)
        params = tool.get("parameters")
        arguments = json.dumps(
            instance_of(params, rng) if isinstance(params, dict) else {"x": rng.randrange(100)}
        )
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{rng.getrandbits(48):012x}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        }
        return (
            {"index": index, "message": message, "finish_reason": "tool_calls", "logprobs": None},
            len(arguments.split()) + 1,
        )
    text, finish = _text(rng, body.get("max_completion_tokens") or body.get("max_tokens"))
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str)]
    for s in stops:
        if s and s in text:
            text = text[: text.index(s)]
            finish = "stop"
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        text = json.dumps(instance_of(spec.get("schema") or {}, rng))
        finish = "stop"
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        text = json.dumps({"answer": text})
    logprobs = None
    if body.get("logprobs") is True:
        logprobs = {
            "content": [
                {
                    "token": w,
                    "logprob": -round(rng.random() * 3, 6),
                    "bytes": list(w.encode()),
                    "top_logprobs": [],
                }
                for w in text.split()
            ],
            "refusal": None,
        }
    choice = {
        "index": index,
        "message": {"role": "assistant", "content": text},
        "finish_reason": finish,
        "logprobs": logprobs,
    }
    return choice, max(1, _count_tokens(text))


def chat(backend: Backend, body: dict[str, Any]) -> dict[str, Any] | list[bytes]:
    model = _model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise HTTPError(400, "messages must be a non-empty list", "messages")
    n = body.get("n", 1)
    n = 1 if n is None else n
    if type(n) is not int or not 1 <= n <= _MAX_N:
        raise HTTPError(400, f"n must be an integer between 1 and {_MAX_N}", "n")
    content = _content(body)
    temperature = body.get("temperature")
    seed = body.get("seed")
    if backend.max_choices is not None:
        n = min(n, backend.max_choices)
    first = backend.take_draws(content, n)
    prompt_tokens = sum(_count_tokens(_message_text(m)) + 3 for m in messages)
    choices = []
    completion_tokens = 0
    for j in range(n):
        if temperature == 0:
            draw = 0
        elif seed is not None:
            draw = j
        else:
            draw = first + j
        choice, tokens = _choice(body, backend.rng(content, draw), j)
        choices.append(choice)
        completion_tokens += tokens
    backend.count(samples=n, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    digest = hashlib.sha256(f"{content}\x00{first}".encode()).hexdigest()[:24]
    completion = {
        "id": f"chatcmpl-{digest}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": f"fp_cachesaver_{backend.seed}",
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if body.get("stream"):
        options = body.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return sse(chunks_of(completion, include_usage=usage))
    return completion


def chunks_of(completion: dict[str, Any], *, include_usage: bool) -> list[dict[str, Any]]:
    """The chunks a provider streams for ``completion`` (word by word, then finish)."""
    base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    out: list[dict[str, Any]] = []

    def chunk(index: int, delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {**base, "choices": [{"index": index, "delta": delta, **extra}]}

    for choice in completion["choices"]:
        index = choice["index"]
        message = choice["message"]
        out.append(chunk(index, {"role": "assistant", "content": ""}))
        text = message.get("content")
        if isinstance(text, str):
            words = text.split(" ")
            for k, word in enumerate(words):
                out.append(chunk(index, {"content": word if k == 0 else " " + word}))
        for k, call in enumerate(message.get("tool_calls") or ()):
            out.append(chunk(index, {"tool_calls": [{**call, "index": k}]}))
        out.append(
            chunk(index, {}, finish_reason=choice["finish_reason"], logprobs=choice["logprobs"])
        )
    if include_usage:
        out.append({**base, "choices": [], "usage": completion["usage"]})
    return out


# -- responses ---------------------------------------------------------------------------


def _input_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(
            _message_text(item) if isinstance(item, dict) else str(item) for item in value
        )
    return ""


def responses(backend: Backend, body: dict[str, Any]) -> dict[str, Any]:
    model = _model(body)
    if body.get("stream"):
        raise HTTPError(400, "this test server does not stream the Responses API", "stream")
    given = body.get("input")
    if not (isinstance(given, str) and given) and not (isinstance(given, list) and given):
        raise HTTPError(400, "input must be a non-empty string or list of items", "input")
    previous = body.get("previous_response_id")
    if previous is not None:
        with backend.lock:
            known = previous in backend.responses
        if not known:
            raise HTTPError(
                400, f"Previous response with id '{previous}' not found.", "previous_response_id"
            )
    content = _content(body)
    first = backend.take_draws(content, 1)
    rng = backend.rng(content, 0 if body.get("temperature") == 0 else first)
    digest = hashlib.sha256(f"{content}\x00{first}".encode()).hexdigest()[:24]
    tools = [
        t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"
    ]
    tool_choice = body.get("tool_choice")
    output: list[dict[str, Any]]
    if tools and tool_choice != "none" and (tool_choice == "required" or rng.random() < 0.5):
        tool = tools[rng.randrange(len(tools))]
        arguments = json.dumps(instance_of(tool.get("parameters") or {}, rng))
        output = [
            {
                "type": "function_call",
                "id": f"fc_{digest}",
                "call_id": f"call_{rng.getrandbits(48):012x}",
                "name": tool.get("name"),
                "arguments": arguments,
                "status": "completed",
            }
        ]
        text_out = arguments
    else:
        fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            text_out = json.dumps(instance_of(fmt.get("schema") or {}, rng))
        else:
            text_out, _ = _text(rng, body.get("max_output_tokens"))
        output = [
            {
                "type": "message",
                "id": f"msg_{digest}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text_out, "annotations": []}],
            }
        ]
    input_tokens = _count_tokens(_input_text(given)) + _count_tokens(
        str(body.get("instructions") or "")
    )
    output_tokens = max(1, _count_tokens(text_out))
    backend.count(samples=1, prompt_tokens=input_tokens, completion_tokens=output_tokens)
    response_id = f"resp_{digest}"
    with backend.lock:
        backend.responses.add(response_id)
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": output,
        "instructions": body.get("instructions"),
        "parallel_tool_calls": True,
        "tool_choice": tool_choice or "auto",
        "tools": tools,
        "text": body.get("text") or {"format": {"type": "text"}},
        "previous_response_id": previous,
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }


# -- embeddings ------------------------------------------------------------------------


def _vector(backend: Backend, model: str, item: Any, dims: int) -> list[float]:
    rng = backend.rng(json.dumps([model, item, dims]), 0)
    raw = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    # Round through float32 so JSON and base64 answers carry the same numbers.
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(x / norm for x in raw))))


def embeddings(backend: Backend, body: dict[str, Any]) -> dict[str, Any]:
    model = _model(body)
    raw_input = body.get("input")
    inputs: list[Any]
    if isinstance(raw_input, str):
        inputs = [raw_input]
    elif isinstance(raw_input, list) and raw_input and all(isinstance(x, int) for x in raw_input):
        inputs = [raw_input]  # one input given as token ids
    elif isinstance(raw_input, list) and raw_input:
        inputs = raw_input
    else:
        raise HTTPError(400, "input must be a non-empty string or list", "input")
    for item in inputs:
        if not (isinstance(item, str) and item) and not (
            isinstance(item, list) and all(isinstance(x, int) for x in item)
        ):
            raise HTTPError(400, "each input must be a non-empty string or token list", "input")
    dims = body.get("dimensions") or backend.embedding_dimensions
    if type(dims) is not int or not 1 <= dims <= 4096:
        raise HTTPError(400, "dimensions must be an integer between 1 and 4096", "dimensions")
    b64 = body.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for i, item in enumerate(inputs):
        vector = _vector(backend, model, item, dims)
        tokens += len(item) if isinstance(item, list) else _count_tokens(item)
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode("ascii") if b64 else vector
        )
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    backend.count(embedded_inputs=len(inputs), prompt_tokens=tokens)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


HANDLERS: dict[str, Callable[[Backend, dict[str, Any]], Any]] = {
    "chat": chat,
    "embeddings": embeddings,
    "responses": responses,
}
