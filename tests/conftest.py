"""Shared fixtures: a fresh cache directory and a recording simulated model per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from cachesaver.testing import RecordingModel, SimulatedLLM


@pytest.fixture
def cache_dir(tmp_path: Path) -> str:
    """A fresh, empty cache directory for one test."""
    return str(tmp_path / "cache")


@pytest.fixture
def model() -> RecordingModel:
    """A simulated LLM that records every call it receives."""
    return RecordingModel(SimulatedLLM(seed=1))
