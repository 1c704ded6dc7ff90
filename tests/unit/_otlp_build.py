"""Small builders of OTLP protobuf requests for tests (ingest tests; usable by anyone)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

TID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SID = bytes.fromhex("eee19b7ec3c1b174")
T0 = 1_700_000_000_000_000_000  # ns


def set_value(v, value) -> None:
    """Fill an AnyValue from a plain Python value (list -> array, dict -> kvlist, None -> unset)."""
    if value is None:
        return
    if isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int):
        v.int_value = value
    elif isinstance(value, float):
        v.double_value = value
    elif isinstance(value, str):
        v.string_value = value
    elif isinstance(value, bytes):
        v.bytes_value = value
    elif isinstance(value, list):
        v.array_value.SetInParent()
        for item in value:
            set_value(v.array_value.values.add(), item)
    elif isinstance(value, dict):
        v.kvlist_value.SetInParent()
        for k, item in value.items():
            kv = v.kvlist_value.values.add()
            kv.key = k
            set_value(kv.value, item)
    else:
        raise TypeError(type(value))


def add_attrs(repeated, attrs: dict) -> None:
    for k, value in attrs.items():
        kv = repeated.add()
        kv.key = k
        set_value(kv.value, value)


def trace_request(*spans: dict, resource: dict | None = None, resources: list | None = None) -> ExportTraceServiceRequest:
    """Request with one resource (``resource`` attrs; ``None`` = no resource message) holding ``spans``.

    Each span dict may give trace_id, span_id, parent_span_id, name, kind, start, end (ns),
    status (code), status_message, attrs. ``resources``: list of (resource attrs, [span dicts]).
    """
    req = ExportTraceServiceRequest()
    groups = resources if resources is not None else [(resource, list(spans))]
    for res_attrs, span_dicts in groups:
        rs = req.resource_spans.add()
        if res_attrs is not None:
            add_attrs(rs.resource.attributes, res_attrs)
        ss = rs.scope_spans.add()
        ss.scope.name = "test.scope"
        ss.scope.version = "1.0"
        for i, d in enumerate(span_dicts):
            sp = ss.spans.add()
            sp.trace_id = d.get("trace_id", TID)
            sp.span_id = d.get("span_id", (i + 1).to_bytes(8, "big"))
            if "parent_span_id" in d:
                sp.parent_span_id = d["parent_span_id"]
            sp.name = d.get("name", "op")
            sp.kind = d.get("kind", 2)
            sp.start_time_unix_nano = d.get("start", T0)
            sp.end_time_unix_nano = d.get("end", T0 + 5_000_000)
            sp.status.code = d.get("status", 0)
            sp.status.message = d.get("status_message", "")
            add_attrs(sp.attributes, d.get("attrs", {}))
    return req


def log_request(*records: dict, resource: dict | None = None) -> ExportLogsServiceRequest:
    """Request with one resource holding log records (time, observed, severity, body, attrs, trace_id, span_id, event_name)."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    if resource is not None:
        add_attrs(rl.resource.attributes, resource)
    sl = rl.scope_logs.add()
    for d in records:
        lr = sl.log_records.add()
        lr.time_unix_nano = d.get("time", T0)
        lr.observed_time_unix_nano = d.get("observed", 0)
        lr.severity_number = d.get("severity", 9)
        lr.severity_text = d.get("severity_text", "")
        if "body" in d:
            set_value(lr.body, d["body"])
        add_attrs(lr.attributes, d.get("attrs", {}))
        if "trace_id" in d:
            lr.trace_id = d["trace_id"]
        if "span_id" in d:
            lr.span_id = d["span_id"]
        if "event_name" in d:
            lr.event_name = d["event_name"]
    return req


def shared_testdata(sub: str) -> Path:
    """``$OTEL_ANOMALY_TESTDATA/sub`` or ``../shared/data/sub``; skip (or fail under
    ``OTEL_ANOMALY_REQUIRE_TESTDATA=1``) when absent."""
    base = os.environ.get("OTEL_ANOMALY_TESTDATA")
    root = Path(base) if base else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    path = root / sub
    if not path.is_dir():
        msg = f"test data {path} not found (set OTEL_ANOMALY_TESTDATA)"
        if os.environ.get("OTEL_ANOMALY_REQUIRE_TESTDATA") == "1":
            pytest.fail(msg)
        print(msg)
        pytest.skip(msg)
    return path
