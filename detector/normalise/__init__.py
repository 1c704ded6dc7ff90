"""Decode OTLP requests into compact records in one pass (see :mod:`detector.normalise.records`)."""

from detector.normalise._common import DecodeResult, UndecodableRequest, check_protobuf_backend
from detector.normalise.logs import decode_logs, normalise_logs
from detector.normalise.metrics import decode_metrics, normalise_metrics
from detector.normalise.traces import decode_traces, normalise_traces

NORMALISERS = {"traces": normalise_traces, "logs": normalise_logs, "metrics": normalise_metrics}
"""Signal name (as yielded by :func:`detector.replay.reader.iter_requests`) -> normaliser."""


def normalise(signal: str, msg) -> DecodeResult:
    """Normalise a parsed OTLP request of ``signal`` (``traces`` / ``logs`` / ``metrics``).

    Raises:
        KeyError: unknown signal.
    """
    return NORMALISERS[signal](msg)


__all__ = [
    "NORMALISERS",
    "normalise",
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
