"""Salvage OTLP requests that carry invalid UTF-8 in string fields.

Why: proto3 ``string`` fields must be valid UTF-8. The Collector (Go) passes
invalid sequences through, but Python protobuf (upb) rejects the whole message
with ``DecodeError``; grpc would then answer INTERNAL, which the Collector
treats as permanent and drops the batch (issue 2 point 4).

How: a private :class:`~google.protobuf.descriptor_pool.DescriptorPool` holds
copies of the OTLP ``.proto`` file descriptors (from the installed
``opentelemetry-proto``), renamed into the package prefix
``otelsalvage.`` and with every ``TYPE_STRING`` field turned into
``TYPE_BYTES``. Bytes fields have no UTF-8 check, so the same wire data
decodes; then the message is copied field by field into the real OTLP class,
decoding each former string with ``errors="replace"`` (bad sequences become
U+FFFD). Wire format of string and bytes is identical (length-delimited), so
nothing else changes. This path is slow (generic Python copy) but only runs
for requests that already failed the fast decode.
"""

from __future__ import annotations

import threading

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

PREFIX = "otelsalvage."
_REQUESTS = (
    trace_service_pb2.ExportTraceServiceRequest,
    logs_service_pb2.ExportLogsServiceRequest,
    metrics_service_pb2.ExportMetricsServiceRequest,
)

_lock = threading.Lock()
_classes: dict[str, type] | None = None
_string_fields: set[str] = set()  # full names (salvage package) of former string fields


def _collect(fd, seen: dict) -> None:
    for dep in fd.dependencies:
        _collect(dep, seen)
    if fd.name not in seen:
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        seen[fd.name] = proto


def _rename_type(name: str) -> str:
    # type_name is fully qualified with a leading dot: ".opentelemetry.proto.common.v1.AnyValue"
    if name.startswith(".opentelemetry."):
        return "." + PREFIX + name[1:]
    return name


def _rewrite_messages(messages, scope: str) -> None:
    for m in messages:
        full = f"{scope}.{m.name}"
        for f in m.field:
            if f.type == FieldDescriptor.TYPE_STRING:
                f.type = FieldDescriptor.TYPE_BYTES
                _string_fields.add(f"{full}.{f.name}")
            if f.type_name:
                f.type_name = _rename_type(f.type_name)
        _rewrite_messages(m.nested_type, full)


def _build() -> dict[str, type]:
    seen: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for cls in _REQUESTS:
        _collect(cls.DESCRIPTOR.file, seen)
    pool = descriptor_pool.DescriptorPool()
    for name, proto in seen.items():  # dependency order (post-order walk)
        proto.name = "otelsalvage/" + proto.name
        proto.dependency[:] = ["otelsalvage/" + d for d in proto.dependency]
        if proto.package.startswith("opentelemetry."):
            proto.package = PREFIX + proto.package
        del proto.service[:]
        proto.ClearField("options")
        _rewrite_messages(proto.message_type, proto.package)
        pool.Add(proto)
    out = {}
    for cls in _REQUESTS:
        salvage_desc = pool.FindMessageTypeByName(PREFIX + cls.DESCRIPTOR.full_name)
        out[cls.DESCRIPTOR.full_name] = message_factory.GetMessageClass(salvage_desc)
    return out


def _get_classes() -> dict[str, type]:
    global _classes
    if _classes is None:
        with _lock:
            if _classes is None:
                _classes = _build()
    return _classes


def _copy(src, dst) -> None:
    strings = _string_fields
    for fd, val in src.ListFields():
        name = fd.name
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if fd.is_repeated:
                target = getattr(dst, name)
                for item in val:
                    _copy(item, target.add())
            else:
                sub = getattr(dst, name)
                sub.SetInParent()
                _copy(val, sub)
        elif fd.full_name in strings:
            if fd.is_repeated:
                getattr(dst, name).extend(b.decode("utf-8", "replace") for b in val)
            else:
                setattr(dst, name, val.decode("utf-8", "replace"))
        elif fd.is_repeated:
            getattr(dst, name).extend(val)
        else:
            setattr(dst, name, val)


def salvage(cls: type, data: bytes):
    """Decode ``data`` as ``cls`` (an OTLP Export request class), repairing invalid UTF-8.

    Returns:
        an instance of ``cls`` whose string fields had bad UTF-8 sequences
        replaced by U+FFFD.

    Raises:
        google.protobuf.message.DecodeError: the data is not a valid message
            even without UTF-8 checks.
    """
    salvage_cls = _get_classes()[cls.DESCRIPTOR.full_name]
    src = salvage_cls.FromString(data)
    dst = cls()
    _copy(src, dst)
    return dst


__all__ = ["salvage", "DecodeError"]
