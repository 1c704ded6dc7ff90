"""Encode a :class:`~detector.sim.model.SimBatch` as OTLP.

Two outputs:

* protobuf ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest`` objects
  (opentelemetry-proto), one ResourceSpans per emitting process;
* OTLP/JSON objects as the Collector's ``file`` exporter writes them
  (OTLP specification, "JSON Protobuf Encoding": lowerCamelCase keys, trace and
  span ids as hex strings, enums as integers, 64-bit integers as strings).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from detector.sim.model import Res, SimBatch
from detector.sim.wire import logs_request_bytes, trace_request_bytes

_SEV_TEXT = {9: "INFO", 13: "WARN", 17: "ERROR", 5: "DEBUG"}


def any_value(v: Any) -> AnyValue:
    """Plain Python value -> OTLP ``AnyValue`` (str, bool, int, float, list, dict)."""
    t = type(v)
    if t is str:
        return AnyValue(string_value=v)
    if t is bool:
        return AnyValue(bool_value=v)
    if t is int:
        return AnyValue(int_value=v)
    if t is float:
        return AnyValue(double_value=v)
    if t is dict:
        av = AnyValue()
        for k, x in v.items():
            av.kvlist_value.values.add(key=k, value=any_value(x))
        return av
    if t is list:
        av = AnyValue()
        for x in v:
            av.array_value.values.append(any_value(x))
        return av
    if t is bytes:
        return AnyValue(bytes_value=v)
    return AnyValue()


def _kvs(attrs) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs]


_RES_CACHE: dict[Res, Resource] = {}


def _resource(res: Res) -> Resource:
    r = _RES_CACHE.get(res)
    if r is None:
        r = Resource(attributes=_kvs(res.attributes()))
        if len(_RES_CACHE) > 10_000:
            _RES_CACHE.clear()
        _RES_CACHE[res] = r
    return r


def to_trace_request(batch: SimBatch) -> ExportTraceServiceRequest | None:
    """The batch's spans as one ``ExportTraceServiceRequest`` (None when it has no spans).

    Encoded by :mod:`detector.sim.wire` and parsed once by upb (≈ 4× faster than
    building the message field by field, which :func:`to_trace_request_reference` does).
    """
    if not batch.spans:
        return None
    return ExportTraceServiceRequest.FromString(trace_request_bytes(batch.spans))


def to_logs_request(batch: SimBatch) -> ExportLogsServiceRequest | None:
    """The batch's log records as one ``ExportLogsServiceRequest`` (None when it has none)."""
    if not batch.logs:
        return None
    return ExportLogsServiceRequest.FromString(logs_request_bytes(batch.logs))


def to_trace_request_reference(batch: SimBatch) -> ExportTraceServiceRequest | None:
    """Reference encoder (message objects built field by field); tests compare it with the fast path."""
    if not batch.spans:
        return None
    req = ExportTraceServiceRequest()
    groups: dict[Res, Any] = {}
    for res, tid, sid, pid, name, kind, start, end, attrs, scode, smsg in batch.spans:
        ss = groups.get(res)
        if ss is None:
            rs = req.resource_spans.add(schema_url=res.schema_url)
            rs.resource.CopyFrom(_resource(res))
            ss = rs.scope_spans.add(schema_url=res.schema_url)
            ss.scope.name = res.scope
            ss.scope.version = res.version
            groups[res] = ss
        sp = ss.spans.add(
            trace_id=tid,
            span_id=sid,
            parent_span_id=pid,
            name=name,
            kind=kind,
            start_time_unix_nano=int(start * 1e9),
            end_time_unix_nano=int(end * 1e9),
            attributes=_kvs(attrs),
        )
        if scode:
            sp.status.code = scode
            if smsg:
                sp.status.message = smsg
    return req


def to_logs_request_reference(batch: SimBatch) -> ExportLogsServiceRequest | None:
    """Reference encoder for logs (see :func:`to_trace_request_reference`)."""
    if not batch.logs:
        return None
    req = ExportLogsServiceRequest()
    groups: dict[Res, Any] = {}
    for res, t, sev, body, attrs, tid, sid in batch.logs:
        sl = groups.get(res)
        if sl is None:
            rl = req.resource_logs.add(schema_url=res.schema_url)
            rl.resource.CopyFrom(_resource(res))
            sl = rl.scope_logs.add(schema_url=res.schema_url)
            sl.scope.name = res.scope
            groups[res] = sl
        ns = int(t * 1e9)
        sl.log_records.add(
            time_unix_nano=ns,
            observed_time_unix_nano=ns,
            severity_number=sev,
            severity_text=_SEV_TEXT.get(sev, ""),
            body=any_value(body),
            attributes=_kvs(attrs),
            trace_id=tid,
            span_id=sid,
        )
    return req


# ---------------------------------------------------------------- OTLP/JSON


def json_value(v: Any) -> dict:
    """Plain value -> OTLP/JSON AnyValue object (int64 as a decimal string)."""
    t = type(v)
    if t is str:
        return {"stringValue": v}
    if t is bool:
        return {"boolValue": v}
    if t is int:
        return {"intValue": str(v)}
    if t is float:
        return {"doubleValue": v}
    if t is dict:
        return {"kvlistValue": {"values": [{"key": k, "value": json_value(x)} for k, x in v.items()]}}
    if t is list:
        return {"arrayValue": {"values": [json_value(x) for x in v]}}
    if t is bytes:
        import base64

        return {"bytesValue": base64.b64encode(v).decode()}
    return {}


def _json_attrs(attrs) -> list[dict]:
    return [{"key": k, "value": json_value(v)} for k, v in attrs]


def _json_resource(res: Res) -> dict:
    return {"attributes": _json_attrs(res.attributes())}


def to_trace_json(batch: SimBatch) -> dict | None:
    """The batch's spans as an OTLP/JSON ``ExportTraceServiceRequest`` object."""
    if not batch.spans:
        return None
    groups: dict[Res, list] = {}
    for res, tid, sid, pid, name, kind, start, end, attrs, scode, smsg in batch.spans:
        lst = groups.get(res)
        if lst is None:
            lst = groups[res] = []
        sp = {
            "traceId": tid.hex(),
            "spanId": sid.hex(),
            "name": name,
            "kind": kind,
            "startTimeUnixNano": str(int(start * 1e9)),
            "endTimeUnixNano": str(int(end * 1e9)),
            "attributes": _json_attrs(attrs),
            "status": ({"code": scode, "message": smsg} if smsg else {"code": scode}) if scode else {},
        }
        if pid:
            sp["parentSpanId"] = pid.hex()
        lst.append(sp)
    return {
        "resourceSpans": [
            {
                "resource": _json_resource(res),
                "scopeSpans": [{"scope": {"name": res.scope, "version": res.version}, "spans": spans, "schemaUrl": res.schema_url}],
                "schemaUrl": res.schema_url,
            }
            for res, spans in groups.items()
        ]
    }


def to_logs_json(batch: SimBatch) -> dict | None:
    """The batch's log records as an OTLP/JSON ``ExportLogsServiceRequest`` object."""
    if not batch.logs:
        return None
    groups: dict[Res, list] = {}
    for res, t, sev, body, attrs, tid, sid in batch.logs:
        lst = groups.get(res)
        if lst is None:
            lst = groups[res] = []
        ns = str(int(t * 1e9))
        rec = {
            "timeUnixNano": ns,
            "observedTimeUnixNano": ns,
            "severityNumber": sev,
            "severityText": _SEV_TEXT.get(sev, ""),
            "body": json_value(body),
            "attributes": _json_attrs(attrs),
        }
        if tid:
            rec["traceId"] = tid.hex()
            rec["spanId"] = sid.hex()
        lst.append(rec)
    return {
        "resourceLogs": [
            {
                "resource": _json_resource(res),
                "scopeLogs": [{"scope": {"name": res.scope}, "logRecords": recs, "schemaUrl": res.schema_url}],
                "schemaUrl": res.schema_url,
            }
            for res, recs in groups.items()
        ]
    }
