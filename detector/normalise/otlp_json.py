"""OTLP/JSON (e.g. the Collector's file exporter lines) -> OTLP protobuf request messages.

Follows the OTLP JSON encoding (opentelemetry-proto ``docs/specification.md``,
"JSON Protobuf Encoding"), which differs from plain proto3 JSON mapping:

- ``traceId`` / ``spanId`` / ``parentSpanId`` are **hex** strings (case
  insensitive), not base64. ``google.protobuf.json_format`` would base64-decode
  the official example's 32-hex-char trace id into 24 wrong bytes. Other
  ``bytes`` fields (``bytesValue``) are base64 as in proto3 JSON. For leniency
  an id string that is not valid hex is tried as base64.
- 64-bit integers as strings or numbers; 32-bit ones as numbers (strings accepted).
- enums as integers; enum value names (``"SPAN_KIND_SERVER"``) are accepted too.
- keys in lowerCamelCase; the proto snake_case names are accepted too.
- unknown keys are ignored; ``null`` means "not set".
- ``doubleValue`` may be ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.

Strings with lone surrogates (possible from ``\\ud800`` escapes) get the bad
code points replaced with ``?``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf.descriptor import FieldDescriptor as FD
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SIGNALS = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}
"""Signal name -> request class."""

_TOP_KEYS = {
    "resourceSpans": "traces",
    "resource_spans": "traces",
    "resourceLogs": "logs",
    "resource_logs": "logs",
    "resourceMetrics": "metrics",
    "resource_metrics": "metrics",
}
_ID_FIELDS = frozenset(("trace_id", "span_id", "parent_span_id"))
_INT_TYPES = frozenset(
    (FD.TYPE_INT64, FD.TYPE_UINT64, FD.TYPE_SINT64, FD.TYPE_FIXED64, FD.TYPE_SFIXED64,
     FD.TYPE_INT32, FD.TYPE_UINT32, FD.TYPE_SINT32, FD.TYPE_FIXED32, FD.TYPE_SFIXED32)
)  # fmt: skip
_FLOAT_TYPES = frozenset((FD.TYPE_DOUBLE, FD.TYPE_FLOAT))
_KEY_VALUE = "opentelemetry.proto.common.v1.KeyValue"
_SPECIAL_FLOATS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}

# kinds of field conversion
_MSG, _ID, _BYTES, _INT, _FLOAT, _BOOL, _STR, _ENUM = range(8)


class OtlpJsonError(ValueError):
    """The JSON is not a valid OTLP/JSON request; the message names the field path."""


_plans: dict[str, dict[str, tuple]] = {}


def _plan(desc) -> dict[str, tuple]:
    """JSON key -> (field name, kind, repeated, message/enum descriptor) for one message type."""
    plan = _plans.get(desc.full_name)
    if plan is not None:
        return plan
    plan = {}
    for fd in desc.fields:
        t = fd.type
        if t == FD.TYPE_MESSAGE:
            kind, sub = _MSG, fd.message_type
        elif t == FD.TYPE_BYTES:
            kind, sub = (_ID if fd.name in _ID_FIELDS else _BYTES), None
        elif t in _INT_TYPES:
            kind, sub = _INT, None
        elif t in _FLOAT_TYPES:
            kind, sub = _FLOAT, None
        elif t == FD.TYPE_BOOL:
            kind, sub = _BOOL, None
        elif t == FD.TYPE_ENUM:
            kind, sub = _ENUM, fd.enum_type
        else:
            kind, sub = _STR, None
        entry = (fd.name, kind, fd.is_repeated, sub)
        plan[fd.json_name] = entry
        plan[fd.name] = entry
    _plans[desc.full_name] = plan
    return plan


def _scalar(kind: int, value: Any, sub):
    if kind == _STR:
        if type(value) is not str:
            raise _Bad(f"expected a string, got {type(value).__name__}")
        return value
    if kind == _INT:
        if type(value) is int:
            return value
        if type(value) is str:
            try:
                return int(value.strip())
            except ValueError:
                pass
        elif type(value) is float and value.is_integer():
            return int(value)
        raise _Bad(f"expected an integer (number or decimal string), got {value!r:.60}")
    if kind == _ID:
        if type(value) is not str:
            raise _Bad(f"expected a hex id string, got {type(value).__name__}")
        try:
            return bytes.fromhex(value)
        except ValueError:
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise _Bad(f"id is neither hex nor base64: {value!r:.60}") from None
    if kind == _BYTES:
        if type(value) is not str:
            raise _Bad(f"expected a base64 string, got {type(value).__name__}")
        try:
            return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if ("-" in value or "_" in value) else None)
        except (binascii.Error, ValueError):
            raise _Bad(f"invalid base64: {value!r:.60}") from None
    if kind == _FLOAT:
        t = type(value)
        if t is float or t is int:
            return float(value)
        if t is str:
            special = _SPECIAL_FLOATS.get(value)
            if special is not None:
                return special
            try:
                return float(value)
            except ValueError:
                pass
        raise _Bad(f"expected a number, got {value!r:.60}")
    if kind == _BOOL:
        if type(value) is bool:
            return value
        if value in ("true", "false"):
            return value == "true"
        raise _Bad(f"expected true/false, got {value!r:.60}")
    # _ENUM
    if type(value) is int:
        return value
    if type(value) is str:
        try:
            ev = sub.values_by_name.get(value) or sub.values_by_name.get(value.upper())
        except (SystemError, UnicodeError):  # upb cannot encode lone surrogates
            ev = None
        if ev is not None:
            return ev.number
        try:
            return int(value)
        except ValueError:
            pass
    raise _Bad(f"expected an enum number or name of {sub.name}, got {value!r:.60}")


def _set_str(msg, name: str, value: str) -> None:
    try:
        setattr(msg, name, value)
    except (ValueError, TypeError, UnicodeError, SystemError):
        setattr(msg, name, value.encode("utf-8", "replace").decode("utf-8"))


class _Bad(Exception):
    """Internal: a conversion error; ``path`` collects field names on the way up (innermost last)."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.path: list[str] = []


_ANY_FAST = {
    "stringValue": ("string_value", _STR), "string_value": ("string_value", _STR),
    "intValue": ("int_value", _INT), "int_value": ("int_value", _INT),
    "boolValue": ("bool_value", _BOOL), "bool_value": ("bool_value", _BOOL),
    "doubleValue": ("double_value", _FLOAT), "double_value": ("double_value", _FLOAT),
}  # fmt: skip


def _fill_key_values(target, items: list) -> None:
    """Fast path for repeated ``KeyValue`` (the bulk of OTLP/JSON): scalar values set directly."""
    for i, item in enumerate(items):
        try:
            if type(item) is not dict:
                raise _Bad(f"expected a JSON object, got {type(item).__name__}")
            kv = target.add()
            key = item.get("key")
            if key is not None:
                if type(key) is not str:
                    raise _Bad(f"key: expected a string, got {type(key).__name__}")
                _set_str(kv, "key", key)
            value = item.get("value")
            if value is None:
                continue
            if type(value) is dict and len(value) == 1:
                ((vk, vv),) = value.items()
                fast = _ANY_FAST.get(vk)
                if fast is not None and vv is not None:
                    name, kind = fast
                    if kind == _STR and type(vv) is str:
                        _set_str(kv.value, name, vv)
                    else:
                        try:
                            setattr(kv.value, name, _scalar(kind, vv, None))
                        except _Bad as bad:
                            bad.path.append(vk)
                            bad.path.append("value")
                            raise
                        except (ValueError, TypeError) as exc:
                            raise _Bad(f"value.{vk}: {exc}") from None
                    continue
            child = kv.value
            child.SetInParent()
            try:
                _fill(child, value)
            except _Bad as bad:
                bad.path.append("value")
                raise
        except _Bad as bad:
            bad.path.append(f"[{i}]")
            raise


def _fill(msg, obj: Any) -> None:
    if type(obj) is not dict:
        raise _Bad(f"expected a JSON object, got {type(obj).__name__}")
    plan = _plan(msg.DESCRIPTOR)
    for key, value in obj.items():
        entry = plan.get(key)
        if entry is None or value is None:
            continue  # unknown field or explicit null: ignored
        name, kind, repeated, sub = entry
        try:
            if repeated:
                if type(value) is not list:
                    raise _Bad(f"expected a JSON array, got {type(value).__name__}")
                target = getattr(msg, name)
                if kind == _MSG:
                    if sub.full_name == _KEY_VALUE:
                        _fill_key_values(target, value)
                        continue
                    for i, item in enumerate(value):
                        try:
                            _fill(target.add(), item)
                        except _Bad as bad:
                            bad.path.append(f"[{i}]")
                            raise
                else:
                    vals = []
                    for i, item in enumerate(value):
                        try:
                            vals.append(_scalar(kind, item, sub))
                        except _Bad as bad:
                            bad.path.append(f"[{i}]")
                            raise
                    try:
                        target.extend(vals)
                    except (ValueError, TypeError, UnicodeError, SystemError):
                        target.extend(v.encode("utf-8", "replace").decode("utf-8") if type(v) is str else v for v in vals)
            elif kind == _MSG:
                child = getattr(msg, name)
                child.SetInParent()
                _fill(child, value)
            elif kind == _STR:
                _set_str(msg, name, _scalar(kind, value, sub))
            else:
                try:
                    setattr(msg, name, _scalar(kind, value, sub))
                except (ValueError, TypeError) as exc:  # e.g. out-of-range integer
                    raise _Bad(str(exc)) from None
        except _Bad as bad:
            bad.path.append(key)
            raise


def _path(parts: list[str]) -> str:
    out = ""
    for part in reversed(parts):
        out += part if part.startswith("[") or not out else "." + part
    return out or "$"


def detect_signal(obj: dict) -> str | None:
    """``traces`` / ``logs`` / ``metrics`` from the top-level key of a request object, or None."""
    for key in obj:
        signal = _TOP_KEYS.get(key)
        if signal is not None:
            return signal
    return None


def parse_request(obj: dict | str | bytes, signal: str | None = None):
    """Build an OTLP Export request message from OTLP/JSON.

    Args:
        obj: a decoded JSON object, or JSON text (str/bytes) of one object.
        signal: ``traces``, ``logs`` or ``metrics``; detected from the
            top-level key (``resourceSpans`` / ``resourceLogs`` /
            ``resourceMetrics``) when None.

    Returns:
        ``(signal, message)`` where message is an ``ExportTraceServiceRequest``,
        ``ExportLogsServiceRequest`` or ``ExportMetricsServiceRequest``.

    Raises:
        OtlpJsonError: invalid JSON, no recognisable top-level key, or a value of
            the wrong type (the message names the dotted field path).
    """
    if isinstance(obj, (str, bytes, bytearray)):
        try:
            obj = json.loads(obj)
        except RecursionError:
            raise OtlpJsonError("not JSON: nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise OtlpJsonError(f"not JSON: {exc}") from None
    if type(obj) is not dict:
        raise OtlpJsonError(f"expected a JSON object, got {type(obj).__name__}")
    if signal is None:
        signal = detect_signal(obj)
        if signal is None:
            if not obj:
                raise OtlpJsonError("empty JSON object: no resourceSpans, resourceLogs or resourceMetrics")
            raise OtlpJsonError(
                f"no resourceSpans, resourceLogs or resourceMetrics key (keys: {', '.join(list(obj)[:5])})"
            )
    try:
        cls = SIGNALS[signal]
    except KeyError:
        raise OtlpJsonError(f"unknown signal {signal!r}; use traces, logs or metrics") from None
    msg = cls()
    try:
        _fill(msg, obj)
    except RecursionError:
        raise OtlpJsonError("nested too deeply") from None
    except _Bad as bad:
        raise OtlpJsonError(f"{_path(bad.path)}: {bad.message}") from None
    return signal, msg


__all__ = ["parse_request", "detect_signal", "OtlpJsonError", "SIGNALS"]
