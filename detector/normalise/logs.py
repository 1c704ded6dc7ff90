"""OTLP logs -> :class:`~detector.normalise.records.LogRecord`, in one pass.

Input: the bytes of an ``ExportLogsServiceRequest`` (opentelemetry-proto
``collector/logs/v1/logs_service.proto``) or the parsed message.

Rules:

- **service / version**: as for spans (:func:`detector.normalise.traces.make_resource`).
- **time**: ``time_unix_nano``, else ``observed_time_unix_nano``, in seconds;
  ``0.0`` when both are zero (the pipeline then uses the arrival time).
- **trace context**: ``trace_id`` kept only when it is 16 bytes and not all
  zero, ``span_id`` only when 8 non-zero bytes and the trace id is kept.
  Anything else (absent, zero, wrong length) means "no trace context"; the
  record itself is always kept (logs data model: the ids are optional), so no
  log record is ever rejected.
- **body**: plain value (``str`` / ``dict`` for kvlist / ...), ``None`` when unset.
- **event_name**: the ``event_name`` field, else the ``event.name`` attribute.
- **is_error**: ``severity_number >= 17`` (set by :class:`LogRecord`).
"""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from detector.normalise import fastpath
from detector.normalise._common import (
    _SIMPLE,
    MAX_ATTRIBUTES,
    NANOS,
    ZERO_SPAN_ID,
    ZERO_TRACE_ID,
    DecodeResult,
    decode_standard,
    any_value,
    attributes,
)
from detector.normalise.records import LogRecord, Scope
from detector.normalise.traces import make_resource

_HAS_EVENT_NAME = "event_name" in ExportLogsServiceRequest().resource_logs.add().scope_logs.add().log_records.add().DESCRIPTOR.fields_by_name


def decode_logs(data: bytes) -> DecodeResult:
    """Decode and normalise the bytes of an ``ExportLogsServiceRequest``: with the fast decode
    (:mod:`detector.normalise.fastpath`), or the standard one on the real OTLP classes
    when the fast one declines the request (same records; see its docstring).

    Returns:
        :class:`DecodeResult` with ``logs``.

    Raises:
        UndecodableRequest: not a protobuf ExportLogsServiceRequest.
    """
    result = fastpath.decode(fastpath.LOGS, data, normalise_logs)
    if result is not None:
        return result
    return decode_standard(ExportLogsServiceRequest, data, normalise_logs)


def normalise_logs(msg, convert=attributes) -> DecodeResult:
    """Normalise a parsed ``ExportLogsServiceRequest`` (rules in the module docstring;
    ``convert`` as in :func:`~detector.normalise.traces.normalise_traces`)."""
    result = DecodeResult()
    append = result.logs.append
    simple = _SIMPLE
    max_attrs = MAX_ATTRIBUTES
    zero_tid = ZERO_TRACE_ID
    zero_sid = ZERO_SPAN_ID
    nanos = NANOS
    has_event_name = _HAS_EVENT_NAME
    truncated = 0
    cut = result.cut
    for rl in msg.resource_logs:
        resource = make_resource(rl.resource, rl.schema_url, cut, convert)
        for sl in rl.scope_logs:
            sc = sl.scope
            scope = Scope(sc.name, sc.version, sl.schema_url)
            for lr in sl.log_records:
                kvs = lr.attributes
                if len(kvs) > max_attrs:
                    truncated += 1
                attrs = convert(kvs, cut, lr)

                b = lr.body
                w = b.WhichOneof("value")
                if w is None:
                    body = None
                elif w in simple:
                    body = getattr(b, w)
                else:
                    body = any_value(b, 0, cut)

                tid = lr.trace_id
                sid = b""
                if len(tid) != 16 or tid == zero_tid:
                    tid = b""
                else:
                    sid = lr.span_id
                    if len(sid) != 8 or sid == zero_sid:
                        sid = b""

                t = lr.time_unix_nano or lr.observed_time_unix_nano
                event_name = lr.event_name if has_event_name else ""
                if not event_name:
                    en = attrs.get("event.name")
                    event_name = en if type(en) is str else ""
                append(
                    LogRecord(
                        resource, scope, t / nanos, lr.severity_number, lr.severity_text, body, attrs,
                        tid, sid, event_name,
                    )  # fmt: skip
                )
    result.truncated = truncated
    return result.finish("log records")


__all__ = ["decode_logs", "normalise_logs"]
