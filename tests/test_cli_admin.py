"""Looking after a cache through the ``cachesaver`` console script, on disk and on Redis:
ls, delete, prune by age and model, explain, merge, export/import through pipes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import redis

from cachesaver import OnlineAPI, Request, Response, read_manifest
from cachesaver.stores import is_redis_url, open_admin_store
from cachesaver.stores.redis import RedisStore

from .conftest import REDIS_URL
from .test_cli import OPENAI, OPENAI_BIG, SIMULATED, dump, fill, make_record

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(sys.executable).parent / "cachesaver")


def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run the installed console script; return its exit code, stdout and stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([SCRIPT, *args], input=stdin, capture_output=True, env=env, timeout=60)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def run_json(*args: str) -> tuple[int, Any]:
    code, out, err = run(*args, "--json")
    assert out, err
    return code, json.loads(out)


def age_key(spec: str, key: str, seconds: float) -> None:
    """Make ``key`` look as if it last received a sample ``seconds`` ago."""
    when = time.time() - seconds
    if is_redis_url(spec):
        store = RedisStore(spec)
        client = redis.Redis.from_url(store.url)
        try:
            client.hset(f"{store.prefix}:t", key, when)
        finally:
            client.close()
        return
    import sqlite3

    con = sqlite3.connect(str(Path(spec) / "cache.db"))
    try:
        con.execute(
            "UPDATE Cache SET store_time = ? WHERE key >= ? AND key < ?",
            (when, f"cs:{key}:", f"cs:{key};"),
        )
        con.commit()
    finally:
        con.close()


CAPITAL = make_record("What is the capital of France?", ["Paris", "Paris."])
COLOR = make_record("Name a color", ["red"], identity=OPENAI_BIG)
CHAT = make_record(
    [{"role": "user", "content": "Tell me about the capital of Peru"}], ["Lima"], SIMULATED
)


@pytest.fixture
def filled(store_spec: str) -> str:
    """A store (disk or Redis) with three keys of three identities."""
    fill(store_spec, [CAPITAL, COLOR, CHAT])
    return store_spec


def test_console_script_help_has_an_example_per_command() -> None:
    """`cachesaver --help` and every command's --help show an example."""
    code, out, _ = run("--help")
    assert code == 0 and "examples:" in out
    for command in (
        "stats",
        "ls",
        "show",
        "explain",
        "verify",
        "export",
        "import",
        "copy",
        "delete",
        "prune",
    ):
        code, out, _ = run(command, "--help")
        assert code == 0 and "example:\n  cachesaver " + command in out, command


def test_ls_finds_keys_by_prompt_and_model_newest_first(filled: str) -> None:
    """ls lists keys newest first with prompt, model and samples; --grep/--model filter; pages."""
    age_key(filled, COLOR.key, 3 * 86400)
    age_key(filled, CAPITAL.key, 86400)
    code, data = run_json("ls", filled)
    assert code == 0 and data["total"] == 3
    assert [k["key"] for k in data["keys"]] == [CHAT.key, CAPITAL.key, COLOR.key]
    assert data["keys"][1]["prompt"] == "What is the capital of France?"
    assert data["keys"][1]["samples"] == 2 and data["keys"][1]["age_seconds"] >= 86400
    code, data = run_json("ls", filled, "--grep", "CAPITAL")
    assert [k["key"] for k in data["keys"]] == [CHAT.key, CAPITAL.key]
    code, data = run_json("ls", filled, "--grep", "capital", "--model", OPENAI["model"])
    assert [k["key"] for k in data["keys"]] == [CAPITAL.key]
    code, data = run_json("ls", filled, "--limit", "1", "--offset", "1")
    assert [k["key"] for k in data["keys"]] == [CAPITAL.key] and data["total"] == 3
    code, out, _ = run("ls", filled, "--limit", "2")
    assert code == 0 and "Tell me about the capital of Peru" in out and "1d" in out
    assert "next page: --offset 2" in out
    assert run("ls", filled, "--grep", "no such words")[0] == 5
    assert run("ls", filled, "--limit", "-1")[0] == 2 and run("ls", filled, "--offset", "x")[0] == 2


def test_delete_by_prefix_dry_run_then_needs_yes_without_a_terminal(filled: str) -> None:
    """delete lists with --dry-run, refuses without --yes in a pipe, then deletes the prefix."""
    prefix = CAPITAL.key[:10]
    code, data = run_json("delete", filled, prefix, "--dry-run")
    assert (code, data["matched"], data["deleted"]) == (0, [CAPITAL.key], 0)
    code, _, err = run("delete", filled, prefix)
    assert code == 2 and "--yes" in err
    assert len(dump(filled)) == 3
    code, data = run_json("delete", filled, prefix, "--yes")
    assert (code, data["deleted"]) == (0, 1)
    assert sorted(dump(filled)) == sorted([COLOR.key, CHAT.key])
    assert run("delete", filled, "ffffffffff", "--yes")[0] == 5
    assert run("delete", filled, "not-hex", "--yes")[0] == 2


def test_prune_by_age_and_model(filled: str) -> None:
    """prune --older-than (with --model) deletes only old keys of that model; --dry-run first."""
    age_key(filled, CAPITAL.key, 40 * 86400)
    age_key(filled, COLOR.key, 40 * 86400)
    code, data = run_json("prune", filled, "--older-than", "30d", "--model", "gpt-4o", "--dry-run")
    assert (code, data["matched"]) == (0, [COLOR.key])
    assert run("prune", filled, "--older-than", "30d")[0] == 2, "no --yes without a terminal"
    code, data = run_json("prune", filled, "--older-than", "30d", "--yes")
    assert sorted(data["matched"]) == sorted([CAPITAL.key, COLOR.key]) and data["deleted"] == 2
    assert list(dump(filled)) == [CHAT.key]


def test_explain_names_the_key_and_the_exact_differences(filled: str, tmp_path: Path) -> None:
    """explain: a stored request exits 0; a near miss exits 5 with each field difference."""
    spec = filled
    base = {"prompt": "Summarise the report. " + "x" * 100 + " end", "temperature": 0.7}
    near = make_record(base["prompt"], ["s"], OPENAI)
    content = json.loads(near.content)
    content["request"]["temperature"] = 0.7
    from cachesaver._canonical import canonical_json, digest

    text = canonical_json(content)
    fill(spec, [type(near)(digest(text), text, {0: '"s"'})])
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"request": base, "identity": OPENAI}))
    code, data = run_json("explain", spec, str(request))
    assert code == 0 and data["stored"] is True and data["samples"] == 1
    changed = dict(base, temperature=0.70001, seed=3)
    changed["prompt"] = str(base["prompt"]).replace(" end", " END")
    request.write_text(json.dumps({"request": changed, "identity": OPENAI}))
    code, data = run_json("explain", spec, str(request))
    assert code == 5 and data["stored"] is False
    nearest = data["nearest"][0]
    assert nearest["key"] == digest(text)
    diffs = "\n".join(nearest["differences"])
    assert "temperature: 0.70001 vs 0.7" in diffs
    assert "prompt: differs at char 123" in diffs
    assert "seed: an extra field in your request (3)" in diffs
    code, out, _ = run("explain", spec, "-", stdin=json.dumps({"request": changed}).encode())
    assert code == 5 and "identity.model: not in your request" in out


@pytest.fixture
def two_specs(store_spec: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two empty stores of the same kind (Alice's and Bob's caches)."""
    if not is_redis_url(store_spec):
        yield str(tmp_path / "alice"), str(tmp_path / "bob")
        return
    specs = (store_spec + "-alice", store_spec + "-bob")
    yield specs
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for spec in specs:
            prefix = RedisStore(spec).prefix
            names = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if names:
                client.delete(*names)
    finally:
        client.close()


class Owner:
    """A model both colleagues call (same identity, so the same keys) with different luck."""

    identity: ClassVar[dict[str, str]] = {"provider": "test", "model": "shared-model"}

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    async def request(self, request: Request) -> Response:
        self.calls += 1
        return Response([f"{self.name}-{self.calls}-{i}" for i in range(request.n)])


def experiment(owner: Owner | None, spec: str, manifest: Path | None, extra: bool) -> list[Any]:
    """The same program both colleagues run (Bob adds one question)."""

    async def go() -> list[Any]:
        mode: Literal["readwrite", "replay"] = "replay" if owner is None else "readwrite"
        model = owner if owner is not None else Owner("nobody")
        async with OnlineAPI(model, cache=spec, timeout=0, mode=mode, manifest=manifest) as api:
            requests = [
                Request("q1", n=2, namespace="a", request_id="r1"),
                Request("q1", n=1, namespace="a", request_id="r2"),
                Request("q1", n=2, namespace="b", request_id="r3"),
                Request("q2", n=3, namespace="a", request_id="r4"),
            ]
            if extra:
                requests.append(Request("q3", n=1, namespace="a", request_id="r5"))
            answers = []
            for request in requests:
                answers.append((await api.request(request)).data)
            return answers

    return asyncio.run(go())


def samples_of(spec: str, manifest: Path) -> list[list[str]]:
    """For each manifest entry, the stored sample texts at its indices."""
    stored = dump(spec)
    return [[stored[e.key].samples[i] for i in e.indices] for e in read_manifest(manifest)]


def test_merging_two_diverging_caches_replays_both_owners_runs(
    two_specs: tuple[str, str], tmp_path: Path
) -> None:
    """copy --merge keeps Bob's samples, appends Alice's, and renumbers Alice's manifest:
    Bob's replay is exact, and Alice's manifest finds exactly her samples."""
    alice, bob = two_specs
    m_alice, m_bob = tmp_path / "alice.jsonl", tmp_path / "bob.jsonl"
    alice_answers = experiment(Owner("alice"), alice, m_alice, extra=False)
    bob_answers = experiment(Owner("bob"), bob, m_bob, extra=True)
    alice_samples = samples_of(alice, m_alice)
    assert run("copy", alice, bob)[0] == 1, "without --merge, diverged keys conflict"
    code, data = run_json("copy", alice, bob, "--merge", "--manifest", str(m_alice))
    assert code == 0, data
    assert data["appended"] == 6 and data["written"] == 6
    merged_manifest = tmp_path / "alice.merged.jsonl"
    assert data["manifests"] == [str(merged_manifest)]
    # Bob: replaying his program on the merged cache gives exactly what he got.
    assert experiment(None, bob, None, extra=True) == bob_answers
    assert samples_of(bob, m_bob) == samples_of(bob, m_bob)
    # Alice: her renumbered manifest points at exactly her samples in the merged cache.
    assert samples_of(bob, merged_manifest) == alice_samples
    assert [[json.loads(t) for t in s] for s in alice_samples] == alice_answers
    # ... and exporting by it ships exactly her run.
    out = tmp_path / "alice-run.jsonl"
    assert run("export", bob, str(out), "--manifest", str(merged_manifest))[0] == 0
    # Merging again changes nothing (Alice's samples are found where they were put).
    code, data = run_json("copy", alice, bob, "--merge")
    assert (code, data.get("written")) == (0, 0), data
    assert experiment(None, bob, None, extra=True) == bob_answers


def test_export_to_stdout_and_import_merge_from_stdin(
    two_specs: tuple[str, str], tmp_path: Path
) -> None:
    """`export CACHE -` writes the file to stdout; `import - CACHE --merge` reads stdin."""
    alice, bob = two_specs
    experiment(Owner("alice"), alice, None, extra=False)
    bob_answers = experiment(Owner("bob"), bob, None, extra=True)
    code, out, err = run("export", alice, "-")
    assert code == 0 and out.startswith('{"format":"cachesaver-export"') and "exported" in err
    assert not (Path.cwd() / "-").exists()
    code, _, err = run("import", "-", bob, stdin=out.encode())
    assert code == 1 and "--merge" in err
    code, merged, err = run("import", "-", bob, "--merge", "--json", stdin=out.encode())
    assert code == 0, err
    assert json.loads(merged)["appended"] == 6
    assert experiment(None, bob, None, extra=True) == bob_answers


def test_stats_shows_tokens_and_dollars_per_model_identity(store_spec: str, tmp_path: Path) -> None:
    """stats --json sums the stored samples' reported tokens per identity, priced if known."""
    sample = {
        "choice": {"message": {"content": "hi"}},
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "model": "gpt-4o-mini",
        "id": "x",
        "created": 0,
        "system_fingerprint": None,
    }
    second = dict(sample, prompt_tokens=None, completion_tokens=30)
    fill(store_spec, [make_record("p", [sample, second]), COLOR])
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}}))
    code, data = run_json("stats", store_spec, "--prices", str(prices))
    assert code == 0
    rows = {json.dumps(r["identity"], sort_keys=True): r for r in data["identities"]}
    mini = rows[json.dumps(OPENAI, sort_keys=True)]
    assert (mini["prompt_tokens"], mini["completion_tokens"]) == (100, 50)
    assert mini["dollars"] == pytest.approx((100 * 0.15 + 50 * 0.6) / 1e6)
    assert rows[json.dumps(OPENAI_BIG, sort_keys=True)]["dollars"] is None


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    """`cachesaver ls CACHE | head -1` exits 0 without a Broken pipe message."""
    spec = str(tmp_path / "big")
    fill(spec, [make_record(f"prompt {i}", ["s"]) for i in range(3000)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        f"{SCRIPT} ls {spec} --limit 3000 | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == b"" and done.stdout.startswith(b"key")


def test_no_escape_codes_when_not_a_terminal(filled: str) -> None:
    """Piped output has no terminal escape codes, even for hostile text in a prompt."""
    fill(filled, [make_record("\x1b[31mred\x1b[0m prompt", ["\x1b]0;title\x07"])])
    for args in (("ls", filled), ("stats", filled), ("verify", filled)):
        code, out, err = run(*args)
        assert code == 0 and "\x1b" not in out + err, args
    opened = open_admin_store(filled)
    assert opened.location


def test_show_verify_and_stats_through_the_console_script(filled: str) -> None:
    """show, verify and stats work through the installed script on disk and Redis."""
    code, out, _ = run("show", filled, CAPITAL.key[:8])
    assert code == 0 and "What is the capital of France?" in out and "[1] Paris." in out
    code, data = run_json("verify", filled)
    assert (code, data["ok"], data["keys"], data["samples"]) == (0, True, 3, 4)
    code, data = run_json("stats", filled)
    assert (code, data["keys"], data["samples"], len(data["identities"])) == (0, 3, 4, 3)
    assert run("show", filled, "")[0] == 2


def test_copy_dry_run_counts_and_writes_nothing(two_specs: tuple[str, str], tmp_path: Path) -> None:
    """copy --dry-run reports what a copy or merge would write, creating and writing nothing."""
    alice, bob = two_specs
    experiment(Owner("alice"), alice, None, extra=False)
    experiment(Owner("bob"), bob, None, extra=True)
    before = dump(bob)
    code, data = run_json("copy", alice, bob, "--merge", "--dry-run")
    assert (code, data["written"], data["appended"], data["dry_run"]) == (0, 6, 6, True)
    assert dump(bob) == before
    fresh = tmp_path / "new-cache"
    code, data = run_json("copy", alice, str(fresh), "--dry-run")
    assert (code, data["written"]) == (0, 6) and not fresh.exists()
