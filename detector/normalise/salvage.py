"""Salvage OTLP requests the fast decode rejects: invalid UTF-8, or values nested too deep.

Why: proto3 ``string`` fields must be valid UTF-8. The Collector (Go) passes
invalid sequences through, but Python protobuf (upb) rejects the whole message
with ``DecodeError``; grpc would then answer INTERNAL, which the Collector
treats as permanent and drops the batch (issue 2 point 4). Likewise upb refuses
messages nested deeper than 100 levels: about 31 kvlist values inside each
other, which would cost the whole request (every other span in it) for one
odd attribute.

How: copies of the OTLP message classes (:mod:`detector.normalise.descriptors`,
package prefix ``otelsalvage.``) with

- every ``TYPE_STRING`` field turned into ``TYPE_BYTES`` (bytes fields have no
  UTF-8 check; string and bytes share the length-delimited wire format);
- ``AnyValue`` unrolled into one message type per nesting level
  (``AnyValue``, ``AnyValue1`` ... ``AnyValue8`` with their ``ArrayValue<n>`` /
  ``KeyValueList<n>`` / ``KeyValue<n>``): at level :data:`MAX_DEPTH`, where the
  normaliser stops anyway, ``array_value`` and ``kvlist_value`` are ``bytes``
  fields, so whatever is nested below stays one opaque, unparsed byte string
  and the parser never goes deeper than ~30 message levels.

The message is then copied field by field into the real OTLP class, decoding
each former string with ``errors="replace"`` (bad sequences become U+FFFD) and
putting :data:`DEPTH_MARKER` (a string) where a level-8 array/kvlist was: the
same value the fast path's normaliser gives for any value that deep. Nothing
else changes. This path is slow (generic Python copy) but only runs for
requests that already failed the fast decode.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from detector.normalise._common import DEPTH_MARKER, MAX_DEPTH
from detector.normalise.descriptors import copy_request_classes

PREFIX = "otelsalvage."
_COMMON = "opentelemetry.proto.common.v1"
_REQUESTS = (
    trace_service_pb2.ExportTraceServiceRequest,
    logs_service_pb2.ExportLogsServiceRequest,
    metrics_service_pb2.ExportMetricsServiceRequest,
)

_lock = threading.Lock()
_classes: dict[str, type] | None = None
_string_fields: set[str] = set()  # full names (salvage package) of former string fields
_cut_fields: set[str] = set()  # full names of the bytes-typed array/kvlist fields at MAX_DEPTH


@dataclass(slots=True)
class SalvageStats:
    """What :func:`salvage` repaired in one request.

    Attributes:
        utf8: string fields whose invalid UTF-8 was replaced (U+FFFD).
        depth: array/kvlist values nested :data:`MAX_DEPTH` levels deep, replaced
            by :data:`DEPTH_MARKER` with everything below them.
    """

    utf8: int = 0
    depth: int = 0


def _strings_to_bytes(messages, scope: str) -> None:
    for m in messages:
        full = f"{scope}.{m.name}"
        for f in m.field:
            if f.type == FieldDescriptor.TYPE_STRING:
                f.type = FieldDescriptor.TYPE_BYTES
                _string_fields.add(f"{full}.{f.name}")
        _strings_to_bytes(m.nested_type, full)


def _level_name(base: str, level: int) -> str:
    return base if level == 0 else f"{base}{level}"


def _unroll_any_value(proto: descriptor_pb2.FileDescriptorProto) -> None:
    """Replace the recursive AnyValue <-> ArrayValue/KeyValueList <-> KeyValue types of
    ``common.proto`` by one type per nesting level, opaque ``bytes`` containers at MAX_DEPTH."""
    by_name = {m.name: m for m in proto.message_type}
    templates = {n: descriptor_pb2.DescriptorProto() for n in ("AnyValue", "ArrayValue", "KeyValueList", "KeyValue")}
    for n, t in templates.items():
        t.CopyFrom(by_name[n])
    scope = "." + _COMMON + "."

    def msg(base: str, level: int) -> descriptor_pb2.DescriptorProto:
        name = _level_name(base, level)
        if name in by_name:
            return by_name[name]
        m = proto.message_type.add()
        m.CopyFrom(templates[base])
        m.name = name
        by_name[name] = m
        return m

    for level in range(MAX_DEPTH + 1):
        av = msg("AnyValue", level)
        for f in av.field:
            if f.name in ("array_value", "kvlist_value"):
                if level == MAX_DEPTH:
                    f.type = FieldDescriptor.TYPE_BYTES
                    f.ClearField("type_name")
                    _cut_fields.add(f"{PREFIX}{_COMMON}.{av.name}.{f.name}")
                else:
                    base = "ArrayValue" if f.name == "array_value" else "KeyValueList"
                    f.type_name = scope + _level_name(base, level)
        if level == MAX_DEPTH:
            continue
        for base, child in (("ArrayValue", "AnyValue"), ("KeyValueList", "KeyValue")):
            m = msg(base, level)
            for f in m.field:
                if f.name == "values":
                    f.type_name = scope + _level_name(child, level + 1)
        kv = msg("KeyValue", level + 1)
        for f in kv.field:
            if f.name == "value":
                f.type_name = scope + _level_name("AnyValue", level + 1)


def _rewrite(proto: descriptor_pb2.FileDescriptorProto) -> None:
    if proto.package == _COMMON:
        _unroll_any_value(proto)
    _strings_to_bytes(proto.message_type, PREFIX + proto.package)


def _build() -> dict[str, type]:
    return copy_request_classes(PREFIX.rstrip("."), _REQUESTS, _rewrite)


def _get_classes() -> dict[str, type]:
    global _classes
    if _classes is None:
        with _lock:
            if _classes is None:
                _classes = _build()
    return _classes


def _copy(src, dst, stats: SalvageStats) -> None:
    strings = _string_fields
    cut = _cut_fields
    for fd, val in src.ListFields():
        name = fd.name
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if fd.is_repeated:
                target = getattr(dst, name)
                for item in val:
                    _copy(item, target.add(), stats)
            else:
                sub = getattr(dst, name)
                sub.SetInParent()
                _copy(val, sub, stats)
        elif fd.full_name in strings:
            if fd.is_repeated:
                getattr(dst, name).extend(_text(b, stats) for b in val)
            else:
                setattr(dst, name, _text(val, stats))
        elif fd.full_name in cut:
            dst.string_value = DEPTH_MARKER
            stats.depth += 1
        elif fd.is_repeated:
            getattr(dst, name).extend(val)
        else:
            setattr(dst, name, val)


def _text(b: bytes, stats: SalvageStats) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        stats.utf8 += 1
        return b.decode("utf-8", "replace")


def salvage(cls: type, data: bytes):
    """Decode ``data`` as ``cls`` (an OTLP Export request class), repairing invalid UTF-8
    and cutting values nested :data:`MAX_DEPTH` levels deep (see the module docstring).

    Returns:
        ``(message, stats)``: an instance of ``cls`` whose string fields had bad
        UTF-8 sequences replaced by U+FFFD and whose array/kvlist values at
        nesting level :data:`MAX_DEPTH` are :data:`DEPTH_MARKER`; a
        :class:`SalvageStats` saying how many of each.

    Raises:
        google.protobuf.message.DecodeError: the data is not a valid message
            even without UTF-8 checks and with deep values left opaque.
    """
    salvage_cls = _get_classes()[cls.DESCRIPTOR.full_name]
    src = salvage_cls.FromString(data)
    dst = cls()
    stats = SalvageStats()
    _copy(src, dst, stats)
    return dst, stats


__all__ = ["salvage", "SalvageStats", "DecodeError"]
