"""What the test server's HTTP layer and its protocol handlers exchange.

A handler is a pure function of a `Call` (method, path, headers, body) returning a
`Reply`: a JSON body, or a stream of server-sent events with the pacing the HTTP layer
applies (a delay before the answer, a delay between events, a pause, a cut). The same
handlers serve real sockets (`cachesaver.testing._http`) and in-process
``httpx.MockTransport`` clients.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REASONS", "Call", "HTTPError", "Reply", "error_body", "error_reply", "sse"]

REASONS = {
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


@dataclass(frozen=True)
class Call:
    """One HTTP request: method, path (no query), lower-cased headers, raw body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    """What to answer.

    - ``status``, ``headers`` and either ``body`` (JSON) or ``events`` (server-sent
      events, each already encoded as ``data: ...\\n\\n``);
    - ``delay``: seconds to wait before answering (the model's latency);
    - ``event_delay``: seconds between two events;
    - ``hold_after`` / ``gate``: after that many events, wait until ``gate`` is set
      (bounded), so a test can observe a stream half-way;
    - ``cut_after``: close the connection after that many events, without ending the
      stream (a broken connection);
    - ``on_done(completed)``: called once when the answer was sent (True) or abandoned.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    events: Sequence[bytes] | None = None
    delay: float = 0.0
    event_delay: float = 0.0
    hold_after: int | None = None
    gate: threading.Event | None = None
    cut_after: int | None = None
    on_done: Callable[[bool], None] | None = None

    def done(self, completed: bool) -> None:
        callback, self.on_done = self.on_done, None
        if callback is not None:
            callback(completed)

    def content(self) -> bytes:
        """The JSON body as bytes (for a non-streaming reply)."""
        return json.dumps(self.body, separators=(",", ":")).encode()


class HTTPError(Exception):
    """Raised by a handler to answer with an OpenAI-style error object."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error"),
            "param": param,
            "code": None,
        }
    }


def error_reply(status: int, message: str, param: str | None = None) -> Reply:
    return Reply(status, error_body(status, message, param))


def sse(payloads: Sequence[Any]) -> list[bytes]:
    """Server-sent events of JSON payloads, ended by ``data: [DONE]``."""
    out = [b"data: " + json.dumps(p, separators=(",", ":")).encode() + b"\n\n" for p in payloads]
    out.append(b"data: [DONE]\n\n")
    return out
