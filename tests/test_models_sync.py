"""Sync drop-in clients and BackgroundLoop: scripts, threads, running loops, many calls."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from cachesaver import OnlineAPI, PipelineClosedError, Request
from cachesaver.models import ChoiceFlags, UncachedPathError, cache_flags
from cachesaver.models.openai import OpenAI
from cachesaver.models.together import Together
from cachesaver.sync import BackgroundLoop
from cachesaver.testing import SimulatedLLM
from cachesaver.testing.server import FakeLLMServer

MESSAGES = [{"role": "user", "content": "Pick a number."}]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(error_retry_after=0.005) as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


def sync_client(server: FakeLLMServer, cache: str, **options: Any) -> OpenAI:
    options.setdefault("max_retries", 0)
    return OpenAI(cache=cache, base_url=server.openai_base_url, api_key="t", **options)


def test_sync_client_caches_across_many_calls_and_clients(
    server: FakeLLMServer, cache: str
) -> None:
    """Many blocking calls on one client, then a new client replays with zero requests."""
    with sync_client(server, cache) as client:
        answers = [
            client.chat.completions.create(model="fake-chat", messages=MESSAGES, n=2)
            for _ in range(20)
        ]
        stream = client.chat.completions.create(model="fake-chat", messages=MESSAGES, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        embedding = client.embeddings.create(model="fake-embed", input="x")
        response = client.responses.create(model="fake-chat", input="hi")
    assert isinstance(answers[0], openai.types.chat.ChatCompletion)
    assert len({a.choices[0].message.content for a in answers}) == 20
    assert streamed == stream.completion.choices[0].message.content
    assert embedding.data[0].embedding and response.output_text
    sent = server.stats()["requests"]
    with sync_client(server, cache) as client:
        again = client.chat.completions.create(model="fake-chat", messages=MESSAGES, n=2)
        assert client.cachesaver_stats().cached == 2
    assert server.stats()["requests"] == sent
    assert cache_flags(again) == [ChoiceFlags(True, False)] * 2
    assert again.choices[0].message.content == answers[0].choices[0].message.content


def test_sync_client_from_many_threads(server: FakeLLMServer, cache: str) -> None:
    """Calls from several threads are served by the one background loop."""
    with sync_client(server, cache) as client:

        def ask(i: int) -> str | None:
            completion = client.chat.completions.create(
                model="fake-chat", messages=MESSAGES, namespace=f"t{i % 4}"
            )
            return completion.choices[0].message.content

        with ThreadPoolExecutor(8) as pool:
            texts = list(pool.map(ask, range(32)))
    assert len(texts) == 32 and all(texts)
    assert server.stats()["chat_requests"] <= 32


async def test_sync_client_inside_a_running_event_loop(server: FakeLLMServer, cache: str) -> None:
    """Like in Jupyter: the calling thread runs an event loop, the sync client still works."""
    asyncio.get_running_loop()
    with sync_client(server, cache) as client:
        first = client.chat.completions.create(model="fake-chat", messages=MESSAGES)
        second = client.chat.completions.create(model="fake-chat", messages=MESSAGES)
    assert first.choices[0].message.content != second.choices[0].message.content


def test_sync_surface_matches_the_async_one(server: FakeLLMServer, cache: str) -> None:
    """Uncached paths raise; with_options shares the run; client.sdk is blocking and explicit."""
    with sync_client(server, cache) as client:
        with pytest.raises(UncachedPathError, match=r"client\.sdk\.models"):
            _ = client.models
        assert [m.id for m in client.sdk.models.list().data] == ["fake-chat", "fake-embed"]
        a = client.chat.completions.create(model="fake-chat", messages=MESSAGES, namespace="A")
        derived = client.with_options(timeout=20)
        b = derived.chat.completions.create(model="fake-chat", messages=MESSAGES, namespace="A")
        derived.close()  # owns nothing
        raw = client.with_raw_response.chat.completions.create(
            model="fake-chat", messages=MESSAGES, namespace="B"
        )
        assert raw.headers["x-cachesaver-cached"] == "true"
        assert a.choices[0].message.content != b.choices[0].message.content
    with pytest.raises(PipelineClosedError):
        client.chat.completions.create(model="fake-chat", messages=MESSAGES)


def test_sync_together_client(server: FakeLLMServer, cache: str) -> None:
    """Together's sync client caches like the async one."""
    with Together(cache=cache, base_url=server.url, api_key="t") as client:
        first = client.chat.completions.create(model="fake-chat", messages=MESSAGES, n=2)
    with Together(cache=cache, base_url=server.url, api_key="t") as client:
        again = client.chat.completions.create(model="fake-chat", messages=MESSAGES, n=2)
    assert [c.message.content for c in again.choices] == [c.message.content for c in first.choices]
    assert server.stats()["chat_requests"] == 1


def test_closing_stops_the_loop_thread(server: FakeLLMServer, cache: str) -> None:
    """close() closes the async client and joins the loop's thread; a bad option leaks none."""
    before = threading.active_count()
    client = sync_client(server, cache)
    client.chat.completions.create(model="fake-chat", messages=MESSAGES)
    client.close()
    client.close()
    assert client.loop.closed
    with pytest.raises(ValueError, match="mode"):
        OpenAI(cache=cache, api_key="t", mode="nope")  # type: ignore[arg-type]
    for thread in threading.enumerate():
        # The disk store's worker thread is told to stop at close and ends on its own;
        # so does the test server's thread for the connection the client closed.
        if thread.name.startswith("cachesaver-disk") or thread.name.endswith(
            "(process_request_thread)"
        ):
            thread.join(timeout=10)
    assert threading.active_count() == before, [t.name for t in threading.enumerate()]


def test_a_script_runs_the_sync_client_twice_and_exits(
    server: FakeLLMServer, cache: str, tmp_path: Path
) -> None:
    """A plain script: two calls, no close, and the interpreter exits cleanly."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from cachesaver.models.openai import OpenAI
            client = OpenAI(cache={cache!r}, base_url={server.openai_base_url!r}, api_key="t")
            for _ in range(2):
                print(client.chat.completions.create(
                    model="fake-chat", messages=[{{"role": "user", "content": "hi"}}]
                ).choices[0].message.content)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2 and "Error" not in done.stderr


def test_background_loop_runs_a_pipeline_from_sync_code(cache: str) -> None:
    """The documented way to use OnlineAPI from sync code: BackgroundLoop.call."""
    with BackgroundLoop() as loop:
        pipeline = loop.call(OnlineAPI, SimulatedLLM(seed=3), cache=cache)
        first = loop.call(pipeline.request, Request("2+2?", n=2))
        second = loop.call(pipeline.request, Request("2+2?", n=2))
        loop.call(pipeline.aclose)
        with pytest.raises(RuntimeError, match="own thread"):
            loop.call(lambda: loop.call(asyncio.sleep, 0))
    assert first.cached == [False, False] and first.data != second.data
    with pytest.raises(PipelineClosedError):
        loop.call(asyncio.sleep, 0)


def test_background_loop_call_returns_values_and_raises_errors() -> None:
    """A call gives back the function's value or raises its own exception, sync or async."""

    async def fail() -> None:
        raise KeyError("from the loop")

    with BackgroundLoop() as loop:
        assert loop.call(lambda a, b=0: a + b, 2, b=3) == 5
        assert loop.call(asyncio.sleep, 0, [1]) == [1]
        with pytest.raises(KeyError, match="from the loop"):
            loop.call(fail)
        with pytest.raises(ZeroDivisionError):
            loop.call(lambda: 1 / 0)
