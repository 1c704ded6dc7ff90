"""Self-metrics of the process (the contract's ``otel_anomaly_*`` list).

One :class:`SelfMetrics` per app instance, on an injected
``prometheus_client.CollectorRegistry``, so tests can build many apps in one
process. Alert and score series are not here: they are produced at scrape time
from the alert manager's state (see :mod:`detector.expose.collector`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from detector import __version__

SIGNALS = ("spans", "log_records", "data_points")


class SelfMetrics:
    """The process's own counters, gauges and histograms.

    Label values used: ``signal`` in :data:`SIGNALS`; ``reason`` a short fixed
    word (``invalid_trace_id``, ``invalid_span_id``, ``undecodable``,
    ``queue_full``, ``shutting_down``, ``unauthenticated``, ``too_large``,
    ``duplicate``…); ``detector`` a detector family name; ``result`` ``ok`` or ``error``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        p = "otel_anomaly_"
        self.registry = registry
        self.received = Counter(p + "received_items", "Items received over OTLP or replay.", ["signal"], registry=registry)
        self.rejected = Counter(p + "rejected_items", "Items rejected, by reason.", ["signal", "reason"], registry=registry)
        self.processed = Counter(p + "processed_items", "Items analysed by the detectors.", ["signal"], registry=registry)
        self.late = Counter(p + "late_items", "Items that arrived after their window closed (folded into the oldest open window).", ["signal"], registry=registry)
        self.utf8_repaired = Counter(p + "utf8_repaired_requests", "Requests with invalid UTF-8 salvaged by re-decoding.", ["signal"], registry=registry)
        self.truncated_values = Counter(
            p + "truncated_values",
            "Attribute/body values cut to bound memory (the item itself is accepted), by reason: depth (an "
            "array/kvlist nested 8 levels deep, or beyond the protobuf parser's limit, became a marker), array "
            "(array cut at 1000 values), attributes (attributes dropped beyond 4096 on one record/resource/kvlist).",
            ["signal", "reason"],
            registry=registry,
        )
        self.queue_items = Gauge(p + "queue_items", "Items waiting in the analysis queue.", registry=registry)
        self.batch_seconds = Histogram(
            p + "batch_processing_seconds",
            "Time the analysis worker spent on one batch.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.tracked_series = Gauge(p + "tracked_series", "Series a detector holds state for.", ["detector"], registry=registry)
        self.evicted_series = Counter(p + "evicted_series", "Series evicted to bound memory.", ["detector"], registry=registry)
        self.config_reloads = Counter(p + "config_reloads", "Config reloads (SIGHUP), by result.", ["result"], registry=registry)
        self.checkpoint_seconds = Histogram(
            p + "checkpoint_seconds",
            "Time to write one checkpoint.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.checkpoint_restore_failures = Counter(
            p + "checkpoint_restore_failures", "Checkpoints that could not be restored (cold start).", registry=registry
        )
        self.alerts_overflow = Counter(p + "alerts_overflow", "Alerts not opened because alerts.max_active was reached.", registry=registry)
        self.deployments = Counter(p + "deployments", "Deployments seen (service.version changes).", ["service"], registry=registry)
        self.windows_closed = Counter(p + "windows_closed", "Event-time windows closed.", registry=registry)
        self.duplicates = Counter(
            p + "duplicate_items", "Spans seen again within pipeline.dedup_ttl (processed, not analysed twice).", ["signal"], registry=registry
        )
        self.adjusted_timestamps = Counter(
            p + "adjusted_timestamps",
            "Items whose event time was replaced by the current event time (reason: invalid = <= 0 or before 2000, future = beyond max_future_skew).",
            ["signal", "reason"],
            registry=registry,
        )
        self.detector_errors = Counter(p + "detector_errors", "Exceptions raised by a detector (the worker keeps going).", ["detector"], registry=registry)
        self.watermark = Gauge(p + "watermark_seconds", "Event-time watermark of the pipeline (Unix seconds).", registry=registry)
        self.build_info = Gauge(p + "build_info", "Build information.", ["version"], registry=registry)
        self.build_info.labels(version=__version__).set(1)
        for s in SIGNALS:
            self.received.labels(signal=s)
            self.processed.labels(signal=s)
            self.late.labels(signal=s)
        for s in ("spans", "log_records"):
            for reason in ("depth", "array", "attributes"):
                self.truncated_values.labels(signal=s, reason=reason)
        self.config_reloads.labels(result="ok")
        self.config_reloads.labels(result="error")
