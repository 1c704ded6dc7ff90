"""A rename on a client span, sent with the real OpenTelemetry SDK (BatchSpanProcessor + OTLP/gRPC) through ``serve``.

``checkout`` calls ``payment`` (CLIENT spans with ``peer.service``) ~100 times a
second with an ``order_id`` attribute; after the warm-up a "deploy" renames it
to ``orderId``. ``/metrics`` must show
``otel_anomaly_alert_active{detector="schema_drift",kind="attribute_renamed",service="checkout",peer="payment"}``
and ``/api/v1/alerts`` the alert with the attribute names in its subject.
Windows are 1 s and the warm-up 3 s so the story takes ~15 s.
"""

from __future__ import annotations

import time

from opentelemetry.trace import SpanKind

from tests.support.otlp import PacedTraffic

CONFIG = {
    "pipeline": {"window": "1s", "allowed_lateness": "0s"},
    "alerts": {"resolve_after": 3},
    "detectors": {"schema_drift": {"warmup": "3s", "warmup_records": 50}},
}
ENV = {"OTEL_ANOMALY_DETECTOR_CLASSES": "schema_drift=detector.detectors.schema_drift.detector:SchemaDriftDetector"}
RENAME = {"detector": "schema_drift", "kind": "attribute_renamed", "service": "checkout", "peer": "payment"}


class Traffic(PacedTraffic):
    """Client spans checkout -> payment; ``key`` names the order id attribute."""

    key = "order_id"

    def emit(self, i: int) -> None:
        attrs = {"peer.service": "payment", "http.request.method": "POST", "server.address": "payment",
                 self.key: f"ord-{i:08d}"}
        with self.tracer.start_as_current_span("POST /pay", kind=SpanKind.CLIENT, attributes=attrs) as span:
            span.set_attribute("http.response.status_code", 200)



def test_sdk_client_span_rename_shows_as_attribute_renamed_on_metrics(serve):
    sp = serve(CONFIG, env=ENV)
    traffic = Traffic(sp.grpc_target)
    traffic.start()
    try:
        time.sleep(8)  # baseline learned (3 s warm-up, 50 records)
        assert sp.samples("otel_anomaly_alert_active", detector="schema_drift") == []
        traffic.key = "orderId"
        sp.wait_until(lambda: sp.samples("otel_anomaly_alert_active", **RENAME), timeout=20, what="attribute_renamed series")
        (labels, value), = sp.samples("otel_anomaly_alert_active", **RENAME)
        assert value == 1 and labels["severity"] == "warning"
        alert = next(a for a in sp.alerts() if a["kind"] == "attribute_renamed" and a["state"] == "firing")
        assert (alert["detector"], alert["service"], alert["peer"]) == ("schema_drift", "checkout", "payment")
        assert alert["subject"]["attribute"] == "order_id" and alert["subject"]["new_attribute"] == "orderId"
        assert alert["subject"]["side"] == "client"
        assert "renamed to 'orderId'" in alert["summary"]
        assert alert["exemplar_trace_ids"] and all(len(t) == 32 for t in alert["exemplar_trace_ids"])
        # nothing else fired: no added/removed noise for the renamed pair
        kinds = {s[0]["kind"] for s in sp.samples("otel_anomaly_alert_active", detector="schema_drift")}
        assert kinds == {"attribute_renamed"}
    finally:
        traffic.close()
    assert sp.stop() == 0
