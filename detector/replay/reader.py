"""Read captured OTLP requests from files, for ``otel-anomaly replay``.

Formats (detected from the content; the file name only breaks ties):

- **OTLP/JSON lines** (``.json``, ``.jsonl``, ``.ndjson``): one
  ``Export*ServiceRequest`` JSON object per line, as the Collector's ``file``
  exporter writes them (OTLP JSON encoding, see
  :mod:`detector.normalise.otlp_json`). A file whose first non-blank line is
  not a complete JSON object is read as a sequence of (pretty-printed) JSON
  objects instead, e.g. the official examples of opentelemetry-proto.
- **binary protobuf** (``.pb``, ``.bin``, ``.proto``): one request per file, or a
  length-delimited stream (each request preceded by its size as a protobuf
  varint, as ``writeDelimitedTo`` writes them).
- any of these gzip-compressed (detected by the gzip magic bytes, e.g. ``.gz``).

The signal of a binary request comes from the file name when it contains
``trace``/``span``, ``log`` or ``metric``; else the request is decoded as each
signal and the one that keeps the most bytes as known fields wins (the three
request types share their top-level layout, and protobuf keeps mismatched
fields as unknown instead of failing).
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from detector.normalise._common import UndecodableRequest, check_protobuf_backend, parse
from detector.normalise.otlp_json import SIGNALS, OtlpJsonError, parse_request

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
BINARY_SUFFIXES = (".pb", ".bin", ".proto", ".binpb")


class ReplayInputError(Exception):
    """A replay input cannot be read.

    Attributes:
        path: the file. line: 1-based line number for JSON input (``None`` for
            binary input or when the whole file is unreadable). message: why.
    """

    def __init__(self, path: str | os.PathLike, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


_GZIP_ERRORS = (OSError, EOFError, zlib.error)


def _open(path: Path):
    """Open ``path`` for binary reading, transparently gunzipping (gzip magic bytes)."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise ReplayInputError(path, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        head = raw.peek(2)[:2]
    except OSError as exc:
        raw.close()
        raise ReplayInputError(path, None, f"cannot read: {exc.strerror or exc}") from None
    if head == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


def _signal_hint(path: Path) -> str | None:
    name = path.name.lower()
    if "trace" in name or "span" in name:
        return "traces"
    if "log" in name:
        return "logs"
    if "metric" in name:
        return "metrics"
    return None


def _is_json(path: Path, head: bytes) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if any(s in JSON_SUFFIXES for s in suffixes):
        return True
    if any(s in BINARY_SUFFIXES for s in suffixes):
        return False
    return head.lstrip()[:1] in (b"{", b"")


def iter_requests(path: str | os.PathLike) -> Iterator[tuple[str, object]]:
    """Yield ``(signal, request message)`` for every request stored in ``path``.

    ``signal`` is ``traces``, ``logs`` or ``metrics``; the message is an
    ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest`` /
    ``ExportMetricsServiceRequest`` (normalise it with
    :func:`detector.normalise.normalise_traces` etc.). A directory yields the
    requests of its files with known suffixes, in name order.

    Raises:
        ReplayInputError: the file cannot be read, is not one of the formats, or
            a line / message in it is invalid (raised when reached; requests
            before it have been yielded).
    """
    check_protobuf_backend()
    p = Path(path)
    if p.is_dir():
        for child in sorted(p.iterdir()):
            base = child.name.lower().removesuffix(".gz")
            if child.is_file() and base.endswith(JSON_SUFFIXES + BINARY_SUFFIXES):
                yield from iter_requests(child)
        return
    stream, raw = _open(p)
    with raw, stream:
        try:
            head = stream.peek(4096)[:4096]
        except _GZIP_ERRORS as exc:
            raise ReplayInputError(p, None, f"corrupt gzip data: {exc}") from None
        if _is_json(p, head):
            yield from _iter_json(p, stream)
            return
        try:
            data = stream.read()
        except _GZIP_ERRORS as exc:
            raise ReplayInputError(p, None, f"corrupt gzip data: {exc}") from None
    yield from _iter_binary(p, data)


def _lines(path: Path, stream) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of every line; invalid UTF-8 bytes become U+FFFD."""
    lineno = 0
    it = iter(stream)
    while True:
        try:
            raw = next(it)
        except StopIteration:
            return
        except _GZIP_ERRORS as exc:
            raise ReplayInputError(path, lineno + 1, f"corrupt gzip data: {exc}") from None
        lineno += 1
        yield lineno, raw.decode("utf-8", "replace")


def _iter_json(path: Path, stream) -> Iterator[tuple[str, object]]:
    """JSON lines, streamed; or, when the first non-blank line is not a whole object, a
    sequence of (pretty-printed) JSON objects read as one text."""
    lines = _lines(path, stream)
    first = None
    for lineno, line in lines:
        if line.strip():
            first = (lineno, line)
            break
    if first is None:
        return
    try:
        line_mode = isinstance(json.loads(first[1]), dict)
    except (ValueError, RecursionError):
        line_mode = False
    if line_mode:
        for lineno, line in itertools.chain([first], lines):
            if not line.strip():
                continue
            try:
                yield parse_request(json.loads(line))
            except (ValueError, RecursionError) as exc:  # json.JSONDecodeError, OtlpJsonError, too deep
                raise ReplayInputError(path, lineno, _why(exc)) from None
        return
    # A sequence of (pretty-printed) JSON objects: small files, read as one text.
    offset = first[0] - 1  # blank lines before the first object
    text = first[1] + "".join(line for _, line in lines)
    decoder = json.JSONDecoder()
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            return
        line = offset + text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
            yield parse_request(obj)
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, json.JSONDecodeError):
                line = offset + exc.lineno
            raise ReplayInputError(path, line, _why(exc)) from None


def _why(exc: ValueError | RecursionError) -> str:
    if isinstance(exc, RecursionError):
        return "invalid JSON: nested too deeply"
    if isinstance(exc, OtlpJsonError):
        return f"invalid OTLP/JSON: {exc}"
    return f"invalid JSON: {exc}"


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    result = shift = 0
    n = len(data)
    while pos < n and shift < 64:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    return None


def _delimited(data: bytes) -> list[tuple[int, int]] | None:
    """Chunk bounds if ``data`` is exactly a varint-length-delimited stream, else None."""
    chunks = []
    pos, n = 0, len(data)
    while pos < n:
        v = _varint(data, pos)
        if v is None:
            return None
        size, start = v
        end = start + size
        if end > n:
            return None
        chunks.append((start, end))
        pos = end
    return chunks


def _decode_any(data: bytes, hint: str | None):
    """Decode one binary request: (signal, message, bytes kept as known fields).

    Raises:
        UndecodableRequest: no signal's request type decodes it.
    """
    best = None
    for signal, cls in SIGNALS.items():
        if hint is not None and signal != hint:
            continue
        try:
            msg, _ = parse(cls, data)
        except UndecodableRequest:
            continue
        copy = cls()
        copy.CopyFrom(msg)
        copy.DiscardUnknownFields()
        known = copy.ByteSize()
        if best is None or known > best[2]:
            best = (signal, msg, known)
    if best is None:
        what = f"an OTLP {hint} request" if hint else "an OTLP trace, logs or metrics request"
        raise UndecodableRequest(f"not {what}")
    return best


def _iter_binary(path: Path, data: bytes) -> Iterator[tuple[str, object]]:
    if not data:
        return
    hint = _signal_hint(path)
    chunks = _delimited(data)
    if chunks is None or len(chunks) == 1:
        # One request per file, unless the bytes are exactly one length-prefixed
        # request that decodes better (more bytes as known fields) than the whole.
        single = stream = None
        try:
            single = _decode_any(data, hint)
        except UndecodableRequest as exc:
            error = exc
        if chunks is not None:
            start, end = chunks[0]
            try:
                stream = _decode_any(data[start:end], hint)
            except UndecodableRequest as exc:
                error = exc
        if single is None and stream is None:
            raise ReplayInputError(path, None, f"not a binary OTLP request or length-delimited stream: {error}")
        if stream is not None and (single is None or stream[2] / max(1, end - start) > single[2] / len(data)):
            single = stream
        yield single[0], single[1]
        return
    for i, (start, end) in enumerate(chunks):
        try:
            signal, msg, _ = _decode_any(data[start:end], hint)
        except UndecodableRequest as exc:
            raise ReplayInputError(path, None, f"request #{i + 1} (bytes {start}..{end}) of the stream: {exc}") from None
        yield signal, msg


__all__ = ["iter_requests", "ReplayInputError"]
