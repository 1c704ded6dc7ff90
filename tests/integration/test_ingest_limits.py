"""Shapes beyond the decoder's limits through the real OTLP/gRPC Receiver (real grpc channel, gzip):
values nested deeper than the protobuf parser's limit are salvaged (the other spans of the request
are kept), and every cut value is counted in ``otel_anomaly_truncated_values_total{signal,reason}``.
"""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

from detector.normalise._common import DEPTH_MARKER, MAX_ATTRIBUTES, MAX_DEPTH
from tests.integration.test_receiver import SVC, Harness
from tests.support.otlp import raw_export
from tests.unit._otlp_build import log_request, trace_request


def _nested(depth: int, leaf: object = "leaf") -> object:
    value = leaf
    for _ in range(depth):
        value = {"n": value}
    return value


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.close()


def _truncated(h: Harness, reason: str, signal: str = "spans") -> float:
    return h.value("otel_anomaly_truncated_values_total", signal=signal, reason=reason)


def test_nested_beyond_parser_limit_keeps_the_request_and_counts(h):
    target = f"127.0.0.1:{h.port}"
    attrs = {"deep": _nested(40), "arr": list(range(5_000)), **{f"k{i}": i for i in range(MAX_ATTRIBUTES + 10)}}
    data = trace_request({"name": "a"}, {"name": "deep", "attrs": attrs}, {"name": "b"}, resource=SVC).SerializeToString()
    with pytest.raises(Exception):
        ExportTraceServiceRequest.FromString(data)  # upb alone refuses the whole request
    for reason in ("depth", "array", "attributes"):  # exported at 0 before the first cut
        assert h.registry.get_sample_value("otel_anomaly_truncated_values_total", {"signal": "spans", "reason": reason}) == 0

    resp = ExportTraceServiceResponse.FromString(raw_export(target, "traces", data))

    assert not resp.HasField("partial_success")
    assert [s.name for s in h.sink.spans] == ["a", "deep", "b"] and h.received() == 3
    deep = h.sink.spans[1].attrs["deep"]
    for _ in range(MAX_DEPTH):
        deep = deep["n"]
    assert deep == DEPTH_MARKER
    # the attribute cap keeps the first 4096 attributes: "deep", "arr" and k0..k4093
    assert len(h.sink.spans[1].attrs) == MAX_ATTRIBUTES and "arr" in h.sink.spans[1].attrs
    assert _truncated(h, "depth") == 1 and _truncated(h, "attributes") == 12
    assert _truncated(h, "array") == 1  # "arr" (5,000 values) cut at 1,000
    assert h.value("otel_anomaly_utf8_repaired_requests_total", signal="spans") == 0
    h.assert_still_serving()


def test_deep_log_body_with_invalid_utf8(h):
    target = f"127.0.0.1:{h.port}"
    data = log_request({"body": _nested(60, "caf\u00e9")}, {"body": "ok"}, resource={"service.name": "a"}).SerializeToString()
    resp = ExportLogsServiceResponse.FromString(raw_export(target, "logs", data.replace("\u00e9".encode(), b"\xc3(")))
    assert not resp.HasField("partial_success")
    assert [r.body if isinstance(r.body, str) else "deep" for r in h.sink.logs] == ["deep", "ok"]
    assert h.received("log_records") == 2
    assert _truncated(h, "depth", "log_records") == 1
    # the invalid UTF-8 sat below the cut, so nothing needed repairing
    assert h.value("otel_anomaly_utf8_repaired_requests_total", signal="log_records") == 0
    h.assert_still_serving()


def test_far_beyond_the_limit_and_corrupt_still_invalid_argument(h):
    import grpc

    target = f"127.0.0.1:{h.port}"
    data = trace_request({"attrs": {"deep": _nested(200)}}, resource=SVC).SerializeToString()
    ExportTraceServiceResponse.FromString(raw_export(target, "traces", data))
    assert h.received() == 1 and _truncated(h, "depth") == 1
    with pytest.raises(grpc.RpcError) as err:
        raw_export(target, "traces", data[: len(data) // 2])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert h.rejected("undecodable") == 1
    h.assert_still_serving()
