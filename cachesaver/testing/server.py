"""A local OpenAI-compatible HTTP server for tests, examples and offline demos.

It speaks enough of the OpenAI (and Together) REST API for the real ``openai`` and
``together`` SDKs to talk to it over HTTP (see `cachesaver.testing.openai_protocol` for
the endpoints and parameters): chat completions (streaming included, with an optional
delay between chunks), structured outputs, the Responses API, embeddings, models; and
``GET /_stats`` (counters of what it received), ``POST /_fail`` (``{"status": 429,
"count": 1}``: inject errors), ``POST /_reset`` (zero the counters).

Outputs are stochastic but reproducible: the k-th sample the server draws for a given
request content is the same for the same ``seed``, whatever else it was asked.

In-process use (the HTTP layer serves from background threads, so it works from
synchronous code, from ``asyncio.run`` and inside pytest)::

    with FakeLLMServer(latency=0.01) as server:
        client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="test")
        ...
        assert server.stats()["chat_requests"] == 1
        server.fail_next(429)        # the next API request gets a rate limit error

Without sockets: ``httpx.AsyncClient(transport=server.transport())`` serves the same
handlers through ``httpx.MockTransport`` (the server need not be started).

From a shell: ``python -m cachesaver.testing.server --port 8000`` (Ctrl-C stops it).
Only the standard library is used (httpx only for `FakeLLMServer.transport`).
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from cachesaver.testing._backend import Backend, ReceivedRequest
from cachesaver.testing._http import GATE_TIMEOUT, HTTPFrontend, mock_transport

__all__ = ["FakeLLMServer", "ReceivedRequest", "main", "running_server"]


class FakeLLMServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1, run on background threads.

    - ``latency``: seconds each API request waits before it is answered;
    - ``seed``: the seed of every draw (same seed, same outputs);
    - ``port``: 0 (the default) binds a free port; read it back from ``port``/``url``;
    - ``api_key``: if set, requests must send ``Authorization: Bearer <api_key>``;
    - ``error_retry_after``: seconds the SDK is told to wait (``retry-after-ms``) before
      retrying an injected 429/5xx; small by default so SDK retries are fast in tests;
    - ``max_choices``: answer at most this many choices whatever ``n`` asks (like
      providers that cap or ignore ``n``);
    - ``stream_delay``: seconds between two chunks of a streamed answer.

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
        stream_delay: float = 0.0,
    ) -> None:
        self._backend = Backend(
            latency=latency,
            seed=seed,
            api_key=api_key,
            error_retry_after=error_retry_after,
            embedding_dimensions=embedding_dimensions,
            max_choices=max_choices,
            stream_delay=stream_delay,
        )
        self.host = host
        self._requested_port = port
        self.port = 0
        self._frontend: HTTPFrontend | None = None
        self._started = False

    # -- settings (live) ---------------------------------------------------------------

    @property
    def latency(self) -> float:
        return self._backend.latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._backend.latency = float(value)

    @property
    def stream_delay(self) -> float:
        return self._backend.stream_delay

    @stream_delay.setter
    def stream_delay(self, value: float) -> None:
        self._backend.stream_delay = float(value)

    @property
    def seed(self) -> int:
        return self._backend.seed

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
        return self._frontend is not None and self._frontend.running

    def start(self) -> FakeLLMServer:
        """Bind and start serving on a background thread; return ``self``."""
        if self._started:
            raise RuntimeError("FakeLLMServer.start() was already called; create a new server")
        self._started = True
        try:
            frontend = HTTPFrontend(self._backend.handle, self.host, self._requested_port)
        except OSError as exc:
            raise RuntimeError(
                f"FakeLLMServer could not listen on {self.host}:{self._requested_port}: {exc}"
            ) from exc
        self._frontend = frontend
        self.port = frontend.port
        frontend.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then join the server thread."""
        self.release_streams()
        if self._frontend is not None:
            self._frontend.stop()

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

    def transport(self) -> Any:
        """An ``httpx.MockTransport`` serving this server's handlers in-process."""
        return mock_transport(self._backend.handle)

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

        ``endpoint`` limits it to ``"chat"``, ``"embeddings"`` or ``"responses"``. 429
        and 5xx answers carry ``retry-after-ms`` (``retry_after`` seconds, default
        ``error_retry_after``), which the SDKs honour for their own retries.
        """
        self._backend.fail_next(status, count, endpoint, retry_after, message)

    def hold_streams(self, after: int = 1) -> None:
        """Pause every streamed answer after ``after`` events until `release_streams`.

        A paused stream waits at most 10 s. Use it to observe a stream half-way.
        """
        backend = self._backend
        with backend.lock:
            backend.stream_gate = threading.Event()
            backend.stream_hold_after = after

    def release_streams(self) -> None:
        """Let held streams go on (and stop holding new ones)."""
        backend = self._backend
        with backend.lock:
            gate, backend.stream_gate, backend.stream_hold_after = backend.stream_gate, None, None
        if gate is not None:
            gate.set()

    def cut_next_stream(self, after: int = 1) -> None:
        """Break the next streamed answer: the connection closes after ``after`` events."""
        with self._backend.lock:
            self._backend.stream_cuts.append(after)

    def wait_for_streams(self, ended: int, timeout: float = GATE_TIMEOUT) -> bool:
        """Wait until ``ended`` streams have completed or been abandoned (bounded)."""
        backend = self._backend

        def done() -> bool:
            c = backend.counters
            return c.streams_completed + c.streams_abandoned >= ended

        with backend.stream_progress:
            return backend.stream_progress.wait_for(done, timeout)

    def stats(self) -> dict[str, Any]:
        """Return a snapshot of the counters (the same JSON ``GET /_stats`` serves)."""
        return self._backend.stats()

    @property
    def received(self) -> list[ReceivedRequest]:
        """Every API request received so far (a copy), oldest first."""
        with self._backend.lock:
            return list(self._backend.received)

    def reset(self) -> None:
        """Zero the counters, forget received requests and pending failures.

        The draw positions are kept: the server keeps behaving like the same model.
        """
        self._backend.reset()


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
