"""Replay mode never calls the model; run manifests record what each request received."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cachesaver import (
    Batch,
    CacheMissError,
    LocalAPI,
    OnlineAPI,
    Request,
    RunManifest,
    read_manifest,
)
from cachesaver.testing import RecordingModel


async def test_replay_mode_serves_hits_and_never_calls_the_model(cache_dir: str) -> None:
    """In replay mode cached requests are served and a miss raises CacheMissError."""
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir) as api:
        paid = await api.request(Request("q", n=2, namespace="n"))
    async with OnlineAPI(model, cache=cache_dir, mode="replay") as api:
        assert (await api.request(Request("q", n=2, namespace="n"))).data == paid.data
        with pytest.raises(CacheMissError) as info:
            await api.request(Request("q", n=3, namespace="n", request_id="r9"))
        message = str(info.value)
        assert "3 of the 3 samples" in message
        assert "request_id='r9'" in message and "namespace='n'" in message
        assert f"key={api.key_of(Request('q'))[:12]}" in message
        with pytest.raises(CacheMissError, match="1 of the 3 samples"):
            await api.request(Request("q", n=3, namespace="other"))
    assert len(model.calls) == 1


async def test_replay_miss_consumes_nothing(cache_dir: str) -> None:
    """A replay miss hands its indices back like any failure."""
    async with OnlineAPI(RecordingModel(), cache=cache_dir) as api:
        await api.request(Request("q", n=1, namespace="a"))
    async with LocalAPI(RecordingModel(), cache=cache_dir, mode="replay") as api:
        with pytest.raises(CacheMissError):
            await api.request(Request("q", n=2, namespace="b"))
        assert (await api.request(Request("q", n=1, namespace="b"))).cached == [True]


def test_bad_mode_is_refused(cache_dir: str) -> None:
    """mode must be 'readwrite' or 'replay'."""
    with pytest.raises(ValueError, match="replay"):
        OnlineAPI(RecordingModel(), cache=cache_dir, mode="read-only")  # type: ignore[arg-type]


async def test_manifest_records_every_answered_request(cache_dir: str, tmp_path: Path) -> None:
    """Each answered request gets a line: key, namespace, request_id and indices."""
    path = tmp_path / "runs" / "exp1.jsonl"
    async with OnlineAPI(RecordingModel(), cache=cache_dir, manifest=path) as api:
        await api.request(Request("q", n=2, namespace="n", request_id="a"))
        await asyncio.gather(
            api.request(Request("q", n=1, namespace="n", request_id="b")),
            api.request(Request("p", n=1, namespace="m", request_id="c")),
        )
        await api.batch_request(Batch([Request("q", n=1, namespace="n", request_id="d")]))
        key_q, key_p = api.key_of(Request("q")), api.key_of(Request("p"))
    entries = sorted(read_manifest(path), key=lambda e: e.request_id or "")
    assert [(e.key, e.namespace, e.request_id, e.indices) for e in entries] == [
        (key_q, "n", "a", (0, 1)),
        (key_q, "n", "b", (2,)),
        (key_p, "m", "c", (0,)),
        (key_q, "n", "d", (3,)),
    ]


async def test_failed_requests_are_not_in_the_manifest(cache_dir: str, tmp_path: Path) -> None:
    """Only answered requests are recorded."""
    model = RecordingModel()
    model.fail_next(1)
    manifest = RunManifest(tmp_path / "m.jsonl", flush_every=1)
    async with OnlineAPI(model, cache=cache_dir, manifest=manifest) as api:
        with pytest.raises(RuntimeError):
            await api.request(Request("q", request_id="failed"))
        await api.request(Request("q", request_id="ok"))
    await manifest.aclose()
    assert [e.request_id for e in read_manifest(tmp_path / "m.jsonl")] == ["ok"]


def test_read_manifest_names_a_bad_line(tmp_path: Path) -> None:
    """A corrupt manifest line is reported with its line number."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"cachesaver_manifest": 1}\n{"key": "k"\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        list(read_manifest(path))
