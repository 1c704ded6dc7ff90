"""The fast decode (attribute maps of raw AnyValue bytes) gives what the standard decode gives.

Every case decodes the same bytes both ways: ``decode_traces`` / ``decode_logs``
(fast path first) and ``normalise_*`` on the real OTLP classes (the standard
path), and compares every record field by field. The cases that must leave
the fast path (and why) are checked to leave it.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from detector.normalise import decode_logs, decode_traces, fastpath, normalise_logs, normalise_traces
from detector.normalise._common import MAX_ATTRIBUTES
from detector.normalise.fastpath import _ld  # wire bytes for inputs the real classes would re-encode
from detector.normalise.records import EMPTY
from tests.support.records import result_difference
from tests.unit._otlp_build import log_request, trace_request

SVC = {"service.name": "checkout", "service.version": "2.1.0", "host.name": "h-1"}

VALUES = {
    "empty.string": "",
    "short": "GET",
    "len127": "a" * 127,
    "len128": "b" * 128,
    "len129": "c" * 129,
    "len200": "d" * 200,
    "len16380": "e" * 16380,
    "len16381": "f" * 16381,  # AnyValue needs a 3-byte length varint
    "len70000": "g" * 70000,
    "unicode": "caf\u00e9 \u6f22\u5b57 \U0001f600",
    "bool.true": True,
    "bool.false": False,
    "int.zero": 0,
    "int.neg": -1,
    "int.max": 2**63 - 1,
    "int.status": 200,
    "double": 1.5,
    "double.negzero": -0.0,
    "double.inf": math.inf,
    "double.nan": math.nan,
    "bytes": b"\x00\xff\x80",
    "bytes.empty": b"",
    "array": [1, "two", False, 2.5, [3, {"k": "v"}]],
    "array.empty": [],
    "kvlist": {"x": 1, "y": {"z": "deep", "w": [True]}},
    "kvlist.empty": {},
    "unset": None,
}


def _same(fast, standard) -> None:
    assert result_difference(fast, standard) is None, result_difference(fast, standard)


def _both_traces(req: ExportTraceServiceRequest, fast_expected: bool = True):
    data = req.SerializeToString()
    taken = fastpath.decode(fastpath.TRACES, data, normalise_traces) is not None
    assert taken is fast_expected
    fast = decode_traces(data)
    if fast_expected:
        _same(fast, normalise_traces(ExportTraceServiceRequest.FromString(data)))
    return fast


def test_every_value_shape_decodes_the_same():
    res = _both_traces(trace_request({"attrs": VALUES}, {"attrs": {"k": "v"}, "kind": 3}, resource={**SVC, **VALUES}))
    attrs = res.spans[0].attrs
    assert attrs["len70000"] == "g" * 70000 and attrs["int.max"] == 2**63 - 1 and attrs["unset"] is EMPTY
    assert attrs["kvlist"] == {"x": 1, "y": {"z": "deep", "w": [True]}} and attrs["bytes"] == b"\x00\xff\x80"
    assert res.spans[0].resource.attrs["unicode"] == VALUES["unicode"]


def test_semconv_fields_decode_the_same():
    attrs = {"http.request.method": "POST", "http.route": "/login", "http.response.status_code": 503,
             "server.address": "10.0.0.5", "peer.service": "auth", "user.id": 7, "client.address": "1.2.3.4",
             "user_agent.original": "curl/8", "rpc.grpc.status_code": "UNAVAILABLE"}  # fmt: skip
    res = _both_traces(trace_request({"attrs": attrs, "kind": 3}, {"attrs": attrs, "kind": 2}, resource=SVC))
    s = res.spans[0]
    assert (s.operation, s.is_error, s.peer, s.principal, s.source) == ("POST /login", True, "auth", "7", "1.2.3.4")


def test_duplicate_keys_later_wins_and_key_without_value():
    req = trace_request({"attrs": {"a": "first"}}, resource=SVC)
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    dup = sp.attributes.add()
    dup.key, dup.value.int_value = "a", 5
    sp.attributes.add().key = "novalue"
    res = _both_traces(req)
    assert res.spans[0].attrs == {"a": 5, "novalue": EMPTY}


INTS = [0, 1, 127, 128, 16383, 16384, 2**21, 2**35 - 1, 2**49, 2**56, 2**62, 2**63 - 1, -1, -128, -(2**63)]
DOUBLES = [0.0, -0.0, 1.0, 1.5, -2.25e-308, 1.7976931348623157e308, math.inf, -math.inf, math.nan]


def test_bool_int_double_values_at_encoding_boundaries():
    attrs = {f"i{n}": v for n, v in enumerate(INTS)} | {f"d{n}": v for n, v in enumerate(DOUBLES)}
    attrs |= {"t": True, "f": False}
    res = _both_traces(trace_request({"attrs": attrs}, resource=SVC))
    got = res.spans[0].attrs
    assert [got[f"i{n}"] for n in range(len(INTS))] == INTS
    assert all(type(got[f"i{n}"]) is int for n in range(len(INTS)))
    assert got["t"] is True and got["f"] is False and math.copysign(1, got["d1"]) == -1 and math.isnan(got["d8"])


@pytest.mark.parametrize(
    "anyvalue, expected",
    [(b"\x18\x80\x00", 0), (b"\x18\xff\x80\x00", 127),  # non-minimal varints
     (b"\x10\x02", True), (b"\x10\x80\x01", True),  # bool from other varints
     (b"\x18\x05\x18\x07", 7), (b"\x18\x05" + b"\x21" + bytes(8), 0.0),  # several fields: the last wins
     (b"\x0a\x80\x01" + b"s" * 128, "s" * 128), (b"\x0a\x80\x00", "")],  # fmt: skip
)
def test_unusual_scalar_encodings_decode_like_the_real_class(anyvalue, expected):
    # non-canonical encodings may take either path (the fast one declines most); the result is the same
    data = _with_raw_attribute(anyvalue)
    fast = decode_traces(data)
    _same(fast, normalise_traces(ExportTraceServiceRequest.FromString(data)))
    assert fast.spans[0].attrs["k"] == expected and type(fast.spans[0].attrs["k"]) is type(expected)


@pytest.mark.parametrize("anyvalue", [b"\x18", b"\x18\x80", b"\x21\x00\x00", b"\x10", b"\x0a\x85\x00abc"])
def test_truncated_scalar_encodings_are_refused_like_the_real_class(anyvalue):
    data = _with_raw_attribute(anyvalue)
    assert fastpath.decode(fastpath.TRACES, data, normalise_traces) is None
    with pytest.raises(Exception, match="not a valid"):
        decode_traces(data)


def test_logs_decode_the_same():
    recs = [{"attrs": VALUES, "body": "login failed", "severity": 17}, {"body": {"msg": "x", "n": [1, 2]}},
            {"attrs": {"event.name": "auth.fail"}}]  # fmt: skip
    data = log_request(*recs, resource=SVC).SerializeToString()
    assert fastpath.decode(fastpath.LOGS, data, normalise_logs) is not None
    _same(decode_logs(data), normalise_logs(ExportLogsServiceRequest.FromString(data)))


@pytest.mark.parametrize(
    "where", ["value", "long_value", "key", "resource_value", "span_name"],
)
def test_invalid_utf8_leaves_the_fast_path_and_is_salvaged(where):
    req = trace_request({"attrs": {"k": "ok"}, "name": "first"}, {"attrs": {"other": "fine"}}, resource=SVC)
    data = req.SerializeToString()
    bad = {"value": (b"\x02ok", b"\x02\xffk"), "long_value": None, "key": (b"\x01k", b"\x01\xff"),
           "resource_value": (b"\x03h-1", b"\x03h\xff1"), "span_name": (b"\x05first", b"\x05fir\xfft")}[where]  # fmt: skip
    if bad is None:
        req.resource_spans[0].scope_spans[0].spans[0].attributes[0].value.string_value = "x" * 200
        data = req.SerializeToString().replace(b"x" * 200, b"x" * 199 + b"\xff")
    else:
        assert data.count(bad[0]) == 1
        data = data.replace(*bad)
    assert fastpath.decode(fastpath.TRACES, data, normalise_traces) is None
    res = decode_traces(data)
    assert res.utf8_repaired and len(res.spans) == 2 and res.spans[1].attrs == {"other": "fine"}


def test_too_many_attributes_leave_the_fast_path_and_are_cut_as_before():
    attrs = {f"k{i}": i for i in range(MAX_ATTRIBUTES + 10)}
    res = _both_traces(trace_request({"attrs": attrs}, resource=SVC), fast_expected=False)
    assert res.truncated == 1 and len(res.spans[0].attrs) == MAX_ATTRIBUTES and res.cut == {"attributes": 10}


def test_values_cut_for_depth_leave_the_fast_path():
    deep: object = "leaf"
    for _ in range(20):
        deep = {"n": deep}
    res = _both_traces(trace_request({"attrs": {"deep": deep, "k": "v"}}, resource=SVC), fast_expected=False)
    assert res.cut == {"depth": 1} and not res.depth_salvaged and res.spans[0].attrs["k"] == "v"


def test_corrupt_value_bytes_are_refused_like_the_standard_decode():
    req = trace_request({"attrs": {"k": 5}}, resource=SVC)
    data = req.SerializeToString()
    # AnyValue {int_value: 5} is 18 02 (value length 2) 18 05; make the varint run off its end
    assert data.count(b"\x12\x02\x18\x05") == 1
    corrupt = data.replace(b"\x12\x02\x18\x05", b"\x12\x02\x18\x85")
    assert fastpath.decode(fastpath.TRACES, corrupt, normalise_traces) is None
    with pytest.raises(Exception) as fast_err:
        decode_traces(corrupt)
    with pytest.raises(Exception) as std_err:
        ExportTraceServiceRequest.FromString(corrupt)
    assert type(fast_err.value).__name__ == "UndecodableRequest" and std_err.value is not None


def test_not_protobuf_leaves_the_fast_path():
    assert fastpath.decode(fastpath.TRACES, b"\xff\xff\xff", normalise_traces) is None
    assert fastpath.decode(fastpath.LOGS, b"\x00\x01", normalise_logs) is None


def test_attribute_entry_with_an_unknown_field_is_kept_like_the_standard_decode():
    # KeyValue{key="user.name", 4: AnyValue{"carol"}} (field 4 is not OTLP's): upb sets the map
    # entry aside as an unknown field of the log record; the standard decode keeps key -> EMPTY
    req = log_request({"attrs": {"user.name": "carol", "source.address": "192.0.2.1"}}, resource=SVC)
    data = req.SerializeToString()
    entry = b"\n\tuser.name\x12\x07\n\x05carol"
    assert data.count(entry) == 1
    data = data.replace(entry, b"\n\tuser.name\x22\x07\n\x05carol")
    assert fastpath.decode(fastpath.LOGS, data, normalise_logs) is None
    res = decode_logs(data)
    _same(res, normalise_logs(ExportLogsServiceRequest.FromString(data)))
    assert res.logs[0].attrs == {"user.name": EMPTY, "source.address": "192.0.2.1"}


def test_spans_to_reject_keep_the_fast_path_but_their_attributes_are_checked():
    req = trace_request({"attrs": {"k": 5}, "trace_id": b"\x01" * 8}, {"attrs": {"k": "fine"}}, resource=SVC)
    res = _both_traces(req)
    assert res.rejected == 1 and res.reasons == {"invalid_trace_id": 1} and res.spans[0].attrs == {"k": "fine"}
    # a corrupt value in the rejected span refuses the request, as the standard decode does
    corrupt = req.SerializeToString().replace(b"\x12\x02\x18\x05", b"\x12\x02\x18\x85")
    assert fastpath.decode(fastpath.TRACES, corrupt, normalise_traces) is None
    with pytest.raises(Exception, match="not a valid"):
        decode_traces(corrupt)
    # invalid UTF-8 in a rejected span's value is salvaged and counted, as the standard decode does
    bad = trace_request({"attrs": {"k": "ok!"}, "span_id": b""}, {"attrs": {"k": "fine"}}, resource=SVC)
    data = bad.SerializeToString().replace(b"\x03ok!", b"\x03o\xff!")
    assert fastpath.decode(fastpath.TRACES, data, normalise_traces) is None
    res = decode_traces(data)
    assert res.utf8_repaired and res.reasons == {"invalid_span_id": 1} and len(res.spans) == 1


def test_repeated_key_reads_only_the_last_value_the_documented_difference():
    req = trace_request({"attrs": {"k": 5, "other": "x"}}, resource=SVC)
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    last = sp.attributes.add()
    last.key, last.value.string_value = "k", "last"
    corrupt = req.SerializeToString().replace(b"\x12\x02\x18\x05", b"\x12\x02\x18\x85")
    with pytest.raises(Exception):
        ExportTraceServiceRequest.FromString(corrupt)  # the standard decode parses the earlier value
    res = decode_traces(corrupt)
    assert res.spans[0].attrs == {"k": "last", "other": "x"} and res.rejected == 0



def _with_raw_keyvalue(keyvalue: bytes) -> bytes:
    """Trace request bytes with one span whose one attribute is the encoded ``KeyValue`` ``keyvalue``
    exactly as given (built on the wire: the real classes would re-encode it)."""
    req = trace_request({}, resource=SVC)
    rs = req.resource_spans[0]
    ss = rs.scope_spans[0]
    span = ss.spans[0].SerializeToString() + _ld(9, keyvalue)  # Span.attributes = 9
    scope_spans = ss.scope.SerializeToString()
    scope_spans = _ld(1, scope_spans) + _ld(2, span)
    resource_spans = _ld(1, rs.resource.SerializeToString()) + _ld(2, scope_spans)
    return _ld(1, resource_spans)


def _with_raw_attribute(anyvalue: bytes) -> bytes:
    """:func:`_with_raw_keyvalue` of the attribute ``k`` whose ``AnyValue`` is encoded as ``anyvalue``."""
    return _with_raw_keyvalue(_ld(1, b"k") + _ld(2, anyvalue))


def test_values_are_never_shared_between_records():
    # int_value 5 then a 10 kB string_value: oneof, the string wins (an earlier scalar cache keyed
    # by the encoding pinned such sender-chosen sizes for good)
    big = b"\x18\x05" + _ld(1, b"z" * 10_000)
    # bool_value true then array_value ["a"]: a list, which must not be shared between records
    listy = b"\x10\x01" + _ld(5, _ld(1, _ld(1, b"a")))
    for value, expected in ((big, "z" * 10_000), (listy, ["a"])):
        req = ExportTraceServiceRequest.FromString(_with_raw_attribute(value))
        for _ in range(2):
            data = _with_raw_attribute(value)
            fast = decode_traces(data)
            _same(fast, normalise_traces(req))
            assert fast.spans[0].attrs["k"] == expected
    decode_traces(_with_raw_attribute(listy)).spans[0].attrs["k"].append("changed by a consumer")
    assert decode_traces(_with_raw_attribute(listy)).spans[0].attrs["k"] == ["a"]


_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=300),
              st.binary(max_size=40)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)  # fmt: skip


@settings(max_examples=300, deadline=None, database=None)
@given(st.dictionaries(st.text(max_size=20), _VALUE, max_size=12), st.dictionaries(st.text(max_size=20), _VALUE, max_size=6))
def test_random_attributes_decode_the_same(span_attrs, resource_attrs):
    data = trace_request({"attrs": span_attrs}, resource={**resource_attrs, **SVC}).SerializeToString()
    assert fastpath.decode(fastpath.TRACES, data, normalise_traces) is not None
    _same(decode_traces(data), normalise_traces(ExportTraceServiceRequest.FromString(data)))


def test_a_deep_array_after_a_scalar_field_leaves_the_fast_path():
    # bool_value then array_value nested 12 deep (the array wins, the oneof's last member): the
    # depth cut must be counted as the standard decode counts it
    deep = _ld(1, b"\x0a\x01x")  # ArrayValue [ "x" ]
    for _ in range(12):
        deep = _ld(1, _ld(5, deep))  # ArrayValue [ AnyValue{array_value: ...} ]
    data = _with_raw_attribute(b"\x10\x01" + _ld(5, deep))
    assert fastpath.decode(fastpath.TRACES, data, normalise_traces) is None
    res = decode_traces(data)
    assert res.cut == {"depth": 1}


def test_values_with_unknown_fields_are_parsed_at_their_depth():
    # 98 nested unknown groups after int_value 5: parsed on its own the value stays within the
    # parser's 100 levels, inside the request it does not, and the standard decode refuses it
    groups = b"\x7b" * 98 + b"\x7c" * 98  # field 15, start group / end group
    data = _with_raw_attribute(b"\x18\x05" + groups)
    assert fastpath.decode(fastpath.TRACES, data, normalise_traces) is None
    with pytest.raises(Exception, match="not a valid"):
        decode_traces(data)
    # 90 levels fit inside the request too: kept both ways
    groups = b"\x7b" * 90 + b"\x7c" * 90
    _same(decode_traces(_with_raw_attribute(b"\x18\x05" + groups)),
          normalise_traces(ExportTraceServiceRequest.FromString(_with_raw_attribute(b"\x18\x05" + groups))))
    # a shallow unknown field: same result, on the fast path
    res = _both_traces(ExportTraceServiceRequest.FromString(_with_raw_attribute(b"\x18\x05" + b"\x78\x01")))
    assert res.spans[0].attrs["k"] == 5


def test_padded_lengths_keep_the_fast_path():
    # opentelemetry-dotnet writes kvlist values with lengths padded to 4 varint bytes (valid protobuf)
    def padded(n: int) -> bytes:
        return bytes([n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21 & 0x7F])

    body = _ld(1, b"tenant") + _ld(2, _ld(1, b"acme"))
    entry = b"\x0a" + padded(len(body)) + body
    data = _with_raw_attribute(b"\x32" + padded(len(entry)) + entry)
    fast = fastpath.decode(fastpath.TRACES, data, normalise_traces)
    assert fast is not None and fast.spans[0].attrs["k"] == {"tenant": "acme"}
    _same(fast, normalise_traces(ExportTraceServiceRequest.FromString(data)))


def test_a_value_field_sent_twice_in_one_attribute_the_documented_difference():
    # KeyValue{key, value: {int 503}, value: {...}}: protobuf merges the two occurrences of the
    # message field; the fast path reads the last one (module docstring)
    for second, fast_value in ((b"", EMPTY), (b"\x78\x01", EMPTY), (b"\x0a\x01x", "x")):
        data = _with_raw_keyvalue(_ld(1, b"k") + _ld(2, b"\x18\xf7\x03") + _ld(2, second))
        assert decode_traces(data).spans[0].attrs["k"] == fast_value
        standard = normalise_traces(ExportTraceServiceRequest.FromString(data)).spans[0].attrs["k"]
        assert standard == (503 if fast_value is EMPTY else "x")
