"""Stable 63-bit hashes of a disk store's entry names, for the key index (`_keyindex`).

Stable across processes and runs (no ``hash()``, which is salted per process), so an
index can be saved and loaded. A cachesaver row's name, ``cs:<key>:request`` or
``cs:<key>:<index>``, hashes as its key's hash mixed with the suffix, so a caller that
knows the key and the index hashes without building or parsing the name
(`sample_hash`, `key_hashes`, `samples_hashes`), and catching up with stored rows
parses the name once (`entry_parts`).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable

__all__ = ["entry_hash", "entry_parts", "key_hashes", "sample_hash", "samples_hashes"]

_GOLDEN = 0x9E3779B97F4A7C15  # odd: spreads consecutive suffix codes over the table
_SPREAD = 0xC2B2AE3D27D4EB4F  # odd: spreads a key's CRC over the hash's high bits
_MASK = (1 << 63) - 1


def _base(key: str) -> int | None:
    """A 64-character key's hash, or None for other keys (hashed with BLAKE2b instead).

    Its first 16 digits read as hex (all a SHA-256 key needs), mixed with a CRC of the
    whole key, so keys that share those digits (a test's ``f"{i:064x}"``, or keys another
    program wrote) still spread over the table instead of piling up in one run of slots.
    """
    if len(key) == 64:
        try:
            head = int(key[:16], 16)
        except ValueError:
            return None
        return (head ^ zlib.crc32(key.encode()) * _SPREAD) & _MASK
    return None


def _blake(entry: str) -> int:
    return int.from_bytes(hashlib.blake2b(entry.encode(), digest_size=8).digest(), "big") & _MASK


def entry_hash(entry: str) -> int:
    """A stable 63-bit hash of an entry name (what catching up with stored rows uses).

    For cachesaver's rows (``cs:`` + a 64-hex-digit key + ``:request`` or ``:<index>``)
    it is read off the key's first 16 digits and the suffix, with no digest computed, and
    equals `sample_hash` of the same key and index. Any other name is hashed with BLAKE2b.
    """
    if len(entry) > 68 and entry[67] == ":" and entry.startswith("cs:"):
        base = _base(entry[3:67])
        if base is not None:
            suffix = entry[68:]
            if suffix == "request":
                return (base + _GOLDEN) & _MASK
            if suffix.isascii() and suffix.isdigit() and (suffix == "0" or suffix[0] != "0"):
                return (base + (int(suffix) + 2) * _GOLDEN) & _MASK
    return _blake(entry)


def entry_parts(entry: str) -> tuple[int, int, int]:
    """(`entry_hash`, the key's content hash, index + 1) of a sample row's name;
    (`entry_hash`, 0, 0) for any other name. What catching up with rows needs."""
    if entry.startswith("cs:"):
        key, _, suffix = entry[3:].rpartition(":")
        if suffix.isascii() and suffix.isdigit() and (suffix == "0" or suffix[0] != "0"):
            base = _base(key)
            index = int(suffix)
            if base is None:
                return _blake(entry), _blake(f"cs:{key}:request"), index + 1
            return (base + (index + 2) * _GOLDEN) & _MASK, (base + _GOLDEN) & _MASK, index + 1
    return entry_hash(entry), 0, 0


def sample_hash(key: str, index: int | None) -> int:
    """`entry_hash` of sample ``index`` of ``key`` (None: its content), with no parsing."""
    base = _base(key)
    if base is None:
        return _blake(f"cs:{key}:{'request' if index is None else index}")
    return (base + (1 if index is None else index + 2) * _GOLDEN) & _MASK


def key_hashes(key: str, indices: Iterable[int]) -> tuple[int, list[int]]:
    """`sample_hash` of ``key``'s content and of each of its ``indices``, the key read once."""
    base = _base(key)
    if base is None:
        return sample_hash(key, None), [sample_hash(key, i) for i in indices]
    return (base + _GOLDEN) & _MASK, [(base + (i + 2) * _GOLDEN) & _MASK for i in indices]


def samples_hashes(reads: Iterable[tuple[str, Iterable[int]]]) -> list[int]:
    """`sample_hash` of every (key, indices) pair's samples, in order (a read's hot loop)."""
    out: list[int] = []
    append = out.append
    for key, indices in reads:
        base = _base(key)
        if base is None:
            out += [sample_hash(key, i) for i in indices]
            continue
        for i in indices:
            append((base + (i + 2) * _GOLDEN) & _MASK)
    return out
