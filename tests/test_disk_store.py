"""SEMANTICS "Storage" for the embedded store: format, durability, many processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import diskcache
import pytest

from cachesaver import DiskStore, ImportConflictError, OnlineAPI, Request, StoreError
from cachesaver.stores.base import KeyRecord, SampleWrite
from cachesaver.testing import RecordingModel

from .helpers import stored

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=True,
    )


async def test_samples_and_content_are_plain_json_in_diskcache(cache_dir: str) -> None:
    """diskcache itself can read every entry: JSON text samples and the request content."""
    async with OnlineAPI(RecordingModel(), cache=cache_dir) as api:
        response = await api.request(Request({"q": [1, 2]}, n=2))
        key = api.key_of(Request({"q": [1, 2]}))
    with diskcache.Cache(cache_dir) as cache:
        assert [json.loads(cache[f"cs:{key}:{i}"]) for i in range(2)] == response.data
        content = json.loads(cache[f"cs:{key}:request"])
        assert content["request"] == {"prompt": {"q": [1, 2]}}
        assert "identity" in content
        assert all(isinstance(cache[k], str) for k in cache.iterkeys())


async def test_store_lists_every_key_it_holds(cache_dir: str) -> None:
    """The store can enumerate its keys (for tools)."""
    async with OnlineAPI(RecordingModel(), cache=cache_dir) as api:
        await api.request(Request("a"))
        await api.request(Request("b"))
        expected = {api.key_of(Request("a")), api.key_of(Request("b"))}
        assert set(api.store.iter_keys()) == expected  # type: ignore[attr-defined]


async def test_first_writer_wins_and_the_loser_is_appended(cache_dir: str) -> None:
    """Two stores writing index 0 of one key: the first stays, the second is appended."""
    one, two = DiskStore(cache_dir), DiskStore(cache_dir)
    try:
        (first,) = await one.write([SampleWrite("k" * 64, "{}", {0: '"one"'})])
        (second,) = await two.write([SampleWrite("k" * 64, "{}", {0: '"two"', 1: '"three"'})])
        assert first.stored == {0: '"one"'} and list(first.appended) == []
        assert second.stored == {0: '"one"', 1: '"three"'}
        assert list(second.appended) == [2]
        assert await stored(one, "k" * 64, 4) == ["one", "three", "two", None]
    finally:
        await one.aclose()
        await two.aclose()


async def test_user_cache_gets_eviction_switched_off(tmp_path: Path) -> None:
    """diskcache's default size limit would drop samples: the store turns eviction off."""
    cache = diskcache.Cache(str(tmp_path / "c"))
    assert cache.eviction_policy == "least-recently-stored"
    async with OnlineAPI(RecordingModel(), cache=cache) as api:
        await api.request(Request("q"))
    assert cache.eviction_policy == "none"
    cache.close()


def mapped(directory: Path) -> list[str]:
    """The memory maps of this process onto the database file of ``directory``."""
    with open("/proc/self/maps") as maps:
        return [line for line in maps if line.rstrip().endswith(f"{directory}/cache.db")]


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux's /proc")
async def test_the_store_maps_none_of_its_file_into_memory(tmp_path: Path) -> None:
    """Reads and writes go through SQLite's bounded page cache: the store maps no page of
    the file (mapped pages would stay in the process's memory), for a Cache passed in too."""
    for directory in (tmp_path / "own", tmp_path / "passed"):
        cache = str(directory) if directory.name == "own" else diskcache.Cache(str(directory))
        before = mapped(directory)  # a Cache passed in maps the file on its own connection
        async with OnlineAPI(RecordingModel(), cache=cache, timeout=0) as api:
            await asyncio.gather(*(api.request(Request(f"q{i}")) for i in range(200)))
        async with OnlineAPI(RecordingModel(), cache=cache, timeout=0) as api:
            again = await asyncio.gather(*(api.request(Request(f"q{i}")) for i in range(200)))
            assert all(r.cached == [True] for r in again)
            assert mapped(directory) == before
        if isinstance(cache, diskcache.Cache):
            cache.close()


async def test_unwritable_path_gives_a_clear_store_error(tmp_path: Path) -> None:
    """A cache path that cannot be a directory fails with a StoreError naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    async with OnlineAPI(RecordingModel(), cache=str(blocker / "sub")) as api:
        with pytest.raises(StoreError, match="cannot open the disk cache"):
            await api.request(Request("q"))


def test_a_returned_sample_survives_killing_the_process(cache_dir: str) -> None:
    """A sample returned to a caller is durable: os._exit right after does not lose it."""
    out = run_python(
        """
        import asyncio, json, os, sys
        from cachesaver import OnlineAPI, Request
        from cachesaver.testing import SimulatedLLM
        async def main():
            api = OnlineAPI(SimulatedLLM(seed=3), cache=sys.argv[1], timeout=0)
            r = await api.request(Request("durable?", n=2))
            print(json.dumps(r.data), flush=True)
            os._exit(0)  # no close, no cleanup
        asyncio.run(main())
        """,
        cache_dir,
    )
    data = json.loads(out.stdout)
    replay = run_python(
        """
        import asyncio, json, sys
        from cachesaver import OnlineAPI, Request
        from cachesaver.testing import RecordingModel, SimulatedLLM
        async def main():
            model = RecordingModel(SimulatedLLM(seed=3))
            async with OnlineAPI(model, cache=sys.argv[1]) as api:
                r = await api.request(Request("durable?", n=2))
            print(json.dumps([r.data, len(model.calls)]))
        asyncio.run(main())
        """,
        cache_dir,
    )
    assert json.loads(replay.stdout) == [data, 0]


WORKER = """
import asyncio, json, os, sys, time
from cachesaver import OnlineAPI, Request, Response
from cachesaver.testing import SimulatedLLM

class Tracking(SimulatedLLM):
    # Each worker samples differently but all are one model (one identity).
    generated = []
    identity = {"model": "shared"}
    async def request(self, request):
        # A barrier per prompt across the processes: no worker generates a prompt until
        # all four are generating it (none can have read it from another, since nothing
        # of it is written before), so they really race for the same indices.
        here = os.path.join(BARRIER, request.prompt)
        os.makedirs(here, exist_ok=True)
        open(os.path.join(here, str(WORKER_ID)), "w").close()
        deadline = time.monotonic() + 30
        while len(os.listdir(here)) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        response = await super().request(request)
        Tracking.generated.append([request.prompt, response.data])
        return response

async def main(cache, worker):
    async with OnlineAPI(Tracking(seed=worker), cache=cache, batch_size=4, timeout=0) as api:
        requests = [Request(f"q{i % 5}", n=1 + i % 3, namespace=f"w{worker}") for i in range(30)]
        responses = await asyncio.gather(*(api.request(r) for r in requests))
    out = [[r.prompt, r.n, resp.data, resp.cached] for r, resp in zip(requests, responses)]
    print(json.dumps({"responses": out, "generated": Tracking.generated}))

BARRIER, WORKER_ID = sys.argv[3], int(sys.argv[2])
asyncio.run(main(sys.argv[1], WORKER_ID))
"""


def test_processes_filling_the_same_keys_lose_nothing(cache_dir: str, tmp_path: Path) -> None:
    """Four processes racing on the same keys lose no sample and agree on one order."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, cache_dir, str(w), str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in range(4)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))

    class Shared(RecordingModel):
        identity: ClassVar[dict[str, str]] = {"model": "shared"}

    asyncio.run(check_race(cache_dir, results, Shared()))


async def check_race(cache_dir: str, results: list[Any], model: RecordingModel) -> None:
    store = DiskStore(cache_dir)
    api = OnlineAPI(model, cache=cache_dir)
    try:
        for prompt in [f"q{i}" for i in range(5)]:
            key = api.key_of(Request(prompt))
            generated = [
                s for r in results for p, data in r["generated"] if p == prompt for s in data
            ]
            samples = await stored(store, key, len(generated) + 1)
            assert samples[-1] is None and None not in samples[:-1], "contiguous list"
            assert sorted(samples[:-1]) == sorted(generated), "no sample lost or invented"
            used = []
            for r in results:
                position = 0
                for p, n, data, _cached in r["responses"]:
                    if p == prompt:
                        assert data == samples[position : position + n]
                        position += n
                used.append(position)
            assert len(generated) > max(used), "the workers really raced for the same indices"
    finally:
        await store.aclose()
        await api.aclose()


async def test_admin_operations_list_read_import_and_delete(cache_dir: str, tmp_path: Path) -> None:
    """Tools can list keys, read whole records, import atomically and delete keys."""
    async with OnlineAPI(RecordingModel(), cache=cache_dir) as api:
        await api.request(Request("a", n=3))
        await api.request(Request("b", n=1))
        key_a = api.key_of(Request("a"))
    source = DiskStore(cache_dir)
    target = DiskStore(str(tmp_path / "copy"))
    try:
        keys = await source.keys()
        records = await source.records(keys)
        assert {r.key for r in records} == set(keys) and len(keys) == 2
        (rec_a,) = [r for r in records if r.key == key_a]
        assert sorted(rec_a.samples) == [0, 1, 2]
        assert await target.import_records(records) == 4
        assert await target.import_records(records) == 0, "re-import is a no-op"
        assert await target.records(keys) == await source.records(keys)

        clash = KeyRecord(key_a, rec_a.content, {0: '"different"', 7: '"new"'})
        with pytest.raises(ImportConflictError, match="never changed"):
            await target.import_records([KeyRecord("f" * 64, "{}", {0: '"x"'}), clash])
        assert set(await target.keys()) == set(keys), "a failed import writes nothing"

        assert await target.delete([key_a, "0" * 64]) == 1
        assert await target.keys() == [k for k in keys if k != key_a]
    finally:
        await source.aclose()
        await target.aclose()
