"""The in-memory key index of issue 15's storage design (`cachesaver.stores._keyindex`)."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cachesaver.errors import CacheSaverError
from cachesaver.stores._entryhash import entry_hash, sample_hash
from cachesaver.stores._keyindex import KeyIndex, KeyIndexFileError

KEY = "ab" * 32


def test_entry_hash_is_the_same_in_every_process() -> None:
    """An entry's hash does not depend on the process's hash salt, so an index can be saved."""
    names = [f"cs:{KEY}:request", f"cs:{KEY}:0", "cs:store", "cs:short-key:3"]
    code = (
        "from cachesaver.stores._entryhash import entry_hash\n"
        f"print([entry_hash(n) for n in {names!r}])"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert seen == {f"{[entry_hash(n) for n in names]}\n"}


def test_entry_hash_tells_apart_the_samples_and_content_of_one_key() -> None:
    """Every entry of one key, and names that are not cachesaver's, get distinct 63-bit hashes."""
    names = [f"cs:{KEY}:request"] + [f"cs:{KEY}:{i}" for i in range(1000)]
    names += ["cs:store", "cs:run:x", f"cs:{'zz' * 32}:0", f"cs:{'zz' * 32}:1"]
    hashes = [entry_hash(name) for name in names]
    assert len(set(hashes)) == len(names)
    assert all(0 <= h < 2**63 for h in hashes)


def test_an_index_finds_every_rowid_added_and_nothing_else() -> None:
    """Every added pair is a candidate of its hash, through several growths."""
    draw = random.Random(7)
    index = KeyIndex()
    pairs = [(draw.getrandbits(63), rowid) for rowid in range(1, 20_001)]
    for start in range(0, len(pairs), 777):
        index.add(pairs[start : start + 777])
    assert len(index) == len(pairs)
    for entry_hash_, rowid in pairs:
        assert index.candidates(entry_hash_) == [rowid]
    assert index.candidates(draw.getrandbits(63)) == []


def test_colliding_hashes_keep_every_rowid() -> None:
    """Rows with one hash, or one mark, are all candidates, so the caller's name check decides."""
    index = KeyIndex()
    index.add([(42 << 31, 1), (42 << 31, 9), (42 << 31, 1), ((42 << 31) | 7, 4)])
    assert sorted(index.candidates(42 << 31)) == [1, 4, 9]
    assert index.candidates(43 << 31) == []
    assert len(index) == 3


def test_lookups_during_a_growth_see_both_tables() -> None:
    """While a growth moves entries in steps, every entry stays findable and none is lost."""
    draw = random.Random(3)
    index = KeyIndex()
    pairs: list[tuple[int, int]] = []
    rowid = 0
    saw_growing = False
    while len(pairs) < 6000:
        rowid += 1
        pair = (draw.getrandbits(63), rowid)
        pairs.append(pair)
        index.add([pair])
        if index.growing:
            saw_growing = True
            # a few random earlier pairs, and the newest, are still found
            for old in [*draw.sample(pairs, 5), pair]:
                assert old[1] in index.candidates(old[0])
    assert saw_growing and not index.growing
    assert len(index) == len(pairs)
    assert all(index.candidates(h) == [r] for h, r in pairs)


def test_adding_a_known_pair_again_during_a_growth_keeps_one() -> None:
    """A pair added again while entries are being moved (a catch-up that re-reads rows) is
    not stored twice, whether or not it was moved yet."""
    index, pairs = _filled(600, seed=23)
    draw = random.Random(29)
    rowid = len(pairs)
    while not index.growing:
        rowid += 1
        pairs.append((draw.getrandbits(63), rowid))
        index.add(pairs[-1:])
    index.add(pairs)  # every pair again, some moved already and some not
    assert len(index) == len(pairs)
    assert all(index.candidates(h) == [r] for h, r in pairs)


def test_a_growth_moves_only_a_few_slots_per_added_entry() -> None:
    """No single add rehashes the whole table: the old table is kept until moved in steps."""
    index = KeyIndex()
    draw = random.Random(5)
    rowid = 0
    while not index.growing:
        rowid += 1
        index.add([(draw.getrandbits(63), rowid)])
    both = index.nbytes
    rowid += 1
    index.add([(draw.getrandbits(63), rowid)])
    assert index.growing and index.nbytes == both


def test_removed_pairs_are_not_candidates_and_are_dropped_by_a_growth() -> None:
    """A removed pair is gone; probes walk past its slot, and the next growth frees it."""
    index = KeyIndex()
    draw = random.Random(11)
    pairs = [((12345 << 31) | draw.getrandbits(31), rowid) for rowid in range(1, 301)]
    index.add(pairs)  # one mark, so one probe chain: removal marks must be walked past
    for h, rowid in pairs[::2]:
        assert index.remove(h, rowid)
    assert not index.remove(*pairs[0])
    assert len(index) == 150
    kept = [rowid for _, rowid in pairs if rowid % 2 == 0]
    assert all(index.candidates(h) == kept for h, _ in pairs)
    rowid = 1000
    while not index.growing:
        rowid += 1
        index.add([(draw.getrandbits(63), rowid)])
    assert all(index.candidates(h) == kept for h, _ in pairs)


def test_a_sized_index_does_not_grow_while_it_is_built() -> None:
    """An index made for a store's row count holds them all without a growth."""
    draw = random.Random(13)
    index = KeyIndex(expected=50_000)
    size = index.nbytes
    index.add((draw.getrandbits(63), rowid) for rowid in range(1, 50_001))
    assert index.nbytes == size and not index.growing


def test_a_rowid_must_be_positive() -> None:
    """Rowids outside 1 to 2**32 - 2 (the others mark empty and removed slots) are refused."""
    for rowid in (0, -1, 2**32 - 1, 2**40):
        with pytest.raises(ValueError, match="rowids 1 to"):
            KeyIndex().add([(1, rowid)])
    index = KeyIndex()
    index.add([(1, 2**32 - 2)])
    assert index.candidates(1) == [2**32 - 2]


@pytest.mark.parametrize("key", [KEY, "0123456789abcdef" * 4, "Zz" * 32, "short", "a:b"])
def test_a_key_and_index_hash_as_their_entry_name_does(key: str) -> None:
    """Hashing (key, index) without a name gives what parsing the stored entry name gives."""
    assert sample_hash(key, None) == entry_hash(f"cs:{key}:request")
    for index in (0, 1, 9, 10, 12345):
        assert sample_hash(key, index) == entry_hash(f"cs:{key}:{index}")


def test_names_that_are_not_samples_do_not_take_a_samples_hash() -> None:
    """A suffix that is not a sample index as cachesaver writes it is hashed as a plain name."""
    for suffix in ("00", "01", "-1", "+1", "\u0661", "1 "):
        assert entry_hash(f"cs:{KEY}:{suffix}") not in {
            sample_hash(KEY, i) for i in (0, 1, -1, 2, None)
        }


def _filled(count: int, seed: int = 17) -> tuple[KeyIndex, list[tuple[int, int]]]:
    draw = random.Random(seed)
    index = KeyIndex()
    pairs = [(draw.getrandbits(63), rowid) for rowid in range(1, count + 1)]
    index.add(pairs)
    return index, pairs


def test_a_saved_index_loads_with_every_entry_and_its_meta(tmp_path: Path) -> None:
    """Saving mid-growth and loading gives the same candidates, count and meta."""
    index, pairs = _filled(3000)
    removed = pairs[::7]
    for pair in removed:
        index.remove(*pair)
    draw = random.Random(19)
    while not index.growing:
        pairs.append((draw.getrandbits(63), len(pairs) + 1))
        index.add(pairs[-1:])
    path = str(tmp_path / "index")
    index.save(path, {"seen": 3000, "store": "abc"})
    loaded, meta = KeyIndex.load(path)
    assert meta == {"seen": 3000, "store": "abc"}
    assert len(loaded) == len(index) == len(pairs) - len(removed)
    gone = set(removed)
    for h, rowid in pairs:
        assert loaded.candidates(h) == ([] if (h, rowid) in gone else [rowid])
    loaded.add([(5, len(pairs) + 1)])  # and it goes on growing as any index
    assert loaded.candidates(5) == [len(pairs) + 1]
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # no temporary file is left


@pytest.mark.parametrize(
    "damage",
    ["flip a byte", "cut short", "empty", "other machine", "other version", "sizes", "full"],
)
def test_a_damaged_saved_index_is_refused_by_name(tmp_path: Path, damage: str) -> None:
    """A saved index that was changed, cut, or written elsewhere raises KeyIndexFileError."""
    index, _ = _filled(500)
    path = tmp_path / "index"
    index.save(str(path), {"seen": 500})
    data = bytearray(path.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 1
    elif damage == "cut short":
        del data[-100:]
    elif damage == "empty":
        data = bytearray()
    else:  # a well-formed file (checksum and all) that this process must not trust
        length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + length])
        if damage == "other machine":
            header["byteorder"] = "big" if sys.byteorder == "little" else "little"
        elif damage == "other version":
            header["version"] = 2
        elif damage == "sizes":
            header["used"] = header["size"]
        arrays = bytes(data[8 + length : -32])
        if damage == "full":  # a crafted file whose every slot is taken: lookups never end
            half = len(arrays) // 2
            arrays = arrays[:half] + b"\x01" * half
        text = json.dumps(header).encode()
        body = len(text).to_bytes(8, "little") + text + arrays
        data = bytearray(body + hashlib.blake2b(body, digest_size=32).digest())
    path.write_bytes(bytes(data))
    with pytest.raises(KeyIndexFileError, match="index"):
        KeyIndex.load(str(path))
    assert issubclass(KeyIndexFileError, CacheSaverError)


def test_loading_a_missing_saved_index_names_the_path(tmp_path: Path) -> None:
    """A missing file is a KeyIndexFileError naming it, not a bare OSError."""
    with pytest.raises(KeyIndexFileError, match="nothing-here"):
        KeyIndex.load(str(tmp_path / "nothing-here"))


def test_keys_sharing_their_first_digits_still_spread_over_the_table() -> None:
    """Keys alike in their first 16 digits (counters, another program's names) get
    distinct marks, so they do not pile up in one run of slots."""
    keys = [f"{i:064x}" for i in range(10_000)]
    marks = {sample_hash(key, None) >> 31 for key in keys}
    assert len(marks) >= 9_990
    index = KeyIndex()
    index.add((sample_hash(key, 0), rowid) for rowid, key in enumerate(keys, start=1))
    assert all(index.candidates(sample_hash(key, 0)) == [r] for r, key in enumerate(keys, 1))
