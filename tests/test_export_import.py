"""Export and import: exact round trips, exports by manifest, and hostile files refused."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import cachesaver.export
from cachesaver import OnlineAPI, Request, read_manifest
from cachesaver._canonical import digest
from cachesaver.cli import ExitCode
from cachesaver.codec import decode_sample, encode_sample
from cachesaver.export import ExportFileError, read_export, sample_problem
from cachesaver.stores.base import KeyRecord
from cachesaver.testing import RecordingModel, SimulatedLLM

from .test_cli import SIMULATED, UNKNOWN_TAG, cli, cli_json, dump, fill, make_record


@dataclass
class Scored:
    """A rich sample type (stored with a class type tag)."""

    text: str
    score: float


TRICKY = [
    "héllo 😀 \u2028 ünïcode",
    ("a", "tuple", 1),
    b"\x00\xff raw bytes",
    {1: "a dict with an int key"},
    [float("nan"), float("-inf")],
    {"$cs": "a user dict that happens to use the tag key"},
    10**30,
    1.5e-300,
    "",
    None,
    True,
    Scored("good", 0.75),
]


def tricky_records() -> list[KeyRecord]:
    """Records whose texts exercise every encoding corner (non-ASCII, tags, big numbers)."""
    return [
        make_record("Grüße, 世界 😀", TRICKY),
        make_record({"messages": [{"role": "user", "content": "x"}]}, ["one"], SIMULATED),
        make_record("no identity at all", ["plain"], identity=None),
        make_record("unregistered class", {0: UNKNOWN_TAG, 1: '"x"'}),
    ]


# -- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["export.jsonl", "export.jsonl.gz"])
def test_disk_to_file_to_disk_is_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """Every content and sample text survives export and import unchanged, plain or gzip."""
    source, target, path = str(tmp_path / "src"), str(tmp_path / "dst"), str(tmp_path / name)
    fill(source, tricky_records())
    code, data = cli_json(capsys, "export", source, path)
    assert code == 0 and data["keys"] == 4 and data["samples"] == len(TRICKY) + 4
    assert data["gzip"] is name.endswith(".gz")
    with open(path, "rb") as handle:
        assert (handle.read(2) == b"\x1f\x8b") is name.endswith(".gz")
    code, data = cli_json(capsys, "import", path, target)
    assert code == 0 and data["written"] == len(TRICKY) + 4
    assert dump(target) == dump(source)
    again = str(tmp_path / ("again-" + name))
    assert cli(capsys, "export", target, again)[0] == 0
    assert Path(again).read_bytes() == Path(path).read_bytes(), "exports are deterministic"


def test_import_twice_writes_nothing_new(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Importing the same file again is a no-op that succeeds."""
    source, target, path = str(tmp_path / "src"), str(tmp_path / "dst"), str(tmp_path / "e")
    fill(source, tricky_records())
    cli(capsys, "export", source, path, "--gzip")
    assert Path(path).read_bytes()[:2] == b"\x1f\x8b", "--gzip compresses without a .gz name"
    assert cli_json(capsys, "import", path, target)[1]["written"] > 0
    code, data = cli_json(capsys, "import", path, target)
    assert code == 0 and data["written"] == 0


def test_disk_to_file_to_redis_to_disk_is_byte_identical(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file imported into Redis exports to the same bytes and imports back exactly."""
    pytest.importorskip("cachesaver.stores.redis")
    source, path = str(tmp_path / "src"), str(tmp_path / "e.jsonl.gz")
    fill(source, tricky_records())
    assert cli(capsys, "export", source, path)[0] == 0
    assert cli(capsys, "import", path, redis_url)[0] == 0
    from_redis = str(tmp_path / "from-redis.jsonl.gz")
    assert cli(capsys, "export", redis_url, from_redis)[0] == 0
    assert Path(from_redis).read_bytes() == Path(path).read_bytes()
    back = str(tmp_path / "back")
    assert cli(capsys, "import", from_redis, back)[0] == 0
    assert dump(back) == dump(source)

    first = next(iter(dump(source).values()))
    clash = KeyRecord(first.key, first.content, {0: '"a different sample"'})
    other = make_record("brand new", ["new"])
    before = dump(redis_url)
    bad = write_file(tmp_path / "clash.jsonl", [clash, other])
    code, _, err = cli(capsys, "import", bad, redis_url)
    assert code == ExitCode.FAILED and "unchanged" in err
    assert dump(redis_url) == before, "a refused import leaves Redis exactly as it was"


# -- the paper workflow ---------------------------------------------------------------------------

PROMPTS = ["Solve 24 with 4 4 6 8", "Solve 24 with 1 3 4 6", "Is 91 prime?"]


async def experiment(model: Any, cache: str, **options: Any) -> list[list[Any]]:
    """A small pipeline: every prompt in two namespaces, concurrently."""
    async with OnlineAPI(model, cache=cache, timeout=0, **options) as api:
        requests = [
            Request(p, n=2, namespace=f"seed{s}", request_id=f"{s}-{i}")
            for s in range(2)
            for i, p in enumerate(PROMPTS)
        ]
        responses = await asyncio.gather(*(api.request(r) for r in requests))
    return [r.data for r in responses]


def test_paper_workflow_replays_exactly_with_zero_model_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run with a manifest, export by it, import elsewhere, replay: same samples, no calls."""
    lab, manifest = str(tmp_path / "lab-cache"), tmp_path / "runs" / "exp1.jsonl"
    # Earlier exploration paid for more samples than the final run uses.
    asyncio.run(experiment(SimulatedLLM(seed=0), lab))

    async def explore() -> None:
        async with OnlineAPI(SimulatedLLM(seed=0), cache=lab, timeout=0) as api:
            await api.request(Request(PROMPTS[0], n=7, namespace="explore"))

    asyncio.run(explore())
    results = asyncio.run(experiment(SimulatedLLM(seed=0), lab, manifest=manifest))

    shipped = str(tmp_path / "paper" / "exp1-cache.jsonl.gz")
    os.makedirs(os.path.dirname(shipped))
    code, data = cli_json(capsys, "export", lab, shipped, "--manifest", str(manifest))
    assert code == 0 and data["manifest_entries"] == 6
    # Both namespaces drew indices 0 and 1 of each prompt: 2 samples per key were used.
    assert data["samples"] == 2 * len(PROMPTS), "exactly the samples the run used"
    assert data["samples"] < cli_json(capsys, "stats", lab)[1]["samples"]

    reader_cache = str(tmp_path / "reader-cache")
    assert cli(capsys, "import", shipped, reader_cache)[0] == 0
    assert cli(capsys, "verify", reader_cache)[0] == 0
    model = RecordingModel(SimulatedLLM(seed=0))
    replayed = asyncio.run(experiment(model, reader_cache, mode="replay"))
    assert replayed == results
    assert model.calls == []


def test_export_by_manifest_holds_exactly_the_manifest_indices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each key of a manifest export carries exactly the indices its entries name."""
    cache, manifest = str(tmp_path / "c"), tmp_path / "m.jsonl"

    async def run() -> None:
        async with OnlineAPI(SimulatedLLM(seed=0), cache=cache, timeout=0) as api:
            await api.request(Request("q", n=5, namespace="warmup"))
        async with OnlineAPI(
            SimulatedLLM(seed=0), cache=cache, timeout=0, manifest=manifest
        ) as api:
            await api.request(Request("q", n=2, namespace="a"))
            await api.request(Request("q", n=1, namespace="a"))
            await api.request(Request("p", n=1, namespace="b"))

    asyncio.run(run())
    path = tmp_path / "e.jsonl"
    assert cli(capsys, "export", cache, str(path), "--manifest", str(manifest))[0] == 0
    wanted: dict[str, set[int]] = {}
    for entry in read_manifest(manifest):
        wanted.setdefault(entry.key, set()).update(entry.indices)
    stored = dump(cache)
    exported = {r.key: r for r in read_export(path).records}
    assert {k: set(r.samples) for k, r in exported.items()} == wanted
    assert all(r.samples[i] == stored[k].samples[i] for k, r in exported.items() for i in r.samples)
    assert len(stored[next(iter(wanted))].samples) >= 3


def test_export_by_manifest_fails_when_the_cache_lacks_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest naming samples the cache does not hold exits 5 and writes no file."""
    cache = str(tmp_path / "c")
    record = make_record("q", ["only one"])
    fill(cache, [record])
    manifest = tmp_path / "m.jsonl"
    lines = [
        {"cachesaver_manifest": 1},
        {"key": record.key, "namespace": "n", "request_id": None, "indices": [0, 1]},
    ]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = cli(capsys, "export", cache, str(out / "e.jsonl"), "--manifest", str(manifest))
    assert code == ExitCode.NOT_FOUND and "[1] are not in the cache" in err
    assert os.listdir(out) == [], "no output and no temporary file left behind"

    manifest.write_text('{"cachesaver_manifest": 1}\n{"key": \n')
    code, _, err = cli(capsys, "export", cache, str(out / "e.jsonl"), "--manifest", str(manifest))
    assert code == ExitCode.BAD_FILE and "m.jsonl:2" in err


def test_export_never_overwrites_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing output file is kept (exit 2) unless --force is given."""
    cache, path = str(tmp_path / "c"), tmp_path / "e.jsonl"
    fill(cache, [make_record("q", ["a"])])
    path.write_text("precious")
    assert cli(capsys, "export", cache, str(path))[0] == ExitCode.USAGE
    assert path.read_text() == "precious"
    assert cli(capsys, "export", cache, str(path), "--force")[0] == 0
    assert len(read_export(path).records) == 1


def test_export_refuses_a_damaged_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A cache holding a sample that is not JSON is not exported (exit 1, no file)."""
    cache, path = str(tmp_path / "c"), tmp_path / "e.jsonl"
    broken = make_record("q", {0: "{not json"})
    fill(cache, [broken, make_record("fine", ["ok"])])
    code, _, err = cli(capsys, "export", cache, str(path))
    assert code == ExitCode.FAILED and broken.key in err and "verify" in err
    assert not path.exists()


# -- imports that must change nothing -------------------------------------------------------


def write_file(path: Path, records: list[KeyRecord], *, end: bool = True) -> str:
    """Write records in the export format by hand (independently of the writer)."""
    lines = [json.dumps({"format": "cachesaver-export", "version": 1})]
    for r in records:
        samples = {str(i): t for i, t in r.samples.items()}
        lines.append(json.dumps({"key": r.key, "content": r.content, "samples": samples}))
    if end:
        count = sum(len(r.samples) for r in records)
        lines.append(json.dumps({"end": {"keys": len(records), "samples": count}}))
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


HOSTILE_SAMPLES = {
    "tuple-in-list dict key": '{"$cs":"dict","v":[[{"$cs":"tuple","v":[[1]]},"x"]]}',
    "900-deep nesting": "[" * 900 + "]" * 900,
    "lone surrogate": '"half an emoji: \\ud83d"',
}
SURROGATE_CONTENT = '{"request":{"prompt":"\\udc00"}}'
GOOD = make_record("good", ["g0", "g1"])
OTHER = make_record("other", ["o0"])


def _line(**fields: Any) -> str:
    base: dict[str, Any] = {"key": OTHER.key, "content": OTHER.content, "samples": {"0": '"x"'}}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None})


def _file(*body: str, header: str | None = None, end: str | None = None) -> bytes:
    head = header if header is not None else '{"format": "cachesaver-export", "version": 1}'
    samples = 0
    for line in body:
        with contextlib.suppress(ValueError, RecursionError, AttributeError):
            samples += len(json.loads(line).get("samples", {}))  # broken lines count 0
    tail = end if end is not None else json.dumps({"end": {"keys": len(body), "samples": samples}})
    return "".join(line + "\n" for line in (head, *body, tail)).encode()


def _gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


VALID = _file(_line())
HOSTILE: dict[str, tuple[bytes, int, str]] = {
    "empty file": (b"", 1, "empty"),
    "wrong header": (_file(_line(), header='{"format": "other"}'), 1, "not a cachesaver export"),
    "newer version": (
        _file(header='{"format": "cachesaver-export", "version": 2}'),
        1,
        "version 2 is not supported",
    ),
    "line is not JSON": (_file('{"key": "abc", '), 2, "not valid JSON"),
    "key does not match its content": (
        _file(_line(content=OTHER.content.replace("other", "0ther"))),
        2,
        "SHA-256",
    ),
    "key is not a hash": (_file(_line(key="../../etc/passwd")), 2, "64 lowercase hex"),
    "content is not a request": (
        _file(_line(key=digest("[1]"), content="[1]")),
        2,
        "'request' field",
    ),
    "sample text is not JSON": (_file(_line(samples={"0": '{"oops'})), 2, "sample 0: not valid"),
    "sample text is NaN": (_file(_line(samples={"0": "NaN"})), 2, "NaN is not valid JSON"),
    "sample is not text": (_file(_line(samples={"0": 5})), 2, "stored JSON text"),
    "malformed type tag": (
        _file(_line(samples={"0": '{"$cs": "bytes", "v": "%%%"}'})),
        2,
        "invalid base64",
    ),
    "tag with extra fields": (
        _file(_line(samples={"0": '{"$cs": "tuple", "v": [], "x": 1}'})),
        2,
        "exactly the fields",
    ),
    "index with a leading zero": (_file(_line(samples={"01": '"x"'})), 2, "sample index"),
    "negative index": (_file(_line(samples={"-1": '"x"'})), 2, "sample index"),
    "extra field": (_file(_line(note="hi")), 2, "fields content, key, samples"),
    "invalid UTF-8": (_file(_line()).replace(b'"x', b'"\xff'), 2, "not valid UTF-8"),
    "JSON nested too deeply": (_file("[" * 100_000 + "]" * 100_000), 2, "nested too deeply"),
    "no end line (truncated)": (_file(_line(), end="").rstrip(b"\n"), 3, "truncated"),
    "end line counts differ": (
        _file(_line(), end='{"end": {"keys": 2, "samples": 2}}'),
        3,
        "announces",
    ),
    "data after the end line": (VALID + _line().encode() + b"\n", 4, "after the end line"),
    "same key twice, different sample": (
        _file(_line(), _line(samples={"0": '"y"'})),
        3,
        "differs from an earlier line",
    ),
    "truncated gzip": (_gzipped(VALID)[:-12], 3, "gzip data is damaged or truncated"),
    "corrupt gzip": (
        _gzipped(VALID)[:-8] + b"\x00\x00\x00\x00" + _gzipped(VALID)[-4:],
        4,
        "CRC check",
    ),
    "bad line inside gzip": (
        _gzipped(_file(_line(), _line(samples={"0": "nope"}))),
        3,
        "not valid JSON",
    ),
    # Files that used to import and then crash verify (MemoryError), show or replay:
    "huge index": (_file(_line(samples={"999999999": '"x"'})), 2, "index 0-999999998 missing"),
    "gap between lines of one key": (
        _file(_line(), _line(samples={"2": '"z"'})),
        2,
        "index 1 missing",
    ),
    "tuple-in-list dict key": (
        _file(_line(samples={"0": HOSTILE_SAMPLES["tuple-in-list dict key"]})),
        2,
        "not hashable",
    ),
    "900-deep nesting": (
        _file(_line(samples={"0": HOSTILE_SAMPLES["900-deep nesting"]})),
        2,
        "nested deeper than 256",
    ),
    "lone surrogate": (
        _file(_line(samples={"0": HOSTILE_SAMPLES["lone surrogate"]})),
        2,
        "lone surrogate",
    ),
    "lone surrogate in the content": (
        _file(_line(key=digest(SURROGATE_CONTENT), content=SURROGATE_CONTENT)),
        2,
        "lone surrogate",
    ),
}


@pytest.fixture
def target(tmp_path: Path) -> str:
    """A cache that already holds one key, to check that refused imports change nothing."""
    spec = str(tmp_path / "target")
    fill(spec, [GOOD])
    return spec


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_are_refused_with_their_line_and_change_nothing(
    case: str, tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each malformed or hostile file exits 4 naming its line; the store is unchanged."""
    data, line, fragment = HOSTILE[case]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(data)
    before = dump(target)
    code, _, err = cli(capsys, "import", str(path), target)
    assert code == ExitCode.BAD_FILE, err
    assert f"hostile.jsonl:{line}:" in err and fragment in err, err
    assert dump(target) == before
    fresh = tmp_path / "fresh"
    assert cli(capsys, "import", str(path), str(fresh))[0] == ExitCode.BAD_FILE
    assert not fresh.exists(), "a refused import does not even create the cache"


def test_an_oversized_line_is_refused_without_reading_it_whole(
    tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line longer than the line limit (64 MiB by default) is refused with its number."""
    assert cachesaver.export.MAX_LINE_BYTES == 64 * 1024 * 1024
    monkeypatch.setattr(cachesaver.export, "MAX_LINE_BYTES", 300)
    path = tmp_path / "big.jsonl"
    path.write_bytes(_file(_line(), _line(samples={"0": json.dumps("x" * 1000)})))
    before = dump(target)
    code, _, err = cli(capsys, "import", str(path), target)
    assert code == ExitCode.BAD_FILE and "big.jsonl:3:" in err and "longer than 300" in err
    assert dump(target) == before


def test_a_pickle_is_refused_and_never_run(
    tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pickle posing as an export is rejected as data: the code inside never runs."""
    sentinel = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
            return (Path.write_text, (sentinel, "ran"))

    path = tmp_path / "cache.jsonl"
    path.write_bytes(pickle.dumps(Evil()))
    gz = tmp_path / "cache.jsonl.gz"
    gz.write_bytes(gzip.compress(pickle.dumps(Evil())))
    for file in (path, gz):
        code, _, err = cli(capsys, "import", str(file), target)
        assert code == ExitCode.BAD_FILE and ":1:" in err
    assert not sentinel.exists()


def test_a_conflicting_import_is_refused_whole(
    tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that would change a stored sample imports nothing, not even its other keys."""
    clash = KeyRecord(GOOD.key, GOOD.content, {0: '"not g0"', 1: GOOD.samples[1], 2: '"g2"'})
    path = write_file(tmp_path / "clash.jsonl", [OTHER, clash])
    before = dump(target)
    code, _, err = cli(capsys, "import", path, target)
    assert code == ExitCode.FAILED and "unchanged" in err
    assert dump(target) == before
    code, data = cli_json(capsys, "import", path, target, "--dry-run")
    assert code == ExitCode.FAILED and len(data["conflicts"]) == 1
    assert GOOD.key in data["conflicts"][0]


def test_dry_run_checks_a_file_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """import --dry-run validates and counts new samples without creating the cache."""
    path = write_file(tmp_path / "ok.jsonl", [GOOD, OTHER])
    fresh = tmp_path / "fresh"
    code, data = cli_json(capsys, "import", path, str(fresh), "--dry-run")
    assert code == 0 and data["new_samples"] == 3 and data["conflicts"] == []
    assert not fresh.exists()


def test_an_import_too_large_for_one_transaction_is_refused(
    tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file above --max-bytes is refused before anything is written (exit 4)."""
    path = write_file(tmp_path / "ok.jsonl", [OTHER])
    before = dump(target)
    code, _, err = cli(capsys, "import", path, target, "--max-bytes", "100")
    assert code == ExitCode.BAD_FILE and "--max-bytes" in err
    assert dump(target) == before


def test_missing_input_files_are_usage_errors(
    tmp_path: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing import file or manifest exits 2 with the file named."""
    code, _, err = cli(capsys, "import", str(tmp_path / "nope.jsonl"), target)
    assert code == ExitCode.USAGE and "nope.jsonl" in err
    code, _, err = cli(
        capsys, "export", target, str(tmp_path / "e"), "--manifest", str(tmp_path / "nope")
    )
    assert code == ExitCode.USAGE and "nope" in err


def test_read_export_reports_a_problem_as_an_exception(tmp_path: Path) -> None:
    """The library reader raises ExportFileError (a ValueError) with path and line."""
    path = tmp_path / "x.jsonl"
    path.write_bytes(HOSTILE["sample text is not JSON"][0])
    with pytest.raises(ExportFileError) as info:
        read_export(path)
    assert isinstance(info.value, ValueError)
    assert info.value.line == 2 and str(info.value).startswith(f"{path}:2:")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"$cs": "my-custom-tag", "v": {"a": 1}}', None),
        ('{"$cs": "pkg.mod:Outer.Inner", "v": [{"$cs": "tuple", "v": [1]}]}', None),
        ('"$cs is just text here"', None),
        ('{"$cs": "", "v": 1}', "must not be empty"),
        ('{"$cs": 7, "v": 1}', "must be a string"),
        ('{"$cs": "dict", "v": [[[1], 2]]}', "not hashable"),
        ('{"$cs": "float", "v": "1.5"}', "'nan', 'inf' or '-inf'"),
        ('[{"$cs": "x:Y", "v": {"inner": {"$cs": "tuple", "v": 3}}}]', "needs a list"),
        ("Infinity", "not valid JSON"),
    ],
)
def test_sample_check_follows_the_codec(text: str, problem: str | None) -> None:
    """Tags are checked for structure, any non-empty class tag passes, broken ones are named."""
    found = sample_problem(text)
    assert found is None if problem is None else (found is not None and problem in found)


def test_every_encoded_sample_passes_the_check() -> None:
    """Whatever the codec writes, the checker accepts and the codec reads back."""
    for value in TRICKY:
        text = encode_sample(value)
        assert sample_problem(text) is None, text
        assert encode_sample(decode_sample(text)) == text


@pytest.mark.parametrize("case", sorted(HOSTILE_SAMPLES))
def test_verify_catches_what_import_refuses(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store holding a sample import would refuse fails verify (exit 1), naming the key."""
    spec = str(tmp_path / "c")
    bad = make_record("p", {0: '"fine"', 1: HOSTILE_SAMPLES[case]})
    fill(spec, [bad, GOOD])  # bypasses every check, as a tampered store would
    code, data = cli_json(capsys, "verify", spec)
    assert code == ExitCode.FAILED
    assert [b["key"] for b in data["broken"]] == [bad.key]
    assert "sample 1" in data["broken"][0]["problems"][0]


def test_verify_reports_a_huge_index_without_building_a_huge_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An index of 999999999 is reported as a gap in O(samples), not a 10**9 set."""
    spec = str(tmp_path / "c")
    fill(spec, [make_record("p", {0: '"a"', 999_999_999: '"b"'})])
    code, data = cli_json(capsys, "verify", spec)
    assert code == ExitCode.FAILED
    assert "index 1-999999998 missing" in data["broken"][0]["problems"][0]
