"""Normalisation of OTLP traces/logs/metrics: every bad input of issue 2 point 4, semconv rules."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from detector.normalise import (
    UndecodableRequest,
    check_protobuf_backend,
    decode_logs,
    decode_metrics,
    decode_traces,
    normalise_traces,
)
from detector.normalise._common import DEPTH_MARKER, MAX_ARRAY, MAX_ATTRIBUTES, MAX_DEPTH
from detector.normalise.records import EMPTY, UNKNOWN_SERVICE, value_type
from tests.unit._otlp_build import SID, T0, TID, log_request, trace_request

SVC = {"service.name": "checkout", "service.version": "2.1.0"}


def one(**span) -> object:
    res = decode_traces(trace_request(span, resource=SVC).SerializeToString())
    assert res.rejected == 0 and len(res.spans) == 1
    return res.spans[0]


def test_backend_is_upb():
    assert check_protobuf_backend() == "upb"


# ---------------------------------------------------------------- resource / service


@pytest.mark.parametrize(
    "resource, service",
    [(None, UNKNOWN_SERVICE), ({}, UNKNOWN_SERVICE), ({"service.name": ""}, UNKNOWN_SERVICE),
     ({"host.name": "h"}, UNKNOWN_SERVICE), ({"service.name": "cart"}, "cart"), ({"service.name": 42}, "42")],
)  # fmt: skip
def test_service_name_missing_or_empty(resource, service):
    res = decode_traces(trace_request({}, resource=resource).SerializeToString())
    assert res.spans[0].service == service
    assert res.spans[0].resource.service_version == ""


def test_service_version_and_scope():
    s = one()
    assert (s.service, s.resource.service_version, s.scope.name, s.scope.version) == ("checkout", "2.1.0", "test.scope", "1.0")
    assert s.trace_id == TID and s.span_id == (1).to_bytes(8, "big") and s.parent_span_id == b""


# ---------------------------------------------------------------- attribute values


def test_every_anyvalue_type():
    attrs = {"s": "x", "b": True, "i": -7, "d": 1.5, "a": [1, "two", False], "k": {"x": 1, "y": {"z": "deep"}},
             "by": b"\x00\xff", "e": None}  # fmt: skip
    s = one(attrs=attrs)
    assert s.attrs == {**attrs, "e": EMPTY}
    assert {k: value_type(v) for k, v in s.attrs.items()} == {
        "s": "string", "b": "bool", "i": "int", "d": "double", "a": "array", "k": "kvlist", "by": "bytes", "e": "empty"
    }  # fmt: skip


def test_kvlist_nested_20_deep_is_capped():
    value: object = "leaf"
    for _ in range(20):
        value = {"n": value}
    s = one(attrs={"deep": value})
    v = s.attrs["deep"]
    for _ in range(MAX_DEPTH):
        assert isinstance(v, dict)
        v = v["n"]
    assert v == DEPTH_MARKER


def _nested(depth: int, leaf: object = "leaf", array: bool = False) -> object:
    value = leaf
    for _ in range(depth):
        value = [value] if array else {"n": value}
    return value


def _capped(value: object, levels: int = MAX_DEPTH) -> object:
    """What the normaliser keeps of _nested(): ``levels`` containers, then the marker."""
    return _nested(levels, DEPTH_MARKER, array=isinstance(value, list))


def test_depth_cap_is_counted_on_the_fast_path():
    res = decode_traces(trace_request({"attrs": {"deep": _nested(20)}}, resource=SVC).SerializeToString())
    assert res.cut == {"depth": 1} and not res.depth_salvaged and not res.utf8_repaired


@pytest.mark.parametrize("depth, array", [(32, False), (40, False), (150, False), (50, True), (150, True)])
def test_nesting_beyond_the_parser_limit_is_salvaged(depth, array):
    """kvlists add 3 message levels each (32 deep > upb's 100), arrays 2 (50 deep > 100)."""
    deep = _nested(depth, array=array)
    spans = [{"name": "before"}, {"name": "deep", "attrs": {"deep": deep, "http.route": "/x", "n": 7}}, {"name": "after"}]
    data = trace_request(*spans, resource=SVC).SerializeToString()
    with pytest.raises(Exception):
        ExportTraceServiceRequest.FromString(data)  # what upb does on its own
    res = decode_traces(data)
    assert [s.name for s in res.spans] == ["before", "deep", "after"] and res.rejected == 0
    s = res.spans[1]
    assert s.attrs == {"deep": _capped(deep), "http.route": "/x", "n": 7}
    assert s.operation == "/x" and s.service == "checkout" and s.trace_id == TID
    assert res.depth_salvaged and res.cut == {"depth": 1} and not res.utf8_repaired
    # same records as a request nested just 20 deep, which upb decodes itself
    shallow = decode_traces(trace_request(*spans[:1], {**spans[1], "attrs": {**spans[1]["attrs"], "deep": _nested(20, array=array)}},
                                          spans[2], resource=SVC).SerializeToString())  # fmt: skip
    assert shallow.spans[1].attrs == s.attrs


def test_deep_nesting_and_invalid_utf8_together():
    req = trace_request({"name": "caf\u00e9", "attrs": {"deep": _nested(40), "k": {"x": "caf\u00e9"}}}, {"name": "ok"}, resource=SVC)
    data = req.SerializeToString().replace("\u00e9".encode(), b"\xc3(")
    res = decode_traces(data)
    assert [s.name for s in res.spans] == ["caf\ufffd(", "ok"]
    assert res.spans[0].attrs["k"] == {"x": "caf\ufffd("} and res.spans[0].attrs["deep"] == _capped(_nested(40))
    assert res.utf8_repaired and res.depth_salvaged and res.cut == {"depth": 1}


def test_deep_log_body_and_resource_attribute_salvaged():
    data = log_request({"body": _nested(50), "attrs": {"a": _nested(45, array=True)}},
                       resource={"service.name": "a", "r": _nested(40)}).SerializeToString()  # fmt: skip
    res = decode_logs(data)
    rec = res.logs[0]
    assert rec.body == _capped(_nested(50)) and rec.attrs["a"] == _capped(_nested(1, array=True))
    assert rec.resource.attrs["r"] == _capped(_nested(40)) and rec.service == "a"
    assert res.depth_salvaged and res.cut == {"depth": 3}


def test_corrupt_wire_format_still_undecodable():
    data = trace_request({"attrs": {"deep": _nested(40)}}, resource=SVC).SerializeToString()
    with pytest.raises(UndecodableRequest, match="corrupt wire format"):
        decode_traces(data[: len(data) // 2])


def test_array_of_10k_values_is_capped():
    res = decode_traces(trace_request({"attrs": {"big": list(range(10_000))}}, resource=SVC).SerializeToString())
    assert res.spans[0].attrs["big"] == list(range(MAX_ARRAY))
    assert res.cut == {"array": 1}


def test_100k_attributes_on_one_span():
    attrs = {f"k{i}": i for i in range(100_000)}
    res = decode_traces(trace_request({"attrs": attrs}, {}, resource=SVC).SerializeToString())
    assert len(res.spans) == 2 and res.rejected == 0
    assert len(res.spans[0].attrs) == MAX_ATTRIBUTES and res.spans[0].attrs["k0"] == 0
    assert res.truncated == 1 and res.cut == {"attributes": 100_000 - MAX_ATTRIBUTES}


# ---------------------------------------------------------------- invalid UTF-8


def test_invalid_utf8_is_salvaged():
    req = trace_request({"name": "na\u00e9me", "attrs": {"user.id": "AAA\u00e9", "key\u00e9": "v"}}, {"name": "ok"},
                        resource={"service.name": "sv\u00e9c"})  # fmt: skip
    data = req.SerializeToString()
    bad = data.replace("\u00e9".encode(), b"\xff\xfe")
    with pytest.raises(Exception):
        ExportTraceServiceRequest.FromString(bad)  # what upb does on its own
    res = decode_traces(bad)
    assert res.utf8_repaired and res.rejected == 0 and len(res.spans) == 2
    s = res.spans[0]
    assert s.service == "sv\ufffd\ufffdc" and s.name == "na\ufffd\ufffdme"
    assert s.principal == "AAA\ufffd\ufffd" and "key\ufffd\ufffd" in s.attrs
    assert res.spans[1].name == "ok" and s.trace_id == TID
    assert decode_traces(data).utf8_repaired is False


def test_invalid_utf8_in_logs_is_salvaged():
    data = log_request({"body": "caf\u00e9"}, resource={"service.name": "a"}).SerializeToString()
    res = decode_logs(data.replace("\u00e9".encode(), b"\xc3("))  # same length, invalid sequence
    assert res.utf8_repaired and res.logs[0].body == "caf\ufffd("


# ---------------------------------------------------------------- ids


def test_bad_trace_and_span_ids_rejected_good_kept():
    spans = [
        {"trace_id": b"\x01" * 8},
        {"trace_id": b"\x01" * 17},
        {"trace_id": bytes(16)},
        {"trace_id": b""},
        {"span_id": b""},
        {"span_id": b"\x02" * 9},
        {"span_id": bytes(8)},
        {"name": "good"},
    ]
    res = decode_traces(trace_request(*spans, resource=SVC).SerializeToString())
    assert [s.name for s in res.spans] == ["good"]
    assert res.rejected == 7
    assert dict(res.reasons) == {"invalid_trace_id": 4, "invalid_span_id": 3}
    assert res.error_message == "rejected 7 spans: 3 invalid_span_id, 4 invalid_trace_id"


@pytest.mark.parametrize("parent", [b"", bytes(8), b"\x01\x02\x03", b"\x05" * 9])
def test_invalid_parent_id_means_root(parent):
    assert one(parent_span_id=parent).parent_span_id == b""


def test_valid_parent_kept():
    assert one(parent_span_id=SID).parent_span_id == SID


def test_log_ids():
    res = decode_logs(
        log_request(
            {"trace_id": bytes(16), "span_id": bytes(8)},  # zero: no trace context
            {},  # absent
            {"trace_id": b"\x01" * 8, "span_id": SID},  # bad trace id: both dropped
            {"trace_id": TID, "span_id": b"\x01" * 9},  # bad span id: trace kept
            {"trace_id": TID, "span_id": SID},
        ).SerializeToString()
    )
    assert res.rejected == 0 and res.error_message == ""
    assert [(r.trace_id, r.span_id) for r in res.logs] == [(b"", b""), (b"", b""), (b"", b""), (TID, b""), (TID, SID)]
    assert all(r.service == UNKNOWN_SERVICE for r in res.logs)


# ---------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    "start, end, exp_start, exp_end",
    [
        (0, 0, 0.0, 0.0),  # both zero: 0.0 -> the pipeline uses the arrival time
        (T0, 0, T0 / 1e9, T0 / 1e9),  # zero end: start
        (1, 1, 1e-9, 1e-9),  # 1970
        (4_102_444_800 * 10**9, 4_102_444_801 * 10**9, 4_102_444_800.0, 4_102_444_801.0),  # year 2100 kept
        (T0 + 10**9, T0, (T0 + 10**9) / 1e9, T0 / 1e9),  # end before start: kept as sent
    ],
)
def test_timestamps(start, end, exp_start, exp_end):
    s = one(start=start, end=end)
    assert (s.start, s.end, s.time) == (exp_start, exp_end, exp_end)


def test_log_time_falls_back_to_observed():
    res = decode_logs(log_request({"time": 0, "observed": 2 * 10**9}, {"time": 0}).SerializeToString())
    assert [r.time for r in res.logs] == [2.0, 0.0]


# ---------------------------------------------------------------- empty / undecodable


def test_empty_request_and_empty_groups():
    assert decode_traces(b"").spans == []
    req = ExportTraceServiceRequest()
    req.resource_spans.add()
    req.resource_spans.add().scope_spans.add()
    res = decode_traces(req.SerializeToString())
    assert (res.spans, res.rejected, res.error_message) == ([], 0, "")


@pytest.mark.parametrize("data", [b"this is not protobuf", b'{"resourceSpans": []}', b"\xff\xff\xff\xff", b"\x08\x01"])
def test_not_protobuf_is_undecodable(data):
    with pytest.raises(UndecodableRequest, match="ExportTraceServiceRequest"):
        decode_traces(data)
    with pytest.raises(UndecodableRequest):
        decode_logs(data)


def test_truncated_message_is_undecodable():
    data = trace_request({}, resource=SVC).SerializeToString()
    with pytest.raises(UndecodableRequest):
        decode_traces(data[:-3])


# ---------------------------------------------------------------- semantic conventions


@pytest.mark.parametrize(
    "attrs, operation, http_status",
    [
        ({"http.request.method": "GET", "http.route": "/users/{id}", "http.response.status_code": 200}, "GET /users/{id}", 200),
        ({"http.method": "POST", "http.route": "/login", "http.status_code": 401}, "POST /login", 401),  # old generation
        ({"http.route": "/x"}, "/x", None),
        ({"http.method": "GET", "http.status_code": "503"}, "span-name", 503),  # no route: span name; string status
        ({"rpc.system": "grpc", "rpc.service": "shop.Cart", "rpc.method": "Add"}, "shop.Cart/Add", None),
        ({"rpc.method": "shop.Cart/Add"}, "shop.Cart/Add", None),  # newer semconv: fully qualified
        ({"rpc.method": "Add"}, "Add", None),
        ({}, "span-name", None),
    ],
)
def test_operation_both_generations(attrs, operation, http_status):
    s = one(name="span-name", attrs=attrs)
    assert s.operation == operation and s.http_status == http_status


SERVER, CLIENT, INTERNAL, PRODUCER = 2, 3, 1, 4


@pytest.mark.parametrize(
    "kind, status, attrs, is_error",
    [
        (SERVER, 2, {}, True),
        (INTERNAL, 2, {}, True),
        (SERVER, 1, {"http.response.status_code": 500}, False),  # OK is final
        (SERVER, 0, {"http.response.status_code": 500}, True),
        (SERVER, 0, {"http.response.status_code": 503}, True),
        (SERVER, 0, {"http.status_code": 502}, True),
        (SERVER, 0, {"http.response.status_code": 404}, False),  # server 4xx: not the server's error
        (SERVER, 0, {"http.response.status_code": 401}, False),
        (CLIENT, 0, {"http.response.status_code": 404}, True),  # client 4xx: error
        (CLIENT, 0, {"http.status_code": 500}, True),
        (CLIENT, 0, {"http.response.status_code": 302}, False),
        (SERVER, 0, {"http.response.status_code": 200}, False),
        (SERVER, 0, {"rpc.grpc.status_code": 0}, False),
        (SERVER, 0, {"rpc.grpc.status_code": 2}, True),  # UNKNOWN
        (SERVER, 0, {"rpc.grpc.status_code": 4}, True),  # DEADLINE_EXCEEDED
        (SERVER, 0, {"rpc.grpc.status_code": 12}, True),  # UNIMPLEMENTED
        (SERVER, 0, {"rpc.grpc.status_code": 13}, True),  # INTERNAL
        (SERVER, 0, {"rpc.grpc.status_code": 14}, True),  # UNAVAILABLE
        (SERVER, 0, {"rpc.grpc.status_code": 15}, True),  # DATA_LOSS
        (SERVER, 0, {"rpc.grpc.status_code": 5}, False),  # NOT_FOUND: client's fault
        (SERVER, 0, {"rpc.grpc.status_code": 16}, False),  # UNAUTHENTICATED
        (SERVER, 0, {"rpc.grpc.status_code": 3}, False),  # INVALID_ARGUMENT
        (CLIENT, 0, {"rpc.grpc.status_code": 5}, True),  # client: any non-OK
        (CLIENT, 0, {"rpc.grpc.status_code": 16}, True),
        (CLIENT, 0, {"rpc.grpc.status_code": 0}, False),
        (SERVER, 0, {"rpc.response.status_code": "UNAVAILABLE"}, True),  # newer semconv: name
        (SERVER, 0, {"rpc.response.status_code": "NOT_FOUND"}, False),
        (CLIENT, 0, {"rpc.response.status_code": "NOT_FOUND"}, True),
        (INTERNAL, 0, {}, False),
    ],
)
def test_error_semantics(kind, status, attrs, is_error):
    assert one(kind=kind, status=status, attrs=attrs).is_error is is_error


def test_grpc_status_name_is_numbered():
    assert one(attrs={"rpc.response.status_code": "DEADLINE_EXCEEDED"}).rpc_grpc_status == 4


@pytest.mark.parametrize(
    "kind, attrs, peer",
    [
        (CLIENT, {"peer.service": "payment", "server.address": "10.0.0.1"}, "payment"),
        (CLIENT, {"server.address": "payment.svc", "rpc.service": "x.Pay"}, "payment.svc"),
        (CLIENT, {"net.peer.name": "payment-old"}, "payment-old"),
        (CLIENT, {"rpc.service": "shop.Payment", "rpc.method": "Charge"}, "shop.Payment"),
        (PRODUCER, {"messaging.destination.name": "orders"}, "orders"),
        (PRODUCER, {"messaging.destination": "orders-old"}, "orders-old"),
        (CLIENT, {"db.system": "postgresql"}, "postgresql"),
        (CLIENT, {"db.system.name": "redis"}, "redis"),
        (CLIENT, {}, ""),
        (CLIENT, {"server.address": "10.0.0.5"}, ""),  # never an IP address as peer
        (CLIENT, {"server.address": "10.0.0.5", "rpc.service": "shop.Payment"}, "shop.Payment"),
        (CLIENT, {"net.peer.name": "[2001:db8::1]:443", "db.system": "mysql"}, "mysql"),
        (CLIENT, {"server.address": "10.0.0.5:8080"}, ""),
        (CLIENT, {"server.address": "1password.example"}, "1password.example"),
        (PRODUCER, {"messaging.destination.template": "orders-{id}", "messaging.destination.name": "orders-123"}, "orders-{id}"),
        (SERVER, {"peer.service": "ignored", "server.address": "me"}, ""),  # server: only the parent's service
        (INTERNAL, {"peer.service": "x"}, ""),
    ],
)
def test_peer_rules(kind, attrs, peer):
    assert one(kind=kind, attrs=attrs).peer == peer


def test_server_peer_from_parent_in_same_batch():
    other_trace = b"\x07" * 16
    req = trace_request(
        resources=[
            ({"service.name": "frontend"}, [{"span_id": b"\x01" * 8, "kind": CLIENT, "attrs": {"server.address": "cart"}}]),
            ({"service.name": "cart"}, [
                {"span_id": b"\x02" * 8, "parent_span_id": b"\x01" * 8, "kind": SERVER},  # parent in batch
                {"span_id": b"\x03" * 8, "parent_span_id": b"\x09" * 8, "kind": SERVER},  # parent elsewhere
                {"span_id": b"\x04" * 8, "parent_span_id": b"\x01" * 8, "kind": SERVER, "trace_id": other_trace},
            ]),
        ]
    )  # fmt: skip
    res = normalise_traces(req)
    assert [(s.service, s.peer) for s in res.spans] == [("frontend", "cart"), ("cart", "frontend"), ("cart", ""), ("cart", "")]


@pytest.mark.parametrize(
    "attrs, principal, source, ua",
    [
        ({"user.id": "u1", "enduser.id": "e1", "client.address": "1.2.3.4", "user_agent.original": "curl/8"}, "u1", "1.2.3.4", "curl/8"),
        ({"enduser.id": "e1", "http.client_ip": "5.6.7.8", "http.user_agent": "old-ua"}, "e1", "5.6.7.8", "old-ua"),
        ({"user.name": "alice", "http.request.header.x-forwarded-for": ["9.9.9.9, 10.0.0.1"], "net.sock.peer.addr": "10.0.0.1"},
         "alice", "9.9.9.9", None),
        ({"http.request.header.x-forwarded-for": "8.8.8.8,1.1.1.1"}, None, "8.8.8.8", None),
        ({"net.sock.peer.addr": "10.1.1.1"}, None, "10.1.1.1", None),
        ({"network.peer.address": "10.2.2.2"}, None, "10.2.2.2", None),
        ({"source.address": "10.3.3.3", "user.id": 1234}, "1234", "10.3.3.3", None),
        ({}, None, None, None),
    ],
)  # fmt: skip
def test_auth_fields(attrs, principal, source, ua):
    s = one(attrs=attrs)
    assert (s.principal, s.source, s.user_agent) == (principal, source, ua)


def test_status_message_and_kind_kept():
    s = one(kind=CLIENT, status=2, status_message="boom")
    assert (s.kind, s.status_code, s.status_message) == (CLIENT, 2, "boom")


# ---------------------------------------------------------------- logs / metrics


def test_log_fields():
    res = decode_logs(
        log_request(
            {"severity": 17, "severity_text": "ERROR", "body": "failed", "attrs": {"a": 1}},
            {"severity": 9, "body": {"msg": "hi", "n": 2}, "event_name": "user.login"},
            {"severity": 21, "attrs": {"event.name": "from.attr"}},
            resource={"service.name": "auth", "service.version": "3"},
        ).SerializeToString()
    )
    a, b, c = res.logs
    assert (a.is_error, a.severity_text, a.body, a.attrs, a.service) == (True, "ERROR", "failed", {"a": 1}, "auth")
    assert (b.is_error, b.body, b.event_name) == (False, {"msg": "hi", "n": 2}, "user.login")
    assert (c.is_error, c.body, c.event_name, c.resource.service_version) == (True, None, "from.attr", "3")


def test_metrics_data_points_counted():
    req = ExportMetricsServiceRequest()
    sm = req.resource_metrics.add().scope_metrics.add()
    m = sm.metrics.add(name="g")
    m.gauge.data_points.add().as_int = 1
    m.gauge.data_points.add().as_int = 2
    m = sm.metrics.add(name="s")
    m.sum.data_points.add().as_double = 1.0
    m = sm.metrics.add(name="h")
    m.histogram.data_points.add().count = 3
    sm.metrics.add(name="nodata")
    res = decode_metrics(req.SerializeToString())
    assert (res.data_points, res.spans, res.logs, res.rejected) == (4, [], [], 0)
