"""A local OpenAI-compatible HTTP server for tests, examples and offline demos.

It speaks enough of the OpenAI (and Together) REST API for the real ``openai`` and
``together`` SDKs to talk to it over HTTP:

- ``POST /v1/chat/completions`` (``n``, ``max_tokens``/``max_completion_tokens``, ``stop``,
  ``temperature``, ``seed``, ``tools``/``tool_choice``, ``logprobs``, ``response_format``,
  ``usage``);
- ``POST /v1/embeddings`` (a string or a list of strings; ``dimensions``;
  ``encoding_format="base64"`` as the openai SDK asks by default);
- ``GET /v1/models``;
- ``GET /_stats``: counters of what it received (JSON: ``requests``, ``chat_requests``,
  ``embedding_requests``, ``failed``, ``samples``, ``embedded_inputs``, tokens,
  ``max_in_flight``, ...); ``POST /_fail`` (``{"status": 429, "count": 1}``): inject
  errors; ``POST /_reset``: zero the counters.

Outputs are stochastic but reproducible: the k-th sample the server draws for a given
request content (the body without ``n`` and the fields that do not change the output) is
the same for the same ``seed``, whatever else it was asked. ``temperature=0`` always
gives draw 0; a ``seed`` in the request makes choice ``j`` of every call the same.

In-process use (the server runs its own event loop on a background thread, so it works
from synchronous code, from ``asyncio.run`` and inside pytest)::

    with FakeLLMServer(latency=0.01) as server:
        client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="test")
        ...
        assert server.stats()["chat_requests"] == 1
        server.fail_next(429)        # the next API request gets a rate limit error

From a shell: ``python -m cachesaver.testing.server --port 8000`` (Ctrl-C stops it).
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import random
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["FakeLLMServer", "ReceivedRequest", "main"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
# Request fields that do not change what the model generates: left out of the content
# that seeds the draws, so e.g. a different `user` still walks the same draws.
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
_MAX_BODY = 32 * 1024 * 1024
_MAX_N = 128


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request the server received: path, lower-cased headers and JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class _Failure:
    status: int
    remaining: int
    endpoint: str | None
    retry_after: float | None
    message: str


@dataclass
class _Counters:
    requests: int = 0
    chat_requests: int = 0
    embedding_requests: int = 0
    failed: int = 0
    samples: int = 0
    embedded_inputs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    by_path: dict[str, int] = field(default_factory=dict)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


def _error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error"),
            "param": param,
            "code": None,
        }
    }


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


class FakeLLMServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1, run on a background thread.

    - ``latency``: seconds each API request waits before it is answered;
    - ``seed``: the seed of every draw (same seed, same outputs);
    - ``port``: 0 (the default) binds a free port; read it back from ``port``/``url``;
    - ``api_key``: if set, requests must send ``Authorization: Bearer <api_key>``;
    - ``error_retry_after``: seconds the SDK is told to wait (``retry-after-ms``) before
      retrying an injected 429/5xx; small by default so SDK retries are fast in tests;
    - ``max_choices``: answer at most this many choices whatever ``n`` asks (like
      providers that cap or ignore ``n``).

    ``start()``/``stop()`` or ``with`` start and stop it; ``stop()`` closes every open
    connection and joins the thread, so nothing is left behind.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        seed: int = 0,
        api_key: str | None = None,
        error_retry_after: float = 0.01,
        embedding_dimensions: int = 8,
        max_choices: int | None = None,
    ) -> None:
        if latency < 0 or error_retry_after < 0:
            raise ValueError("latency and error_retry_after must be >= 0 seconds")
        if embedding_dimensions < 1:
            raise ValueError("embedding_dimensions must be a positive int")
        self.host = host
        self._requested_port = port
        self.port = 0
        self.latency = float(latency)
        self.seed = seed
        self.api_key = api_key
        self.error_retry_after = float(error_retry_after)
        self.embedding_dimensions = embedding_dimensions
        self.max_choices = max_choices
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._received: list[ReceivedRequest] = []
        self._failures: deque[_Failure] = deque()
        self._drawn: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.BaseTransport] = set()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The root URL, e.g. ``http://127.0.0.1:51234`` (the Together SDK's base_url)."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The URL to pass as ``base_url`` to the openai SDK (``<url>/v1``)."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> FakeLLMServer:
        """Bind and start serving on a background thread; return ``self``."""
        if self._thread is not None:
            raise RuntimeError("FakeLLMServer.start() was already called; create a new server")
        self._thread = threading.Thread(
            target=self._thread_main, name="cachesaver-fake-llm-server", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("FakeLLMServer did not start within 10 s")
        if self._startup_error is not None:
            self._thread.join(timeout=5)
            raise RuntimeError(
                f"FakeLLMServer could not listen on {self.host}:{self._requested_port}: "
                f"{self._startup_error}"
            ) from self._startup_error
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then join the server thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        if thread.is_alive():  # pragma: no cover - a bug, reported loudly
            raise RuntimeError("FakeLLMServer thread did not stop within 10 s")

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self.running else "stopped"
        return f"FakeLLMServer({state}, latency={self.latency}, seed={self.seed})"

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # pragma: no cover - reported through start()
            if not self._ready.is_set():
                self._startup_error = exc
                self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        loop = self._loop
        transports = self._transports

        class Protocol(asyncio.StreamReaderProtocol):
            # Every accepted connection is tracked at the transport level, so stop() can
            # close even one whose handler task has not started yet.
            tracked: asyncio.BaseTransport | None = None

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.tracked = transport
                transports.add(transport)
                super().connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                if self.tracked is not None:
                    transports.discard(self.tracked)
                super().connection_lost(exc)

        def factory() -> asyncio.StreamReaderProtocol:
            return Protocol(asyncio.StreamReader(loop=loop), self._on_connection, loop=loop)

        try:
            server = await loop.create_server(factory, self.host, self._requested_port)
        except OSError as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            # Let connections accepted just before stopping finish their setup first:
            # asyncio (3.11) drops a connection whose transport is created after the
            # server closed without closing its socket.
            await self._settle()
            server.close()
            await self._settle()
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.gather(*self._connections, return_exceptions=True)
            for transport in list(transports):
                transport.close()
            for _ in range(100):  # connection_lost runs on the next loop iterations
                if not transports:
                    break
                await asyncio.sleep(0)
            await server.wait_closed()

    async def _settle(self) -> None:
        """Run the loop until every task is a started connection handler (bounded)."""
        current = asyncio.current_task()
        for _ in range(100):
            if all(t is current or t in self._connections for t in asyncio.all_tasks()):
                return
            await asyncio.sleep(0)

    # -- control (thread-safe) -----------------------------------------------------------

    def fail_next(
        self,
        status: int = 429,
        count: int = 1,
        *,
        endpoint: str | None = None,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` API requests with HTTP ``status``.

        ``endpoint`` limits it to ``"chat"`` or ``"embeddings"``. 429 and 5xx answers
        carry ``retry-after-ms`` (``retry_after`` seconds, default ``error_retry_after``),
        which the SDKs honour for their own retries.
        """
        if status not in _REASONS or status < 400:
            raise ValueError(
                f"status must be an HTTP error status such as 429 or 500, got {status}"
            )
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if endpoint not in (None, "chat", "embeddings"):
            raise ValueError(f"endpoint must be None, 'chat' or 'embeddings', got {endpoint!r}")
        text = message or f"injected {status} error from the cachesaver test server"
        with self._lock:
            self._failures.append(_Failure(status, count, endpoint, retry_after, text))

    def stats(self) -> dict[str, Any]:
        """Return a snapshot of the counters (the same JSON ``GET /_stats`` serves)."""
        with self._lock:
            c = self._counters
            return {
                "requests": c.requests,
                "chat_requests": c.chat_requests,
                "embedding_requests": c.embedding_requests,
                "failed": c.failed,
                "samples": c.samples,
                "embedded_inputs": c.embedded_inputs,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "in_flight": c.in_flight,
                "max_in_flight": c.max_in_flight,
                "by_path": dict(c.by_path),
                "pending_failures": sum(f.remaining for f in self._failures),
            }

    @property
    def received(self) -> list[ReceivedRequest]:
        """Every API request received so far (a copy), oldest first."""
        with self._lock:
            return list(self._received)

    def reset(self) -> None:
        """Zero the counters, forget received requests and pending failures.

        The draw positions are kept: the server keeps behaving like the same model.
        """
        with self._lock:
            self._counters = _Counters()
            self._received.clear()
            self._failures.clear()

    # -- HTTP ----------------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._one_exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # the server is stopping
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _one_exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        line = await reader.readline()
        if not line.strip():
            return False
        try:
            method, target, _version = line.decode("latin-1").split()
        except ValueError:
            await self._write(writer, 400, _error_body(400, "malformed request line"), {}, False)
            return False
        headers: dict[str, str] = {}
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        keep_alive = headers.get("connection", "").lower() != "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body_error = _error_body(400, "chunked request bodies are not supported")
            await self._write(writer, 400, body_error, {}, False)
            return False
        length = int(headers.get("content-length", "0") or 0)
        if length > _MAX_BODY:
            await self._write(writer, 413, _error_body(413, "request body too large"), {}, False)
            return False
        raw_body = await reader.readexactly(length) if length else b""
        path = target.split("?", 1)[0]
        status, payload, extra = await self._dispatch(method, path, headers, raw_body)
        await self._write(writer, status, payload, extra, keep_alive)
        return keep_alive

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        extra: dict[str, str],
        keep_alive: bool,
    ) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            f"connection: {'keep-alive' if keep_alive else 'close'}",
            *(f"{k}: {v}" for k, v in extra.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    async def _dispatch(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        route = path.rstrip("/")
        if route == "/_stats" and method == "GET":
            return 200, self.stats(), {}
        if route == "/_reset" and method == "POST":
            self.reset()
            return 200, {"ok": True}, {}
        if route == "/_fail" and method == "POST":
            return self._control_fail(raw)
        endpoint = {
            "/v1/chat/completions": "chat",
            "/chat/completions": "chat",
            "/v1/embeddings": "embeddings",
            "/embeddings": "embeddings",
            "/v1/models": "models",
            "/models": "models",
        }.get(route)
        if endpoint is None:
            return 404, _error_body(404, f"unknown path {path!r}"), {}
        if endpoint == "models":
            if method != "GET":
                return 405, _error_body(405, f"{method} not allowed on {path}"), {}
            return 200, {"object": "list", "data": self._models()}, {}
        if method != "POST":
            return 405, _error_body(405, f"{method} not allowed on {path}"), {}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with self._lock:
            self._counters.requests += 1
            self._counters.by_path[route] = self._counters.by_path.get(route, 0) + 1
            if endpoint == "chat":
                self._counters.chat_requests += 1
            else:
                self._counters.embedding_requests += 1
            self._received.append(ReceivedRequest(method, route, dict(headers), body))
            failure = self._take_failure(endpoint)
            counters = self._counters
            counters.in_flight += 1
            counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
        try:
            return await self._answer(endpoint, headers, body, failure)
        finally:
            with self._lock:
                counters.in_flight -= 1

    async def _answer(
        self,
        endpoint: str,
        headers: dict[str, str],
        body: Any,
        failure: _Failure | None,
    ) -> tuple[int, Any, dict[str, str]]:
        if self.latency:
            await asyncio.sleep(self.latency)
        if failure is not None:
            extra: dict[str, str] = {}
            if failure.status == 429 or failure.status >= 500:
                wait = (
                    self.error_retry_after if failure.retry_after is None else failure.retry_after
                )
                extra["retry-after-ms"] = str(int(wait * 1000))
            return failure.status, _error_body(failure.status, failure.message), extra
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, _error_body(401, "invalid api key"), {}
        if not isinstance(body, dict):
            return 400, _error_body(400, "the request body must be a JSON object"), {}
        try:
            if endpoint == "chat":
                return 200, self._chat(body), {}
            return 200, self._embeddings(body), {}
        except _HTTPError as exc:
            return exc.status, _error_body(exc.status, exc.message, exc.param), {}

    def _take_failure(self, endpoint: str) -> _Failure | None:
        for failure in self._failures:
            if failure.endpoint in (None, endpoint):
                failure.remaining -= 1
                if failure.remaining == 0:
                    self._failures.remove(failure)
                self._counters.failed += 1
                return failure
        return None

    def _control_fail(self, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        try:
            spec = json.loads(raw) if raw else {}
            if not isinstance(spec, dict):
                raise ValueError("the body must be a JSON object")
            self.fail_next(
                int(spec.get("status", 429)),
                int(spec.get("count", 1)),
                endpoint=spec.get("endpoint"),
                retry_after=spec.get("retry_after"),
                message=spec.get("message"),
            )
        except (ValueError, TypeError) as exc:
            return 400, _error_body(400, f"bad /_fail request: {exc}"), {}
        return 200, {"ok": True}, {}

    @staticmethod
    def _models() -> list[dict[str, Any]]:
        return [
            {"id": name, "object": "model", "created": 0, "owned_by": "cachesaver"}
            for name in ("fake-chat", "fake-embed")
        ]

    # -- generation ----------------------------------------------------------------------

    def _rng(self, content: str, draw: int) -> random.Random:
        material = f"{self.seed}\x00{content}\x00{draw}".encode()
        return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _HTTPError(400, "you must provide a model parameter", "model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _HTTPError(400, "messages must be a non-empty list", "messages")
        if body.get("stream"):
            raise _HTTPError(400, "this test server does not stream; send stream=false", "stream")
        n = body.get("n", 1)
        n = 1 if n is None else n
        if type(n) is not int or not 1 <= n <= _MAX_N:
            raise _HTTPError(400, f"n must be an integer between 1 and {_MAX_N}", "n")
        content = json.dumps(
            {k: v for k, v in body.items() if k not in _NOT_OUTPUT},
            sort_keys=True,
            separators=(",", ":"),
        )
        temperature = body.get("temperature")
        seed = body.get("seed")
        if self.max_choices is not None:
            n = min(n, self.max_choices)
        with self._lock:
            first = self._drawn.get(content, 0)
            self._drawn[content] = first + n
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
            choice, tokens = self._choice(body, self._rng(content, draw), j)
            choices.append(choice)
            completion_tokens += tokens
        with self._lock:
            self._counters.samples += n
            self._counters.prompt_tokens += prompt_tokens
            self._counters.completion_tokens += completion_tokens
        digest = hashlib.sha256(f"{content}\x00{first}".encode()).hexdigest()[:24]
        return {
            "id": f"chatcmpl-{digest}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": f"fp_cachesaver_{self.seed}",
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _choice(
        self, body: dict[str, Any], rng: random.Random, index: int
    ) -> tuple[dict[str, Any], int]:
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
            arguments = json.dumps({"x": rng.randrange(100)})
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
                {
                    "index": index,
                    "message": message,
                    "finish_reason": "tool_calls",
                    "logprobs": None,
                },
                len(arguments.split()) + 1,
            )
        words = [_WORDS[rng.randrange(len(_WORDS))] for _ in range(rng.randint(3, 12))]
        words.append(f"#{rng.getrandbits(32):08x}")
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and 0 < limit < len(words):
            words = words[:limit]
            finish = "length"
        text = " ".join(words)
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str)]
        for s in stops:
            if s and s in text:
                text = text[: text.index(s)]
                finish = "stop"
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
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

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _HTTPError(400, "you must provide a model parameter", "model")
        raw_input = body.get("input")
        inputs: list[Any]
        if isinstance(raw_input, str):
            inputs = [raw_input]
        elif (
            isinstance(raw_input, list) and raw_input and all(isinstance(x, int) for x in raw_input)
        ):
            inputs = [raw_input]  # one input given as token ids
        elif isinstance(raw_input, list) and raw_input:
            inputs = raw_input
        else:
            raise _HTTPError(400, "input must be a non-empty string or list", "input")
        for item in inputs:
            if not (isinstance(item, str) and item) and not (
                isinstance(item, list) and all(isinstance(x, int) for x in item)
            ):
                raise _HTTPError(
                    400, "each input must be a non-empty string or token list", "input"
                )
        dims = body.get("dimensions") or self.embedding_dimensions
        if type(dims) is not int or not 1 <= dims <= 4096:
            raise _HTTPError(400, "dimensions must be an integer between 1 and 4096", "dimensions")
        b64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            vector = self._vector(model, item, dims)
            tokens += len(item) if isinstance(item, list) else _count_tokens(item)
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode("ascii")
                if b64
                else vector
            )
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        with self._lock:
            self._counters.embedded_inputs += len(inputs)
            self._counters.prompt_tokens += tokens
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _vector(self, model: str, item: Any, dims: int) -> list[float]:
        rng = self._rng(json.dumps([model, item, dims]), 0)
        raw = [rng.gauss(0.0, 1.0) for _ in range(dims)]
        norm = sum(x * x for x in raw) ** 0.5 or 1.0
        # Round through float32 so JSON and base64 answers carry the same numbers.
        return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(x / norm for x in raw))))


@contextlib.contextmanager
def running_server(**options: Any) -> Iterator[FakeLLMServer]:
    """``with running_server(latency=0.01) as server:`` (a `FakeLLMServer` started/stopped)."""
    server = FakeLLMServer(**options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m cachesaver.testing.server --port 8000``."""
    parser = argparse.ArgumentParser(
        prog="python -m cachesaver.testing.server",
        description="A local OpenAI-compatible server with reproducible stochastic outputs.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    args = parser.parse_args(argv)
    server = FakeLLMServer(
        args.host, args.port, latency=args.latency, seed=args.seed, api_key=args.api_key
    )
    server.start()
    try:  # Ctrl-C may come as soon as the first line is out
        print(f"cachesaver test server on {server.url}", flush=True)
        print(f"  openai:   AsyncOpenAI(base_url={server.openai_base_url!r}, api_key='test')")
        print(f"  together: AsyncTogether(base_url={server.url!r}, api_key='test')")
        print(f"  stats:    GET {server.url}/_stats   (Ctrl-C stops)", flush=True)
        while server.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
