"""Decode OTLP requests into compact records in one pass (see :mod:`detector.normalise.records`)."""

from detector.normalise._common import DecodeResult, UndecodableRequest, check_protobuf_backend
from detector.normalise.logs import decode_logs, normalise_logs
from detector.normalise.metrics import decode_metrics, normalise_metrics
from detector.normalise.traces import decode_traces, normalise_traces

__all__ = [
    "DecodeResult",
    "UndecodableRequest",
    "check_protobuf_backend",
    "decode_traces",
    "normalise_traces",
    "decode_logs",
    "normalise_logs",
    "decode_metrics",
    "normalise_metrics",
]
