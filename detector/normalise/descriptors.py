"""Private copies of the OTLP message classes, with rewritten field types.

Two decoders read OTLP requests through classes that are wire-compatible with
the real ones but declare some fields differently (the protobuf language
guide, "Updating A Message Type": ``string`` and ``bytes`` are compatible,
embedded messages are compatible with ``bytes``; "Maps", "Backwards
compatibility": ``map<K, V> f = N`` is on the wire the same as a repeated
message ``{K key = 1; V value = 2;}`` at ``N``):

- :mod:`detector.normalise.fastpath`: attribute lists read as
  ``map<string, bytes>`` (the hot path of ingest);
- :mod:`detector.normalise.salvage`: string fields read as ``bytes`` and
  ``AnyValue`` unrolled per nesting level (requests the fast decodes refuse).

:func:`copy_request_classes` builds such a copy from the ``.proto`` file
descriptors installed with ``opentelemetry-proto``: each file is copied into a
private :class:`~google.protobuf.descriptor_pool.DescriptorPool` under a
package prefix (so the names never clash with the real classes), the caller's
``rewrite`` changes the field types, and message classes are made from the
pool (``message_factory.GetMessageClass``), so parsing stays in the protobuf
runtime (upb) and costs what the real classes cost.
"""

from __future__ import annotations

from typing import Callable, Iterable

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def _collect(fd, seen: dict) -> None:
    """File descriptor ``fd`` and its dependencies as ``FileDescriptorProto``s, dependencies first."""
    for dep in fd.dependencies:
        _collect(dep, seen)
    if fd.name not in seen:
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        seen[fd.name] = proto


def _rename_types(messages, prefix: str) -> None:
    for m in messages:
        for f in m.field:
            # type_name is fully qualified with a leading dot: ".opentelemetry.proto.common.v1.AnyValue"
            if f.type_name.startswith(".opentelemetry."):
                f.type_name = f".{prefix}{f.type_name}"
        _rename_types(m.nested_type, prefix)


def copy_request_classes(
    prefix: str,
    requests: Iterable[type],
    rewrite: Callable[[descriptor_pb2.FileDescriptorProto], None],
) -> dict[str, type]:
    """Copies of the OTLP request classes ``requests`` with field types changed by ``rewrite``.

    Args:
        prefix: package prefix of the copies (an identifier, e.g. ``"otelfast"``):
            ``opentelemetry.proto.common.v1.AnyValue`` becomes
            ``<prefix>.opentelemetry.proto.common.v1.AnyValue``.
        requests: real OTLP message classes (``ExportTraceServiceRequest`` ...).
        rewrite: called once per ``.proto`` file (dependencies first) with its
            ``FileDescriptorProto`` under the original names, before the
            renaming; it may change field types and add nested types. Type
            names it writes starting with ``.opentelemetry.`` are renamed into
            the prefix with the rest.

    Returns:
        real full message name (``opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest``)
        -> the copy's message class.

    Raises:
        TypeError: the rewritten files do not form a valid descriptor set
            (a programming error, raised at import of the caller).
    """
    seen: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    requests = list(requests)
    for cls in requests:
        _collect(cls.DESCRIPTOR.file, seen)
    pool = descriptor_pool.DescriptorPool()
    for proto in seen.values():  # dependency order (post-order walk)
        rewrite(proto)
        proto.name = f"{prefix}/{proto.name}"
        proto.dependency[:] = [f"{prefix}/{d}" for d in proto.dependency]
        if proto.package.startswith("opentelemetry."):
            proto.package = f"{prefix}.{proto.package}"
        del proto.service[:]
        proto.ClearField("options")
        _rename_types(proto.message_type, prefix)
        pool.Add(proto)
    return {
        cls.DESCRIPTOR.full_name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{prefix}.{cls.DESCRIPTOR.full_name}")
        )
        for cls in requests
    }


__all__ = ["copy_request_classes"]
