"""The export file: a whole cache, or exactly the samples a run used, as JSON lines.

A file is UTF-8 JSON lines, gzip-compressed or not (readers detect gzip by its magic
bytes)::

    {"format": "cachesaver-export", "version": 1}
    {"key": "<sha256 of content>", "content": "<canonical request JSON>",
     "samples": {"0": "<stored sample text>", "1": "..."}}
    ...
    {"end": {"keys": <key lines>, "samples": <samples over all key lines>}}

Samples are kept as the stored JSON *text*, never re-encoded, so export then import is
byte-identical. The end line lets a reader tell a complete file from a truncated one.

Reading never executes code (no pickle, no imports, no class calls): every line is checked
(size, UTF-8, JSON, fields, key = sha256(content), each sample text is JSON with well-formed
type tags) and a problem raises `ExportFileError` naming the file and line.
Functions here do blocking file I/O: call them from a worker thread in async code.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import io
import json
import os
import re
import secrets
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from cachesaver._canonical import digest
from cachesaver.codec import TAG
from cachesaver.errors import ExportFileError, ExportTooLargeError
from cachesaver.stores.base import KeyRecord

__all__ = [
    "FORMAT",
    "MAX_IMPORT_BYTES",
    "MAX_LINE_BYTES",
    "MAX_NESTING",
    "VERSION",
    "ExportContents",
    "ExportFileError",
    "ExportTooLargeError",
    "ExportWriter",
    "content_problem",
    "gap_problem",
    "read_export",
    "record_problems",
    "sample_problem",
]

FORMAT = "cachesaver-export"
VERSION = 1
MAX_LINE_BYTES = 64 * 1024 * 1024
"""Longest line a reader accepts (64 MiB): one key with all its samples."""
MAX_IMPORT_BYTES = 256 * 1024 * 1024
"""Default cap (256 MiB of uncompressed text) on what one atomic import holds in memory."""

MAX_NESTING = 256
"""Deepest JSON nesting (arrays and objects) accepted in request content and samples.

Deeper values would crash the readers that walk them (decoding, ``show``) with a
`RecursionError`, so import and verify refuse them.
"""

_GZIP_MAGIC = b"\x1f\x8b"
_KEY = re.compile(r"[0-9a-f]{64}")
_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")  # canonical decimal, below 10**9
_NON_FINITE = frozenset({"nan", "inf", "-inf"})
_SURROGATE = re.compile("[\ud800-\udfff]")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str | bytes) -> Any:
    """Strict JSON: NaN/Infinity refused; deep nesting raises ValueError, not a crash."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


# -- checks shared by import, export, copy and verify ---------------------------------------


def _shape_problem(value: Any) -> str | None:
    """Return what makes a parsed JSON value unsafe to walk or print, or None.

    Nesting deeper than `MAX_NESTING` and strings holding a lone surrogate (text that is
    not valid Unicode: printing or storing it fails) are refused.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "it holds text that is not valid Unicode (a lone surrogate)"
        elif isinstance(item, (list, dict)):
            if depth > MAX_NESTING:
                return f"it is nested deeper than {MAX_NESTING} levels"
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
    return None


def _hashable_key(key: Any) -> bool:
    """Whether a 'dict' tag key decodes to something hashable (no list or dict inside)."""
    stack = [key]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            return False
        if isinstance(item, dict):
            tag = item.get(TAG)
            if tag is None or tag == "dict":
                return False
            if tag == "tuple":
                payload = item.get("v")
                if not isinstance(payload, list):
                    return False
                stack.extend(payload)
    return True


def _tag_problem(tagged: dict[str, Any], stack: list[Any]) -> str | None:
    """Check one type-tagged object and push what the decoder would walk into."""
    tag = tagged[TAG]
    if set(tagged) != {TAG, "v"}:
        return f"a type tag object must have exactly the fields {TAG!r} and 'v'"
    if not isinstance(tag, str):
        return f"a type tag must be a string, got {_dumps(tag)[:40]}"
    payload = tagged["v"]
    if tag == "tuple":
        if not isinstance(payload, list):
            return "a 'tuple' tag needs a list"
        stack.extend(payload)
    elif tag == "dict":
        if not isinstance(payload, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in payload
        ):
            return "a 'dict' tag needs a list of [key, value] pairs"
        if not all(_hashable_key(k) for k, _ in payload):
            return "a 'dict' tag has a key that decodes to a list or dict (not hashable)"
        for pair in payload:
            stack.extend(pair)
    elif tag == "bytes":
        if not isinstance(payload, str):
            return "a 'bytes' tag needs a base64 string"
        try:
            base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return "a 'bytes' tag holds invalid base64"
    elif tag == "float":
        if payload not in _NON_FINITE:
            return "a 'float' tag needs 'nan', 'inf' or '-inf'"
    elif tag:
        # A class tag ("module:QualName", or a name given to register_type): whether the
        # class is registered is the reader's business; here the payload only has to be
        # well-formed tagged JSON.
        if isinstance(payload, dict):
            stack.extend(payload.values())
        else:
            stack.append(payload)
    else:
        return "a type tag must not be empty"
    return None


def sample_problem(text: str) -> str | None:
    """Return what is wrong with a stored sample text, or None if it decodes.

    A sample decodes when it is strict JSON whose type tags are well formed. A class tag
    counts as decodable even when its class is not registered in this process.
    """
    try:
        value = _loads(text)
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    shape = _shape_problem(value)
    if shape is not None:
        return shape
    if TAG not in text:
        return None  # decode_sample reads such a text as plain JSON
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if TAG in item:
                problem = _tag_problem(item, stack)
                if problem is not None:
                    return problem
            else:
                stack.extend(item.values())
    return None


def content_problem(key: str, content: str) -> str | None:
    """Return what is wrong with a key and its request content, or None."""
    if not _KEY.fullmatch(key):
        return "the key is not 64 lowercase hex digits"
    if digest(content) != key:
        return "the key is not the SHA-256 of its content (the content was altered)"
    try:
        data = _loads(content)
    except ValueError as exc:
        return f"the content is not valid JSON ({exc})"
    if not isinstance(data, dict) or "request" not in data:
        return "the content is not a JSON object with a 'request' field"
    shape = _shape_problem(data)
    return None if shape is None else f"the content: {shape}"


def record_problems(record: KeyRecord, *, contiguous: bool = True) -> list[str]:
    """Return every problem of one stored key: content, sample texts, and gaps."""
    problems: list[str] = []
    found = content_problem(record.key, record.content)
    if found is not None:
        problems.append(found)
    for index in sorted(record.samples):
        found = sample_problem(record.samples[index])
        if found is not None:
            problems.append(f"sample {index}: {found}")
    if contiguous:
        gaps = gap_problem(record.samples)
        if gaps is not None:
            problems.append(gaps)
    return problems


def gap_problem(indices: Iterable[int]) -> str | None:
    """Say which indices are missing when ``indices`` are not 0, 1, ..., n-1 (else None).

    Costs O(n log n) in the indices present, never in the largest index.
    """
    missing: list[str] = []
    expected = 0
    for index in sorted(indices):
        if index > expected:
            last = index - 1
            missing.append(str(expected) if last == expected else f"{expected}-{last}")
            if len(missing) > 10:
                break
        expected = index + 1
    if not missing:
        return None
    shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
    return f"the sample list has gaps: index {shown} missing"


# -- writing --------------------------------------------------------------------------------


def header_line() -> str:
    """Return the first line of every export file (without its newline)."""
    return _dumps({"format": FORMAT, "version": VERSION})


def record_line(record: KeyRecord) -> str:
    """Return the line of one key (without its newline); samples in index order."""
    samples = {str(i): record.samples[i] for i in sorted(record.samples)}
    return _dumps({"key": record.key, "content": record.content, "samples": samples})


def _create_hidden(folder: str, name: str) -> tuple[int, str]:
    """Create ``folder/.name.<random>.partial`` (mode from the umask, like any new file)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        path = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.partial")
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue


class ExportWriter:
    """Writes an export file atomically: to a hidden temporary file, renamed by `commit`.

    Until `commit` the destination is untouched; `abort` (or an error) removes the
    temporary file. With ``compress`` the file is gzip with a fixed header (no name, no
    time), so the same records give the same bytes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compress: bool,
        overwrite: bool = False,
        stream: BinaryIO | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._raw: BinaryIO
        if stream is not None:
            # A stream (stdout) cannot be renamed into place: a reader tells a cut-off
            # stream by its missing end line.
            self._tmp: str | None = None
            self._raw = stream
        else:
            if not overwrite and os.path.lexists(self.path):
                raise FileExistsError(f"{self.path} exists; pass --force to replace it")
            folder = os.path.dirname(os.path.abspath(self.path))
            fd, self._tmp = _create_hidden(folder, os.path.basename(self.path))
            self._raw = os.fdopen(fd, "wb")
        self._out: gzip.GzipFile | BinaryIO = (
            gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)
            if compress
            else self._raw
        )
        self.keys = 0
        self.samples = 0
        self._done = False
        self._out.write(header_line().encode() + b"\n")

    def write(self, records: Iterable[KeyRecord]) -> None:
        """Append one line per record."""
        lines = []
        for record in records:
            lines.append(record_line(record))
            self.keys += 1
            self.samples += len(record.samples)
        if lines:
            self._out.write(("\n".join(lines) + "\n").encode("utf-8"))

    def commit(self) -> None:
        """Write the end line, flush to disk and move the file into place."""
        end = _dumps({"end": {"keys": self.keys, "samples": self.samples}})
        self._out.write(end.encode() + b"\n")
        if self._out is not self._raw:
            self._out.close()
        self._raw.flush()
        self._done = True
        if self._tmp is None:
            return
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the temporary file; the destination stays as it was."""
        if self._done:
            return
        self._done = True
        if self._tmp is None:
            return  # a stream: the missing end line marks it incomplete
        for stream in (self._out, self._raw):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportContents:
    """The checked records of an export file (duplicate key lines merged)."""

    records: list[KeyRecord]
    samples: int
    text_bytes: int
    compressed: bool


def _check_header(data: Any) -> str | None:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return f"not a cachesaver export file (the first line must be a {FORMAT!r} header)"
    version = data.get("version")
    if type(version) is not int:
        return "the header has no integer 'version'"
    if version != VERSION:
        return (
            f"format version {version} is not supported (this cachesaver reads version "
            f"{VERSION}); upgrade cachesaver to read it"
        )
    return None


def _parse_record(data: Any) -> KeyRecord | str:
    if not isinstance(data, dict) or set(data) != {"key", "content", "samples"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        return f"a key line must be an object with fields content, key, samples; got {got}"
    key, content, samples = data["key"], data["content"], data["samples"]
    if not isinstance(key, str) or not isinstance(content, str):
        return "'key' and 'content' must be strings"
    problem = content_problem(key, content)
    if problem is not None:
        return f"key {key[:64]!r}: {problem}"
    if not isinstance(samples, dict):
        return f"key {key[:12]}: 'samples' must be an object of index -> sample text"
    parsed: dict[int, str] = {}
    for index, text in samples.items():
        if not _INDEX.fullmatch(index):
            return f"key {key[:12]}: sample index {index[:20]!r} is not a decimal below 10**9"
        if not isinstance(text, str):
            return f"key {key[:12]}: sample {index} must be the stored JSON text (a string)"
        problem = sample_problem(text)
        if problem is not None:
            return f"key {key[:12]}: sample {index}: {problem}"
        parsed[int(index)] = text
    return KeyRecord(key, content, dict(sorted(parsed.items())))


def _lines(
    stream: gzip.GzipFile | io.BufferedReader, path: str, max_line: int
) -> Iterable[tuple[int, bytes]]:
    number = 0
    while True:
        number += 1
        try:
            line = stream.readline(max_line + 1)
        except (EOFError, OSError, zlib.error) as exc:
            raise ExportFileError(
                path, number, f"the gzip data is damaged or truncated ({exc})"
            ) from None
        if not line:
            return
        if len(line) > max_line:
            raise ExportFileError(
                path,
                number,
                f"the line is longer than {max_line} bytes (the limit for one key); "
                "refusing to read it",
            )
        yield number, line


def read_export(
    path: str | os.PathLike[str] | io.BufferedReader,
    *,
    max_bytes: int | None = None,
    max_line_bytes: int | None = None,
    progress: Callable[[int], object] | None = None,
) -> ExportContents:
    """Read and check a whole export file; raise `ExportFileError` at the first problem.

    ``max_bytes`` (default `MAX_IMPORT_BYTES`) caps the uncompressed text held in memory
    and ``max_line_bytes`` (default `MAX_LINE_BYTES`) one line. ``progress(n)`` is called
    as the file is read, with how many more bytes of the file (compressed or not) were
    consumed. ``path`` may be an open binary stream (stdin). Lines for the same key are
    merged; the same index with two different texts is an error.
    """
    name = "<stdin>" if isinstance(path, io.BufferedReader) else os.fspath(path)
    limit = MAX_IMPORT_BYTES if max_bytes is None else max_bytes
    max_line = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
    merged: dict[str, tuple[str, dict[int, str]]] = {}
    first_line: dict[str, int] = {}
    seen_lines = samples = total = 0
    last = 0
    ended = False
    with contextlib.ExitStack() as closing:
        if isinstance(path, io.BufferedReader):
            raw: io.BufferedReader = path
        else:
            raw = closing.enter_context(open(name, "rb"))
        compressed = raw.peek(2)[:2] == _GZIP_MAGIC
        stream: gzip.GzipFile | io.BufferedReader = (
            gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        )
        seekable = raw.seekable()
        done = 0
        for number, line in _lines(stream, name, max_line):
            last = number
            total += len(line)
            if progress is not None:
                # Bytes of the file itself (compressed or not), so a bar's total is its size.
                at = raw.tell() if compressed and seekable else total
                progress(at - done)
                done = at
            if total > limit:
                raise ExportTooLargeError(
                    name,
                    number,
                    f"the file holds more than {limit} bytes of text, the most one atomic "
                    "import loads at once; raise the limit (--max-bytes) if the machine "
                    "has the memory, or split the export (e.g. one file per manifest)",
                )
            try:
                data = _loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                raise ExportFileError(name, number, "the line is not valid UTF-8") from None
            except ValueError as exc:
                raise ExportFileError(name, number, f"the line is not valid JSON ({exc})") from None
            if number == 1:
                problem = _check_header(data)
                if problem is not None:
                    raise ExportFileError(name, number, problem)
                continue
            if ended:
                raise ExportFileError(name, number, "there is data after the end line")
            if isinstance(data, dict) and set(data) == {"end"}:
                _check_end(data["end"], seen_lines, samples, name, number)
                ended = True
                continue
            record = _parse_record(data)
            if isinstance(record, str):
                raise ExportFileError(name, number, record)
            seen_lines += 1
            samples += len(record.samples)
            first_line.setdefault(record.key, number)
            _merge(merged, record, name, number)
    if last == 0:
        raise ExportFileError(name, 1, "the file is empty (expected a cachesaver export header)")
    if not ended:
        raise ExportFileError(
            name, last + 1, "the file ends without its end line: it is truncated or incomplete"
        )
    for key, (_, samples_of) in merged.items():
        gaps = gap_problem(samples_of)
        if gaps is not None:
            raise ExportFileError(
                name,
                first_line[key],
                f"key {key[:12]}: {gaps} (every key's samples must be numbered 0, 1, 2, ... "
                "as a store holds them)",
            )
    records = [KeyRecord(k, c, dict(sorted(s.items()))) for k, (c, s) in merged.items()]
    return ExportContents(
        records=records,
        samples=sum(len(r.samples) for r in records),
        text_bytes=total,
        compressed=compressed,
    )


def _check_end(end: Any, keys: int, samples: int, path: str, number: int) -> None:
    if not isinstance(end, dict) or set(end) != {"keys", "samples"}:
        raise ExportFileError(path, number, "the end line must be {'end': {'keys', 'samples'}}")
    if end["keys"] != keys or end["samples"] != samples:
        raise ExportFileError(
            path,
            number,
            f"the end line announces {end['keys']} key lines and {end['samples']} samples but "
            f"the file holds {keys} and {samples}: lines are missing or were added",
        )


def _merge(
    merged: dict[str, tuple[str, dict[int, str]]], record: KeyRecord, path: str, number: int
) -> None:
    known = merged.get(record.key)
    if known is None:
        merged[record.key] = (record.content, dict(record.samples))
        return
    samples = known[1]
    for index, text in record.samples.items():
        have = samples.setdefault(index, text)
        if have != text:
            raise ExportFileError(
                path,
                number,
                f"key {record.key[:12]}: sample {index} differs from an earlier line for the "
                "same key",
            )
