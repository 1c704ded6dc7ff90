"""E2E 1: OTel SDK -> Collector (fanout.yaml) -> otel-anomaly + an existing backend ->
Prometheus scrapes -> the shipped alert rule fires on an injected incident.

Real parts: the OpenTelemetry SDK's OTLP/gRPC exporter, the Collector built from
deploy/otelcol/builder-config.yaml running deploy/otelcol/fanout.yaml unchanged (addresses
via its environment variables), ``otel-anomaly serve``, Prometheus with
deploy/prometheus/prometheus.yml and otel-anomaly.rules.yml (test copies: 1s intervals,
``for: 1s``). The "existing backend" is a real OTLP/gRPC server that counts spans.
"""

from __future__ import annotations

import json
import re
import time

from tests.e2e.tools import (DEPLOY, Collector, OtelAnomaly, OtlpSink, Prometheus, SpanSender, need_otelcol, need_prometheus,
                             send_baseline, value, wait_until)

SERVICES = ["checkout", "cart", "payment"]
INCIDENT = "payment"


def _firing(prom: Prometheus, alertname: str, service: str) -> list[dict]:
    return [a for a in prom.alerts()
            if a["labels"].get("alertname") == alertname and a["labels"].get("service") == service and a["state"] == "firing"]


def test_sdk_to_collector_to_otel_anomaly_to_prometheus_alert(tmp_path):
    need_otelcol()
    need_prometheus()
    sink = OtlpSink().start()
    oa = OtelAnomaly(tmp_path).start()
    col = Collector(tmp_path, "fanout.yaml", env={"OTEL_ANOMALY_ENDPOINT": oa.grpc_endpoint,
                                                  "BACKEND_OTLP_ENDPOINT": sink.endpoint}).start()
    prom = Prometheus(tmp_path, [f"127.0.0.1:{oa.http_port}"], [f"127.0.0.1:{col.metrics_port}"]).start()
    sender = SpanSender(col.grpc_endpoint, SERVICES)
    procs = [oa.proc, col.proc, prom.proc]
    try:
        # 7 minutes of healthy event-time history (5s windows, 25 spans/service/window, ~1% errors).
        t = send_baseline(sender, SERVICES, minutes=7, window_s=5, per_window=25)
        # The incident, in real time: payment fails half of its requests until Prometheus fires.
        t_incident = time.monotonic()
        deadline = t_incident + 90
        fired: list[dict] = []
        while time.monotonic() < deadline and not fired:
            time.sleep(1.0)
            now = time.time()
            for svc in SERVICES:
                sender.emit(svc, 25, 13 if svc == INCIDENT else 0, t, now)
            t = now
            sender.flush()
            fired = _firing(prom, "OtelAnomalyErrorRate", INCIDENT)
        assert fired, ("the shipped OtelAnomalyErrorRate rule did not fire for the payment incident within 90s; "
                       f"otel-anomaly alerts: {oa.alerts()}; Prometheus alerts: {prom.alerts()}")
        alert = fired[0]
        print(f"OtelAnomalyErrorRate fired {time.monotonic() - t_incident:.1f}s after the incident began: {alert['labels']}")
        assert alert["labels"]["detector"] == "error_rate"
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["labels"]["kind"].endswith("error_rate")
        assert "payment" in alert["annotations"]["summary"]
        # Only the incident service alerts.
        others = [a for a in prom.alerts() if a["labels"].get("alertname") == "OtelAnomalyErrorRate"
                  and a["labels"].get("service") != INCIDENT]
        assert not others, f"false alerts on healthy services: {others}"
        # otel-anomaly's own view agrees: a firing error_rate alert on payment with its evidence.
        own = [a for a in oa.alerts() if a["detector"] == "error_rate" and a["service"] == INCIDENT and a["state"] == "firing"]
        assert own, oa.alerts()
        assert own[0]["exemplar_trace_ids"], own[0]

        # Fan-out: every span the SDK sent reached BOTH the existing backend and otel-anomaly.
        sender.flush()
        total = sender.total
        wait_until(lambda: sink.spans == total and value(oa.metrics(), "otel_anomaly_received_items_total", signal="spans") == total,
                   30, f"{total} spans at the backend and at otel-anomaly", procs=procs)
        col_m = col.metrics()
        print(f"{total} spans: SDK -> Collector -> backend {sink.spans}, otel-anomaly {total}")
        assert value(col_m, "otelcol_receiver_accepted_spans_total") == total
        assert value(col_m, "otelcol_exporter_sent_spans_total", exporter="otlp_grpc/anomaly") == total
        assert value(col_m, "otelcol_exporter_send_failed_spans_total") == 0
        # Prometheus scraped both targets.
        up = prom.targets_up()
        assert up == {f"127.0.0.1:{oa.http_port}": 1.0, f"127.0.0.1:{col.metrics_port}": 1.0}, up
        # The shipped Grafana dashboard's queries run on this Prometheus, and the main panels
        # have data (metric names of otel-anomaly and of the Collector match the dashboard).
        dash = json.loads((DEPLOY / "grafana" / "otel-anomaly-dashboard.json").read_text())
        with_data = set()
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                expr = re.sub(r"\$\{?(job|instance|service|detector)\}?", ".*", target["expr"]).replace("$__rate_interval", "1m")
                if prom.query(expr):
                    with_data.add(panel["title"])
        for title in ("Firing alerts", "Active alerts by detector and severity", "Top anomaly scores", "Received items/s",
                      "Processed items/s", "Analysis queue", "Collector -> otel-anomaly", "Tracked series"):
            assert title in with_data, (title, sorted(with_data))
    finally:
        sender.shutdown()
        for p in (prom, col, oa):
            p.stop()
        sink.stop()
