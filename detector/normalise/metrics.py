"""OTLP metrics: accepted and counted (data points), not analysed.

Input: the bytes of an ``ExportMetricsServiceRequest`` (opentelemetry-proto
``collector/metrics/v1/metrics_service.proto``) or the parsed message. A data
point is one element of ``gauge``/``sum``/``histogram``/
``exponential_histogram``/``summary`` ``.data_points``; metrics with no data
set count zero.
"""

from __future__ import annotations

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from detector.normalise._common import DecodeResult, decode_standard


def decode_metrics(data: bytes) -> DecodeResult:
    """Decode the bytes of an ``ExportMetricsServiceRequest`` and count its data points.

    Raises:
        UndecodableRequest: not a protobuf ExportMetricsServiceRequest.
    """
    return decode_standard(ExportMetricsServiceRequest, data, normalise_metrics)


def normalise_metrics(msg) -> DecodeResult:
    """Count the data points of a parsed ``ExportMetricsServiceRequest``."""
    n = 0
    for rm in msg.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                w = m.WhichOneof("data")
                if w is not None:
                    n += len(getattr(m, w).data_points)
    return DecodeResult(data_points=n)


__all__ = ["decode_metrics", "normalise_metrics"]
