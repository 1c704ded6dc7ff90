"""An edge incident driven by the real OpenTelemetry SDK (BatchSpanProcessor + OTLP/gRPC exporter) through ``serve``.

``checkout`` calls ``payment`` (CLIENT spans with ``peer.service``) ~100 times
a second: 1 % errors while the baseline is learned, 50 % during the incident,
1 % again after. ``/metrics`` must show
``otel_anomaly_alert_active{detector="error_rate",kind="edge_error_rate",service="checkout",peer="payment"} 1``
during the incident and drop the series after recovery. Windows are 1 s and
the warm-up 3 s so the whole story takes ~30 s.
"""

from __future__ import annotations

import time

from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.support.otlp import PacedTraffic

CONFIG = {
    "pipeline": {"window": "1s", "allowed_lateness": "0s"},
    "alerts": {"resolve_after": 3},
    "detectors": {"error_rate": {"warmup": "3s", "warmup_requests": 50, "learn_delay": "6s"}},
}
# the real detector, whatever the registry in detector/app.py says at the time
ENV = {"OTEL_ANOMALY_DETECTOR_CLASSES": "error_rate=detector.detectors.error_rate.detector:ErrorRateDetector"}
EDGE = {"detector": "error_rate", "kind": "edge_error_rate", "service": "checkout", "peer": "payment"}


class Traffic(PacedTraffic):
    """Client spans checkout -> payment; span ``i`` fails when ``i % every == 0`` (deterministic)."""

    every = 100  # 1 % errors

    def emit(self, i: int) -> None:
        err = i % self.every == 0
        attrs = {"peer.service": "payment", "http.request.method": "POST", "server.address": "payment"}
        with self.tracer.start_as_current_span("POST", kind=SpanKind.CLIENT, attributes=attrs) as span:
            span.set_attribute("http.response.status_code", 503 if err else 200)
            if err:
                span.set_status(Status(StatusCode.ERROR, "503"))



def test_sdk_edge_incident_alerts_on_metrics_and_clears_after_recovery(serve):
    sp = serve(CONFIG, env=ENV)
    traffic = Traffic(sp.grpc_target)
    traffic.start()
    try:
        time.sleep(12)  # baseline: 1 % errors, learned after warm-up and the 6-window learning delay
        assert sp.samples("otel_anomaly_alert_active", detector="error_rate") == []
        traffic.every = 2  # incident: 50 % of checkout -> payment calls fail
        sp.wait_until(lambda: sp.samples("otel_anomaly_alert_active", **EDGE), timeout=20, what="edge alert series")
        (labels, value), = sp.samples("otel_anomaly_alert_active", **EDGE)
        assert value == 1 and labels["severity"] == "critical"
        alert = next(a for a in sp.alerts() if a["kind"] == "edge_error_rate" and a["state"] == "firing")
        assert (alert["service"], alert["peer"]) == ("checkout", "payment")
        assert alert["summary"].startswith("errors checkout→payment rose ")
        assert alert["observed"]["ratio"] > 0.1 and alert["baseline"]["ratio"] < 0.05  # the first window is partly before the switch
        assert alert["exemplar_trace_ids"] and all(len(t) == 32 for t in alert["exemplar_trace_ids"])
        score = sp.sample("otel_anomaly_score", detector="error_rate", kind="edge_error_rate", service="checkout", peer="payment")
        assert score is not None and score > 0
        traffic.every = 100  # recovery
        sp.wait_until(lambda: not sp.samples("otel_anomaly_alert_active", **EDGE), timeout=30, what="edge alert cleared")
        assert any(a["kind"] == "edge_error_rate" and a["state"] == "resolved" for a in sp.alerts())
    finally:
        traffic.close()
    assert sp.stop() == 0
