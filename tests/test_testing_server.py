"""The local OpenAI-compatible test server: HTTP behaviour, determinism, control, shutdown."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from cachesaver.testing.server import FakeLLMServer, main

MESSAGES: Any = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(error_retry_after=0.005) as running:
        yield running


def call(
    server: FakeLLMServer, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        payload = None if body is None else json.dumps(body)
        headers = {"content-type": "application/json"} if payload else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        data = json.loads(response.read() or b"null")
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def sdk(server: FakeLLMServer, **options: Any) -> openai.AsyncOpenAI:
    options.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="test", **options)


def test_binds_a_free_port_and_stops_cleanly() -> None:
    """Port 0 binds a free port on 127.0.0.1; stop() frees it and joins the thread."""
    server = FakeLLMServer().start()
    port = server.port
    assert port > 0 and server.running and server.url == f"http://127.0.0.1:{port}"
    idle = socket.create_connection(("127.0.0.1", port))  # an idle keep-alive client
    try:
        server.stop()
    finally:
        idle.close()
    assert not server.running
    with socket.socket() as probe:
        # Nothing listens any more (SO_REUSEADDR only tolerates closed connections).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()


def test_stats_endpoint_counts_requests(server: FakeLLMServer) -> None:
    """GET /_stats reports the requests received, per endpoint, with tokens and samples."""
    status, _, body = call(
        server, "POST", "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "n": 3}
    )
    assert status == 200 and len(body["choices"]) == 3
    call(server, "POST", "/v1/embeddings", {"model": "e", "input": ["a", "b"]})
    status, _, stats = call(server, "GET", "/_stats")
    assert status == 200
    assert (stats["requests"], stats["chat_requests"], stats["embedding_requests"]) == (2, 1, 1)
    assert (stats["samples"], stats["embedded_inputs"]) == (3, 2)
    assert stats == server.stats()
    call(server, "POST", "/_reset")
    assert server.stats()["requests"] == 0 and server.received == []


def test_chat_answers_are_reproducible_and_stochastic() -> None:
    """The k-th draw of a request is the same for the same seed; repeats draw anew."""

    def draws(seed: int) -> list[str]:
        with FakeLLMServer(seed=seed) as server:
            out = []
            for _ in range(2):
                _, _, body = call(
                    server,
                    "POST",
                    "/v1/chat/completions",
                    {"model": "m", "messages": MESSAGES, "n": 2, "user": f"u{_}"},
                )
                out += [c["message"]["content"] for c in body["choices"]]
            return out

    first, again, other = draws(0), draws(0), draws(1)
    assert first == again
    assert len(set(first)) == 4
    assert first != other


def test_temperature_zero_seed_and_limits(server: FakeLLMServer) -> None:
    """temperature=0 repeats one answer, seed fixes choices, max_tokens truncates."""

    def chat(**extra: Any) -> dict[str, Any]:
        status, _, body = call(
            server, "POST", "/chat/completions", {"model": "m", "messages": MESSAGES, **extra}
        )
        assert status == 200
        result: dict[str, Any] = body
        return result

    greedy = [chat(temperature=0, n=2) for _ in range(2)]
    contents = {c["message"]["content"] for b in greedy for c in b["choices"]}
    assert len(contents) == 1
    seeded = [chat(seed=7, n=2) for _ in range(2)]
    assert seeded[0]["choices"] == seeded[1]["choices"]
    short = chat(max_tokens=2)
    assert len(short["choices"][0]["message"]["content"].split()) <= 2
    assert short["choices"][0]["finish_reason"] in ("length", "stop")
    tools = chat(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="required")
    assert tools["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "f"
    usage = chat()["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_bad_requests_get_openai_style_errors(server: FakeLLMServer) -> None:
    """Invalid bodies get 400 with an OpenAI-style error object; unknown paths get 404."""
    status, _, body = call(server, "POST", "/v1/chat/completions", {"messages": MESSAGES})
    assert status == 400 and body["error"]["param"] == "model"
    status, _, body = call(
        server, "POST", "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "n": 0}
    )
    assert status == 400 and "n must be" in body["error"]["message"]
    assert call(server, "GET", "/nope")[0] == 404


def test_injected_failures_via_the_control_endpoint(server: FakeLLMServer) -> None:
    """POST /_fail makes the next requests fail with retry-after-ms; then it recovers."""
    status, _, _ = call(server, "POST", "/_fail", {"status": 429, "count": 1, "endpoint": "chat"})
    assert status == 200
    embed = call(server, "POST", "/v1/embeddings", {"model": "e", "input": "x"})
    assert embed[0] == 200  # the failure is only for chat
    status, headers, body = call(
        server, "POST", "/v1/chat/completions", {"model": "m", "messages": MESSAGES}
    )
    assert status == 429 and headers["retry-after-ms"] == "5"
    assert body["error"]["type"] == "rate_limit_error"
    assert (
        call(server, "POST", "/v1/chat/completions", {"model": "m", "messages": MESSAGES})[0] == 200
    )
    assert call(server, "POST", "/_fail", {"status": 200})[0] == 400
    assert server.stats()["failed"] == 1


async def test_sdk_retries_use_the_servers_short_retry_after(server: FakeLLMServer) -> None:
    """The SDK retries injected 429/500 quickly because the server sends retry-after-ms."""
    server.fail_next(429)
    server.fail_next(500)
    started = time.monotonic()
    async with sdk(server, max_retries=2) as client:
        completion = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert time.monotonic() - started < 2
    assert completion.choices[0].message.content
    assert server.stats()["failed"] == 2


async def test_embeddings_float_and_base64_agree(server: FakeLLMServer) -> None:
    """Float and base64 embeddings carry the same float32 numbers; dimensions is honoured."""
    _, _, plain = call(
        server,
        "POST",
        "/v1/embeddings",
        {"model": "e", "input": ["a", "b"], "encoding_format": "float", "dimensions": 4},
    )
    async with sdk(server) as client:
        decoded = await client.embeddings.create(model="e", input=["a", "b"], dimensions=4)
    raw = base64.b64decode(
        call(
            server,
            "POST",
            "/v1/embeddings",
            {"model": "e", "input": "a", "encoding_format": "base64", "dimensions": 4},
        )[2]["data"][0]["embedding"]
    )
    assert list(struct.unpack("<4f", raw)) == plain["data"][0]["embedding"]
    assert [d.embedding for d in decoded.data] == [d["embedding"] for d in plain["data"]]


async def test_latency_and_concurrency_are_observable() -> None:
    """Configured latency delays each answer; concurrent requests overlap (max_in_flight)."""
    import asyncio

    with FakeLLMServer(latency=0.1) as server:
        async with sdk(server) as client:
            started = time.monotonic()
            await asyncio.gather(
                *(client.chat.completions.create(model="m", messages=MESSAGES) for _ in range(4))
            )
            elapsed = time.monotonic() - started
    assert elapsed >= 0.1
    assert server.stats()["max_in_flight"] == 4


def test_keep_alive_serves_many_requests_on_one_connection(server: FakeLLMServer) -> None:
    """Several requests on one HTTP/1.1 connection are all answered."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/v1/models")
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["data"][0]["id"] == "fake-chat"
    finally:
        conn.close()


def test_start_twice_and_bad_options_are_clear_errors() -> None:
    """Misuse gets a clear error: restarting, a taken port, and invalid options."""
    with FakeLLMServer() as server:
        with pytest.raises(RuntimeError, match="already called"):
            server.start()
        with pytest.raises(RuntimeError, match="could not listen"):
            FakeLLMServer(port=server.port).start()
        with pytest.raises(ValueError, match="status"):
            server.fail_next(200)
    with pytest.raises(ValueError, match="latency"):
        FakeLLMServer(latency=-1)


def test_command_line_serves_until_interrupted() -> None:
    """`python -m cachesaver.testing.server --port 0` serves, and stops on Ctrl-C."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cachesaver.testing.server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("cachesaver test server on http://127.0.0.1:")
        host, port = line.split("http://", 1)[1].strip().split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/_stats")
        assert json.loads(conn.getresponse().read())["requests"] == 0
        conn.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_main_rejects_bad_arguments() -> None:
    """The command line refuses a malformed option with a usage error."""
    with pytest.raises(SystemExit):
        main(["--port", "not-a-number"])


# -- streaming, structured outputs, the Responses API, in-process transport -------------


async def test_streams_arrive_chunk_by_chunk_and_can_be_held(server: FakeLLMServer) -> None:
    """A streamed answer reaches the SDK chunk by chunk: the first before the rest is sent."""
    server.hold_streams(after=2)
    async with sdk(server) as client:
        stream = await client.chat.completions.create(
            model="m", messages=MESSAGES, n=2, stream=True, stream_options={"include_usage": True}
        )
        pieces: list[str] = []
        async for chunk in stream:
            if not pieces:
                # The server is paused after two events: nothing has completed yet.
                assert server.stats()["streams_completed"] == 0
                server.release_streams()
            pieces += [c.delta.content or "" for c in chunk.choices if c.index == 0]
            usage = chunk.usage
    assert server.wait_for_streams(1)
    whole = call(server, "POST", "/v1/chat/completions", {"model": "m", "messages": MESSAGES})
    assert "".join(pieces) and whole[0] == 200
    assert usage is not None and usage.completion_tokens > 0
    assert server.stats()["streams_completed"] == 1


async def test_a_cut_stream_breaks_the_sdk_iteration(server: FakeLLMServer) -> None:
    """cut_next_stream(k) closes the connection after k events: the SDK sees an error."""
    server.cut_next_stream(after=2)
    async with sdk(server) as client:
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        received = 0
        with pytest.raises(Exception) as caught:
            async for _ in stream:
                received += 1
    assert received <= 2 and not isinstance(caught.value, AssertionError)
    assert server.wait_for_streams(1)
    assert server.stats()["streams_abandoned"] == 1


async def test_json_schema_answers_are_instances_of_the_schema(server: FakeLLMServer) -> None:
    """response_format json_schema answers parse into the user's pydantic model."""
    from pydantic import BaseModel

    class Step(BaseModel):
        explanation: str
        value: int

    class Answer(BaseModel):
        steps: list[Step]
        final: float
        ok: bool

    async with sdk(server) as client:
        # chat.completions.parse since openai 1.9x; beta.chat.completions.parse before.
        completions: Any = client.chat.completions
        if not hasattr(completions, "parse"):
            completions = client.beta.chat.completions
        parsed = await completions.parse(model="m", messages=MESSAGES, response_format=Answer)
    answer = parsed.choices[0].message.parsed
    assert isinstance(answer, Answer) and answer.steps


async def test_responses_endpoint_speaks_the_sdks_types(server: FakeLLMServer) -> None:
    """/v1/responses answers the SDK's Response; an unknown previous_response_id is a 400."""
    async with sdk(server) as client:
        first = await client.responses.create(model="m", input="hi", instructions="be brief")
        again = await client.responses.create(model="m", input="hi", instructions="be brief")
        follow = await client.responses.create(
            model="m", input="more", previous_response_id=first.id
        )
        with pytest.raises(openai.BadRequestError, match="not found"):
            await client.responses.create(model="m", input="x", previous_response_id="resp_no")
    assert first.output_text and first.output_text != again.output_text
    assert follow.previous_response_id == first.id
    assert server.stats()["response_requests"] == 4


def test_mock_transport_serves_the_same_handlers_without_sockets() -> None:
    """server.transport() answers sync and async SDK clients in-process, streams included."""
    import asyncio

    import httpx

    server = FakeLLMServer(seed=3)  # never started: no socket
    sync_client = openai.OpenAI(
        base_url="http://fake/v1",
        api_key="t",
        http_client=httpx.Client(transport=server.transport()),
    )
    with sync_client:
        text = sync_client.chat.completions.create(model="m", messages=MESSAGES, seed=1)
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in sync_client.chat.completions.create(
                model="m", messages=MESSAGES, seed=1, stream=True
            )
            if c.choices
        )
    assert streamed == text.choices[0].message.content

    async def use_async() -> str | None:
        client = openai.AsyncOpenAI(
            base_url="http://fake/v1",
            api_key="t",
            http_client=httpx.AsyncClient(transport=server.transport()),
        )
        async with client:
            answer = await client.chat.completions.create(model="m", messages=MESSAGES, seed=1)
        return answer.choices[0].message.content

    assert asyncio.run(use_async()) == text.choices[0].message.content
    assert server.stats()["chat_requests"] == 3 and not server.running
