"""Send a simulation live over OTLP/gRPC at a time acceleration.

Two client paths:

* raw (default): the simulator's ``ExportTraceServiceRequest`` /
  ``ExportLogsServiceRequest``, serialized by :mod:`detector.sim.wire`, on the
  OTLP/gRPC methods (``opentelemetry.proto.collector.*.v1.*Service/Export``), gzip-compressed, retried on ``RESOURCE_EXHAUSTED`` /
  ``UNAVAILABLE`` (honouring ``google.rpc.RetryInfo`` when present) — the same
  status handling as the Collector's otlp exporter;
* ``use_sdk=True``: spans through the real OpenTelemetry Python SDK — one
  ``TracerProvider`` per emitting process (its Resource), ``BatchSpanProcessor``
  and ``OTLPSpanExporter`` — with explicit start/end times and the simulator's
  trace/span ids (a small ``IdGenerator`` hands them out), so parent/child links
  survive. Logs still go the raw way (the SDK's logs API is still unstable).

Pacing: batch ``b`` is sent at wall time ``t0 + (b.end - sim.start) / speed``;
``speed = 0`` sends as fast as the receiver accepts.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import grpc

from detector.sim.wire import logs_request_bytes, trace_request_bytes

_RETRYABLE = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)


def _identity(b: bytes) -> bytes:
    return b


def _retry_delay(err: grpc.RpcError, attempt: int) -> float:
    """RetryInfo.retry_delay from the status details when present, else 0.1 s × 2^attempt (≤ 2 s)."""
    try:
        from google.rpc import error_details_pb2, status_pb2

        for key, value in err.trailing_metadata() or ():
            if key == "grpc-status-details-bin":
                st = status_pb2.Status.FromString(value)
                for d in st.details:
                    if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                        ri = error_details_pb2.RetryInfo()
                        d.Unpack(ri)
                        return ri.retry_delay.seconds + ri.retry_delay.nanos / 1e9
    except Exception:
        pass
    return min(2.0, 0.1 * (2**attempt))


class RawSender:
    """OTLP/gRPC client on grpcio stubs. ``export_*`` retry retryable codes up to ``deadline`` seconds."""

    def __init__(self, endpoint: str, headers: list[tuple[str, str]] | None = None, deadline: float = 30.0) -> None:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        self.channel = grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 64 << 20)])
        # requests go out as already-serialized bytes (detector.sim.wire): identity serializer
        self.traces = self.channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=_identity, response_deserializer=ExportTraceServiceResponse.FromString)
        self.logs = self.channel.unary_unary(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            request_serializer=_identity, response_deserializer=ExportLogsServiceResponse.FromString)
        self.headers = headers or []
        self.deadline = deadline
        self.retries = 0

    def _send(self, fn, req) -> None:
        t_end = time.monotonic() + self.deadline
        attempt = 0
        while True:
            try:
                fn(req, timeout=10.0, metadata=self.headers, compression=grpc.Compression.Gzip)
                return
            except grpc.RpcError as e:
                if e.code() not in _RETRYABLE or time.monotonic() > t_end:
                    raise
                self.retries += 1
                time.sleep(_retry_delay(e, attempt))
                attempt += 1

    def export_traces(self, req: bytes) -> None:
        """Send one serialized ``ExportTraceServiceRequest``."""
        self._send(self.traces, req)

    def export_logs(self, req: bytes) -> None:
        """Send one serialized ``ExportLogsServiceRequest``."""
        self._send(self.logs, req)

    def close(self) -> None:
        self.channel.close()


class SdkSpanSender:
    """Spans through the OpenTelemetry SDK (``OTLPSpanExporter``), one TracerProvider per Resource."""

    def __init__(self, endpoint: str) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.id_generator import IdGenerator

        self._OTLPSpanExporter = OTLPSpanExporter
        self.endpoint = endpoint
        self.providers: dict[Any, Any] = {}
        self._local = threading.local()
        local = self._local

        class _Ids(IdGenerator):
            """Hands out the simulator's ids (set just before ``start_span``)."""

            def generate_span_id(self) -> int:
                return local.span_id

            def generate_trace_id(self) -> int:
                return local.trace_id

        self._ids = _Ids()

    def _tracer(self, res):
        tp = self.providers.get(res)
        if tp is None:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression

            tp = TracerProvider(resource=Resource(dict(res.attributes()), schema_url=res.schema_url), id_generator=self._ids)
            exp = self._OTLPSpanExporter(endpoint=self.endpoint, insecure=True, compression=Compression.Gzip)
            tp.add_span_processor(BatchSpanProcessor(exp, max_queue_size=20000, max_export_batch_size=1000, schedule_delay_millis=200))
            self.providers[res] = tp
        return tp.get_tracer(res.scope, res.version, schema_url=res.schema_url)

    def send(self, batch) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

        kinds = {1: SpanKind.INTERNAL, 2: SpanKind.SERVER, 3: SpanKind.CLIENT, 4: SpanKind.PRODUCER, 5: SpanKind.CONSUMER}
        for res, tid, sid, pid, name, kind, start, end, attrs, scode, smsg in batch.spans:
            tracer = self._tracer(res)
            t_int = int.from_bytes(tid, "big")
            self._local.trace_id = t_int
            self._local.span_id = int.from_bytes(sid, "big")
            ctx = None
            if pid:
                parent = SpanContext(t_int, int.from_bytes(pid, "big"), is_remote=True, trace_flags=TraceFlags(1))
                ctx = trace.set_span_in_context(NonRecordingSpan(parent))
            span = tracer.start_span(name, context=ctx, kind=kinds[kind], attributes=dict(attrs), start_time=int(start * 1e9))
            if scode == 2:
                span.set_status(Status(StatusCode.ERROR, smsg or None))
            elif scode == 1:
                span.set_status(Status(StatusCode.OK))
            span.end(end_time=int(end * 1e9))

    def close(self) -> None:
        for tp in self.providers.values():
            tp.force_flush(30_000)
            tp.shutdown()


def send_live(
    sim,
    endpoint: str,
    speed: float = 60.0,
    use_sdk: bool = False,
    on_batch: Callable[[Any, dict], None] | None = None,
    stop: threading.Event | None = None,
    headers: list[tuple[str, str]] | None = None,
    speed_fn: Callable[[float], float] | None = None,
) -> dict:
    """Drive ``sim`` to ``endpoint`` (``host:port``), pacing event time at ``speed``× wall time.

    ``speed_fn(event_time) -> speed`` overrides ``speed`` per batch (0 = no pacing),
    e.g. a fast warm-up followed by 60×. ``on_batch(batch, stats)`` is called after
    each batch; ``stop`` ends early. Returns counts ``{"spans", "log_records",
    "requests", "retries", "seconds"}``. gRPC errors other than retryable ones raise
    ``grpc.RpcError``.
    """
    raw = RawSender(endpoint, headers=headers)
    sdk = SdkSpanSender(endpoint) if use_sdk else None
    stats = {"spans": 0, "log_records": 0, "requests": 0, "retries": 0, "seconds": 0.0}
    t0 = time.monotonic()
    wall = t0
    ev_prev = sim.start
    try:
        for batch in sim.batches():
            sp = speed_fn(batch.start) if speed_fn is not None else speed
            if sp and sp > 0:
                wall += (batch.end - ev_prev) / sp
                delay = wall - time.monotonic()
                if delay > 0:
                    if stop is not None:
                        if stop.wait(delay):
                            break
                    else:
                        time.sleep(delay)
            else:
                wall = time.monotonic()
            ev_prev = batch.end
            if stop is not None and stop.is_set():
                break
            if batch.spans:
                if sdk is not None:
                    sdk.send(batch)
                else:
                    raw.export_traces(trace_request_bytes(batch.spans))
                stats["requests"] += 1
                stats["spans"] += len(batch.spans)
            if batch.logs:
                raw.export_logs(logs_request_bytes(batch.logs))
                stats["requests"] += 1
                stats["log_records"] += len(batch.logs)
            if on_batch is not None:
                on_batch(batch, stats)
    finally:
        if sdk is not None:
            sdk.close()
        stats["retries"] = raw.retries
        raw.close()
        stats["seconds"] = round(time.monotonic() - t0, 2)
    return stats
