"""The Redis store, against a real Redis (never a fake)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachesaver import ImportConflictError, OnlineAPI, Request, StoreError
from cachesaver.stores.base import KeyRecord, SampleWrite
from cachesaver.stores.redis import RedisStore
from cachesaver.testing import RecordingModel

from .helpers import stored


async def test_pipeline_over_redis_caches_and_replays(redis_url: str) -> None:
    """OnlineAPI with cache='redis://...' stores samples and a new run replays them."""
    model = RecordingModel()
    async with OnlineAPI(model, cache=redis_url) as api:
        first = await api.request(Request("q", n=3, namespace="a"))
        other = await api.request(Request("q", n=3, namespace="b"))
    store = RedisStore(redis_url)
    async with OnlineAPI(model, cache=store) as api:
        replay = await api.request(Request("q", n=3, namespace="a"))
    assert not store._closed, "a store passed in stays open"
    await store.aclose()
    assert other.data == first.data and other.cached == [True] * 3
    assert replay.data == first.data
    assert len(model.calls) == 1


async def test_samples_are_the_same_code_free_json_as_on_disk(
    redis_url: str, cache_dir: str
) -> None:
    """Redis holds exactly the sample texts and content the disk store holds."""
    from cachesaver.testing import SimulatedLLM

    texts = []
    for spec in (redis_url, cache_dir):
        async with OnlineAPI(SimulatedLLM(seed=2), cache=spec) as api:
            await api.request(Request({"chat": ["hi"]}, n=2))
            store = api.store
            key = api.key_of(Request({"chat": ["hi"]}))
            texts.append(await store.records([key]))  # type: ignore[attr-defined]
    assert texts[0] == texts[1]


async def test_first_writer_wins_and_loser_is_appended_atomically(redis_url: str) -> None:
    """Two clients writing index 0 of a key: the first stays, the second is appended."""
    one, two = RedisStore(redis_url), RedisStore(redis_url)
    try:
        key = "k" * 64
        results = await asyncio.gather(
            one.write([SampleWrite(key, "{}", {0: '"one"', 1: '"one-b"'})]),
            two.write([SampleWrite(key, "{}", {0: '"two"', 1: '"two-b"'})]),
        )
        samples = await stored(one, key, 5)
        assert samples[4] is None and None not in samples[:4]
        winner = results[0][0] if samples[0] == "one" else results[1][0]
        loser = results[1][0] if samples[0] == "one" else results[0][0]
        assert list(winner.appended) == [] and list(loser.appended) == [2, 3]
        assert loser.stored == winner.stored
    finally:
        await one.aclose()
        await two.aclose()


async def test_prefixes_separate_caches_in_one_redis(redis_url: str) -> None:
    """Two prefixes on one Redis never see each other's samples."""
    model = RecordingModel()
    async with OnlineAPI(model, cache=redis_url) as api:
        await api.request(Request("q"))
    async with OnlineAPI(model, cache=redis_url + "-other") as api:
        assert (await api.request(Request("q"))).cached == [False]
        await api.store.delete(await api.store.keys())  # type: ignore[attr-defined]


async def test_admin_operations_on_redis(redis_url: str) -> None:
    """Keys, records, atomic import and delete work on Redis like on disk."""
    store = RedisStore(redis_url)
    try:
        record = KeyRecord("a" * 64, '{"request":1}', {0: '"x"', 1: '"y"'})
        assert await store.import_records([record, KeyRecord("b" * 64, "{}", {})]) == 2
        assert await store.keys() == ["a" * 64, "b" * 64]
        assert await store.records(["a" * 64]) == [record]
        clash = KeyRecord("a" * 64, '{"request":1}', {1: '"changed"'})
        with pytest.raises(ImportConflictError, match="never changed"):
            await store.import_records([KeyRecord("c" * 64, "{}", {0: '"z"'}), clash])
        assert "c" * 64 not in await store.keys(), "a failed import writes nothing"
        assert await store.delete(["a" * 64, "d" * 64]) == 1
        assert await store.keys() == ["b" * 64]
    finally:
        await store.aclose()


def test_bad_redis_url_is_refused() -> None:
    """RedisStore wants a redis:// URL and says so."""
    with pytest.raises(ValueError, match="redis://"):
        RedisStore("http://localhost:6379")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_redis_is_a_clear_error_without_hanging() -> None:
    """With nothing listening, a request fails fast naming the URL, password hidden."""
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    async with OnlineAPI(RecordingModel(), cache=url) as api:
        with pytest.raises(StoreError) as info:
            await asyncio.wait_for(api.request(Request("q")), 10)
    message = str(info.value)
    assert "127.0.0.1" in message and "s3cret" not in message and "***" in message
    assert "reconnects" in message


class RedisServer:
    """A redis-server of our own, with an append-only file so a restart keeps data."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path, redis_url: str) -> Iterator[RedisServer]:
    """A private redis-server we can stop and restart (needs the redis-server binary)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


async def test_pipeline_recovers_when_redis_comes_back(own_redis: RedisServer) -> None:
    """Redis restarting mid-run: a clear error meanwhile, samples kept, then recovery."""
    model = RecordingModel()
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    async with OnlineAPI(model, cache=url, timeout=0) as api:
        before = await api.request(Request("q", n=2, namespace="a"))
        own_redis.stop()
        with pytest.raises(StoreError, match=str(own_redis.port)):
            await asyncio.wait_for(api.request(Request("new", namespace="a")), 15)
        own_redis.start()
        fresh = await asyncio.wait_for(api.request(Request("new", namespace="a")), 15)
        key_q, key_new = api.key_of(Request("q")), api.key_of(Request("new"))
    assert fresh.cached == [False]
    direct = RedisStore(url)
    try:
        assert await stored(direct, key_q, 2) == before.data, "returned samples survived"
        assert await stored(direct, key_new, 1) == fresh.data, "writes work again"
    finally:
        await direct.aclose()
    assert len(model.calls) == 2
