"""E2E 5: deploy/otelcol/auth-tls.yaml (unchanged) against otel-anomaly with TLS and a bearer
token: data flows over TLS with the token; a wrong token (the token file rotated to a bad
value) is refused UNAUTHENTICATED and not retried; the right token flows again after the
file is fixed (the bearertokenauth extension re-reads it). Certificates are made with the
openssl CLI for this test.
"""

from __future__ import annotations

import shutil
import subprocess
import time

from tests.e2e.tools import Collector, OtelAnomaly, OtlpSink, SpanSender, need, need_otelcol, value, wait_until


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certs(d):
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=otel-anomaly-e2e-ca", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=otel-anomaly", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem",
             "-days", "2", "-extfile", "san.ext", cwd=d)


def test_bearer_token_and_tls(tmp_path):
    need_otelcol()
    need(shutil.which("openssl"), "the openssl CLI is not installed (needed to make test certificates)")
    _certs(tmp_path)
    (tmp_path / "server-token").write_text("e2e-s3cret-token\n")
    client_token = tmp_path / "client-token"
    client_token.write_text("e2e-s3cret-token")
    sink = OtlpSink().start()
    oa = OtelAnomaly(tmp_path, config={"receiver": {"grpc": {
        "tls": {"cert_file": str(tmp_path / "server.pem"), "key_file": str(tmp_path / "server.key")},
        "auth": {"bearer_token_file": str(tmp_path / "server-token")}}}}).start()
    col = Collector(tmp_path, "auth-tls.yaml", env={
        "OTEL_ANOMALY_ENDPOINT": oa.grpc_endpoint, "BACKEND_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_ANOMALY_TOKEN_FILE": str(client_token), "OTEL_ANOMALY_CA_FILE": str(tmp_path / "ca.pem")}).start()
    sender = SpanSender(col.grpc_endpoint, ["checkout"])
    procs = [oa.proc, col.proc]

    def received() -> float:
        return value(oa.metrics(), "otel_anomaly_received_items_total", signal="spans")

    def unauthenticated() -> float:
        return value(oa.metrics(), "otel_anomaly_rejected_items_total", reason="unauthenticated")

    try:
        now = time.time()
        sender.emit("checkout", 500, 5, now - 1, now)
        sender.flush()
        wait_until(lambda: received() == 500, 30, "500 spans over TLS with the bearer token", procs=procs)
        assert unauthenticated() == 0

        client_token.write_text("wrong-token")  # rotated in place: the extension re-reads it
        time.sleep(1.0)
        now = time.time()
        sender.emit("checkout", 100, 0, now - 1, now)
        sender.flush()
        wait_until(lambda: value(col.metrics(), "otelcol_exporter_send_failed_spans_total", exporter="otlp_grpc/anomaly") == 100,
                   30, "the Collector dropping 100 spans refused UNAUTHENTICATED (permanent, not retried)", procs=procs)
        refused_requests = unauthenticated()  # counted per request: the body is never decoded
        assert refused_requests >= 1
        assert received() == 500

        client_token.write_text("e2e-s3cret-token")
        time.sleep(1.0)
        now = time.time()
        sender.emit("checkout", 100, 0, now - 1, now)
        sender.flush()
        wait_until(lambda: received() == 600, 30, "spans flowing again with the fixed token", procs=procs)
        assert unauthenticated() == refused_requests
        wait_until(lambda: sink.spans == 700, 15, "the backend got all 700 spans whatever otel-anomaly answered", procs=procs)
    finally:
        sender.shutdown()
        col.stop()
        oa.stop()
        sink.stop()
