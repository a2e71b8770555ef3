"""The test server's HTTP layer: the standard library's ``ThreadingHTTPServer``.

It turns each HTTP request into a `Call`, asks the handler for a `Reply` and writes it:
a JSON body, or server-sent events (chunked transfer encoding) with the reply's pacing.
``stop()`` closes the listener and every open connection (idle keep-alive ones too) and
interrupts waits, so nothing is left behind. `mock_transport` serves the same handler
in-process through ``httpx.MockTransport`` (sync and async clients), without sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cachesaver.testing._wire import REASONS, Call, Reply, error_reply

__all__ = ["GATE_TIMEOUT", "HTTPFrontend", "Handler", "mock_transport"]

Handler = Callable[[Call], Reply]
_MAX_BODY = 32 * 1024 * 1024
#: The longest a held stream waits for its gate (so nothing can hang).
GATE_TIMEOUT = 10.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # Clients open hundreds of connections at once (a gather of calls): the standard
    # library's default backlog of 5 would drop their connects.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], handle: Handler) -> None:
        self.handle = handle
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.guard = threading.Lock()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.guard:
            if self.stopping.is_set():
                self.shutdown_request(request)
                return
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.guard:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.guard:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: with Nagle's algorithm the body would wait
    # for the client's delayed ACK (~40 ms per answer).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._exchange()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _exchange(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.close_connection = True
            self._write(error_reply(400, "chunked request bodies are not supported"))
            return
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.close_connection = True
            self._write(error_reply(413, "request body too large or malformed length"))
            return
        raw = self.rfile.read(length) if length else b""
        reply = self.server.handle(Call(self.command, self.path.split("?", 1)[0], headers, raw))
        completed = False
        try:
            completed = self._write(reply)
        finally:
            reply.done(completed)

    def _wait(self, seconds: float) -> bool:
        """Wait (interrupted by stop); False if the server is stopping."""
        if seconds > 0:
            self.server.stopping.wait(seconds)
        return not self.server.stopping.is_set()

    def _write(self, reply: Reply) -> bool:
        if not self._wait(reply.delay):
            self.close_connection = True
            return False
        if reply.events is None:
            body = reply.content()
            self.send_response(reply.status, REASONS.get(reply.status, "Error"))
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(body)
            return True
        self.send_response(reply.status, REASONS.get(reply.status, "Error"))
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        for count, event in enumerate(reply.events):
            if count and not self._wait(reply.event_delay):
                self.close_connection = True
                return False
            if reply.hold_after == count and reply.gate is not None:
                reply.gate.wait(GATE_TIMEOUT)
            if reply.cut_after == count or self.server.stopping.is_set():
                self.close_connection = True  # the stream breaks: no terminating chunk
                return False
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                return False
        self.wfile.write(b"0\r\n\r\n")
        return True


class HTTPFrontend:
    """Serve ``handle`` over HTTP on ``host:port`` (0: a free port) from a thread."""

    def __init__(self, handle: Handler, host: str, port: int) -> None:
        self._server = _Server((host, port), handle)  # binds now: OSError if taken
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cachesaver-test-server",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        server = self._server
        server.stopping.set()
        if self._thread.is_alive():
            server.shutdown()
            self._thread.join(timeout=10)
        server.server_close()
        server.close_connections()


# -- in-process: httpx.MockTransport ------------------------------------------------------


class _ReplyEvents:
    """The events of a reply, paced, for an httpx byte stream (sync and async)."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply

    def _events(self) -> Iterator[tuple[float, bytes | None]]:
        reply = self.reply
        assert reply.events is not None
        for count, event in enumerate(reply.events):
            if reply.cut_after == count:
                yield 0.0, None
                return
            yield (reply.event_delay if count else 0.0), event

    def __iter__(self) -> Iterator[bytes]:
        import time

        completed = False
        try:
            for count, (delay, event) in enumerate(self._events()):
                if delay:
                    time.sleep(delay)
                if self.reply.hold_after == count and self.reply.gate is not None:
                    self.reply.gate.wait(GATE_TIMEOUT)
                if event is None:
                    raise ConnectionResetError("the test server cut the stream")
                yield event
            completed = True
        finally:
            self.reply.done(completed)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        completed = False
        try:
            for count, (delay, event) in enumerate(self._events()):
                if delay:
                    await asyncio.sleep(delay)
                gate = self.reply.gate
                if self.reply.hold_after == count and gate is not None:
                    await asyncio.to_thread(gate.wait, GATE_TIMEOUT)
                if event is None:
                    raise ConnectionResetError("the test server cut the stream")
                yield event
            completed = True
        finally:
            self.reply.done(completed)

    def close(self) -> None:
        self.reply.done(False)

    async def aclose(self) -> None:
        self.reply.done(False)


def mock_transport(handle: Handler) -> Any:
    """An ``httpx.MockTransport`` answering with ``handle`` (no sockets, no threads).

    Pass it to an SDK as ``http_client=httpx.AsyncClient(transport=...)`` (or
    ``httpx.Client`` for a sync SDK client). A reply's ``delay`` is slept only by async
    clients' streams and sync clients; use the socket server for latency tests.
    """
    import httpx

    def respond(request: httpx.Request) -> httpx.Response:
        call = Call(
            request.method,
            request.url.path,
            {k.lower(): v for k, v in request.headers.items()},
            request.read(),
        )
        reply = handle(call)
        headers = dict(reply.headers)
        if reply.events is None:
            reply.done(True)
            headers["content-type"] = "application/json"
            return httpx.Response(reply.status, headers=headers, content=reply.content())
        headers["content-type"] = "text/event-stream"
        return httpx.Response(reply.status, headers=headers, stream=Stream(reply))

    class Stream(_ReplyEvents, httpx.SyncByteStream, httpx.AsyncByteStream):
        pass

    return httpx.MockTransport(respond)
