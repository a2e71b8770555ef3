"""The test server's state and routing: counters, injected failures, draws, streams.

`Backend.handle` is the one handler every transport calls (sockets or
``httpx.MockTransport``). It answers the control endpoints (``/_stats``, ``/_reset``,
``/_fail``) itself and sends API paths to the protocol modules' pure handlers
(`cachesaver.testing.openai_protocol`), which draw their outputs from `Backend.rng`.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cachesaver.testing import anthropic_protocol, gemini_protocol, openai_protocol
from cachesaver.testing._wire import REASONS, Call, HTTPError, Reply, error_reply

__all__ = ["Backend", "ReceivedRequest"]


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
    response_requests: int = 0
    message_requests: int = 0
    generate_requests: int = 0
    failed: int = 0
    samples: int = 0
    embedded_inputs: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_abandoned: int = 0
    by_path: dict[str, int] = field(default_factory=dict)


class Backend:
    """What the fake LLM knows and counts; see `cachesaver.testing.server.FakeLLMServer`."""

    def __init__(
        self,
        *,
        latency: float,
        seed: int,
        api_key: str | None,
        error_retry_after: float,
        embedding_dimensions: int,
        max_choices: int | None,
        stream_delay: float,
    ) -> None:
        if latency < 0 or error_retry_after < 0 or stream_delay < 0:
            raise ValueError("latency, error_retry_after and stream_delay must be >= 0 seconds")
        if embedding_dimensions < 1:
            raise ValueError("embedding_dimensions must be a positive int")
        self.latency = float(latency)
        self.seed = seed
        self.api_key = api_key
        self.error_retry_after = float(error_retry_after)
        self.embedding_dimensions = embedding_dimensions
        self.max_choices = max_choices
        self.stream_delay = float(stream_delay)
        self.lock = threading.Lock()
        self.counters = _Counters()
        self.received: list[ReceivedRequest] = []
        self.failures: deque[_Failure] = deque()
        self.drawn: dict[str, int] = {}
        self.responses: set[str] = set()  # ids of Responses API answers given
        self.stream_gate: threading.Event | None = None
        self.stream_hold_after: int | None = None
        self.stream_cuts: deque[int] = deque()
        self.stream_progress = threading.Condition(self.lock)

    # -- draws ---------------------------------------------------------------------------

    def rng(self, content: str, draw: int) -> random.Random:
        material = f"{self.seed}\x00{content}\x00{draw}".encode()
        return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))

    def take_draws(self, content: str, count: int) -> int:
        """Reserve ``count`` draws of ``content``; return the first one's position."""
        with self.lock:
            first = self.drawn.get(content, 0)
            self.drawn[content] = first + count
            return first

    def count(self, **increments: int) -> None:
        with self.lock:
            for name, value in increments.items():
                setattr(self.counters, name, getattr(self.counters, name) + value)

    # -- control ---------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        count: int,
        endpoint: str | None,
        retry_after: float | None,
        message: str | None,
    ) -> None:
        if status not in REASONS or status < 400:
            raise ValueError(
                f"status must be an HTTP error status such as 429 or 500, got {status}"
            )
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if endpoint not in (None, *_ENDPOINTS):
            raise ValueError(
                f"endpoint must be None or one of {sorted(_ENDPOINTS)}, got {endpoint!r}"
            )
        text = message or f"injected {status} error from the cachesaver test server"
        with self.lock:
            self.failures.append(_Failure(status, count, endpoint, retry_after, text))

    def stats(self) -> dict[str, Any]:
        with self.lock:
            c = self.counters
            out: dict[str, Any] = {
                name: getattr(c, name) for name in c.__dataclass_fields__ if name != "by_path"
            }
            out["by_path"] = dict(c.by_path)
            out["pending_failures"] = sum(f.remaining for f in self.failures)
            return out

    def reset(self) -> None:
        with self.lock:
            self.counters = _Counters()
            self.received.clear()
            self.failures.clear()

    # -- dispatch ----------------------------------------------------------------------------

    def handle(self, call: Call) -> Reply:
        route = call.path.rstrip("/")
        if route == "/_stats" and call.method == "GET":
            return Reply(200, self.stats())
        if route == "/_reset" and call.method == "POST":
            self.reset()
            return Reply(200, {"ok": True})
        if route == "/_fail" and call.method == "POST":
            return self._control_fail(call.body)
        endpoint = openai_protocol.ROUTES.get(route) or anthropic_protocol.ROUTES.get(route)
        gemini = gemini_protocol.route(route)
        if gemini is not None:
            endpoint = "generate_content"
        if endpoint is None:
            return error_reply(404, f"unknown path {call.path!r}")
        if endpoint == "models":
            if call.method != "GET":
                return error_reply(405, f"{call.method} not allowed on {call.path}")
            return Reply(200, {"object": "list", "data": openai_protocol.models()})
        if call.method != "POST":
            return error_reply(405, f"{call.method} not allowed on {call.path}")
        try:
            body = json.loads(call.body) if call.body else None
        except ValueError:
            body = None
        with self.lock:
            c = self.counters
            c.requests += 1
            c.by_path[route] = c.by_path.get(route, 0) + 1
            name = _COUNTERS[endpoint]
            setattr(c, name, getattr(c, name) + 1)
            self.received.append(ReceivedRequest(call.method, route, dict(call.headers), body))
            failure = self._take_failure(endpoint)
            c.in_flight += 1
            c.max_in_flight = max(c.max_in_flight, c.in_flight)
        reply = self._answer(endpoint, call.headers, body, failure, gemini)
        reply.delay = self.latency
        reply.on_done = self._finished(reply.events is not None)
        return reply

    def _finished(self, streaming: bool) -> Any:
        def done(completed: bool) -> None:
            with self.lock:
                self.counters.in_flight -= 1
                if streaming:
                    if completed:
                        self.counters.streams_completed += 1
                    else:
                        self.counters.streams_abandoned += 1
                self.stream_progress.notify_all()

        return done

    def _answer(
        self,
        endpoint: str,
        headers: dict[str, str],
        body: Any,
        failure: _Failure | None,
        gemini: tuple[str, bool] | None = None,
    ) -> Reply:
        if failure is not None:
            extra: dict[str, str] = {}
            if failure.status == 429 or failure.status >= 500:
                wait = (
                    self.error_retry_after if failure.retry_after is None else failure.retry_after
                )
                extra["retry-after-ms"] = str(int(wait * 1000))
            reply = _error(endpoint, failure.status, failure.message)
            reply.headers.update(extra)
            return reply
        if self.api_key is not None and self.api_key not in _keys_sent(headers):
            return _error(endpoint, 401, "invalid api key")
        if not isinstance(body, dict):
            return _error(endpoint, 400, "the request body must be a JSON object")
        try:
            if gemini is not None:
                result = gemini_protocol.generate_content(self, body, *gemini)
            elif endpoint in anthropic_protocol.ENDPOINTS:
                result = anthropic_protocol.messages(self, body)
            else:
                result = openai_protocol.HANDLERS[endpoint](self, body)
        except HTTPError as exc:
            return _error(endpoint, exc.status, exc.message, exc.param)
        if isinstance(result, list):  # a stream of events
            with self.lock:
                self.counters.streams_started += 1
                cut = self.stream_cuts.popleft() if self.stream_cuts else None
            return Reply(
                200,
                events=result,
                event_delay=self.stream_delay,
                hold_after=self.stream_hold_after,
                gate=self.stream_gate,
                cut_after=cut,
            )
        return Reply(200, result)

    def _take_failure(self, endpoint: str) -> _Failure | None:
        for failure in self.failures:
            if failure.endpoint in (None, endpoint):
                failure.remaining -= 1
                if failure.remaining == 0:
                    self.failures.remove(failure)
                self.counters.failed += 1
                return failure
        return None

    def _control_fail(self, raw: bytes) -> Reply:
        try:
            spec = json.loads(raw) if raw else {}
            if not isinstance(spec, dict):
                raise ValueError("the body must be a JSON object")
            self.fail_next(
                int(spec.get("status", 429)),
                int(spec.get("count", 1)),
                spec.get("endpoint"),
                spec.get("retry_after"),
                spec.get("message"),
            )
        except (ValueError, TypeError) as exc:
            return error_reply(400, f"bad /_fail request: {exc}")
        return Reply(200, {"ok": True})


_ENDPOINTS = openai_protocol.ENDPOINTS | anthropic_protocol.ENDPOINTS | gemini_protocol.ENDPOINTS
_COUNTERS = {
    "chat": "chat_requests",
    "embeddings": "embedding_requests",
    "responses": "response_requests",
    "messages": "message_requests",
    "generate_content": "generate_requests",
}


def _keys_sent(headers: dict[str, str]) -> set[str]:
    """The API keys a request carries, in any provider's header."""
    keys = {headers.get("x-api-key", ""), headers.get("x-goog-api-key", "")}
    authorization = headers.get("authorization", "")
    if authorization.startswith("Bearer "):
        keys.add(authorization.removeprefix("Bearer "))
    return keys - {""}


def _error(endpoint: str, status: int, message: str, param: str | None = None) -> Reply:
    """An error in the shape the endpoint's own SDK reads."""
    if endpoint in anthropic_protocol.ENDPOINTS:
        return Reply(status, anthropic_protocol.error_body(status, message))
    if endpoint in gemini_protocol.ENDPOINTS:
        return Reply(status, gemini_protocol.error_body(status, message))
    return error_reply(status, message, param)
