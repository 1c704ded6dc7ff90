"""Live sending: the OpenTelemetry SDK path keeps ids, parents, times and attributes; the raw
path reaches a real in-process otel-anomaly with nothing lost."""

from __future__ import annotations

import time
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from detector.sim.generator import Simulator
from detector.sim.incidents import parse_time
from detector.sim.live import send_live

T0 = parse_time("2026-11-03T12:00:00Z")


class _Capture(trace_service_pb2_grpc.TraceServiceServicer, logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self):
        self.spans = {}
        self.logs = 0

    def Export(self, request, context):  # noqa: N802 (gRPC name)
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            for rs in request.resource_spans:
                svc = next(a.value.string_value for a in rs.resource.attributes if a.key == "service.name")
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        self.spans[(sp.trace_id, sp.span_id)] = (svc, sp, rs.schema_url)
            return trace_service_pb2.ExportTraceServiceResponse()
        self.logs += sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        return logs_service_pb2.ExportLogsServiceResponse()


@pytest.fixture()
def capture():
    cap = _Capture()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))

    class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
        def Export(self, request, context):  # noqa: N802
            return cap.Export(request, context)

    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(cap, server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield cap, f"127.0.0.1:{port}"
    server.stop(0)


def test_sdk_path_preserves_spans(capture):
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk (test extra) not installed")
    cap, ep = capture
    sim = Simulator(T0, 20, seed=5)
    expected = {}
    for b in Simulator(T0, 20, seed=5).batches():
        for s in b.spans:
            expected[(s[1], s[2])] = s
    stats = send_live(sim, ep, speed=0, use_sdk=True)
    assert stats["spans"] == len(expected) > 100
    assert set(cap.spans) == set(expected)
    for key, s in expected.items():
        svc, sp, schema = cap.spans[key]
        assert svc == s[0].service and schema == s[0].schema_url
        assert sp.parent_span_id == s[3] and sp.name == s[4] and sp.kind == s[5]
        assert sp.start_time_unix_nano == int(s[6] * 1e9) and sp.end_time_unix_nano == int(s[7] * 1e9)
        assert sp.status.code == s[9]
        got = {a.key for a in sp.attributes}
        assert got == {k for k, _ in s[8]}
    assert cap.logs == stats["log_records"] > 0


def test_raw_path_paces_and_reaches_otel_anomaly():
    from prometheus_client import CollectorRegistry

    from detector.sim.demo import build_app

    app = build_app()
    try:
        ep = f"127.0.0.1:{app.receiver.port}"
        sim = Simulator(T0, 30, seed=6, batch_seconds=2.0)
        t = time.monotonic()
        stats = send_live(sim, ep, speed=60.0)  # 30 simulated seconds at 60x: about 0.5 s
        assert 0.4 <= time.monotonic() - t < 10
        reg = app.registry
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = reg.get_sample_value("otel_anomaly_processed_items_total", {"signal": "spans"}) or 0
            if got >= stats["spans"]:
                break
            time.sleep(0.1)
        assert reg.get_sample_value("otel_anomaly_received_items_total", {"signal": "spans"}) == stats["spans"]
        assert reg.get_sample_value("otel_anomaly_received_items_total", {"signal": "log_records"}) == stats["log_records"]
        assert isinstance(reg, CollectorRegistry)
    finally:
        app.stop(grace=1.0)
