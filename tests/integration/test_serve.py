"""``otel-anomaly serve`` as a subprocess, fed by the real OpenTelemetry SDK exporters (gzip).

Windows are shortened (1 s, no lateness) so alerts appear within seconds.
"""

from __future__ import annotations

import logging
import threading
import time

from tests.support.otlp import export_spans, make_spans, send_logs, span_exporter

FAST = {"pipeline": {"window": "1s", "allowed_lateness": "0s"}, "alerts": {"resolve_after": 30}}
# The spine is tested with the static-threshold placeholder (no warm-up), whatever the registry says.
PLACEHOLDER = {"OTEL_ANOMALY_DETECTOR_CLASSES": "error_rate=detector.detectors.placeholder:PlaceholderErrorRateDetector"}
ONLY_ERROR_RATE = {"detectors": {"schema_drift": {"enabled": False}, "auth": {"enabled": False}}}


def test_sdk_spans_and_logs_are_counted_exactly_and_an_error_burst_alerts(serve):
    sp = serve(FAST, env=PLACEHOLDER)
    status, body = sp.get("/readyz")
    assert (status, body.strip()) == (200, "ready")
    assert sp.get("/healthz")[0] == 200
    bad = make_spans("checkout", 120, error_every=2)  # 50 % errors
    good = make_spans("search", 80)
    assert all(export_spans(sp.grpc_target, bad + good, batch=100))
    send_logs(sp.grpc_target, "checkout", 30, error_every=3)

    def counted():
        return sp.sample("otel_anomaly_processed_items_total", signal="spans") == 200 and sp.sample("otel_anomaly_processed_items_total", signal="log_records") == 30

    sp.wait_until(counted, what="processed counts")
    assert sp.sample("otel_anomaly_received_items_total", signal="spans") == 200
    assert sp.sample("otel_anomaly_received_items_total", signal="log_records") == 30
    sp.wait_until(lambda: sp.samples("otel_anomaly_alert_active", detector="error_rate", service="checkout"), what="alert series")
    (labels, value), = sp.samples("otel_anomaly_alert_active", detector="error_rate", service="checkout")
    assert value == 1 and labels["kind"] == "service_error_rate" and labels["peer"] == ""
    assert sp.samples("otel_anomaly_alert_active", service="search") == []
    alerts = [a for a in sp.alerts() if a["service"] == "checkout"]
    assert len(alerts) == 1
    a = alerts[0]
    assert a["state"] == "firing" and a["detector"] == "error_rate"
    assert "checkout" in a["summary"] and "%" in a["summary"]
    assert len(a["exemplar_trace_ids"][0]) == 32
    assert sp.samples("otel_anomaly_alerts_total", service="checkout")[0][1] == 1
    om = sp.get("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})[1]
    assert f'trace_id="{a["exemplar_trace_ids"][0]}"' in om
    assert sp.stop() == 0
    firing = [t for t in sp.transitions() if t["service"] == "checkout"]
    assert firing[0]["state"] == "firing" and firing[0]["id"] == a["id"]


class _Grab(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_backpressure_resource_exhausted_is_retried_and_nothing_is_lost(serve):
    sp = serve(
        {"pipeline": {"queue_items": 100}, "receiver": {"grpc": {"retry_delay": "100ms"}}, **ONLY_ERROR_RATE},
        env={"OTEL_ANOMALY_DETECTOR_CLASSES": "error_rate=tests.support.detectors:SlowPlaceholder", "OTEL_ANOMALY_TEST_SLOW_SECONDS": "0.02"},
    )
    grab = _Grab()
    exporter_log = logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter")
    exporter_log.addHandler(grab)
    spans = make_spans("burst", 50 * 24)
    results: list[bool] = []
    lock = threading.Lock()

    def worker(chunk: list) -> None:
        ok = export_spans(sp.grpc_target, chunk, batch=50, timeout=60)
        with lock:
            results.extend(ok)

    try:
        threads = [threading.Thread(target=worker, args=(spans[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        exporter_log.removeHandler(grab)
    assert len(results) == 24 and all(results)
    assert any("RESOURCE_EXHAUSTED" in m for m in grab.messages), grab.messages[:5]
    refused = sp.sample("otel_anomaly_rejected_items_total", signal="spans", reason="queue_full")
    assert refused and refused > 0
    sp.wait_until(lambda: sp.sample("otel_anomaly_processed_items_total", signal="spans") == 1200, what="all processed")
    assert sp.sample("otel_anomaly_received_items_total", signal="spans") == 1200
    assert sp.stop() == 0


def test_sigterm_during_load_exits_0_and_loses_nothing_accepted(serve):
    # a slow detector (0.2 s per batch of 50 spans) behind 3 senders: SIGTERM arrives with a backlog
    # in the queue and senders still sending; the drain must process every accepted span
    sp = serve(ONLY_ERROR_RATE, env={"OTEL_ANOMALY_DETECTOR_CLASSES": "error_rate=tests.support.detectors:SlowPlaceholder", "OTEL_ANOMALY_TEST_SLOW_SECONDS": "0.2"})
    spans = make_spans("load", 6000)
    ok_items = [0]
    refused = [0]
    lock = threading.Lock()

    def worker(chunk: list) -> None:
        exp = span_exporter(sp.grpc_target, timeout=3)
        try:
            for i in range(0, len(chunk), 50):
                ok = export_spans(sp.grpc_target, chunk[i : i + 50], batch=50, exporter=exp)[0]
                with lock:
                    if not ok:
                        refused[0] += 1
                        break  # the server is going away; the rest was never accepted
                    ok_items[0] += len(chunk[i : i + 50])
                time.sleep(0.1)  # 1500 spans/s offered, 250/s analysed: still sending at SIGTERM
        finally:
            exp.shutdown()

    threads = [threading.Thread(target=worker, args=(spans[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    backlog = sp.wait_until(
        lambda: (q := sp.sample("otel_anomaly_queue_items")) is not None and q >= 200 and q, what="a backlog of 200 queued spans"
    )
    assert sp.stop() == 0
    for t in threads:
        t.join()
    stopped = [line for line in sp.logs() if line.get("msg") == "stopped"][-1]
    assert stopped["received"]["spans"] == stopped["processed"]["spans"] == ok_items[0]
    assert backlog <= ok_items[0] < len(spans), (ok_items[0], backlog)
    assert refused[0] >= 1  # senders still sending after SIGTERM were turned away, not silently dropped


def test_sighup_reload_applies_valid_and_keeps_running_on_invalid(serve):
    sp = serve({"alerts": {"open_after": 1}})
    sp.reload({"receiver": {"grpc": {"endpoint": "127.0.0.1:0"}}, "http": {"endpoint": "127.0.0.1:0"}, "state": {"directory": None}, "alerts": {"open_after": 3}})
    sp.wait_until(lambda: sp.sample("otel_anomaly_config_reloads_total", result="ok") == 1, what="ok reload")
    sp.reload(text="alerts:\n  open_after: zero\n")
    sp.wait_until(lambda: sp.sample("otel_anomaly_config_reloads_total", result="error") == 1, what="error reload")
    errors = [line for line in sp.logs() if line.get("msg", "").startswith("config reload failed")]
    assert "alerts.open_after" in errors[-1]["problems"][0] and ":2:" in errors[-1]["problems"][0]
    assert sp.get("/readyz")[0] == 200
    assert all(export_spans(sp.grpc_target, make_spans("after", 10)))
    sp.wait_until(lambda: sp.sample("otel_anomaly_processed_items_total", signal="spans") == 10, what="still processing")
    assert sp.stop() == 0
