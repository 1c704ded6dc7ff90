"""The real OTLP/gRPC Receiver on a free port, real grpc channels, the real OTel SDK exporters.

Each bad input of issue 2 point 4 gets its documented status, the server keeps
serving, and the next good request is counted.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import threading
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client import CollectorRegistry

from detector.expose.metrics import SelfMetrics
from detector.receive.config import ReceiverConfig
from detector.receive.server import LOGS_METHOD, METRICS_METHOD, TRACE_METHOD, Receiver
from tests.unit._otlp_build import log_request, trace_request

SVC = {"service.name": "checkout"}


class ListSink:
    """In-process sink: keeps batches; ``room`` items of capacity (None = unbounded)."""

    def __init__(self) -> None:
        self.accepting = True
        self.room: int | None = None
        self.batches = []
        self.lock = threading.Lock()

    def submit(self, batch) -> bool:
        with self.lock:
            if self.room is not None and batch.items > self.room:
                return False
            if self.room is not None:
                self.room -= batch.items
            self.batches.append(batch)
            return True

    @property
    def spans(self):
        return [s for b in self.batches for s in b.spans]

    @property
    def logs(self):
        return [r for b in self.batches for r in b.logs]


class Harness:
    def __init__(self, grpc_cfg: dict | None = None, auth_token: str | None = None, start: bool = True) -> None:
        self.sink = ListSink()
        self.registry = CollectorRegistry()
        self.metrics = SelfMetrics(self.registry)
        cfg = {"endpoint": "127.0.0.1:0", **(grpc_cfg or {})}
        self.receiver = Receiver(ReceiverConfig.model_validate({"grpc": cfg}), self.sink, self.metrics, auth_token=auth_token)
        if start:
            self.port = self.receiver.start()
            self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")

    def call(self, method: str, data: bytes, **kw) -> bytes:
        fn = self.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        return fn(data, timeout=10, **kw)

    def traces(self, req, **kw) -> ExportTraceServiceResponse:
        data = req if isinstance(req, bytes) else req.SerializeToString()
        return ExportTraceServiceResponse.FromString(self.call(TRACE_METHOD, data, **kw))

    def value(self, name: str, **labels) -> float:
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v

    def received(self, signal: str = "spans") -> float:
        return self.value("otel_anomaly_received_items_total", signal=signal)

    def rejected(self, reason: str, signal: str = "spans") -> float:
        return self.value("otel_anomaly_rejected_items_total", signal=signal, reason=reason)

    def assert_still_serving(self) -> None:
        before = self.received()
        resp = self.traces(trace_request({"name": "next-good"}, resource=SVC))
        assert not resp.HasField("partial_success")
        assert self.received() == before + 1
        assert self.sink.spans[-1].name == "next-good"

    def close(self) -> None:
        if hasattr(self, "channel"):
            self.channel.close()
        self.receiver.stop(0.5)


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.close()


def code_of(exc_info) -> grpc.StatusCode:
    return exc_info.value.code()


# ---------------------------------------------------------------- good path


def test_good_traces_logs_metrics(h):
    resp = h.traces(trace_request({"name": "a"}, {"name": "b"}, resource=SVC))
    assert not resp.HasField("partial_success")
    assert [s.name for s in h.sink.spans] == ["a", "b"] and h.received() == 2
    assert h.sink.batches[0].received_at > 0

    data = log_request({"body": "x"}, {"body": "y", "severity": 17}, resource=SVC).SerializeToString()
    resp = ExportLogsServiceResponse.FromString(h.call(LOGS_METHOD, data))
    assert not resp.HasField("partial_success")
    assert [r.body for r in h.sink.logs] == ["x", "y"] and h.received("log_records") == 2

    m = ExportMetricsServiceRequest()
    g = m.resource_metrics.add().scope_metrics.add().metrics.add(name="g").gauge
    for i in range(3):
        g.data_points.add().as_int = i
    h.call(METRICS_METHOD, m.SerializeToString())
    assert h.received("data_points") == 3 and h.sink.batches[-1].data_points == 3


def test_gzip_compression(h):
    h.traces(trace_request({"name": "zipped"}, resource=SVC), compression=grpc.Compression.Gzip)
    assert h.sink.spans[0].name == "zipped"


# ---------------------------------------------------------------- bad inputs (issue 2 point 4)


def test_not_protobuf_is_invalid_argument(h):
    for data in (b"this is not protobuf", b'{"resourceSpans": []}', b"\x08\x01"):
        with pytest.raises(grpc.RpcError) as err:
            h.call(TRACE_METHOD, data)
        assert code_of(err) == grpc.StatusCode.INVALID_ARGUMENT
        assert "ExportTraceServiceRequest" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        h.call(LOGS_METHOD, b"garbage!")
    assert code_of(err) == grpc.StatusCode.INVALID_ARGUMENT
    assert h.rejected("undecodable") == 3 and h.rejected("undecodable", "log_records") == 1
    h.assert_still_serving()


def test_invalid_ids_partial_success(h):
    req = trace_request(
        {"trace_id": b"\x01" * 8}, {"trace_id": b"\x01" * 17}, {"trace_id": bytes(16)},
        {"span_id": b""}, {"span_id": b"\x01" * 9}, {"name": "good", "parent_span_id": b"\x01\x02"},
        resource=SVC,
    )  # fmt: skip
    resp = h.traces(req)
    assert resp.partial_success.rejected_spans == 5
    assert resp.partial_success.error_message == "rejected 5 spans: 2 invalid_span_id, 3 invalid_trace_id"
    assert [(s.name, s.parent_span_id) for s in h.sink.spans] == [("good", b"")]
    assert h.received() == 1
    assert h.rejected("invalid_trace_id") == 3 and h.rejected("invalid_span_id") == 2
    h.assert_still_serving()


def test_all_spans_rejected_nothing_enqueued(h):
    resp = h.traces(trace_request({"trace_id": bytes(16)}, resource=SVC))
    assert resp.partial_success.rejected_spans == 1 and h.sink.batches == []
    h.assert_still_serving()


def test_invalid_utf8_salvaged(h):
    data = trace_request({"name": "caf\u00e9"}, {"name": "ok"}, resource={"service.name": "s\u00e9"}).SerializeToString()
    resp = h.traces(data.replace("\u00e9".encode(), b"\xc3("))
    assert not resp.HasField("partial_success")
    assert [(s.service, s.name) for s in h.sink.spans] == [("s\ufffd(", "caf\ufffd("), ("s\ufffd(", "ok")]
    assert h.value("otel_anomaly_utf8_repaired_requests_total", signal="spans") == 1
    h.assert_still_serving()


def test_huge_shapes_accepted(h):
    deep: object = "leaf"
    for _ in range(20):
        deep = {"n": deep}
    req = trace_request(
        {"name": "many", "attrs": {f"k{i}": i for i in range(100_000)}},
        {"name": "deep", "attrs": {"deep": deep, "arr": list(range(10_000))}},
        resource=SVC,
    )
    resp = h.traces(req)
    assert not resp.HasField("partial_success")
    assert [s.name for s in h.sink.spans] == ["many", "deep"]
    h.assert_still_serving()


def test_odd_timestamps_and_empty_requests(h):
    req = trace_request(
        {"name": "zero", "start": 0, "end": 0}, {"name": "1970", "start": 1, "end": 2},
        {"name": "2100", "start": 4_102_444_800 * 10**9, "end": 4_102_444_801 * 10**9},
        {"name": "backwards", "start": 2 * 10**18, "end": 10**18}, resource=None,
    )  # fmt: skip
    assert not h.traces(req).HasField("partial_success")
    assert [(s.name, s.end, s.service) for s in h.sink.spans] == [
        ("zero", 0.0, "unknown_service"), ("1970", 2e-9, "unknown_service"),
        ("2100", 4_102_444_801.0, "unknown_service"), ("backwards", 1e9, "unknown_service"),
    ]  # fmt: skip
    n = len(h.sink.batches)
    assert h.call(TRACE_METHOD, b"") == b""  # empty request: OK, nothing enqueued
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    empty = ExportTraceServiceRequest()
    empty.resource_spans.add()
    empty.resource_spans.add().scope_spans.add()
    assert not h.traces(empty).HasField("partial_success")
    assert len(h.sink.batches) == n
    h.assert_still_serving()


def test_logs_with_zero_ids_accepted(h):
    data = log_request({"trace_id": bytes(16), "span_id": bytes(8)}, {"trace_id": b"\x01" * 5}).SerializeToString()
    resp = ExportLogsServiceResponse.FromString(h.call(LOGS_METHOD, data))
    assert not resp.HasField("partial_success")
    assert [(r.trace_id, r.span_id) for r in h.sink.logs] == [(b"", b""), (b"", b"")]
    h.assert_still_serving()


# ---------------------------------------------------------------- backpressure / shutdown


def test_queue_full_resource_exhausted_with_retry_info(h):
    h.sink.room = 1
    with pytest.raises(grpc.RpcError) as err:
        h.traces(trace_request({}, {}, resource=SVC))
    assert code_of(err) == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(err.value)
    assert status is not None and len(status.details) == 1
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.retry_delay.seconds == 1 and info.retry_delay.nanos == 0
    assert h.rejected("queue_full") == 2 and h.received() == 0 and h.sink.batches == []
    h.sink.room = None  # the worker drained: the retry is accepted and counted once
    h.traces(trace_request({}, {}, resource=SVC))
    assert h.received() == 2
    h.assert_still_serving()


def test_unavailable_while_shutting_down(h):
    h.receiver.set_accepting(False)
    with pytest.raises(grpc.RpcError) as err:
        h.traces(trace_request({}, resource=SVC))
    assert code_of(err) == grpc.StatusCode.UNAVAILABLE
    h.receiver.set_accepting(True)
    h.sink.accepting = False
    with pytest.raises(grpc.RpcError) as err:
        h.traces(trace_request({}, resource=SVC))
    assert code_of(err) == grpc.StatusCode.UNAVAILABLE
    assert h.rejected("shutting_down") == 2 and h.sink.batches == []
    h.sink.accepting = True
    h.assert_still_serving()


def test_stop_is_idempotent_and_safe_before_start():
    x = Harness(start=False)
    x.receiver.stop(0.1)
    port = x.receiver.start()
    assert port and x.receiver.port == port
    x.receiver.stop(0.1)
    x.receiver.stop(0.1)


def test_port_in_use_fails_clearly(h):
    from detector.receive.server import ReceiverError

    other = Harness(grpc_cfg={"endpoint": f"127.0.0.1:{h.port}"}, start=False)
    with pytest.raises(ReceiverError, match="cannot listen"):
        other.receiver.start()


# ---------------------------------------------------------------- limits and encodings


def test_max_size_applies_after_decompression():
    x = Harness(grpc_cfg={"max_recv_msg_size_mib": 1})
    try:
        big = trace_request(*[{"attrs": {"k": "v" * 200}} for _ in range(8000)], resource=SVC).SerializeToString()
        assert len(big) > 2 * 1024 * 1024 and len(gzip.compress(big)) < 1024 * 1024
        with pytest.raises(grpc.RpcError) as err:
            x.call(TRACE_METHOD, big, compression=grpc.Compression.Gzip)
        # grpc core refuses it after inflating; no RetryInfo: the Collector will not retry it
        assert code_of(err) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in err.value.details()
        assert rpc_status.from_call(err.value) is None
        assert x.sink.batches == []
        x.assert_still_serving()
    finally:
        x.close()


def test_unsupported_grpc_encoding_gets_clear_status(h):
    pytest.importorskip("h2", reason="h2 (test extra) is needed to send a zstd grpc-encoding header")
    from tests.integration._h2_client import raw_unary

    data = trace_request({}, resource=SVC).SerializeToString()
    assert raw_unary(h.port, TRACE_METHOD, gzip.compress(data), "gzip", True) == ("0", "")
    for enc in ("zstd", "snappy"):
        status, message = raw_unary(h.port, TRACE_METHOD, data, enc, True)
        # gRPC specifies UNIMPLEMENTED; grpcio 1.6x-1.8x rejects the header while parsing it
        # (hpack_parser "Error parsing 'grpc-encoding' metadata") and answers INTERNAL.
        # Either way the sender sees a non-OK status naming grpc-encoding.
        assert status in ("12", "13"), (status, message)
        assert "grpc-encoding" in (message or "")
    assert h.sink.batches[0].spans and len(h.sink.batches) == 1
    h.assert_still_serving()


# ---------------------------------------------------------------- auth / TLS


def test_bearer_token(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    x = Harness(grpc_cfg={"auth": {"bearer_token_file": str(token_file)}})
    try:
        req = trace_request({}, resource=SVC)
        for md in (None, [("authorization", "Bearer wrong")], [("authorization", "s3cret-token")], [("x-other", "1")]):
            with pytest.raises(grpc.RpcError) as err:
                x.traces(req, metadata=md)
            assert code_of(err) == grpc.StatusCode.UNAUTHENTICATED
            assert "s3cret" not in err.value.details()
        assert x.rejected("unauthenticated") == 4 and x.sink.batches == []
        x.traces(req, metadata=[("authorization", "Bearer s3cret-token")])
        x.traces(req, metadata=[("authorization", "bearer s3cret-token")])
        assert x.received() == 2
    finally:
        x.close()


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        print("openssl not found: TLS tests skipped")
        pytest.skip("openssl CLI not found (needed to make test certificates)")
    d = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=test-ca", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext", cwd=d)  # fmt: skip
    return d


def test_tls_and_mtls(certs):
    ca = (certs / "ca.pem").read_bytes()
    tls = {"cert_file": str(certs / "server.pem"), "key_file": str(certs / "server.key")}
    req = trace_request({}, resource=SVC).SerializeToString()
    x = Harness(grpc_cfg={"tls": tls}, start=False)
    port = x.receiver.start()
    try:
        with grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(root_certificates=ca)) as ch:
            ch.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)(req, timeout=10)
        assert x.received() == 1
    finally:
        x.receiver.stop(0.2)

    y = Harness(grpc_cfg={"tls": {**tls, "client_ca_file": str(certs / "ca.pem")}}, start=False)
    port = y.receiver.start()
    try:
        with grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(root_certificates=ca)) as ch:
            with pytest.raises(grpc.RpcError) as err:  # no client certificate
                ch.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)(req, timeout=10)
            assert code_of(err) == grpc.StatusCode.UNAVAILABLE
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=(certs / "client.key").read_bytes(),
            certificate_chain=(certs / "client.pem").read_bytes(),
        )  # fmt: skip
        with grpc.secure_channel(f"localhost:{port}", creds) as ch:
            ch.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)(req, timeout=10)
        assert y.received() == 1
    finally:
        y.receiver.stop(0.2)


# ---------------------------------------------------------------- the real OTel SDK


def test_otel_sdk_exporters_gzip(tmp_path):
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from grpc import Compression

    token_file = tmp_path / "token"
    token_file.write_text("tok")
    x = Harness(grpc_cfg={"auth": {"bearer_token_file": str(token_file)}})
    try:
        endpoint = f"127.0.0.1:{x.port}"
        headers = {"authorization": "Bearer tok"}
        resource = Resource.create({"service.name": "sdk-svc", "service.version": "9.9"})
        tp = TracerProvider(resource=resource)
        tp.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint, insecure=True, compression=Compression.Gzip, headers=headers, timeout=10)
        ))  # fmt: skip
        tracer = tp.get_tracer("sdk-test")
        with tracer.start_as_current_span("GET /users/{id}", kind=SpanKind.SERVER) as parent:
            parent.set_attribute("http.request.method", "GET")
            parent.set_attribute("http.route", "/users/{id}")
            parent.set_attribute("http.response.status_code", 500)
            with tracer.start_as_current_span("call-db", kind=SpanKind.CLIENT) as child:
                child.set_attribute("db.system", "postgresql")
                child.set_status(Status(StatusCode.ERROR, "timeout"))
        tp.shutdown()

        lp = LoggerProvider(resource=resource)
        lp.add_log_record_processor(SimpleLogRecordProcessor(
            OTLPLogExporter(endpoint=endpoint, insecure=True, compression=Compression.Gzip, headers=headers, timeout=10)
        ))  # fmt: skip
        logger = lp.get_logger("sdk-test")
        from opentelemetry._logs import SeverityNumber

        logger.emit(body="login failed", severity_number=SeverityNumber.ERROR, attributes={"user.id": "u1"})
        lp.shutdown()

        deadline = time.time() + 5
        while (len(x.sink.spans) < 2 or len(x.sink.logs) < 1) and time.time() < deadline:
            time.sleep(0.05)
        spans = {s.name: s for s in x.sink.spans}
        assert set(spans) == {"GET /users/{id}", "call-db"}
        server, db = spans["GET /users/{id}"], spans["call-db"]
        assert (server.service, server.resource.service_version, server.operation, server.is_error) == (
            "sdk-svc", "9.9", "GET /users/{id}", True,
        )  # fmt: skip
        assert (db.peer, db.is_error, db.parent_span_id) == ("postgresql", True, server.span_id)
        (log,) = x.sink.logs
        assert (log.body, log.is_error, log.service, log.attrs["user.id"]) == ("login failed", True, "sdk-svc", "u1")
        assert log.trace_id == b""
        assert x.received() == 2 and x.received("log_records") == 1
    finally:
        x.close()


def test_internal_errors_are_not_unknown(monkeypatch):
    import detector.receive.server as server_mod

    def broken(data):
        raise TypeError("bug")

    monkeypatch.setattr(server_mod, "decode_logs", broken)
    x = Harness()
    try:
        with pytest.raises(grpc.RpcError) as err:  # a normalisation bug: permanent, not UNKNOWN
            x.call(LOGS_METHOD, log_request({}).SerializeToString())
        assert code_of(err) == grpc.StatusCode.INVALID_ARGUMENT and "TypeError" in err.value.details()
        assert x.rejected("internal_error", "log_records") == 1

        def raising_submit(batch):
            raise RuntimeError("queue bug")

        x.sink.submit = raising_submit
        with pytest.raises(grpc.RpcError) as err:  # the sink raised: retryable
            x.traces(trace_request({}, {}, resource=SVC))
        assert code_of(err) == grpc.StatusCode.UNAVAILABLE
        assert x.rejected("internal_error") == 2
        del x.sink.submit
        x.assert_still_serving()
    finally:
        x.close()
