"""The ``cachesaver`` command: stats, show, copy, verify, prune, errors and exit codes."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cachesaver._canonical import canonical_json, digest
from cachesaver.cli import ExitCode, main
from cachesaver.codec import encode_sample
from cachesaver.stores import open_admin_store
from cachesaver.stores.base import KeyRecord

ROOT = Path(__file__).resolve().parent.parent
OPENAI = {"provider": "openai", "model": "gpt-4o-mini", "endpoint": "https://api.openai.com/v1"}
OPENAI_BIG = {"provider": "openai", "model": "gpt-4o", "endpoint": "https://api.openai.com/v1"}
SIMULATED = {"provider": "cachesaver.testing", "model": "simulated-llm", "seed": 0}
UNKNOWN_TAG = '{"$cs":"somewhere.else:Thing","v":{"x":[1,2]}}'


# -- helpers (imported by test_export_import.py) --------------------------------------------


def make_record(
    prompt: Any,
    samples: Sequence[Any] | Mapping[int, str],
    identity: Mapping[str, Any] | None = OPENAI,
) -> KeyRecord:
    """A well-formed record: canonical content, key = its SHA-256, encoded samples."""
    content = {"request": {"prompt": prompt}}
    if identity is not None:
        content["identity"] = dict(identity)
    text = canonical_json(content)
    if isinstance(samples, Mapping):
        texts = dict(samples)
    else:
        texts = {i: encode_sample(v) for i, v in enumerate(samples)}
    return KeyRecord(digest(text), text, texts)


async def _fill(spec: str, records: Sequence[KeyRecord]) -> None:
    store = open_admin_store(spec, access="create")
    try:
        await store.keys()  # opens (creates) the cache even when there is nothing to load
        for start in range(0, len(records), 500):
            await store.import_records(records[start : start + 500])
    finally:
        await store.aclose()


def fill(spec: str, records: Sequence[KeyRecord]) -> None:
    """Load records into a store (created if it is a new path), bypassing all checks."""
    asyncio.run(_fill(spec, records))


async def _dump(spec: str) -> dict[str, KeyRecord]:
    store = open_admin_store(spec)
    try:
        keys = await store.keys()
        out: dict[str, KeyRecord] = {}
        for start in range(0, len(keys), 500):
            for record in await store.records(keys[start : start + 500]):
                out[record.key] = record
        return out
    finally:
        await store.aclose()


def dump(spec: str) -> dict[str, KeyRecord]:
    """Every record of a store, by key (contents and samples exactly as stored)."""
    return asyncio.run(_dump(spec))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command in-process; return its exit code, stdout and stderr."""
    code = main([*args])
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """Run the command with --json; return its exit code and the parsed stdout."""
    code, out, _ = cli(capsys, *args, "--json")
    return code, json.loads(out)


@pytest.fixture
def cache(tmp_path: Path) -> str:
    """A disk cache holding three keys of two model identities."""
    spec = str(tmp_path / "cache")
    fill(
        spec,
        [
            make_record("What is 2+2?", ["4", "four", "4!"]),
            make_record("Name a color", ["red"], identity=OPENAI_BIG),
            make_record(["chat", "history"], [("a", "tuple"), {"k": [1, 2.5]}], SIMULATED),
        ],
    )
    return spec


# -- stats ------------------------------------------------------------------------------------


def test_stats_counts_keys_samples_and_bytes_per_identity(
    cache: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats reports keys, samples and bytes in total and for each model identity."""
    code, data = cli_json(capsys, "stats", cache)
    assert code == ExitCode.OK
    assert (data["keys"], data["samples"]) == (3, 6)
    records = dump(cache).values()
    assert data["bytes"] == sum(
        len(r.content.encode()) + sum(len(t.encode()) for t in r.samples.values()) for r in records
    )
    by_identity = {json.dumps(i["identity"], sort_keys=True): i for i in data["identities"]}
    mini = by_identity[json.dumps(OPENAI, sort_keys=True)]
    assert (mini["keys"], mini["samples"]) == (1, 3)
    assert len(by_identity) == 3
    code, out, err = cli(capsys, "stats", cache)
    assert code == 0 and err == ""
    assert "keys     3" in out and "samples  6" in out and '"model":"gpt-4o"' in out


def test_stats_of_an_empty_cache_is_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing but empty cache has zero keys and no identities."""
    spec = str(tmp_path / "empty")
    fill(spec, [])
    code, data = cli_json(capsys, "stats", spec)
    assert code == 0 and data["keys"] == 0 and data["identities"] == []


# -- show ------------------------------------------------------------------------------------


def test_show_prints_the_request_and_decoded_samples(
    cache: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """show with a unique prefix prints the request content and every decoded sample."""
    key = make_record(["chat", "history"], [], SIMULATED).key
    code, out, _ = cli(capsys, "show", cache, key[:10])
    assert code == 0
    assert key in out and '"chat"' in out and "simulated-llm" in out
    assert "[0] ('a', 'tuple')" in out, "a tagged tuple is decoded"
    assert '"k"' in out and "2.5" in out
    code, data = cli_json(capsys, "show", cache, key[:10].upper())
    assert code == 0
    (shown,) = data["keys"]
    assert shown["request"] == {"prompt": ["chat", "history"]}
    assert shown["identity"] == SIMULATED
    assert shown["samples"]["1"] == {"k": [1, 2.5]}


def test_show_prints_unknown_tags_as_json_and_escapes_control_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unregistered class tag is shown as stored JSON; terminal escapes are escaped."""
    spec = str(tmp_path / "c")
    record = make_record("q", {0: UNKNOWN_TAG, 1: '"plain"', 2: encode_sample("\x1b[2Jboom")})
    fill(spec, [record])
    code, out, _ = cli(capsys, "show", spec, record.key)
    assert code == 0
    assert "somewhere.else:Thing" in out and "not registered" in out
    assert "[1] plain" in out
    assert "[2] \\x1b[2Jboom" in out and "\x1b" not in out, "escape codes are not replayed"


def test_show_lists_an_ambiguous_prefix_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A prefix matching several keys lists them and exits with the usage code."""
    spec = str(tmp_path / "c")
    records = [make_record(f"prompt {i}", [str(i)]) for i in range(17)]
    fill(spec, records)
    by_digit: dict[str, list[str]] = {}
    for r in records:
        by_digit.setdefault(r.key[0], []).append(r.key)
    digit, keys = max(by_digit.items(), key=lambda item: len(item[1]))
    assert len(keys) >= 2  # 17 keys, 16 hex digits
    code, out, err = cli(capsys, "show", spec, digit)
    assert code == ExitCode.USAGE
    assert f"{len(keys)} keys start with" in err
    assert all(k in err for k in keys)
    code, out, _ = cli(capsys, "show", spec, digit, "--all")
    assert code == 0 and all(k in out for k in keys)


def test_show_without_a_match_or_with_a_bad_prefix_fails(
    cache: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No matching key exits 5; a prefix that is not hex exits 2."""
    keys = dump(cache)
    absent = next(d for d in "0123456789abcdef" if not any(k.startswith(d) for k in keys))
    assert cli(capsys, "show", cache, absent)[0] == ExitCode.NOT_FOUND
    assert cli(capsys, "show", cache, "xyz")[0] == ExitCode.USAGE


# -- verify ------------------------------------------------------------------------------------


def test_verify_accepts_a_healthy_cache(cache: str, capsys: pytest.CaptureFixture[str]) -> None:
    """verify exits 0 and counts keys and samples when everything checks out."""
    code, data = cli_json(capsys, "verify", cache)
    assert code == 0 and data["ok"] is True and (data["keys"], data["samples"]) == (3, 6)


def test_verify_names_every_broken_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Bad sample JSON, malformed tags, gaps and keys not matching content fail verify."""
    spec = str(tmp_path / "c")
    good = make_record("fine", ["ok"])
    unknown_class = make_record("unregistered class", {0: UNKNOWN_TAG})
    bad_json = make_record("bad json", {0: '"ok"', 1: '{"oops'})
    bad_tag = make_record("bad tag", {0: '{"$cs":"bytes","v":"not base64!"}'})
    gap = make_record("gap", {0: '"a"', 2: '"c"'})
    altered = make_record("altered", ["x"])
    altered = KeyRecord(altered.key, altered.content.replace("altered", "changed"), altered.samples)
    fill(spec, [good, unknown_class, bad_json, bad_tag, gap, altered])
    code, data = cli_json(capsys, "verify", spec)
    assert code == ExitCode.FAILED and data["ok"] is False
    problems = {b["key"]: " ".join(b["problems"]) for b in data["broken"]}
    assert set(problems) == {bad_json.key, bad_tag.key, gap.key, altered.key}
    assert "sample 1: not valid JSON" in problems[bad_json.key]
    assert "base64" in problems[bad_tag.key]
    assert "index 1 missing" in problems[gap.key]
    assert "SHA-256" in problems[altered.key]
    code, out, _ = cli(capsys, "verify", spec)
    assert code == 1 and "4 of 6 keys" in out and gap.key in out


# -- prune -------------------------------------------------------------------------------------


def test_prune_dry_run_lists_and_deletes_nothing(
    cache: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run names the keys a prune would delete and leaves the store alone."""
    before = dump(cache)
    code, data = cli_json(capsys, "prune", cache, "--provider", "openai", "--dry-run")
    assert code == 0 and data["keys"] == 2 and data["samples"] == 4 and data["deleted"] == 0
    assert dump(cache) == before


def test_prune_drops_exactly_one_model_identity(
    cache: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--provider/--model and --identity-json delete only that identity's keys."""
    args = ("--provider", "openai", "--model", "gpt-4o", "--yes")
    code, data = cli_json(capsys, "prune", cache, *args)
    assert code == 0 and data["deleted"] == 1
    left = dump(cache)
    assert len(left) == 2
    assert all('"gpt-4o"' not in r.content for r in left.values())
    code, data = cli_json(capsys, "prune", cache, "--identity-json", json.dumps(SIMULATED), "-y")
    assert code == 0 and data["deleted"] == 1
    (last,) = dump(cache).values()
    assert '"gpt-4o-mini"' in last.content


def test_prune_needs_a_filter_and_combines_them(
    cache: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No filter, contradicting filters or bad values exit 2; several filters must all hold."""
    assert cli(capsys, "prune", cache, "--yes")[0] == ExitCode.USAGE
    contradicting = ("--no-identity", "--model", "gpt-4o", "--yes")
    assert cli(capsys, "prune", cache, *contradicting)[0] == ExitCode.USAGE
    assert cli(capsys, "prune", cache, "--identity-json", "{nope", "--yes")[0] == ExitCode.USAGE
    assert cli(capsys, "prune", cache, "--older-than", "soon", "--yes")[0] == ExitCode.USAGE
    both = ("--provider", "openai", "--identity-json", "{}", "--yes")
    code, data = cli_json(capsys, "prune", cache, *both)
    assert (code, data["deleted"]) == (0, 0)
    assert len(dump(cache)) == 3


# -- copy --------------------------------------------------------------------------------------


def test_copy_between_disk_caches_is_exact_and_rerunnable(
    cache: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """copy reproduces every record exactly; a second copy writes nothing new."""
    target = str(tmp_path / "copy")
    code, data = cli_json(capsys, "copy", cache, target)
    assert code == 0 and data["written"] == 6
    assert dump(target) == dump(cache)
    code, data = cli_json(capsys, "copy", cache, target)
    assert code == 0 and data["written"] == 0


def test_copy_refuses_conflicts_and_writes_nothing(
    cache: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A destination holding a different sample at an index stops the copy before writing."""
    target = str(tmp_path / "other")
    source = dump(cache)
    clash = next(iter(source.values()))
    fill(target, [KeyRecord(clash.key, clash.content, {0: '"something else"'})])
    before = dump(target)
    code, _, err = cli(capsys, "copy", cache, target)
    assert code == ExitCode.FAILED
    assert clash.key in err and "nothing was" in err
    assert dump(target) == before


def test_copy_onto_itself_is_refused(cache: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Copying a store onto itself is a usage error."""
    assert cli(capsys, "copy", cache, cache)[0] == ExitCode.USAGE


def test_copy_disk_to_redis_and_back_is_exact(
    cache: str, tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """disk -> Redis -> disk reproduces every content and sample text byte for byte."""
    pytest.importorskip("cachesaver.stores.redis")
    assert cli(capsys, "copy", cache, redis_url)[0] == 0
    code, data = cli_json(capsys, "verify", redis_url)
    assert code == 0 and data["keys"] == 3
    back = str(tmp_path / "back")
    assert cli(capsys, "copy", redis_url, back)[0] == 0
    assert dump(back) == dump(cache)


# -- chunking ----------------------------------------------------------------------------------


def test_commands_work_across_many_chunks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cache of 1,201 keys (three 500-key chunks) is counted, verified and copied whole."""
    spec = str(tmp_path / "big")
    fill(spec, [make_record(f"p{i}", [f"s{i}", f"t{i}"]) for i in range(1201)])
    code, data = cli_json(capsys, "stats", spec)
    assert (code, data["keys"], data["samples"]) == (0, 1201, 2402)
    assert cli_json(capsys, "verify", spec)[1]["ok"] is True
    target = str(tmp_path / "copy")
    assert cli_json(capsys, "copy", spec, target)[1]["written"] == 2402
    assert dump(target) == dump(spec)


# -- stores that are not there -------------------------------------------------------------------


def test_reading_a_missing_path_fails_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read command on a path that does not exist exits 3 and does not create a cache."""
    missing = tmp_path / "typo"
    for command in (["stats"], ["verify"], ["show"], ["export"], ["prune"]):
        extra = {"show": ["ab"], "export": [str(tmp_path / "x.jsonl")], "prune": ["--no-identity"]}
        code, _, err = cli(capsys, *command, str(missing), *extra.get(command[0], []))
        assert code == ExitCode.STORE, command
        assert "no such cache directory" in err
    assert not missing.exists()
    assert not (tmp_path / "x.jsonl").exists()


def test_paths_that_are_not_caches_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: str
) -> None:
    """A file, or a directory without a cache in it, is not a store (exit 3), even to write."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("hello")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "main.py").write_text("print()")
    code, _, err = cli(capsys, "stats", str(a_file))
    assert code == ExitCode.STORE and "not a directory" in err
    code, _, err = cli(capsys, "stats", str(folder))
    assert code == ExitCode.STORE and "not a cachesaver cache" in err
    code, _, err = cli(capsys, "copy", cache, str(folder))
    assert code == ExitCode.STORE and "refusing to write" in err
    assert sorted(os.listdir(folder)) == ["main.py"]


def test_bad_urls_and_unreachable_redis_have_their_own_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unknown URL scheme is a usage error (2); a Redis nobody listens on is exit 3."""
    code, _, err = cli(capsys, "stats", "s3://bucket/cache")
    assert code == ExitCode.USAGE and "unsupported store URL" in err
    pytest.importorskip("cachesaver.stores.redis")
    code, data = cli_json(capsys, "stats", "redis://127.0.0.1:1/0")
    assert code == ExitCode.STORE
    assert data["ok"] is False and data["exit_code"] == 3 and "127.0.0.1:1" in data["error"]


def test_usage_errors_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    """Bad arguments exit 2; --help and --version exit 0; help documents the exit codes."""
    assert cli(capsys, "stats")[0] == ExitCode.USAGE
    assert cli(capsys, "frobnicate")[0] == ExitCode.USAGE
    assert cli(capsys)[0] == ExitCode.USAGE
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "exit codes" in out and "store cannot be opened" in out
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.startswith("cachesaver ")


def test_an_unexpected_error_has_its_own_exit_code(
    cache: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug exits 70 with its traceback, never 1, which means "verification failed"."""

    def broken(*args: object, **kwargs: object) -> list[str]:
        raise ValueError("a bug")

    monkeypatch.setattr("cachesaver.admin._inspect.record_problems", broken)
    code, _, err = cli(capsys, "verify", cache)
    assert code == ExitCode.INTERNAL and int(code) == 70
    assert "Traceback" in err and "internal error: ValueError('a bug')" in err


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_bars_go_to_a_terminal_stderr_only(
    cache: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal a bar is drawn on stderr (stdout stays clean); --no-progress drops it."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code, data = cli_json(capsys, "verify", cache)
    assert code == 0 and data["ok"] is True, "stdout is still pure JSON"
    assert "verify:" in terminal.getvalue() and "/3 " in terminal.getvalue()
    terminal.seek(0)
    terminal.truncate()
    assert cli(capsys, "verify", cache, "--no-progress")[0] == 0
    assert terminal.getvalue() == ""


def test_the_module_runs_as_a_program(cache: str) -> None:
    """`python -m cachesaver` runs the command with real exit codes and JSON on stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "cachesaver"]
    done = subprocess.run(
        [*run, "stats", cache, "--json"], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["keys"] == 3
    assert done.stderr == "", "no progress bar when stderr is not a terminal"
    missing = subprocess.run(
        [*run, "verify", cache + "-typo"], capture_output=True, text=True, env=env, timeout=30
    )
    assert missing.returncode == 3
    assert "no such cache directory" in missing.stderr


# -- read-only commands change nothing they point at ----------------------------------------------

READ_ONLY = [["stats"], ["show", "ab"], ["verify"], ["export", "OUT"], ["import", "--dry-run"]]


def _read_only_args(command: list[str], spec: str, tmp_path: Path) -> list[str]:
    if command[0] == "import":
        export = tmp_path / "e.jsonl"
        if not export.exists():
            export.write_text(
                '{"format":"cachesaver-export","version":1}\n{"end":{"keys":0,"samples":0}}\n'
            )
        return ["import", str(export), spec, "--dry-run"]
    out = str(tmp_path / "out.jsonl")
    return [command[0], spec, *[out if a == "OUT" else a for a in command[1:]]]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name == "cache.db"}


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: c[0])
def test_read_commands_leave_another_programs_sqlite_file_alone(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A foreign SQLite cache.db is refused (exit 3) and keeps its bytes: no tables added."""
    import sqlite3

    folder = tmp_path / "other-app"
    folder.mkdir()
    con = sqlite3.connect(str(folder / "cache.db"))
    con.execute("CREATE TABLE users (name TEXT)")
    con.execute("INSERT INTO users VALUES ('ada')")
    con.commit()
    con.close()
    before = _snapshot(folder)
    code, _, err = cli(capsys, *_read_only_args(command, str(folder), tmp_path))
    assert code == ExitCode.STORE, err
    assert "not a diskcache" in err and "not a cachesaver cache" in err
    assert _snapshot(folder) == before
    con = sqlite3.connect(str(folder / "cache.db"))
    tables = sorted(row[0] for row in con.execute("SELECT name FROM sqlite_master"))
    con.close()
    assert tables == ["users"]
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("command", [*READ_ONLY, ["copy", "SRC"]], ids=lambda c: c[0])
def test_read_commands_never_switch_another_diskcaches_eviction(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], cache: str
) -> None:
    """Another program's diskcache is refused (exit 3) with its eviction policy untouched."""
    import diskcache

    folder = tmp_path / "their-diskcache"
    with diskcache.Cache(str(folder)) as theirs:
        theirs.set("session", {"user": 1})
        assert theirs.eviction_policy == "least-recently-stored"
    if command[0] == "copy":  # a destination too: never written into
        args = ["copy", cache, str(folder)]
    else:
        args = _read_only_args(command, str(folder), tmp_path)
    code, _, err = cli(capsys, *args)
    assert code == ExitCode.STORE, err
    assert "no cachesaver entries" in err
    with diskcache.Cache(str(folder)) as theirs:
        assert theirs.eviction_policy == "least-recently-stored"
        assert list(theirs) == ["session"]


def test_read_commands_never_change_a_cachesaver_store(
    cache: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """stats/show/verify/export read a cachesaver store without writing its database."""
    folder = Path(cache)
    before = _snapshot(folder)
    key = next(iter(dump(cache)))
    for args in (["stats", cache], ["show", cache, key], ["verify", cache]):
        assert cli(capsys, *args)[0] == ExitCode.OK, args
    assert cli(capsys, "export", cache, str(tmp_path / "e.jsonl"))[0] == ExitCode.OK
    assert _snapshot(folder) == before


def test_an_empty_cachesaver_store_is_recognised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store a pipeline opened but never wrote to is still a cachesaver store (marker)."""
    from cachesaver import OnlineAPI
    from cachesaver.testing import RecordingModel

    spec = str(tmp_path / "fresh")

    async def open_only() -> None:
        async with OnlineAPI(RecordingModel(), cache=spec) as api:
            await api.store.read([])

    asyncio.run(open_only())
    code, data = cli_json(capsys, "stats", spec)
    assert (code, data["keys"]) == (ExitCode.OK, 0)


def test_a_redis_url_whose_database_is_not_a_number_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """redis://host/l1 exits 2 naming the problem instead of reading database 0."""
    code, _, err = cli(capsys, "stats", "redis://127.0.0.1:6379/l1")
    assert code == ExitCode.USAGE and "not a database number" in err
