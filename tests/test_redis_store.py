"""The Redis store, against a real Redis (never a fake)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cachesaver import DurabilityWarning, ImportConflictError, OnlineAPI, Request, StoreError
from cachesaver.stores.base import KeyRecord, SampleRead, SampleWrite
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


async def test_batched_reads_return_exactly_what_is_stored(redis_url: str) -> None:
    """A read of many keys and many indices (present and missing) returns each stored text."""
    store = RedisStore(redis_url)
    try:
        keys = [f"{k:064x}" for k in range(2_300)]  # more keys than one server call reads
        wide = keys[0]  # more indices than one HMGET inside the call takes
        writes = [SampleWrite(key, "{}", {0: f'"{key[-4:]} #0"'}) for key in keys[1:]]
        writes.append(SampleWrite(wide, "{}", {i: f'"wide #{i}"' for i in range(0, 700, 2)}))
        await store.write(writes)
        reads = [SampleRead(wide, list(range(700)))]
        reads += [SampleRead(key, [0, 1] if k % 3 else []) for k, key in enumerate(keys[1:])]
        reads += [SampleRead(wide, list(range(700)))] * 30  # more indices than one call
        got = await store.read(reads)
        many = {i: f'"wide #{i}"' for i in range(0, 700, 2)}
        assert got[0] == many and got[-30:] == [many] * 30
        for k, (key, found) in enumerate(zip(keys[1:], got[1:-30], strict=True)):
            assert found == ({0: f'"{key[-4:]} #0"'} if k % 3 else {}), key
        assert await store.read([SampleRead(keys[5], []), SampleRead("f" * 64, [0])]) == [{}, {}]
    finally:
        await store.aclose()


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

    def __init__(self, directory: Path, *extra: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.extra = list(extra)
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
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Ready means answering PING: a restarted server accepts connections while it is
        # still loading its append-only file, and answers LOADING until it is done.
        client = redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                time.sleep(0.02)
        finally:
            client.close()
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


@pytest.fixture
def evicting_redis(tmp_path: Path, redis_url: str) -> Iterator[RedisServer]:
    """A private redis-server that may evict keys and has no AOF (never the shared one)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found")
    server = RedisServer(tmp_path, "--maxmemory-policy", "allkeys-random", "--appendonly", "no")
    server.start()
    yield server
    server.stop()


async def test_a_redis_that_may_evict_is_refused_unless_allowed(
    evicting_redis: RedisServer,
) -> None:
    """maxmemory-policy allkeys-random is refused with how to fix it; opting in works."""
    url = f"redis://127.0.0.1:{evicting_redis.port}/0"
    model = RecordingModel()
    async with OnlineAPI(model, cache=url) as api:
        with pytest.raises(StoreError, match="maxmemory-policy allkeys-random") as info:
            await api.request(Request("q"))
    assert "noeviction" in str(info.value) and "allow_eviction" in str(info.value)
    assert model.calls == [], "nothing is generated into a store that may drop it"
    for store in (RedisStore(url, allow_eviction=True), RedisStore(url + "?allow_eviction=1")):
        with pytest.warns(DurabilityWarning, match="without AOF"):
            async with OnlineAPI(model, cache=store) as api:
                assert (await api.request(Request("q"))).data
        await store.aclose()
    client = redis.Redis(port=evicting_redis.port)
    try:
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-random"}
    finally:
        client.close()


async def test_a_redis_without_aof_warns_and_with_aof_does_not(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """Without AOF a restart loses returned samples: a DurabilityWarning says so, once."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = RedisStore(f"redis://127.0.0.1:{own_redis.port}/0")  # AOF on, noeviction
        try:
            await store.keys()
        finally:
            await store.aclose()
    server = RedisServer(tmp_path / "no-aof", "--appendonly", "no")
    server.directory.mkdir()
    server.start()
    try:
        store = RedisStore(f"redis://127.0.0.1:{server.port}/0")
        with pytest.warns(DurabilityWarning, match="restart loses") as caught:
            await store.keys()
            await store.keys()
        assert len(caught) == 1
        await store.aclose()
    finally:
        server.stop()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/l1", "redis://h/0x1", "redis://h/0?db=a"])
def test_a_database_that_is_not_a_number_is_an_error(url: str) -> None:
    """redis://host/l1 is refused, not silently database 0."""
    with pytest.raises(ValueError, match="not a database number"):
        RedisStore(url)
    with pytest.raises(ValueError, match="not a database number"):
        OnlineAPI(RecordingModel(), cache=url)


def test_redis_store_is_exported_at_the_top_level() -> None:
    """`from cachesaver import RedisStore` works, as the README shows."""
    import cachesaver

    assert cachesaver.RedisStore is RedisStore and "RedisStore" in cachesaver.__all__


def test_the_command_reports_a_redis_without_aof_as_a_warning(tmp_path: Path) -> None:
    """`cachesaver stats` on a Redis without AOF says so on stderr, in its own words."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not found")
    server = RedisServer(tmp_path, "--appendonly", "no")
    server.start()
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        done = subprocess.run(
            [sys.executable, "-m", "cachesaver", "stats", f"redis://127.0.0.1:{server.port}/0"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"cachesaver: warning: Redis at redis://127.0.0.1:{server.port}")
    assert "runs without AOF" in done.stderr and "Traceback" not in done.stderr
