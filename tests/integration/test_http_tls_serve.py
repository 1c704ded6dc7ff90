"""HTTPS + basic auth of a real ``otel-anomaly serve``, scraped by a real Prometheus;
certificate rotation on SIGHUP for both the OTLP/gRPC receiver and the HTTP endpoint.

* Prometheus (Debian package ``prometheus``, installed by ``.ci/install-tools.sh``)
  scrapes with ``scheme: https``, ``tls_config.ca_file`` and
  ``basic_auth.password_file``: the target is ``up == 1`` and a real
  ``otel_anomaly_*`` series is stored; a second job with a wrong password is
  ``up == 0`` with a 401. Skipped with a printed reason when prometheus is
  missing, failed instead when ``OTEL_ANOMALY_REQUIRE_E2E=1`` (the e2e convention).
* Rotation: serve with certificate A (CA A), replace the files with a broken
  pair (reload refused, ``config_reloads_total{result="error"}``, A still
  served), then with certificate B (other CA B): new connections validate with
  CA B — the real OTel SDK exporter over gRPC and urllib over HTTPS — while the
  process, its counters and its learned series carry on.
"""

from __future__ import annotations

import base64
import http.client
import signal
import ssl
import urllib.error
import urllib.request

import grpc
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.tools import Proc, free_port, http_json, need_prometheus, wait_until
from tests.support.certs import Pki
from tests.support.otlp import make_spans

USER, PASSWORD = "prometheus", "correct horse battery staple"


def _https(port: int, path: str, ca, auth: tuple[str, str] | None = (USER, PASSWORD), host: str = "127.0.0.1") -> tuple[int, str]:
    """GET over a *new* TLS connection trusting only ``ca``; ``(status, body)``, 4xx included."""
    ctx = ssl.create_default_context(cafile=str(ca))
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(f"https://{host}:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _sample(port: int, ca, name: str, **labels: str) -> float | None:
    status, text = _https(port, "/metrics", ca)
    assert status == 200, text
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def _install(dst, pair) -> None:
    (dst / "tls.crt").write_bytes(pair[0].read_bytes())
    (dst / "tls.key").write_bytes(pair[1].read_bytes())


def _config(tmp_path, grpc_tls: bool = False) -> dict:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    tls = {"cert_file": str(tmp_path / "tls.crt"), "key_file": str(tmp_path / "tls.key")}
    cfg = {"http": {"tls": tls, "basic_auth": {"username": USER, "password_file": str(tmp_path / "password")}}}
    if grpc_tls:
        cfg["receiver"] = {"grpc": {"tls": tls}}
    return cfg


def test_prometheus_scrapes_https_with_basic_auth(serve, tmp_path):
    binary = need_prometheus()
    pki = Pki(tmp_path / "pki", "ca-a")
    _install(tmp_path, pki.issue("server"))
    sp = serve(_config(tmp_path))
    port = sp.http_port
    # the endpoint itself: probes open over TLS, the rest needs the password, plain HTTP fails
    assert _https(port, "/healthz", pki.ca, auth=None) == (200, "ok\n")
    assert _https(port, "/readyz", pki.ca, auth=None)[0] == 200
    assert _https(port, "/metrics", pki.ca, auth=None)[0] == 401
    assert _https(port, "/metrics", pki.ca, auth=(USER, "wrong"))[0] == 401
    assert _https(port, "/api/v1/alerts", pki.ca) == (200, '{"alerts": []}')
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert PASSWORD not in sp.log_text()

    (tmp_path / "wrong-password").write_text("not it\n")
    prom_port = free_port()
    target = f"127.0.0.1:{port}"

    def job(name: str, password_file: str) -> dict:
        return {"job_name": name, "scheme": "https", "scrape_interval": "1s", "scrape_timeout": "1s",
                "tls_config": {"ca_file": str(pki.ca)},
                "basic_auth": {"username": USER, "password_file": password_file},
                "static_configs": [{"targets": [target]}]}  # fmt: skip

    cfg = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
           "scrape_configs": [job("otel-anomaly", str(tmp_path / "password")), job("wrong-password", str(tmp_path / "wrong-password"))]}  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (tmp_path / "tsdb").mkdir()
    prom = Proc("prometheus", [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"], tmp_path / "prometheus.log")  # fmt: skip
    url = f"http://127.0.0.1:{prom_port}"
    try:
        wait_until(lambda: urllib.request.urlopen(url + "/-/ready", timeout=2).status == 200, 30, "Prometheus ready", procs=[prom])

        def query(expr: str) -> list[dict]:
            from urllib.parse import quote

            return http_json(f"{url}/api/v1/query?query={quote(expr)}")["data"]["result"]

        def ups() -> dict[str, float] | None:
            got = {r["metric"]["job"]: float(r["value"][1]) for r in query("up")}
            return got if len(got) == 2 else None

        assert wait_until(ups, 30, "both targets scraped", procs=[prom]) == {"otel-anomaly": 1.0, "wrong-password": 0.0}
        build = wait_until(lambda: query('otel_anomaly_build_info{job="otel-anomaly"}'), 20, "build_info stored", procs=[prom])
        assert build[0]["metric"]["version"] and float(build[0]["value"][1]) == 1.0
        assert query('otel_anomaly_queue_items{job="otel-anomaly"}')[0]["value"][1] == "0"
        assert query('otel_anomaly_build_info{job="wrong-password"}') == []
        targets = http_json(url + "/api/v1/targets")["data"]["activeTargets"]
        wrong = [t for t in targets if t["labels"]["job"] == "wrong-password"][0]
        assert "401" in wrong["lastError"], wrong
        assert [t["health"] for t in targets if t["labels"]["job"] == "otel-anomaly"] == ["up"]
        # the wrong-password scrapes are counted by otel-anomaly, as Prometheus stores it
        refused = wait_until(lambda: [r for r in query('otel_anomaly_http_refused_requests_total{job="otel-anomaly",reason="unauthorized"}')
                                      if float(r["value"][1]) >= 2], 20, "401s counted", procs=[prom])  # fmt: skip
        assert refused
    finally:
        prom.stop()
    assert sp.stop() == 0
    assert PASSWORD not in sp.log_text()


def _grpc_export(port: int, ca, n: int = 1) -> bool:
    """``n`` spans through the real OTel SDK exporter on a new TLS connection trusting ``ca``."""
    creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    exp = OTLPSpanExporter(endpoint=f"localhost:{port}", credentials=creds, insecure=False, timeout=5)
    try:
        return exp.export(make_spans("checkout", n, error_every=10)) == SpanExportResult.SUCCESS
    finally:
        exp.shutdown()


def _grpc_handshake_fails(port: int, ca) -> bool:
    creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    with grpc.secure_channel(f"localhost:{port}", creds, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        try:
            grpc.channel_ready_future(ch).result(timeout=3)
        except grpc.FutureTimeoutError:
            return True
    return False


def test_sighup_rotates_certificates_without_losing_state(serve, tmp_path):
    a, b = Pki(tmp_path / "a", "ca-a"), Pki(tmp_path / "b", "ca-b")
    server_a, server_b = a.issue("server"), b.issue("server")
    _install(tmp_path, server_a)
    cfg = _config(tmp_path, grpc_tls=True)
    cfg["pipeline"] = {"window": "1s", "allowed_lateness": "1s"}
    sp = serve(cfg)
    gport, hport = sp.grpc_port, sp.http_port

    assert _grpc_export(gport, a.ca, 50)
    sp.wait_until(lambda: _sample(hport, a.ca, "otel_anomaly_processed_items_total", signal="spans") == 50, what="50 spans processed")
    tracked = sp.wait_until(lambda: _sample(hport, a.ca, "otel_anomaly_tracked_series", detector="error_rate"), what="learned series")

    # 1. a broken rotation (certificate B with key A): refused, A stays, counted as an error
    (tmp_path / "tls.crt").write_bytes(server_b[0].read_bytes())
    sp.proc.send_signal(signal.SIGHUP)
    sp.wait_until(lambda: _sample(hport, a.ca, "otel_anomaly_config_reloads_total", result="error") == 1, what="reload error counted")
    bad = [line for line in sp.logs() if line.get("msg", "").startswith("TLS/credential files could not be used")]
    assert len(bad) == 1 and len(bad[0]["problems"]) == 2, bad  # receiver and HTTP each name their files
    assert "receiver.grpc.tls.cert_file" in bad[0]["problems"][0] and "http.tls.cert_file" in bad[0]["problems"][1]
    assert "PRIVATE KEY" not in sp.log_text() and PASSWORD not in sp.log_text()
    assert _grpc_export(gport, a.ca, 10)
    assert _grpc_handshake_fails(gport, b.ca)

    # 2. the real rotation to certificate B of another CA
    (tmp_path / "tls.key").write_bytes(server_b[1].read_bytes())
    sp.proc.send_signal(signal.SIGHUP)
    sp.wait_until(lambda: _https(hport, "/healthz", b.ca, auth=None)[0] == 200 if _reloaded(sp) else False, what="reload ok")
    with pytest.raises(urllib.error.URLError):
        _https(hport, "/healthz", a.ca, auth=None)
    assert _grpc_handshake_fails(gport, a.ca)
    assert _grpc_export(gport, b.ca, 40)
    sp.wait_until(lambda: _sample(hport, b.ca, "otel_anomaly_processed_items_total", signal="spans") == 100, what="counters carried on")
    assert _sample(hport, b.ca, "otel_anomaly_received_items_total", signal="spans") == 100
    assert (_sample(hport, b.ca, "otel_anomaly_tracked_series", detector="error_rate") or 0) >= tracked
    assert _sample(hport, b.ca, "otel_anomaly_config_reloads_total", result="ok") == 1
    assert sp.proc.poll() is None and [line.get("msg") for line in sp.logs()].count("serving") == 1
    assert not any(line.get("msg") == "state restored" for line in sp.logs())
    assert sp.stop() == 0


def _reloaded(sp) -> bool:
    return any(line.get("msg") == "config reloaded" for line in sp.logs())


def test_unusable_http_tls_files_stop_start_with_one_clear_line(serve, tmp_path):
    pki = Pki(tmp_path / "pki", "ca-a")
    _install(tmp_path, pki.issue("server"))
    (tmp_path / "tls.key").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(AssertionError, match="serve exited with 1") as err:
        serve(_config(tmp_path))
    text = str(err.value)
    assert "cannot start: cannot load http.tls.cert_file" in text and "not a key" not in text and "Traceback" not in text
