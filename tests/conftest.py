"""Shared fixtures: a fresh cache directory and a recording simulated model per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cachesaver.testing import RecordingModel, SimulatedLLM

from .helpers import make_indexed_store


@pytest.fixture(params=["log", "indexed"])
def cache_dir(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A cache directory for one test: none yet (a new store, made in the log layout),
    or an empty store in the indexed layout (as made by versions before the log)."""
    directory = str(tmp_path / "cache")
    if request.param == "indexed":
        make_indexed_store(directory)
    return directory


@pytest.fixture
def model() -> RecordingModel:
    """A simulated LLM that records every call it receives."""
    return RecordingModel(SimulatedLLM(seed=1))


REDIS_URL = os.environ.get("CACHESAVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def _redis_problem(url: str) -> str | None:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL with a prefix unique to this test; its keys are deleted afterwards.

    Skips when Redis is unreachable, unless CACHESAVER_REQUIRE_REDIS=1 (as on CI), where a
    missing Redis is a failure.
    """
    problem = _redis_problem(REDIS_URL)
    if problem is not None:
        message = f"Redis at {REDIS_URL} is not reachable ({problem})"
        if os.environ.get("CACHESAVER_REQUIRE_REDIS") == "1":
            pytest.fail(message + " and CACHESAVER_REQUIRE_REDIS=1")
        pytest.skip(message + "; set CACHESAVER_TEST_REDIS_URL or start redis-server")
    prefix = f"cstest-{uuid.uuid4().hex[:10]}"
    yield f"{REDIS_URL}?prefix={prefix}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        names = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if names:
            client.delete(*names)
    finally:
        client.close()


@pytest.fixture(params=["disk", "redis"])
def store_spec(request: pytest.FixtureRequest, cache_dir: str) -> str:
    """A cache spec (a directory or a Redis URL) for tests that hold for both stores."""
    if request.param == "disk":
        return cache_dir
    url: str = request.getfixturevalue("redis_url")
    return url
