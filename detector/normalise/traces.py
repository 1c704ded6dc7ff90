"""OTLP traces -> :class:`~detector.normalise.records.SpanRecord`, in one pass.

Input: the bytes of an ``ExportTraceServiceRequest`` (opentelemetry-proto
``collector/trace/v1/trace_service.proto``) or the parsed message.

Per span, exactly one loop over the attributes builds ``attrs``; everything
else is dict lookups on it. Rules (OpenTelemetry semantic conventions, both the
pre-1.21 "old" HTTP/net names and the stable ones):

- **ids** (OTLP trace.proto): ``trace_id`` must be 16 bytes and not all zero,
  ``span_id`` 8 bytes and not all zero, else the span is rejected with reason
  ``invalid_trace_id`` / ``invalid_span_id`` (never padded or truncated). A
  ``parent_span_id`` that is not 8 non-zero bytes means "root" (``b""``).
- **times**: seconds since the epoch, as sent (1970 and year-2100 values are
  kept; the pipeline clamps far-future ones). ``end`` = ``end_time_unix_nano``,
  or ``start`` when the end is zero; ``0.0`` when both are zero: the pipeline
  treats an event time ``<= 0`` as "use the arrival time". An end before the
  start is kept as sent (the end is the event time).
- **service**: resource ``service.name``; ``unknown_service`` when missing or
  empty. ``service.version`` likewise, ``""`` when missing.
- **operation**: ``"<method> <http.route>"`` (method from
  ``http.request.method`` / ``http.method``; just the route without a method);
  else ``rpc.service/rpc.method`` (``rpc.method`` alone when it already holds a
  ``/``); else the span name.
- **is_error** (semconv "Recording errors", HTTP and RPC span conventions):
  status ERROR -> error; status OK -> not an error (OK is final per the trace
  API spec); status UNSET -> HTTP status >= 500 on any non-client span,
  >= 400 on client spans; gRPC status (``rpc.grpc.status_code``, or
  ``rpc.response.status_code`` as number or name) non-OK on client spans, and
  UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS on
  server spans.
- **peer** (the other service of an edge): client/producer spans: the first of
  ``peer.service``, ``server.address``, ``net.peer.name`` (skipped when it is an
  IP address: the peer becomes a Prometheus label value, and the contract
  forbids IP addresses there), ``rpc.service``,
  ``messaging.destination.template`` (low-cardinality form),
  ``messaging.destination.name``, ``messaging.destination``, ``db.system.name``,
  ``db.system``. Server/consumer spans: the service of the parent span when the
  parent is in the same request (whatever its service). Otherwise ``""``.
- **principal**: ``user.id``, ``enduser.id``, ``user.name``; **source**:
  ``client.address``, ``http.client_ip``, first value of
  ``http.request.header.x-forwarded-for``, ``net.sock.peer.addr``,
  ``network.peer.address``, ``source.address``; **user_agent**:
  ``user_agent.original``, ``http.user_agent``. Non-string values are ``str()``-ed.
"""

from __future__ import annotations

import ipaddress

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from detector.normalise import fastpath
from detector.normalise._common import (
    MAX_ATTRIBUTES,
    NANOS,
    ZERO_SPAN_ID,
    ZERO_TRACE_ID,
    DecodeResult,
    decode_standard,
    UndecodableRequest,
    attributes,
)
from detector.normalise.records import EMPTY, UNKNOWN_SERVICE, Resource, Scope, SpanRecord

# gRPC status codes (grpc/doc/statuscodes.md) and the server-side error set of the
# RPC semantic conventions ("gRPC status" table of rpc-spans.md).
GRPC_CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}  # fmt: skip
GRPC_SERVER_ERRORS = frozenset((2, 4, 12, 13, 14, 15))

_CLIENT = 3
_PRODUCER = 4
_SERVER = 2
_CONSUMER = 5


def _to_int(value) -> int | None:
    """HTTP/gRPC status sent as a string ("503", "UNAVAILABLE") or float -> int, else None."""
    t = type(value)
    if t is int:
        return value
    if t is str:
        s = value.strip()
        if s.isdigit():
            return int(s)
        return GRPC_CODES.get(s.upper())
    if t is float and value.is_integer():
        return int(value)
    return None


_IP_START = frozenset("0123456789:[")


def _is_ip(value: str) -> bool:
    """True for an IPv4/IPv6 literal, optionally with brackets and/or a port ("10.0.0.5:8080", "[::1]:443")."""
    v = value.strip()
    if v.startswith("["):
        v = v[1 : v.find("]")] if "]" in v else v[1:]
    elif v.count(":") == 1:
        v = v.split(":", 1)[0]
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True


def _text(value) -> str | None:
    """Attribute value as text: ``str`` as is, lists -> first element, others ``str()``; None when absent/empty."""
    if value is None or value is EMPTY:
        return None
    if type(value) is str:
        return value or None
    if type(value) is list:
        return _text(value[0]) if value else None
    return str(value)


def make_resource(res, schema_url: str, cut=None, convert=attributes) -> Resource:
    """Build the shared :class:`Resource` of one ``ResourceSpans``/``ResourceLogs``
    (``cut``: the request's :attr:`DecodeResult.cut` counter, or None; ``convert``:
    the attribute conversion, as in :func:`normalise_traces`)."""
    attrs = convert(res.attributes, cut, res)
    service = _text(attrs.get("service.name")) or UNKNOWN_SERVICE
    version = _text(attrs.get("service.version")) or ""
    return Resource(service, version, attrs, schema_url)


def decode_traces(data: bytes) -> DecodeResult:
    """Decode and normalise the bytes of an ``ExportTraceServiceRequest``: with the fast decode
    (:mod:`detector.normalise.fastpath`), or the standard one on the real OTLP classes
    when the fast one declines the request (same records; see its docstring).

    Returns:
        :class:`DecodeResult` with ``spans``; ``utf8_repaired`` set when the
        request needed the UTF-8 salvage path (:mod:`detector.normalise.salvage`).

    Raises:
        UndecodableRequest: not a protobuf ExportTraceServiceRequest.
    """
    result = fastpath.decode(fastpath.TRACES, data, normalise_traces)
    if result is not None:
        return result
    return decode_standard(ExportTraceServiceRequest, data, normalise_traces)


def normalise_traces(msg, convert=attributes) -> DecodeResult:
    """Normalise a parsed ``ExportTraceServiceRequest`` (rules in the module docstring).

    ``convert`` turns one record's or resource's attribute field into the ``attrs``
    dict: :func:`~detector.normalise._common.attributes` for the real OTLP classes,
    :func:`~detector.normalise.fastpath.raw_attributes` for :data:`fastpath.TRACES`.
    """
    result = DecodeResult()
    reasons = result.reasons
    spans = result.spans
    append = spans.append
    max_attrs = MAX_ATTRIBUTES
    zero_tid = ZERO_TRACE_ID
    zero_sid = ZERO_SPAN_ID
    nanos = NANOS
    grpc_server_errors = GRPC_SERVER_ERRORS
    by_span_id: dict[bytes, SpanRecord] = {}  # span id -> first record with it (no tuple per span)
    collided: dict[tuple[bytes, bytes], SpanRecord] = {}  # (trace id, span id) of later ones
    waiting: list[SpanRecord] = []  # server/consumer spans whose parent may be in this request
    truncated = 0
    cut = result.cut
    # the real classes parse a rejected span's attribute values too (a corrupt one fails the whole
    # request, invalid UTF-8 in one is salvaged): the fast decode converts and drops them, so it
    # declines the request exactly when the standard decode would differ
    check_rejected = convert is not attributes

    for rs in msg.resource_spans:
        resource = make_resource(rs.resource, rs.schema_url, cut, convert)
        for ss in rs.scope_spans:
            sc = ss.scope
            scope = Scope(sc.name, sc.version, ss.schema_url)
            for sp in ss.spans:
                tid = sp.trace_id
                if len(tid) != 16 or tid == zero_tid:
                    reasons["invalid_trace_id"] += 1
                    if check_rejected:
                        convert(sp.attributes, None, sp)
                    continue
                sid = sp.span_id
                if len(sid) != 8 or sid == zero_sid:
                    reasons["invalid_span_id"] += 1
                    if check_rejected:
                        convert(sp.attributes, None, sp)
                    continue
                pid = sp.parent_span_id
                if pid and (len(pid) != 8 or pid == zero_sid):
                    pid = b""

                kvs = sp.attributes
                if len(kvs) > max_attrs:
                    truncated += 1
                attrs = convert(kvs, cut, sp)
                g = attrs.get

                kind = sp.kind
                name = sp.name
                status = sp.status
                scode = status.code

                # --- HTTP / RPC facts
                hs = g("http.response.status_code")
                if hs is None:
                    hs = g("http.status_code")
                if hs is not None and type(hs) is not int:
                    hs = _to_int(hs)
                gs = g("rpc.grpc.status_code")
                if gs is None:
                    gs = g("rpc.response.status_code")
                if gs is not None and type(gs) is not int:
                    gs = _to_int(gs)

                route = g("http.route")
                rpc_service = g("rpc.service")
                if route is not None and type(route) is str and route:
                    method = g("http.request.method") or g("http.method")
                    operation = f"{method} {route}" if type(method) is str and method else route
                else:
                    rpc_method = g("rpc.method")
                    if rpc_method and type(rpc_method) is str:
                        if "/" in rpc_method or not rpc_service or type(rpc_service) is not str:
                            operation = rpc_method
                        else:
                            operation = f"{rpc_service}/{rpc_method}"
                    else:
                        operation = name

                # --- error flag
                if scode == 2:
                    is_error = True
                elif scode == 1:
                    is_error = False
                else:
                    is_error = False
                    if hs is not None:
                        is_error = hs >= 500 or (hs >= 400 and kind == _CLIENT)
                    if gs is not None and not is_error:
                        is_error = gs != 0 if kind == _CLIENT else gs in grpc_server_errors

                # --- peer
                peer = ""
                if kind == _CLIENT or kind == _PRODUCER:
                    p = g("peer.service")
                    if not p:
                        p = g("server.address") or g("net.peer.name")
                        if p and type(p) is str and p[0] in _IP_START and _is_ip(p):
                            p = None  # never an IP address as the peer (a label value)
                        if not p:
                            p = (
                                rpc_service
                                or g("messaging.destination.template")
                                or g("messaging.destination.name")
                                or g("messaging.destination")
                                or g("db.system.name")
                                or g("db.system")
                            )
                    if p:
                        peer = p if type(p) is str else (_text(p) or "")

                # --- auth-relevant fields
                principal = g("user.id") or g("enduser.id") or g("user.name")
                if principal is not None and type(principal) is not str:
                    principal = _text(principal)
                source = g("client.address") or g("http.client_ip")
                if not source:
                    xff = g("http.request.header.x-forwarded-for")
                    if xff:
                        xff = _text(xff)
                        source = xff.split(",", 1)[0].strip() if xff else None
                    if not source:
                        source = g("net.sock.peer.addr") or g("network.peer.address") or g("source.address")
                if source is not None and type(source) is not str:
                    source = _text(source)
                ua = g("user_agent.original") or g("http.user_agent")
                if ua is not None and type(ua) is not str:
                    ua = _text(ua)

                start = sp.start_time_unix_nano / nanos
                end_ns = sp.end_time_unix_nano
                end = end_ns / nanos if end_ns else start

                rec = SpanRecord(
                    resource, scope, tid, sid, pid, name, kind, start, end, scode, status.message,
                    hs, gs, operation, is_error, peer, attrs, principal or None, source or None, ua or None,
                )  # fmt: skip
                append(rec)
                if by_span_id.setdefault(sid, rec) is not rec:  # same span id in another trace: rare
                    collided[(tid, sid)] = rec
                if pid and (kind == _SERVER or kind == _CONSUMER):
                    waiting.append(rec)

    for rec in waiting:
        parent = by_span_id.get(rec.parent_span_id)
        if parent is not None and parent.trace_id != rec.trace_id:
            parent = collided.get((rec.trace_id, rec.parent_span_id))
        if parent is not None:
            rec.peer = parent.resource.service
    result.truncated = truncated
    return result.finish("spans")


__all__ = ["decode_traces", "normalise_traces", "make_resource", "UndecodableRequest", "DecodeResult"]
