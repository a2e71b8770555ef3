"""The command line and the provider models (real providers with a fake client, no network)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipelines.cli import main
from pipelines.prompts import GameRequest
from pipelines.providers import ChatModel, ProviderError, make_model, split_tokens

SMALL = ["--puzzles", "2", "--no-progress", "--width", "2", "--evaluations", "2"]


def _savings(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("savings"))


def test_cli_runs_a_scenario_and_creates_its_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The benchmark command creates a missing cache dir, prints the table, then replays free."""
    cache = tmp_path / "fresh" / "nested"
    assert main(["benchmark", "--cache", str(cache), "--sc-samples", "3", *SMALL]) == 0
    first = capsys.readouterr().out
    assert cache.is_dir()
    assert "without cachesaver" in first and "with cachesaver" in first
    assert re.search(r"\d+\.\d\dx$", _savings(first))
    assert main(["benchmark", "--cache", str(cache), "--sc-samples", "3", *SMALL]) == 0
    second = capsys.readouterr().out
    assert "free, exact replay" in second
    assert _savings(second).endswith("inf")


def test_cli_sweep_grid_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The sweep runs the grid it is given, and --plot writes a PNG."""
    plot = tmp_path / "costs.png"
    grid = ["--widths", "1,2", "--depths", "3", "--eval-grid", "1"]
    args = ["sweep", "--cache", str(tmp_path / "c"), "--plot", str(plot), *grid, *SMALL[:3]]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tot w=1 d=3 e=1" in out and "tot w=2 d=3 e=1" in out
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_cli_plot_without_matplotlib_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without matplotlib, --plot stops before running and says how to install it."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    cache = tmp_path / "never"
    assert main(["ablation", "--cache", str(cache), "--plot", "x.png", *SMALL]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "pip install" in err
    assert not cache.exists()


def test_cli_real_provider_needs_model_and_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--provider openai without --model or without OPENAI_API_KEY is a clear error."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["sweep", "--provider", "openai", "--no-progress"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["sweep", "--provider", "openai", "--model", "gpt-4o-mini"]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """Malformed grids, unknown methods and too many puzzles are refused with an error."""
    for args in (["sweep", "--widths", "1,x"], ["benchmark", "--methods", "io,magic"]):
        with pytest.raises(SystemExit):
            main(args)
    assert "error" in capsys.readouterr().err
    assert main(["sweep", "--puzzles", "5000"]) == 2
    assert "only 1362 solvable puzzles" in capsys.readouterr().err


# -- providers ------------------------------------------------------------------------------


class FakeCompletions:
    """Stands in for ``client.chat.completions``: records calls, returns canned choices."""

    def __init__(self, max_choices: int) -> None:
        self.max_choices = max_choices
        self.calls: list[dict[str, Any]] = []

    async def create(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        count = min(kwargs["n"], self.max_choices)
        choices = [
            SimpleNamespace(message=SimpleNamespace(content=f"answer {i} " * (i + 1)))
            for i in range(count)
        ]
        usage = SimpleNamespace(prompt_tokens=50, completion_tokens=7 * count)
        return SimpleNamespace(choices=choices, usage=usage)


class FakeClient:
    def __init__(self, max_choices: int = 10) -> None:
        self.chat = SimpleNamespace(completions=FakeCompletions(max_choices))
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def test_chat_model_returns_n_samples_with_usage() -> None:
    """ChatModel sends one call with n, and splits the reported usage over the samples."""
    client = FakeClient()
    model = ChatModel(client, "m-1", "openai", "https://example.invalid/v1")
    response = await model.request(GameRequest("hi", kind="answer", n=3, max_tokens=60))
    assert len(response.data) == 3
    assert [s["prompt_tokens"] for s in response.data] == [50, 50, 50]
    assert sum(s["completion_tokens"] for s in response.data) == 21
    (call,) = client.chat.completions.calls
    assert call["n"] == 3 and call["model"] == "m-1"
    assert call["temperature"] == 0.7 and call["max_tokens"] == 60
    assert call["messages"] == [{"role": "user", "content": "hi"}]
    assert model.identity == {
        "provider": "openai",
        "model": "m-1",
        "endpoint": "https://example.invalid/v1",
    }
    await model.aclose()
    assert client.closed


async def test_chat_model_asks_again_when_given_fewer_choices() -> None:
    """A provider that caps n is asked again until exactly n samples are collected."""
    client = FakeClient(max_choices=2)
    model = ChatModel(client, "m", "together", "https://example.invalid")
    response = await model.request(GameRequest("hi", n=5))
    assert len(response.data) == 5
    assert [c["n"] for c in client.chat.completions.calls] == [5, 3, 1]


def test_split_tokens_adds_up() -> None:
    """The completion tokens of a call are split in integers that add up to the total."""
    texts = ["a", "a b c", "", "a b c d e f g"]
    for total in (0, 1, 7, 100, 1001):
        parts = split_tokens(total, texts)
        assert sum(parts) == total and all(p >= 0 for p in parts)
    assert split_tokens(None, ["a b", "c"]) == [2, 1]


async def test_make_model_validates_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown providers, missing model ids and missing keys raise ProviderError."""
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="unknown provider"):
        make_model("nope", "m")
    with pytest.raises(ProviderError, match="TOGETHER_API_KEY"):
        make_model("together", "m")
    monkeypatch.setenv("TOGETHER_API_KEY", "test-key")
    model = make_model("together", "meta-llama/x")
    assert isinstance(model, ChatModel)
    assert model.identity["provider"] == "together"
    await model.aclose()
