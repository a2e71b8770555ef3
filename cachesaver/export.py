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

import contextlib
import gzip
import io
import json
import os
import secrets
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from cachesaver._checks import (
    _INDEX,
    MAX_NESTING,
    _loads,
    content_problem,
    gap_problem,
    record_problems,
    sample_problem,
)
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

_GZIP_MAGIC = b"\x1f\x8b"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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
