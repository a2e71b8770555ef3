"""The command line and the provider models (real providers with a fake client, no network)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cachesaver.testing.server import FakeLLMServer
from pipelines.cli import main
from pipelines.prompts import GameRequest
from pipelines.providers import ChatModel, ProviderError, make_model, split_tokens
from pipelines.report import without_timing

FAST = ["--puzzles", "2", "--no-progress", "--time-scale", "0"]


def _line(text: str, prefix: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(prefix))


def test_cli_sweep_runs_offline_prints_the_papers_saving_and_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sweep makes its cache, prints the paper's saving beside ours, then replays free."""
    cache = tmp_path / "fresh" / "nested"
    assert main(["sweep", "--cache", str(cache), *FAST]) == 0
    first = capsys.readouterr().out
    assert cache.is_dir()
    assert re.fullmatch(
        r"saving in cost: paper ~6x, ours \d+\.\d\dx", _line(first, "saving in cost")
    )
    assert "ToT-BFS w=5 s=4 e=3" in first and "ToT-BFS w=1 s=4 e=2" in first
    assert "ranks 901-902" in first
    assert main(["sweep", "--cache", str(cache), *FAST]) == 0
    second = capsys.readouterr().out
    assert "free, exact replay" in second and "both arms: 0 model calls" in second
    assert without_timing(first) == without_timing(second)


@pytest.mark.timeout(180)  # about 6 s of CPU; generous for a loaded machine
def test_cli_all_prints_each_papers_saving_beside_ours_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``all``: the paper's three scenarios and a summary; --plot; a replay prints the same."""
    plot = tmp_path / "all.png"
    args = ["all", "--cache", str(tmp_path / "c"), "--plot", str(plot), *FAST[2:], "--puzzles", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for name, paper in (("sweep", "~6x"), ("ablation", "~2.5x"), ("benchmark", "~2x")):
        assert re.search(rf"^{name}\s+{re.escape(paper)}\s+(\d+\.\d\dx|inf)$", out, re.M), name
        assert (tmp_path / "c" / name / "cachesaver").is_dir()
    assert "FoA without backtracking" in out and "GoT k=3 s=4 e=3 b=2" in out
    assert "time without" in out and "requests/s with" in out and "speed-up" in out
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert main(args) == 0
    again = capsys.readouterr().out
    assert again.count("free, exact replay") == 3
    assert without_timing(again) == without_timing(out)


def test_cli_plots_the_extra_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--plot works for the extra scenario too (io and self-consistency beside the searches)."""
    plot = tmp_path / "methods.png"
    args = [
        "methods",
        "--cache",
        str(tmp_path / "m"),
        "--plot",
        str(plot),
        *FAST[2:],
        "--puzzles",
        "1",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "self-consistency k=10" in out and "extra scenario" in out
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_cli_writes_no_escape_codes_when_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a terminal there are no progress bars: no escape codes or carriage returns."""
    args = ["benchmark", "--cache", str(tmp_path / "b"), "--puzzles", "1", "--time-scale", "0"]
    assert main(args) == 0
    captured = capsys.readouterr()
    for stream in (captured.out, captured.err):
        assert "\x1b" not in stream and "\r" not in stream


def test_cli_plot_without_matplotlib_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without matplotlib, --plot stops before running and says how to install it."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    cache = tmp_path / "never"
    assert main(["ablation", "--cache", str(cache), "--plot", "x.png", *FAST]) == 2
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
    assert main(["sweep", "--provider", "openai", "--model", "gpt-4.1-nano"]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown scenarios, bad numbers and ranks past the data are refused with an error."""
    for args in (["nope"], ["sweep", "--puzzles", "0"], ["sweep", "--time-scale", "-1"]):
        with pytest.raises(SystemExit):
            main(args)
    assert "error" in capsys.readouterr().err
    assert main(["sweep", "--puzzles", "500"]) == 2
    assert "ranks 1-1362" in capsys.readouterr().err


# -- a real provider, with the local OpenAI-compatible server standing in -------------------


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with FakeLLMServer(seed=1) as running:
        yield running


def _real(server: FakeLLMServer, cache: Path, *extra: str) -> list[str]:
    return [
        "benchmark",
        "--provider",
        "openai",
        "--model",
        "gpt-4.1-nano",
        "--base-url",
        server.openai_base_url,
        "--cache",
        str(cache),
        "--puzzles",
        "1",
        "--no-progress",
        "--timeout",
        "0",
        *extra,
    ]


def test_cli_real_provider_estimates_and_runs_with_yes(
    server: FakeLLMServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --yes the estimate is printed and the scenario runs through the real SDK."""
    assert main(_real(server, tmp_path / "c", "--yes")) == 0
    captured = capsys.readouterr()
    assert "estimated spending on openai gpt-4.1-nano: $" in captured.err
    assert "saving in cost: paper ~2x" in captured.out
    assert server.received and all(r.path.endswith("/chat/completions") for r in server.received)
    assert {r.body["model"] for r in server.received} == {"gpt-4.1-nano"}


def test_cli_real_provider_spends_nothing_unconfirmed(
    server: FakeLLMServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without a terminal and --yes, or answering no, nothing is sent to the provider."""
    assert main(_real(server, tmp_path / "a")) == 3
    assert "pass --yes" in capsys.readouterr().err
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    assert main(_real(server, tmp_path / "b")) == 3
    assert server.received == []
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert main(_real(server, tmp_path / "c")) == 0
    assert server.received


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
    assert len({s["call"] for s in response.data}) == 1
    assert [s["position"] for s in response.data] == [0, 1, 2]
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
