"""Send real telemetry with the OpenTelemetry Python SDK and its OTLP/gRPC exporters (gzip).

    spans = make_spans("checkout", 100, error_every=2)        # ReadableSpans, 50 % errors
    assert export_spans("127.0.0.1:4317", spans, batch=50) == [True, True]
    send_logs("127.0.0.1:4317", "checkout", 30)                # through LoggerProvider + exporter

Also :func:`raw_export` for sending serialized requests (e.g. read from a
capture) over a plain grpc channel.
"""

from __future__ import annotations

import threading
import time

import grpc
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}


def make_spans(service: str, n: int, error_every: int = 0, version: str = "", kind: SpanKind = SpanKind.SERVER, name: str = "GET /checkout") -> list:
    """``n`` finished SDK spans of ``service``; every ``error_every``-th has status ERROR (0 = none)."""
    attrs = {"service.name": service}
    if version:
        attrs["service.version"] = version
    mem = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(attrs))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("tests")
    for i in range(n):
        with tracer.start_as_current_span(name, kind=kind, attributes={"http.request.method": "GET", "http.route": "/checkout"}) as s:
            if error_every and i % error_every == 0:
                s.set_attribute("http.response.status_code", 500)
                s.set_status(Status(StatusCode.ERROR, "boom"))
            else:
                s.set_attribute("http.response.status_code", 200)
    provider.shutdown()
    return list(mem.get_finished_spans())


def span_exporter(target: str, timeout: float = 30.0) -> OTLPSpanExporter:
    """The SDK's OTLP/gRPC span exporter to ``target`` (plaintext, gzip)."""
    return OTLPSpanExporter(endpoint=target, insecure=True, compression=grpc.Compression.Gzip, timeout=timeout)


def export_spans(target: str, spans: list, batch: int = 100, timeout: float = 30.0, exporter: OTLPSpanExporter | None = None) -> list[bool]:
    """Export ``spans`` in chunks of ``batch`` with one exporter; success flag per chunk."""
    exp = exporter or span_exporter(target, timeout)
    try:
        return [exp.export(spans[i : i + batch]) == SpanExportResult.SUCCESS for i in range(0, len(spans), batch)]
    finally:
        if exporter is None:
            exp.shutdown()


def send_logs(target: str, service: str, n: int, error_every: int = 0, timeout: float = 30.0) -> None:
    """Emit ``n`` log records of ``service`` through the SDK (every ``error_every``-th at ERROR)."""
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=target, insecure=True, compression=grpc.Compression.Gzip, timeout=timeout)))
    logger = provider.get_logger("tests")
    for i in range(n):
        err = bool(error_every) and i % error_every == 0
        logger.emit(
            timestamp=time.time_ns(),
            severity_number=SeverityNumber.ERROR if err else SeverityNumber.INFO,
            severity_text="ERROR" if err else "INFO",
            body=f"log line {i}",
            attributes={"i": i},
        )
    provider.shutdown()


def raw_export(target: str, signal: str, payload: bytes, timeout: float = 10.0, compression: grpc.Compression | None = grpc.Compression.Gzip, channel: grpc.Channel | None = None) -> bytes:
    """Send one serialized ``Export*ServiceRequest``; returns the response bytes (raises grpc.RpcError)."""
    own = channel is None
    ch = channel or grpc.insecure_channel(target)
    try:
        call = ch.unary_unary(METHODS[signal], request_serializer=None, response_deserializer=None)
        return call(payload, timeout=timeout, compression=compression)
    finally:
        if own:
            ch.close()


class PacedTraffic(threading.Thread):
    """Live traffic from one service through the real SDK (BatchSpanProcessor + OTLP/gRPC, gzip).

    Sends ``rate`` spans per second in ten 100 ms bursts until :meth:`close`;
    subclasses shape span number ``i`` in :meth:`emit` (and may read attributes
    a test changes mid-run to start an incident). ``sent`` counts spans made.
    """

    def __init__(self, target: str, service: str = "checkout", version: str = "1.0.0", rate: int = 100) -> None:
        super().__init__(daemon=True)
        self.provider = TracerProvider(resource=Resource.create({"service.name": service, "service.version": version}))
        self.provider.add_span_processor(BatchSpanProcessor(span_exporter(target), schedule_delay_millis=100, max_export_batch_size=512))
        self.tracer = self.provider.get_tracer(f"{service}.client")
        self.rate = rate
        self.stop_event = threading.Event()
        self.sent = 0

    def emit(self, i: int) -> None:
        """Create and end span number ``i`` with ``self.tracer``."""
        raise NotImplementedError

    def run(self) -> None:
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            for _ in range(self.rate // 10):
                self.emit(self.sent)
                self.sent += 1
            time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))

    def close(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)
        self.provider.shutdown()
