"""examples/providers.py runs offline: every provider answers, then replays from the cache."""

from __future__ import annotations

import runpy
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning")  # litellm's pydantic types
def test_every_provider_answers_and_replays_with_zero_calls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each provider line says paid then cached, and the example's own checks pass."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # litellm's import-time notices
        runpy.run_path(str(ROOT / "examples" / "providers.py"), run_name="__main__")
    out = capsys.readouterr().out
    for name in ("OpenAI-compatible", "Anthropic", "Gemini"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert "paid" in line and "cached" in line and "(1 API call)" in line
    assert "zero API calls" in out
