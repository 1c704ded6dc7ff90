"""Shared pieces of the OTLP decoders: the result type, errors, AnyValue conversion.

Limits applied to attacker-controlled shapes (documented outcome, never an error):

- kvlist / array nesting deeper than :data:`MAX_DEPTH` levels becomes the string
  :data:`DEPTH_MARKER` at that level;
- arrays keep their first :data:`MAX_ARRAY` values;
- a span / log record keeps its first :data:`MAX_ATTRIBUTES` attributes
  (the OTel SDK's own default limit is 128); the record is still accepted and
  counted in :attr:`DecodeResult.truncated`.

A request nested deeper than the protobuf parser's recursion limit (100
message levels: about 31 nested kvlist values) fails the fast decode; the
salvage (:mod:`detector.normalise.salvage`) then decodes it with values at
level :data:`MAX_DEPTH` left opaque, so it gives the same records as a
request nested 20 deep (the marker at level 8), with the cut counted in
:attr:`DecodeResult.cut`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from google.protobuf.internal import api_implementation
from google.protobuf.message import DecodeError

from detector.normalise.records import EMPTY, LogRecord, SpanRecord

log = logging.getLogger(__name__)

MAX_DEPTH = 8
"""Nesting levels of kvlist/array values kept; deeper values become :data:`DEPTH_MARKER`."""
DEPTH_MARKER = "<max depth exceeded>"
MAX_ARRAY = 1000
"""Values kept per array attribute (the rest is cut off)."""
MAX_ATTRIBUTES = 4096
"""Attributes kept per span / log record / resource (the rest is cut off and counted)."""

MAX_INTERNED_KEYS = 10_000
MAX_INTERNED_KEY_LEN = 128
KEYS: dict[str, str] = {}
"""Attribute keys seen so far, each once (at most :data:`MAX_INTERNED_KEYS` keys of at most
:data:`MAX_INTERNED_KEY_LEN` characters: senders choose keys). The decoders put these ``str``
objects into every record's ``attrs`` instead of the fresh copy protobuf returns, so a queued
span holds ~10 fewer objects (measured on the bench_ingest payload: 2.07 -> 1.34 kB RSS per
decoded span kept; CPU cost about neutral: the lookup costs what freeing the copy saves). Dict
reads/writes are atomic under the GIL; several receiver threads may race past the cap by a few
keys. A key flood fills it with junk once; later new keys are then simply not shared."""

NANOS = 1e9
"""Nanoseconds per second (timestamps are divided by it: correctly rounded seconds)."""

# OTLP ids.
TRACE_ID_LEN = 16
SPAN_ID_LEN = 8
ZERO_TRACE_ID = bytes(TRACE_ID_LEN)
ZERO_SPAN_ID = bytes(SPAN_ID_LEN)


class UndecodableRequest(ValueError):
    """The request bytes are not a protobuf message of the expected OTLP type.

    The receiver answers INVALID_ARGUMENT (not retryable); replay reports the
    file and position. ``str(err)`` is safe to show to the sender.
    """


@dataclass(slots=True)
class DecodeResult:
    """What one OTLP Export request normalises to.

    Attributes:
        spans, logs: accepted records (rejected items are not here).
        data_points: metric data points in the request (counted only).
        rejected: items (spans / log records) dropped as unusable.
        reasons: ``Counter`` of short reason words (``invalid_trace_id``,
            ``invalid_span_id``) -> rejected items; sums to ``rejected``.
        error_message: human text for ``partial_success.error_message``;
            ``""`` when nothing was rejected.
        utf8_repaired: the request had invalid UTF-8 in string fields and was
            salvaged (bad sequences replaced by U+FFFD).
        truncated: records whose attributes were cut at :data:`MAX_ATTRIBUTES`.
        cut: ``Counter`` of values cut to bound memory, by reason: ``depth``
            (a kvlist/array nested deeper than :data:`MAX_DEPTH` levels, or than
            the protobuf parser's limit, replaced by :data:`DEPTH_MARKER`),
            ``array`` (arrays cut at :data:`MAX_ARRAY` values), ``attributes``
            (attributes dropped beyond :data:`MAX_ATTRIBUTES` on one record /
            resource / kvlist).
        depth_salvaged: the request nested values deeper than the protobuf
            parser's limit and was decoded by the depth-capped salvage
            (:mod:`detector.normalise.salvage`); those values are ``depth`` cuts.
    """

    spans: list[SpanRecord] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    data_points: int = 0
    rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    error_message: str = ""
    utf8_repaired: bool = False
    truncated: int = 0
    cut: Counter = field(default_factory=Counter)
    depth_salvaged: bool = False

    @property
    def accepted(self) -> int:
        """Spans + log records accepted (data points not included)."""
        return len(self.spans) + len(self.logs)

    def finish(self, noun: str) -> "DecodeResult":
        """Fill ``rejected`` and ``error_message`` from ``reasons`` (``noun``: "spans" / "log records")."""
        total = sum(self.reasons.values())
        self.rejected = total
        if total:
            parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.reasons.items()))
            self.error_message = f"rejected {total} {noun}: {parts}"
        return self


_SIMPLE = frozenset(("string_value", "bool_value", "int_value", "double_value"))


def any_value(v, depth: int = 0, cut: Counter | None = None):
    """Convert an OTLP ``AnyValue`` message into a plain Python value.

    string -> ``str``, bool -> ``bool``, int -> ``int``, double -> ``float``,
    bytes -> ``bytes``, array -> ``list`` (first :data:`MAX_ARRAY` values),
    kvlist -> ``dict`` (later duplicate keys win), unset -> :data:`EMPTY`.
    Beyond :data:`MAX_DEPTH` nested levels the value is :data:`DEPTH_MARKER`.
    ``cut`` (optional ``Counter``) counts what was cut off, by reason
    (see :attr:`DecodeResult.cut`).
    """
    w = v.WhichOneof("value")
    if w in _SIMPLE:
        return getattr(v, w)
    if w is None:
        return EMPTY
    if w == "bytes_value":
        return v.bytes_value
    if depth >= MAX_DEPTH:
        if cut is not None:
            cut["depth"] += 1
        return DEPTH_MARKER
    d1 = depth + 1
    if w == "array_value":
        vals = v.array_value.values
        if len(vals) > MAX_ARRAY:
            if cut is not None:
                cut["array"] += 1
            vals = vals[:MAX_ARRAY]
        out = []
        app = out.append
        for item in vals:
            iw = item.WhichOneof("value")
            if iw in _SIMPLE:
                app(getattr(item, iw))
            else:
                app(any_value(item, d1, cut))
        return out
    # kvlist_value
    outd = {}
    kvs = v.kvlist_value.values
    if len(kvs) > MAX_ATTRIBUTES:
        if cut is not None:
            cut["attributes"] += len(kvs) - MAX_ATTRIBUTES
        kvs = kvs[:MAX_ATTRIBUTES]
    for kv in kvs:
        item = kv.value
        iw = item.WhichOneof("value")
        outd[kv.key] = getattr(item, iw) if iw in _SIMPLE else any_value(item, d1, cut)
    return outd


def attributes(kvs, cut: Counter | None = None, owner=None) -> dict:
    """Convert a repeated ``KeyValue`` field into a dict (first :data:`MAX_ATTRIBUTES` only;
    ``cut`` as in :func:`any_value`); keys are shared through :data:`KEYS`. ``owner`` (the
    message holding ``kvs``) is not used here: the signature is the one of
    :func:`detector.normalise.fastpath.raw_attributes`.

    The one attribute loop of every record and resource: the per-span hot path of
    ingest, so it reads ``string_value`` first (most values are non-empty strings:
    one read instead of ``WhichOneof`` + ``getattr``; an unset oneof member reads as "").
    """
    if len(kvs) > MAX_ATTRIBUTES:
        if cut is not None:
            cut["attributes"] += len(kvs) - MAX_ATTRIBUTES
        kvs = kvs[:MAX_ATTRIBUTES]
    keys = KEYS
    intern_get = keys.get
    out = {}
    for kv in kvs:
        v = kv.value
        w = v.string_value
        k = kv.key
        ik = intern_get(k)
        if ik is not None:
            k = ik
        elif len(keys) < MAX_INTERNED_KEYS and len(k) <= MAX_INTERNED_KEY_LEN:
            keys[k] = k
        if w:
            out[k] = w
        else:
            w = v.WhichOneof("value")
            out[k] = getattr(v, w) if w in _SIMPLE else any_value(v, 0, cut)
    return out


_checked = False


def check_protobuf_backend() -> str:
    """Return the protobuf backend name and log a loud warning once when it is not ``upb``.

    The pure-Python backend decodes about 100x slower (algorithms.md §4), so a
    receiver on it cannot keep up with one Collector.
    """
    global _checked
    kind = api_implementation.Type()
    if kind != "upb" and not _checked:
        log.warning(
            "protobuf backend is %r, not 'upb': OTLP decoding will be ~100x slower. "
            "Install a protobuf wheel with the upb backend and unset "
            "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION.",
            kind,
        )
    _checked = True
    return kind


def parse(cls: type, data: bytes):
    """Parse ``data`` as the OTLP request class ``cls``, salvaging invalid UTF-8 and
    values nested deeper than the parser allows (:mod:`detector.normalise.salvage`).

    Returns:
        ``(message, stats)``: ``stats`` is None when the fast decode worked, else the
        :class:`~detector.normalise.salvage.SalvageStats` of the salvage.

    Raises:
        UndecodableRequest: ``data`` is not a protobuf ``cls`` (corrupt wire
            format, or non-empty bytes holding none of the request's fields).
    """
    stats = None
    try:
        msg = cls.FromString(data)
    except DecodeError:
        from detector.normalise.salvage import salvage

        try:
            msg, stats = salvage(cls, data)
        except Exception:  # DecodeError, or anything else from the generic copy
            raise UndecodableRequest(
                f"request body is not a valid {cls.DESCRIPTOR.name} protobuf ({len(data)} bytes): corrupt wire "
                "format"
            ) from None
    except Exception as exc:  # upb raises other errors for some corrupt inputs
        raise UndecodableRequest(f"request body is not a valid {cls.DESCRIPTOR.name} protobuf: {exc}") from None
    if data and not msg.ListFields():
        raise UndecodableRequest(
            f"request body holds no {cls.DESCRIPTOR.name} fields ({len(data)} bytes of unknown fields)"
        )
    return msg, stats


def apply_salvage(result: DecodeResult, stats) -> DecodeResult:
    """Record what :func:`parse` salvaged (``stats``, or None) on ``result``."""
    if stats is not None:
        result.utf8_repaired = stats.utf8 > 0
        if stats.depth:
            result.depth_salvaged = True
            result.cut["depth"] += stats.depth
    return result


def decode_standard(cls: type, data: bytes, normalise) -> DecodeResult:
    """Decode ``data`` on the real OTLP class ``cls`` (:func:`parse`, with its salvage) and
    normalise it with ``normalise(msg)``; what the salvage repaired is recorded on the result.

    Raises:
        UndecodableRequest: as :func:`parse`.
    """
    msg, stats = parse(cls, data)
    return apply_salvage(normalise(msg), stats)

