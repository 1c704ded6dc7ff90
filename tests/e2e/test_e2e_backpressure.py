"""E2E 4: backpressure. otel-anomaly, slowed down by the test-only detector
``tests.support.detectors:SlowPlaceholder`` (selected with ``OTEL_ANOMALY_DETECTOR_CLASSES``,
the core's seam for this test) and given a small analysis queue, answers RESOURCE_EXHAUSTED
with RetryInfo; the Collector (deploy/otelcol/fanout.yaml, unchanged) keeps the refused
batches in its sending queue and retries them, and in the end every span the Collector
accepted was processed by otel-anomaly, once. The existing backend next to it is not held
back and gets every span too.
"""

from __future__ import annotations

import time

from tests.e2e.tools import Collector, OtelAnomaly, OtlpSink, SpanSender, need_otelcol, value, wait_until

SERVICES = ["checkout", "cart"]


def test_collector_retries_resource_exhausted_until_everything_is_processed(tmp_path):
    need_otelcol()
    sink = OtlpSink().start()
    oa = OtelAnomaly(tmp_path, config={"pipeline": {"queue_items": 2500}, "receiver": {"grpc": {"retry_delay": "500ms"}}},
                     env={"OTEL_ANOMALY_DETECTOR_CLASSES": "error_rate=tests.support.detectors:SlowPlaceholder",
                          "OTEL_ANOMALY_TEST_SLOW_SECONDS": "0.2"}).start()
    col = Collector(tmp_path, "fanout.yaml", env={"OTEL_ANOMALY_ENDPOINT": oa.grpc_endpoint,
                                                  "BACKEND_OTLP_ENDPOINT": sink.endpoint}).start()
    sender = SpanSender(col.grpc_endpoint, SERVICES)
    procs = [oa.proc, col.proc]
    try:
        t0 = time.time()
        for i in range(5):  # a burst: 10,000 spans in about a second
            now = time.time()
            for svc in SERVICES:
                sender.emit(svc, 1000, 10, now - 1, now)
        sender.flush()
        total = sender.total
        wait_until(lambda: value(oa.metrics(), "otel_anomaly_rejected_items_total", reason="queue_full") > 0, 30,
                   "otel-anomaly refusing items with RESOURCE_EXHAUSTED (queue_full)", procs=procs)
        wait_until(lambda: value(col.metrics(), "otelcol_receiver_accepted_spans_total") == total, 30,
                   f"the Collector accepting all {total} spans", procs=procs)
        wait_until(lambda: value(oa.metrics(), "otel_anomaly_processed_items_total", signal="spans") >= total, 90,
                   f"otel-anomaly processing all {total} spans", procs=procs)
        elapsed = time.time() - t0
        oa_m = oa.metrics()
        col_m = col.metrics()
        refused = value(oa_m, "otel_anomaly_rejected_items_total", reason="queue_full")
        print(f"{total} spans; otel-anomaly refused {refused:.0f} item-deliveries with RESOURCE_EXHAUSTED, "
              f"the Collector retried them; all processed after {elapsed:.1f}s")
        assert value(oa_m, "otel_anomaly_processed_items_total", signal="spans") == total
        assert value(oa_m, "otel_anomaly_received_items_total", signal="spans") == total
        assert value(col_m, "otelcol_exporter_sent_spans_total", exporter="otlp_grpc/anomaly") == total
        assert value(col_m, "otelcol_exporter_send_failed_spans_total", exporter="otlp_grpc/anomaly") == 0
        assert value(col_m, "otelcol_exporter_enqueue_failed_spans_total") == 0
        assert sink.spans == total, "the existing backend was not held back and got everything"
    finally:
        sender.shutdown()
        col.stop()
        oa.stop()
        sink.stop()
