"""OTLP/JSON parsing (hex ids, lenient ints/enums/keys) and the replay file reader."""

from __future__ import annotations

import gzip
import json
import math

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from detector.normalise import normalise_logs, normalise_traces
from detector.normalise.otlp_json import OtlpJsonError, parse_request
from detector.replay.reader import ReplayInputError, iter_requests
from tests.unit._otlp_build import log_request, shared_testdata, trace_request


@pytest.fixture(scope="module")
def examples():
    return shared_testdata("otlp-proto-examples")


def test_official_trace_example(examples):
    signal, msg = parse_request((examples / "trace.json").read_text())
    assert signal == "traces"
    (s,) = normalise_traces(msg).spans
    assert s.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert s.span_id.hex() == "eee19b7ec3c1b174"
    assert s.parent_span_id.hex() == "eee19b7ec3c1b173"
    assert (s.service, s.name, s.kind, s.start, s.end) == ("my.service", "I'm a server span", 2, 1544712660.0, 1544712661.0)
    assert s.attrs == {"my.span.attr": "some value"}
    assert (s.scope.name, s.scope.version) == ("my.library", "1.0.0")


def test_json_format_would_get_the_id_wrong(examples):
    # Why we do not use protobuf's json_format: it base64-decodes the 32 hex chars into 24 bytes.
    msg = json_format.Parse((examples / "trace.json").read_text(), ExportTraceServiceRequest())
    assert len(msg.resource_spans[0].scope_spans[0].spans[0].trace_id) == 24


def test_official_logs_example(examples):
    signal, msg = parse_request((examples / "logs.json").read_text())
    assert signal == "logs"
    (r,) = normalise_logs(msg).logs
    assert (r.trace_id.hex(), r.span_id.hex()) == ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")
    assert (r.severity_number, r.severity_text, r.body, r.time) == (10, "Information", "Example log record", 1544712660.3)
    assert r.attrs == {
        "string.attribute": "some string",
        "boolean.attribute": True,
        "int.attribute": 10,
        "double.attribute": 637.704,
        "array.attribute": ["many", "values"],
        "map.attribute": {"some.map.key": "some value"},
    }


def test_jaeger_fixture(examples):
    signal, msg = parse_request((examples / "jaeger_otel_traces_01.json").read_text())
    spans = normalise_traces(msg).spans
    assert len(spans) == 4 and {s.kind for s in spans} == {2, 3, 4, 5}
    s = spans[0]
    assert s.trace_id.hex() == "00000000000000010000000000000000" and s.span_id.hex() == "0000000000000002"
    assert s.attrs["blob"] == b"\x00\x0009"  # bytesValue is base64 ("AAAwOQ==")
    assert s.attrs["peer.ipv4"] == 23456 and s.attrs["temperature"] == 72.5
    assert s.status_code == 2 and s.is_error
    assert all(x.service == "service-x" for x in spans)
    link = msg.resource_spans[0].scope_spans[0].spans[0].links[0]
    assert link.span_id.hex() == "0000000000000004"


def test_lenient_forms():
    obj = {
        "resource_spans": [  # snake_case keys
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "s"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "trace_id": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "eee19b7ec3c1b174",
                                "kind": "SPAN_KIND_CLIENT",  # enum by name
                                "startTimeUnixNano": 1544712660000000000,  # number
                                "endTimeUnixNano": "1544712661000000000",  # string
                                "status": {"code": "STATUS_CODE_ERROR"},
                                "droppedAttributesCount": "3",
                                "someFutureField": {"x": 1},  # unknown: ignored
                                "parentSpanId": None,  # null: unset
                                "attributes": [
                                    {"key": "i", "value": {"intValue": 5}},
                                    {"key": "n", "value": {"doubleValue": "NaN"}},
                                    {"key": "inf", "value": {"doubleValue": "-Infinity"}},
                                    {"key": "e", "value": {}},
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    signal, msg = parse_request(json.dumps(obj))
    (s,) = normalise_traces(msg).spans
    assert (s.kind, s.status_code, s.is_error, s.start, s.parent_span_id) == (3, 2, True, 1544712660.0, b"")
    assert s.attrs["i"] == 5 and math.isnan(s.attrs["n"]) and s.attrs["inf"] == -math.inf
    assert msg.resource_spans[0].scope_spans[0].spans[0].dropped_attributes_count == 3


def test_lone_surrogate_is_replaced():
    obj = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "a\ud800b"}}]}]}]}
    _, msg = parse_request(obj)
    assert normalise_logs(msg).logs[0].body == "a?b"


@pytest.mark.parametrize(
    "obj, match",
    [
        ({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}, r"resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]\.traceId"),
        ({"resourceSpans": {"not": "a list"}}, "resourceSpans: expected a JSON array"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}, "expected an integer"),
        ({"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "SIDEWAYS"}]}]}]}, "enum"),
        ({"hello": 1}, "no resourceSpans"),
        ([], "expected a JSON object"),
    ],
)  # fmt: skip
def test_errors_name_the_path(obj, match):
    with pytest.raises(OtlpJsonError, match=match):
        parse_request(obj)


def test_invalid_json_text():
    with pytest.raises(OtlpJsonError, match="not JSON"):
        parse_request("{nope")


# ---------------------------------------------------------------- reader


def _json_line(req) -> str:
    """OTLP/JSON of a request, as the Collector's file exporter writes it (hex ids)."""
    d = json_format.MessageToDict(req)

    def fix(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                    import base64

                    o[k] = base64.b64decode(v).hex()
                else:
                    fix(v)
        elif isinstance(o, list):
            for v in o:
                fix(v)

    fix(d)
    return json.dumps(d)


def test_reader_jsonl_and_gz(tmp_path):
    t = trace_request({"name": "a"}, {"name": "b"}, resource={"service.name": "svc"})
    lg = log_request({"body": "x"}, resource={"service.name": "svc"})
    text = _json_line(t) + "\n\n" + _json_line(lg) + "\n"
    plain = tmp_path / "capture.jsonl"
    plain.write_text(text)
    gz = tmp_path / "capture.json.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    for path in (plain, gz):
        got = list(iter_requests(path))
        assert [s for s, _ in got] == ["traces", "logs"]
        assert got[0][1] == t and got[1][1] == lg


def test_reader_pretty_printed_file(examples, tmp_path):
    got = list(iter_requests(examples / "trace.json"))
    assert len(got) == 1 and got[0][0] == "traces"
    two = tmp_path / "two.json"
    two.write_text((examples / "trace.json").read_text() + "\n" + (examples / "logs.json").read_text())
    assert [s for s, _ in iter_requests(two)] == ["traces", "logs"]


def test_reader_bad_line_reports_line(tmp_path):
    t = trace_request({}, resource={"service.name": "svc"})
    p = tmp_path / "bad.jsonl"
    p.write_text(_json_line(t) + "\n" + _json_line(t) + "\n{broken\n")
    it = iter_requests(p)
    assert next(it)[0] == "traces" and next(it)[0] == "traces"
    with pytest.raises(ReplayInputError) as err:
        next(it)
    assert err.value.line == 3 and err.value.path == str(p) and "invalid JSON" in str(err.value)
    p.write_text('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 7}]}]}]}\n')
    with pytest.raises(ReplayInputError, match=r"bad.jsonl:1: invalid OTLP/JSON: .*traceId"):
        list(iter_requests(p))


def test_reader_binary_single_and_delimited(tmp_path):
    from google.protobuf.internal.encoder import _VarintBytes

    t = trace_request({"name": "a"}, resource={"service.name": "svc"})
    lg = log_request({"body": "x", "severity": 17}, resource={"service.name": "svc"})
    single = tmp_path / "req.pb"  # no signal in the name: detected
    single.write_bytes(lg.SerializeToString())
    assert list(iter_requests(single)) == [("logs", lg)]
    single.write_bytes(t.SerializeToString())
    assert list(iter_requests(single)) == [("traces", t)]
    stream = tmp_path / "stream.pb.gz"
    body = b"".join(_VarintBytes(m.ByteSize()) + m.SerializeToString() for m in (t, lg, t))
    stream.write_bytes(gzip.compress(body))
    assert [s for s, _ in iter_requests(stream)] == ["traces", "logs", "traces"]
    hinted = tmp_path / "logs-0001.pb"
    hinted.write_bytes(lg.SerializeToString())
    assert list(iter_requests(hinted)) == [("logs", lg)]


def test_reader_unreadable(tmp_path):
    with pytest.raises(ReplayInputError, match="cannot read"):
        list(iter_requests(tmp_path / "missing.json"))
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff\xfe\xfd not protobuf at all")
    with pytest.raises(ReplayInputError, match="not a binary OTLP request"):
        list(iter_requests(garbage))
    badgz = tmp_path / "x.json.gz"
    badgz.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ReplayInputError, match="gzip"):
        list(iter_requests(badgz))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert list(iter_requests(empty)) == []


def test_reader_directory(tmp_path):
    t = trace_request({}, resource={"service.name": "svc"})
    (tmp_path / "b.jsonl").write_text(_json_line(t) + "\n")
    (tmp_path / "a.pb").write_bytes(t.SerializeToString())
    (tmp_path / "notes.txt").write_text("ignored")
    assert [s for s, _ in iter_requests(tmp_path)] == ["traces", "traces"]


def test_reader_truncated_gzip_stream_names_the_line(tmp_path):
    t = trace_request({}, resource={"service.name": "svc"})
    body = gzip.compress(((_json_line(t) + "\n") * 2000).encode())
    p = tmp_path / "cut.jsonl.gz"
    p.write_bytes(body[: len(body) // 2])
    got = 0
    with pytest.raises(ReplayInputError, match="corrupt gzip data") as err:
        for _ in iter_requests(p):
            got += 1
    assert got > 0 and err.value.line is not None and err.value.line > got
