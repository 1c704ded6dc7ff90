"""Compact records: what one span or log record becomes after decoding.

Every detector reads these and nothing else, so the OTLP protobuf objects can
be dropped right after the one normalising pass in :mod:`detector.normalise`.

Times are float seconds since the Unix epoch (event time). Identifiers are raw
bytes (16-byte trace ids, 8-byte span ids) or ``b""`` when absent. Attribute
values are plain Python values; :func:`value_type` names their OTLP AnyValue
type.
"""

from __future__ import annotations

from typing import Any

# OTLP SpanKind enum values (opentelemetry/proto/trace/v1/trace.proto).
SPAN_KIND_UNSPECIFIED = 0
SPAN_KIND_INTERNAL = 1
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
SPAN_KIND_PRODUCER = 4
SPAN_KIND_CONSUMER = 5
SPAN_KIND_NAMES = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}

# OTLP Status.code values.
STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2

# Log severity_number at and above which a record is an error (ERROR = 17..20,
# FATAL = 21..24; OpenTelemetry logs data model, "Field: SeverityNumber").
SEVERITY_ERROR = 17

UNKNOWN_SERVICE = "unknown_service"


class Empty:
    """Marker for an AnyValue with no value set (OTLP ``empty``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "EMPTY"


EMPTY = Empty()


def value_type(value: Any) -> str:
    """Name the OTLP AnyValue type of a normalised attribute value.

    Returns one of ``string``, ``bool``, ``int``, ``double``, ``bytes``,
    ``array``, ``kvlist``, ``empty``. ``bool`` is checked before ``int``
    because Python's ``bool`` subclasses ``int``.
    """
    t = type(value)
    if t is str:
        return "string"
    if t is bool:
        return "bool"
    if t is int:
        return "int"
    if t is float:
        return "double"
    if t is bytes:
        return "bytes"
    if t is list:
        return "array"
    if t is dict:
        return "kvlist"
    return "empty"


class Resource:
    """One OTLP resource, shared by all records decoded from it.

    Attributes:
        service: ``service.name``; ``unknown_service`` when missing or empty.
        service_version: ``service.version`` or ``""``.
        attrs: all resource attributes as plain values.
        schema_url: ``ResourceSpans.schema_url`` / ``ResourceLogs.schema_url``.
    """

    __slots__ = ("service", "service_version", "attrs", "schema_url")

    def __init__(self, service: str, service_version: str, attrs: dict, schema_url: str) -> None:
        self.service = service
        self.service_version = service_version
        self.attrs = attrs
        self.schema_url = schema_url

    def __repr__(self) -> str:
        return f"Resource({self.service!r}, version={self.service_version!r})"


class Scope:
    """One OTLP instrumentation scope (name, version, schema_url), shared by its records."""

    __slots__ = ("name", "version", "schema_url")

    def __init__(self, name: str, version: str = "", schema_url: str = "") -> None:
        self.name = name
        self.version = version
        self.schema_url = schema_url


class SpanRecord:
    """A span reduced to what the detectors use.

    Attributes:
        resource, scope: shared :class:`Resource` / :class:`Scope`.
        trace_id: 16 bytes. span_id: 8 bytes. parent_span_id: 8 bytes or ``b""`` (root).
        name: span name. kind: OTLP SpanKind value (``SPAN_KIND_*``).
        start, end: seconds since the epoch; ``end`` is the event time.
        status_code: OTLP status code (``STATUS_*``). status_message: its message.
        http_status: HTTP response status code from ``http.response.status_code``
            or the older ``http.status_code``; ``None`` when absent.
        rpc_grpc_status: ``rpc.grpc.status_code`` (or ``rpc.response.status_code``
            when numeric); ``None`` when absent.
        operation: ``http.route`` (with method when known), ``rpc.service/rpc.method``,
            or the span name.
        is_error: error per the semantic conventions (status ERROR, HTTP server 5xx,
            HTTP client 4xx/5xx, gRPC codes per the RPC conventions).
        peer: the other service of an edge: callee for client/producer spans,
            caller for server/consumer spans when known; ``""`` otherwise.
        attrs: span attributes as plain values (see :func:`value_type`).
        principal: ``user.id`` / ``enduser.id`` / ``user.name`` or ``None``.
        source: client address (``client.address``, ``http.client_ip``,
            ``net.sock.peer.addr``, ``source.address``, first of
            ``X-Forwarded-For``) or ``None``.
        user_agent: ``user_agent.original`` / ``http.user_agent`` or ``None``.
    """

    __slots__ = (
        "resource",
        "scope",
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        "kind",
        "start",
        "end",
        "status_code",
        "status_message",
        "http_status",
        "rpc_grpc_status",
        "operation",
        "is_error",
        "peer",
        "attrs",
        "principal",
        "source",
        "user_agent",
    )

    def __init__(
        self,
        resource: Resource,
        scope: Scope,
        trace_id: bytes,
        span_id: bytes,
        parent_span_id: bytes,
        name: str,
        kind: int,
        start: float,
        end: float,
        status_code: int,
        status_message: str,
        http_status: int | None,
        rpc_grpc_status: int | None,
        operation: str,
        is_error: bool,
        peer: str,
        attrs: dict,
        principal: str | None = None,
        source: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.resource = resource
        self.scope = scope
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.name = name
        self.kind = kind
        self.start = start
        self.end = end
        self.status_code = status_code
        self.status_message = status_message
        self.http_status = http_status
        self.rpc_grpc_status = rpc_grpc_status
        self.operation = operation
        self.is_error = is_error
        self.peer = peer
        self.attrs = attrs
        self.principal = principal
        self.source = source
        self.user_agent = user_agent

    @property
    def service(self) -> str:
        return self.resource.service

    @property
    def time(self) -> float:
        """Event time: the span's end, in seconds."""
        return self.end

    def __repr__(self) -> str:
        return (
            f"SpanRecord({self.resource.service!r}, {self.name!r}, kind={self.kind}, "
            f"error={self.is_error}, peer={self.peer!r})"
        )


class LogRecord:
    """A log record reduced to what the detectors use.

    Attributes:
        resource, scope: shared :class:`Resource` / :class:`Scope`.
        time: ``time_unix_nano`` or, when zero, ``observed_time_unix_nano``, in seconds.
        severity_number: OTLP SeverityNumber (0 = unspecified). severity_text: as sent.
        body: ``str`` for string bodies, ``dict`` for kvlist bodies, other plain
            values as decoded, ``None`` when unset.
        attrs: log attributes as plain values.
        trace_id, span_id: bytes or ``b""`` when the record has no trace context.
        event_name: ``event_name`` field or ``event.name`` attribute, or ``""``.
        is_error: ``severity_number >= 17`` (ERROR and FATAL).
    """

    __slots__ = (
        "resource",
        "scope",
        "time",
        "severity_number",
        "severity_text",
        "body",
        "attrs",
        "trace_id",
        "span_id",
        "event_name",
        "is_error",
    )

    def __init__(
        self,
        resource: Resource,
        scope: Scope,
        time: float,
        severity_number: int,
        severity_text: str,
        body: Any,
        attrs: dict,
        trace_id: bytes = b"",
        span_id: bytes = b"",
        event_name: str = "",
    ) -> None:
        self.resource = resource
        self.scope = scope
        self.time = time
        self.severity_number = severity_number
        self.severity_text = severity_text
        self.body = body
        self.attrs = attrs
        self.trace_id = trace_id
        self.span_id = span_id
        self.event_name = event_name
        self.is_error = severity_number >= SEVERITY_ERROR

    @property
    def service(self) -> str:
        return self.resource.service

    def __repr__(self) -> str:
        return f"LogRecord({self.resource.service!r}, sev={self.severity_number}, body={str(self.body)[:40]!r})"
