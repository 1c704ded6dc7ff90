"""The fast decode: attribute lists read as maps of raw ``AnyValue`` bytes.

Why: reading an attribute through the real OTLP classes costs four Python
objects per attribute (the ``KeyValue`` wrapper, its key, the ``AnyValue``
wrapper, the value) and a ``WhichOneof`` call: with ~10 attributes per span
that loop was ~70 % of the decode cost of a span. Most attribute values are
short strings whose ``AnyValue`` encoding is one length-prefixed field, so the
wrappers can be skipped.

How: copies of ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest``
(:mod:`detector.normalise.descriptors`, package prefix ``otelfast.``) declare
``Resource.attributes``, ``Span.attributes`` and ``LogRecord.attributes`` as
``map<string, bytes>``: the same bytes on the wire as ``repeated KeyValue``
(protobuf language guide, "Maps", "Backwards compatibility"; an embedded
message is compatible with ``bytes``). upb parses each list into a map of key
-> the value's encoded ``AnyValue``, and :func:`raw_attributes` converts it:

- ``0x0A <varint length> <UTF-8>`` (``string_value``, the only field) -> the
  decoded ``str`` (lengths up to 16383 bytes; longer ones take the next rule);
- one bool, int or double field -> decoded from its bytes (:func:`_other_value`);
- anything else is parsed with the real ``AnyValue`` class and converted by
  :func:`~detector.normalise._common.any_value`. Parsed on its own, a value
  starts a few message levels below its place in the request, so the
  parser's 100-level nesting limit would let through unknown groups (or an
  earlier oneof member) nested close to it that the standard decode refuses:
  a value that is not canonically encoded (one field, no unknown fields,
  minimal lengths) is parsed again inside a request skeleton at its real
  depth (:func:`_parse_in_place`), which gives the standard outcome (this
  also keeps valid padded lengths, as opentelemetry-dotnet writes kvlists,
  on the fast path).

Nothing is cached between records: every value is decoded from the bytes of its
own record, so the cost does not depend on how often values repeat.

The result is the same dict the standard decode gives (same keys and values;
a later duplicate key wins in both) except for the order of its keys (upb's
map order, not the sender's). Everything the fast path does not handle the
way the standard decode does raises :class:`FastPathMiss`, and the caller
decodes the whole request again the standard way (:func:`decode`): invalid
UTF-8 (salvage), more than :data:`~detector.normalise._common.MAX_ATTRIBUTES`
attributes on one record (the "first N" cut and its count), values cut for
depth or arrays / kvlists cut at their size limits (items past the cut are never
walked, so their depth is unknown: the depth salvage and its flag), an
``AnyValue`` that does not parse at its depth, an attribute entry upb set
aside (:func:`_set_aside`). The attributes of spans
rejected for their ids are converted too and dropped, since the standard decode
parses them. Requests the fast class cannot parse at all also go the standard
way, which gives the error message.

Two deliberate differences, both about repeats inside one record, which no
OTLP encoder writes (upb keeps the last occurrence where protobuf says
"merge" or "read all"):

- a repeated key: only its last value is read. The standard decode reads
  every entry in order, so it also parses the earlier values (a corrupt one
  refuses the whole request; invalid UTF-8 or nesting too deep in one is
  counted as salvaged or cut) and stops at the first
  :data:`~detector.normalise._common.MAX_ATTRIBUTES` entries, repeats
  included;
- a ``KeyValue`` whose ``value`` field occurs twice: the standard decode
  merges the two ``AnyValue`` messages, the fast path reads the last one.

The fast path's result is the standard decode of the request re-encoded from
the fast class (which collapses both kinds of repeats); the differential fuzz
target (``tests/fuzz/targets.py``, ``decode_traces`` / ``decode_logs``) checks
that, and the first comparison against the standard decode of the original
bytes, which holds whenever nothing repeats.

Measured on the ingest bench payload (10 attributes per span, 2-vCPU VM,
side by side): ``decode_traces`` 7.9 -> 6.9 µs per span, 8.4 -> 7.5 with the
last 16 results kept alive as in the queue; the whole ``serve`` App went from
0.47 to 0.58 x the bare ``FromString`` + walk (tests/bench/RESULTS.md).
"""

from __future__ import annotations

import struct
from collections import Counter
from typing import Callable

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from detector.normalise._common import (
    KEYS,
    MAX_ATTRIBUTES,
    MAX_INTERNED_KEY_LEN,
    MAX_INTERNED_KEYS,
    DecodeResult,
    any_value,
)
from detector.normalise.descriptors import copy_request_classes
from detector.normalise.records import EMPTY

PREFIX = "otelfast"
_MAPPED = {
    "opentelemetry.proto.resource.v1": ("Resource",),
    "opentelemetry.proto.trace.v1": ("Span",),
    "opentelemetry.proto.logs.v1": ("LogRecord",),
}
"""Package -> messages whose ``attributes`` field is read as ``map<string, bytes>``."""

_BOOL_TAG = 0x10  # AnyValue field 2 (bool_value), varint
_INT_TAG = 0x18  # AnyValue field 3 (int_value), varint
_DOUBLE_TAG = 0x21  # AnyValue field 4 (double_value), 64-bit little-endian
_ARRAY_TAG = 0x2A  # AnyValue field 5 (array_value), length-delimited
_KVLIST_TAG = 0x32  # AnyValue field 6 (kvlist_value), length-delimited
_unpack_double = struct.Struct("<d").unpack_from
_STRING_TAG = 0x0A  # AnyValue field 1 (string_value), length-delimited


class FastPathMiss(Exception):
    """The request holds something only the standard decode handles exactly; decode it that way."""


def _rewrite(proto: descriptor_pb2.FileDescriptorProto) -> None:
    names = _MAPPED.get(proto.package, ())
    for m in proto.message_type:
        if m.name not in names:
            continue
        entry = m.nested_type.add()
        entry.name = "AttributesEntry"
        entry.options.map_entry = True
        for number, name, kind in ((1, "key", FieldDescriptor.TYPE_STRING), (2, "value", FieldDescriptor.TYPE_BYTES)):
            f = entry.field.add()
            f.name, f.number, f.type, f.label = name, number, kind, FieldDescriptor.LABEL_OPTIONAL
        (field,) = [f for f in m.field if f.name == "attributes"]
        field.type_name = f".{proto.package}.{m.name}.AttributesEntry"


_CLASSES = copy_request_classes(PREFIX, (ExportTraceServiceRequest, ExportLogsServiceRequest), _rewrite)
TRACES: type = _CLASSES[ExportTraceServiceRequest.DESCRIPTOR.full_name]
"""``ExportTraceServiceRequest`` with attribute maps (see the module docstring)."""
LOGS: type = _CLASSES[ExportLogsServiceRequest.DESCRIPTOR.full_name]
"""``ExportLogsServiceRequest`` with attribute maps (see the module docstring)."""


def _other_value(b: bytes, owner=None):
    """Value of an encoded ``AnyValue`` that is not a short string (see the module docstring).

    One bool / int / double field, and strings with a 2-byte length, are decoded here;
    anything else (several fields, arrays, kvlists, bytes, unknown fields) is parsed with
    the real ``AnyValue`` class.
    """
    n = len(b)
    if not n:
        return EMPTY
    t = b[0]
    if t == _INT_TAG:
        # a varint filling the rest exactly: every byte but the last has the continuation bit
        if n == 3:
            if b[1] > 0x7F and b[2] < 0x80:
                return b[1] & 0x7F | b[2] << 7
        elif n == 2:
            if b[1] < 0x80:
                return b[1]
        elif n == 4:
            if b[1] > 0x7F and b[2] > 0x7F and b[3] < 0x80:
                return b[1] & 0x7F | (b[2] & 0x7F) << 7 | b[3] << 14
        elif 4 < n <= 11 and b[n - 1] < 0x80 and (n < 11 or b[10] == 1):
            v = b[n - 1]
            for c in b[n - 2 : 0 : -1]:
                if c < 0x80:
                    break
                v = v << 7 | c & 0x7F
            else:
                # 10 varint bytes, the last 0x01: a negative int64 in two's complement
                return v - (1 << 64) if n == 11 else v
    elif t == _DOUBLE_TAG and n == 9:
        return _unpack_double(b, 1)[0]
    elif t == _BOOL_TAG and n == 2 and b[1] < 0x80:
        return b[1] != 0
    elif t == _STRING_TAG and n > 3 and b[1] & 0x80 and b[2] < 0x80 and (b[1] & 0x7F | b[2] << 7) == n - 3:
        try:
            return b[3:].decode()
        except UnicodeDecodeError:
            raise FastPathMiss from None
    try:
        msg = AnyValue.FromString(b)
    except DecodeError:
        raise FastPathMiss from None
    # Parsed on its own, the value starts ~5 message levels below where it sits in the request,
    # so unknown groups nested close to the parser's limit (100 levels) would pass here and fail
    # the standard decode; so could an earlier oneof member. A canonical encoding (one field, no
    # unknown fields) has neither; anything else (also valid padded lengths, as opentelemetry-dotnet
    # writes kvlists) is parsed again at its real depth (:func:`_parse_in_place`).
    msg.DiscardUnknownFields()
    if msg.ByteSize() != n:
        msg = _parse_in_place(b, owner)  # any kind of value: the walk below handles it
    elif t != _ARRAY_TAG and t != _KVLIST_TAG:
        return any_value(msg)  # canonical, so one field: its tag says it is no container (bytes)
    own: Counter = Counter()
    v = any_value(msg, 0, own)
    if own:
        # cut for depth, or an array / kvlist cut at MAX_ARRAY / MAX_ATTRIBUTES: the walk never saw
        # the items past the cut, and one of them may nest deeper than the parser allows inside the
        # request (the standard decode then salvages it and counts a depth cut)
        raise FastPathMiss
    return v


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    """A length-delimited field ``number`` holding ``payload``, on the wire."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


# owner message -> (real request class, field numbers from the request down to the owner's
# attributes, getter of the value from the parsed request): the path an attribute value has in a
# request, so that the parser's nesting limit counts the same levels as in the standard decode
_PLACES = {
    "opentelemetry.proto.trace.v1.Span": (
        ExportTraceServiceRequest, (1, 2, 2, 9), lambda r: r.resource_spans[0].scope_spans[0].spans[0].attributes[0].value
    ),
    "opentelemetry.proto.resource.v1.Resource": (
        ExportTraceServiceRequest, (1, 1, 1), lambda r: r.resource_spans[0].resource.attributes[0].value
    ),
    "opentelemetry.proto.logs.v1.LogRecord": (
        ExportLogsServiceRequest, (1, 2, 2, 6), lambda r: r.resource_logs[0].scope_logs[0].log_records[0].attributes[0].value
    ),
}  # fmt: skip


def _parse_in_place(b: bytes, owner):
    """Parse the encoded ``AnyValue`` ``b`` of an attribute of ``owner`` (a :data:`TRACES` /
    :data:`LOGS` span, log record or resource) with the real classes, nested in a request at the
    same depth as in the request it came from: the standard decode's outcome for that value.

    Raises:
        FastPathMiss: ``owner`` is None, or the value does not parse there.
    """
    place = _PLACES.get(owner.DESCRIPTOR.full_name[len(PREFIX) + 1 :]) if owner is not None else None
    if place is None:
        raise FastPathMiss
    cls, numbers, value_of = place
    data = _ld(2, b)  # KeyValue.value
    for number in reversed(numbers):
        data = _ld(number, data)
    try:
        return value_of(cls.FromString(data))
    except DecodeError:
        raise FastPathMiss from None


def _set_aside(owner) -> bool:
    """True when upb put attribute entries of ``owner`` into its unknown fields.

    upb's decoder does not insert a map entry that carries fields of its own
    beyond key and value (a ``KeyValue`` with a field OTLP does not define, or
    a known field with the wrong wire type): it keeps the entry's bytes as an
    unknown field of the message holding the map. The standard decode keeps
    such an attribute, so the record must take the standard path.
    """
    unknown = UnknownFieldSet(owner)
    if not len(unknown):
        return False
    number = owner.DESCRIPTOR.fields_by_name["attributes"].number
    return any(f.field_number == number for f in unknown)


def raw_attributes(attrs, cut: Counter | None = None, owner=None) -> dict:
    """Convert an attribute map (key -> encoded ``AnyValue``) into the dict
    :func:`~detector.normalise._common.attributes` gives; keys are shared through
    :data:`~detector.normalise._common.KEYS`.

    Args:
        attrs: a ``map<string, bytes>`` field of a :data:`TRACES` / :data:`LOGS` message.
        cut: the request's :attr:`~detector.normalise._common.DecodeResult.cut` counter, or None
            (not written: a value that would be cut leaves the fast path; the parameter keeps
            the signature of :func:`~detector.normalise._common.attributes`).
        owner: the message holding ``attrs`` (checked for entries upb set aside), or None.

    Raises:
        FastPathMiss: see the module docstring.
    """
    if len(attrs) > MAX_ATTRIBUTES or (owner is not None and _set_aside(owner)):
        raise FastPathMiss
    keys = KEYS
    intern_get = keys.get
    out = {}
    for k in attrs:  # keys, then a lookup: upb's items() is the slower pure-Python Mapping mixin
        b = attrs[k]
        ik = intern_get(k)
        if ik is not None:
            k = ik
        elif len(keys) < MAX_INTERNED_KEYS and len(k) <= MAX_INTERNED_KEY_LEN:
            keys[k] = k
        n = len(b)
        if 1 < n < 130 and b[0] == _STRING_TAG and b[1] == n - 2:
            try:
                out[k] = b[2:].decode()
            except UnicodeDecodeError:
                raise FastPathMiss from None
        else:
            out[k] = _other_value(b, owner)
    return out


def decode(cls: type, data: bytes, normalise: Callable[..., DecodeResult]) -> DecodeResult | None:
    """Parse ``data`` with the fast class ``cls`` (:data:`TRACES` / :data:`LOGS`) and
    normalise it with ``normalise(msg, raw_attributes)``.

    Returns:
        the :class:`DecodeResult`, or None when the request must be decoded the
        standard way (it does not parse, holds no fields, or ``normalise``
        raised :class:`FastPathMiss`).
    """
    try:
        msg = cls.FromString(data)
    except Exception:  # DecodeError, or other errors upb raises for corrupt input
        return None
    if data and not msg.ListFields():
        return None
    try:
        return normalise(msg, raw_attributes)
    except FastPathMiss:
        return None


__all__ = ["TRACES", "LOGS", "FastPathMiss", "raw_attributes", "decode"]
