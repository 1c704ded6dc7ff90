"""Build normalised records directly (no OTLP), for unit tests of pipeline/detectors.

    from tests.support.records import span, log_record, resource
    s = span("checkout", end=1_700_000_005.0, error=True)
"""

from __future__ import annotations

import itertools
import os

from detector.normalise.records import SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET, LogRecord, Resource, Scope, SpanRecord

_SCOPE = Scope("tests")
_RESOURCES: dict[tuple[str, str], Resource] = {}
_ids = itertools.count(1)


def resource(service: str, version: str = "") -> Resource:
    """A shared :class:`Resource` per (service, version), like one SDK process."""
    key = (service, version)
    r = _RESOURCES.get(key)
    if r is None:
        attrs = {"service.name": service}
        if version:
            attrs["service.version"] = version
        r = _RESOURCES[key] = Resource(service, version, attrs, "")
    return r


def span(
    service: str = "svc",
    end: float = 1_700_000_000.0,
    error: bool = False,
    *,
    version: str = "",
    kind: int = SPAN_KIND_SERVER,
    name: str = "GET /",
    peer: str = "",
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    attrs: dict | None = None,
) -> SpanRecord:
    """One server span ending at ``end`` (seconds); unique ids unless given."""
    n = next(_ids)
    return SpanRecord(
        resource(service, version),
        _SCOPE,
        trace_id if trace_id is not None else n.to_bytes(8, "big") + os.urandom(8),
        span_id if span_id is not None else n.to_bytes(8, "big"),
        b"",
        name,
        kind,
        end - 0.01,
        end,
        STATUS_ERROR if error else STATUS_UNSET,
        "",
        500 if error else 200,
        None,
        name,
        error,
        peer,
        dict(attrs or {}),
    )


def log_record(service: str = "svc", time: float = 1_700_000_000.0, severity: int = 9, body: str = "hello", version: str = "") -> LogRecord:
    """One log record at ``time`` (seconds) with ``severity`` (17+ is an error)."""
    return LogRecord(resource(service, version), _SCOPE, time, severity, "", body, {})


def _canon(value):
    """``value`` with every NaN replaced by the string ``"nan"`` (NaN != NaN), containers recursed."""
    if type(value) is float and value != value:
        return "nan"
    if type(value) is list:
        return [_canon(v) for v in value]
    if type(value) is dict:
        return {k: _canon(v) for k, v in value.items()}
    return value


def record_fields(rec) -> tuple:
    """Every slot of a :class:`SpanRecord` / :class:`LogRecord` as ``(name, value)`` pairs
    (resource and scope by their fields; NaN made comparable), for equality checks."""
    slots = [s for cls in type(rec).__mro__ for s in getattr(cls, "__slots__", ())]
    out = []
    for name in slots:
        v = getattr(rec, name)
        if name == "resource":
            v = (v.service, v.service_version, _canon(v.attrs), v.schema_url)
        elif name == "scope":
            v = (v.name, v.version, v.schema_url)
        out.append((name, _canon(v)))
    return tuple(out)


def result_difference(a, b) -> str | None:
    """First difference between two :class:`~detector.normalise.DecodeResult` s
    (records field by field, then the counts), or None when they hold the same."""
    if (len(a.spans), len(a.logs)) != (len(b.spans), len(b.logs)):
        return f"records: {len(a.spans)} spans / {len(a.logs)} logs vs {len(b.spans)} / {len(b.logs)}"
    for i, (x, y) in enumerate(zip(a.spans + a.logs, b.spans + b.logs)):
        fx, fy = record_fields(x), record_fields(y)
        if fx != fy:
            diff = [(n, vx, vy) for (n, vx), (_, vy) in zip(fx, fy) if vx != vy]
            return f"record {i}: {diff[:3]!r}"[:2000]
    for attr in ("rejected", "reasons", "error_message", "truncated", "cut", "utf8_repaired", "depth_salvaged"):
        if getattr(a, attr) != getattr(b, attr):
            return f"{attr}: {getattr(a, attr)!r} vs {getattr(b, attr)!r}"
    return None
