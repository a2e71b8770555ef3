"""The command line and the provider models (real providers with a fake client, no network)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachesaver.testing.server import FakeLLMServer
from pipelines.accounting import Usage
from pipelines.cli import main
from pipelines.prompts import GameRequest
from pipelines.providers import DropInProvider, ProviderError, make_model
from pipelines.puzzles import load_puzzles
from pipelines.report import without_timing
from pipelines.runner import RunSettings, run_scenario
from pipelines.scenarios import build

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
    monkeypatch.setenv("TOGETHER_API_KEY", "test-key")
    with FakeLLMServer(seed=1) as running:
        yield running


def _real(server: FakeLLMServer, cache: Path, *extra: str, provider: str = "openai") -> list[str]:
    url = server.openai_base_url if provider == "openai" else server.url
    return [
        "benchmark",
        "--provider",
        provider,
        "--model",
        "gpt-4.1-nano",
        "--base-url",
        url,
        "--cache",
        str(cache),
        "--puzzles",
        "1",
        "--no-progress",
        "--timeout",
        "0",
        *extra,
    ]


@pytest.mark.parametrize("provider", ["openai", "together"])
def test_cli_real_provider_runs_through_the_dropin_and_replays_free(
    server: FakeLLMServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: str
) -> None:
    """With --yes: estimate, run over HTTP via the drop-in; a second run sends nothing."""
    args = _real(server, tmp_path / "c", "--yes", provider=provider)
    assert main(args) == 0
    first = capsys.readouterr()
    assert f"estimated spending on {provider} gpt-4.1-nano: $" in first.err
    assert "saving in cost: paper ~2x" in first.out and "(drop-in client)" in first.out
    sent = len(server.received)
    assert sent and all(r.path.endswith("/chat/completions") for r in server.received)
    assert {r.body["model"] for r in server.received} == {"gpt-4.1-nano"}
    assert (tmp_path / "c" / "cachesaver").is_dir()
    assert (tmp_path / "c" / "baseline" / "03").is_dir()
    assert main(args) == 0
    second = capsys.readouterr().out
    assert len(server.received) == sent
    assert "free, exact replay" in second and "both arms: 0 model calls" in second
    assert without_timing(second) == without_timing(first.out)


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


async def test_dropin_run_reports_full_tokens_calls_and_positions(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    """A drop-in run's samples carry their call's full prompt, their call id and index."""
    provider = make_model("openai", "gpt-4.1-nano", base_url=server.openai_base_url)
    assert isinstance(provider, DropInProvider)
    ask = GameRequest("hi there", kind="answer", n=3, temperature=0.7, namespace="bench")
    async with provider.open_run(tmp_path / "c", "bench", 10, 0.0) as run:
        first = await run.request(ask)
        again = await run.request(ask)  # the same request in a run draws fresh samples
        stats = run.stats()
    prompts = {s["prompt_tokens"] for s in first.data + again.data}
    assert len(prompts) == 1 and prompts.pop() > 0
    assert [s["position"] for s in first.data + again.data] == [0, 1, 2, 3, 4, 5]
    calls = [{s["call"] for s in response.data} for response in (first, again)]
    assert all(len(ids) == 1 for ids in calls) and calls[0] != calls[1]
    assert first.cached == [False] * 3 and first.duplicated == [False, True, True]
    assert stats.model_calls == 2
    sent = len(server.received)
    async with provider.open_run(tmp_path / "c", "bench", 10, 0.0) as run:
        replay = await run.request(ask)  # a new run starts the sample list again
    assert len(server.received) == sent
    assert replay.cached == [True] * 3
    assert replay.data == first.data
    for received in server.received:
        assert received.body["messages"] == [{"role": "user", "content": "hi there"}]
        assert (received.body["model"], received.body["n"]) == ("gpt-4.1-nano", 3)
        assert received.body["temperature"] == 0.7


async def test_dropin_accounting_matches_what_the_server_billed(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    """Through the drop-in: "with" equals the flags on a fresh cache; both arms sum to the wire."""
    scenario = build("benchmark")
    settings = RunSettings(batch_size=300, timeout=0.0)
    url = server.openai_base_url
    result = await run_scenario(
        scenario,
        load_puzzles(2),
        lambda: DropInProvider("openai", "gpt-4.1-nano", "test-key", url),
        tmp_path / "c",
        settings,
    )
    for config in result.results:
        assert config.with_ == config.paid_now  # stamps and flags agree on a fresh cache
        assert config.with_.calls == config.cached.stats.model_calls
    arms = [r.cached for r in result.results] + [r.baseline for r in result.results if r.baseline]
    paid = Usage.total(arm.ledger.paid for arm in arms)
    billed = server.stats()
    assert paid.calls == billed["chat_requests"] > 0
    assert (paid.prompt_tokens, paid.completion_tokens) == (
        billed["prompt_tokens"],
        billed["completion_tokens"],
    )
    # the paper's baseline pays every sample's full prompt: more than its calls did
    baseline = Usage.total(r.baseline.ledger.paid for r in result.results if r.baseline)
    assert result.without.prompt_tokens > baseline.prompt_tokens
    assert result.without.completion_tokens == baseline.completion_tokens


async def test_make_model_validates_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown providers, missing model ids and missing keys raise ProviderError."""
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="unknown provider"):
        make_model("nope", "m")
    with pytest.raises(ProviderError, match="TOGETHER_API_KEY"):
        make_model("together", "m")
    monkeypatch.setenv("TOGETHER_API_KEY", "test-key")
    model = make_model("together", "meta-llama/x")
    assert isinstance(model, DropInProvider)
    assert (model.provider, model.model) == ("together", "meta-llama/x")
