"""A password-spraying run sent with the real OpenTelemetry SDK (OTLP/gRPC exporter) through ``serve``.

Benign logins (each user from their own address, one typo now and then) run
for a few seconds, then one source tries 40 accounts once each at ~10/s.
``/metrics`` must show
``otel_anomaly_alert_active{detector="auth",kind="password_spraying",service="auth-api"} 1``
and must not contain any principal or IP address that was sent (the test greps
the whole exposition text for every one of them). Windows are 1 s.
"""

from __future__ import annotations

import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from tests.support.otlp import span_exporter

CONFIG = {"pipeline": {"window": "1s", "allowed_lateness": "0s"}, "alerts": {"resolve_after": 3}}
ENV = {"OTEL_ANOMALY_DETECTOR_CLASSES": "auth=detector.detectors.auth.detector:AuthDetector"}
SPRAY = {"detector": "auth", "kind": "password_spraying", "service": "auth-api"}
ATTACKER = "203.0.113.77"


def _login(tracer, user: str, ip: str, status: int) -> None:
    attrs = {"http.request.method": "POST", "http.route": "/login", "url.path": "/login", "user.id": user,
             "client.address": ip, "user_agent.original": "Mozilla/5.0 (test)"}
    with tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER, attributes=attrs) as span:
        span.set_attribute("http.response.status_code", status)


def test_sdk_password_spraying_fires_and_metrics_hold_no_identity(serve):
    sp = serve(CONFIG, env=ENV)
    provider = TracerProvider(resource=Resource.create({"service.name": "auth-api", "service.version": "1.0.0"}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter(sp.grpc_target), schedule_delay_millis=100))
    tracer = provider.get_tracer("auth-api.server")
    sent_identities = set()
    try:
        for i in range(60):  # benign: 60 users over ~3 s, every 10th mistypes once first
            user, ip = f"employee{i}@example.com", f"198.51.100.{i + 1}"
            sent_identities |= {user, ip}
            if i % 10 == 0:
                _login(tracer, user, ip, 401)
            _login(tracer, user, ip, 200)
            time.sleep(0.05)
        assert sp.samples("otel_anomaly_alert_active", detector="auth") == []
        sent_identities.add(ATTACKER)
        for i in range(40):
            victim = f"victim{i}@example.com"
            sent_identities.add(victim)
            _login(tracer, victim, ATTACKER, 401)
            time.sleep(0.1)
        provider.force_flush()
        sp.wait_until(lambda: sp.samples("otel_anomaly_alert_active", **SPRAY), timeout=20, what="spraying alert series")
        (labels, value), = sp.samples("otel_anomaly_alert_active", **SPRAY)
        assert value == 1 and labels["peer"] == "" and labels["severity"] == "warning"
        alert = next(a for a in sp.alerts() if a["kind"] == "password_spraying" and a["state"] == "firing")
        assert alert["subject"]["source"].startswith("h:")
        assert alert["observed"]["failed_principals"] >= 10
        status, text = sp.get("/metrics")
        assert status == 200 and 'kind="password_spraying"' in text
        leaked = sorted(x for x in sent_identities if x in text)
        assert leaked == [], f"identities in /metrics: {leaked[:5]}"
        assert "198.51.100." not in text and "203.0.113." not in text and "@example.com" not in text
        assert not [a for a in sp.alerts() if ATTACKER in str(a) or "victim" in str(a)]
    finally:
        provider.shutdown()
