"""TLS, mTLS and basic auth of the HTTP endpoint (:mod:`detector.expose.http`), in process.

Real sockets and the stdlib TLS client (:mod:`urllib` with an :class:`ssl.SSLContext`);
certificates from :class:`tests.support.certs.Pki` (openssl CLI; skipped with a
printed reason when openssl is missing).
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from detector.expose.config import BasicAuthConfig, HttpConfig, HttpTlsConfig
from detector.expose.http import HttpServer, HttpServerError
from tests.support.certs import Pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    a, b = Pki(d / "a", "ca-a"), Pki(d / "b", "ca-b")
    return {"a": a, "b": b, "server_a": a.issue("server"), "server_b": b.issue("server"), "client_a": a.issue("client")}


def _server(tls=None, basic=None, ready=True, read_timeout=5.0) -> HttpServer:
    reg = CollectorRegistry()
    Counter("otel_anomaly_demo", "demo", registry=reg).inc(3)
    h = HttpServer("127.0.0.1:0", reg, lambda: [{"id": "x", "state": "firing"}], lambda: (ready, "ready" if ready else "restoring state"),
                   tls=tls, basic_auth=basic, read_timeout=read_timeout)  # fmt: skip
    h.start()
    h.test_registry = reg  # type: ignore[attr-defined]
    return h


def _refused(h: HttpServer, reason: str) -> float:
    return h.test_registry.get_sample_value("otel_anomaly_http_refused_requests_total", {"reason": reason})


def _tls(pair, client_ca=None) -> HttpTlsConfig:
    return HttpTlsConfig(cert_file=str(pair[0]), key_file=str(pair[1]), client_ca_file=str(client_ca) if client_ca else None)


def _get(url: str, ctx: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None, timeout: float = 5.0) -> tuple[int, dict, str]:
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def _ctx(ca, client=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if client:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    return ctx


def test_basic_auth_protects_metrics_and_api_not_probes(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret pass\n")
    h = _server(basic=BasicAuthConfig(username="prom", password_file=str(pw)))
    url = f"http://127.0.0.1:{h.port}"
    try:
        for path in ("/metrics", "/api/v1/alerts", "/", "/nope"):
            status, headers, body = _get(url + path)
            assert status == 401 and body == "unauthorized\n"
            assert headers["WWW-Authenticate"] == 'Basic realm="otel-anomaly", charset="UTF-8"'
        for creds in (("prom", "wrong"), ("other", "s3cret pass"), ("prom", "s3cret pass\n"), ("", "")):
            assert _get(url + "/metrics", auth=creds)[0] == 401
        for bad_header in ("Bearer s3cret pass", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
            req = urllib.request.Request(url + "/metrics", headers={"Authorization": bad_header})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=5)
            assert err.value.code == 401
        status, _, body = _get(url + "/metrics", auth=("prom", "s3cret pass"))
        assert status == 200 and "otel_anomaly_demo_total 3.0" in body
        req = urllib.request.Request(url + "/api/v1/alerts", headers={"Authorization": "bAsIc " + base64.b64encode(b"prom:s3cret pass").decode()})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200 and b'"id": "x"' in r.read()
        assert _get(url + "/healthz")[:1] == (200,)  # probes stay open (kubelet sends no credentials)
        assert _get(url + "/readyz")[0] == 200
        assert _refused(h, "unauthorized") == 4 + 4 + 3 and _refused(h, "tls_handshake") == 0
    finally:
        h.stop()


def test_protect_probes_and_password_reload(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("one")
    cfg = BasicAuthConfig(username="u", password_file=str(pw), protect_probes=True, realm='my "realm"')
    h = _server(basic=cfg)
    url = f"http://127.0.0.1:{h.port}"
    try:
        status, headers, _ = _get(url + "/healthz")
        assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="my \\"realm\\"", charset="UTF-8"'
        assert _get(url + "/readyz", auth=("u", "one"))[0] == 200
        pw.write_text("two\n")
        h.reload_credentials(None, cfg)
        assert _get(url + "/readyz", auth=("u", "one"))[0] == 401
        assert _get(url + "/readyz", auth=("u", "two"))[0] == 200
        pw.write_text("   \n")  # empty: refused, the running password stays
        with pytest.raises(HttpServerError, match="is empty"):
            h.reload_credentials(None, cfg)
        assert _get(url + "/readyz", auth=("u", "two"))[0] == 200
        h.reload_credentials(None, None)  # auth switched off at runtime
        assert _get(url + "/metrics")[0] == 200
    finally:
        h.stop()


def test_tls_serves_https_and_refuses_plain_http(pki):
    h = _server(tls=_tls(pki["server_a"]))
    try:
        assert h.tls
        status, _, body = _get(f"https://127.0.0.1:{h.port}/metrics", _ctx(pki["a"].ca))
        assert status == 200 and "otel_anomaly_demo_total 3.0" in body
        assert _get(f"https://localhost:{h.port}/healthz", _ctx(pki["a"].ca))[0] == 200
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            _get(f"http://127.0.0.1:{h.port}/metrics")
        with pytest.raises(urllib.error.URLError) as err:  # a client trusting another CA
            _get(f"https://127.0.0.1:{h.port}/metrics", _ctx(pki["b"].ca))
        assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
        # the server still serves after those failures, and counted them
        assert _get(f"https://127.0.0.1:{h.port}/readyz", _ctx(pki["a"].ca))[0] == 200
        deadline = time.monotonic() + 5
        while _refused(h, "tls_handshake") < 2 and time.monotonic() < deadline:  # counted on the handler thread
            time.sleep(0.05)
        assert _refused(h, "tls_handshake") == 2
    finally:
        h.stop()


def test_silent_client_does_not_block_others(pki):
    # If the TLS handshake ran inside accept(), the second client would wait until the silent one
    # timed out (read_timeout 3 s) and its own 2.5 s timeout would fire first.
    h = _server(tls=_tls(pki["server_a"]), read_timeout=3.0)
    try:
        idle = socket.create_connection(("127.0.0.1", h.port))  # never starts the TLS handshake
        assert _get(f"https://127.0.0.1:{h.port}/healthz", _ctx(pki["a"].ca), timeout=2.5)[0] == 200
        idle.settimeout(10)
        assert idle.recv(1024) == b""  # closed by the server after read_timeout
        idle.close()
    finally:
        h.stop()


def test_mtls_requires_a_client_certificate(pki):
    h = _server(tls=_tls(pki["server_a"], client_ca=pki["a"].ca))
    url = f"https://127.0.0.1:{h.port}/metrics"
    try:
        with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
            _get(url, _ctx(pki["a"].ca))
        assert _get(url, _ctx(pki["a"].ca, pki["client_a"]))[0] == 200
    finally:
        h.stop()


def test_certificate_reload_for_new_connections_and_bad_files_keep_the_old(pki, tmp_path):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pki["server_a"][0].read_bytes())
    key.write_bytes(pki["server_a"][1].read_bytes())
    tls = _tls((cert, key))
    h = _server(tls=tls)
    url = f"https://127.0.0.1:{h.port}/healthz"
    try:
        assert _get(url, _ctx(pki["a"].ca))[0] == 200
        # a broken rotation: key of B with the cert of A, then garbage, then a missing file
        key.write_bytes(pki["server_b"][1].read_bytes())
        with pytest.raises(HttpServerError, match="http.tls.cert_file .* with key_file"):
            h.reload_credentials(tls, None)
        cert.write_text("not a certificate")
        with pytest.raises(HttpServerError):
            h.reload_credentials(tls, None)
        with pytest.raises(HttpServerError, match="client_ca_file .* is not a readable file"):
            h.reload_credentials(_tls((cert, key), client_ca=tmp_path / "missing.pem"), None)
        assert _get(url, _ctx(pki["a"].ca))[0] == 200  # still certificate A
        cert.write_bytes(pki["server_b"][0].read_bytes())
        h.reload_credentials(tls, None)
        assert _get(url, _ctx(pki["b"].ca))[0] == 200
        with pytest.raises(urllib.error.URLError):
            _get(url, _ctx(pki["a"].ca))
    finally:
        h.stop()


def test_start_fails_clearly_without_leaking_secrets(pki, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("")
    with pytest.raises(HttpServerError, match="password_file .* is empty"):
        _server(basic=BasicAuthConfig(username="u", password_file=str(pw)))
    with pytest.raises(HttpServerError, match="cannot read http.basic_auth.password_file"):
        _server(basic=BasicAuthConfig(username="u", password_file=str(tmp_path / "nope")))
    with pytest.raises(HttpServerError, match="http.tls.key_file .* is not a readable file"):
        _server(tls=_tls((pki["server_a"][0], tmp_path / "nope.key")))
    with pytest.raises(HttpServerError) as err:
        _server(tls=_tls((pki["server_a"][0], pki["server_b"][1])))
    assert "PRIVATE KEY" not in str(err.value) and "KEY_VALUES_MISMATCH" in str(err.value)


def test_config_defaults_and_strictness():
    c = HttpConfig()
    assert c.tls is None and c.basic_auth is None and c.read_timeout == 30.0
    c = HttpConfig.model_validate({"tls": {"cert_file": "c", "key_file": "k"}, "basic_auth": {"username": "u", "password_file": "p"}})
    assert c.basic_auth.protect_probes is False and c.basic_auth.realm == "otel-anomaly"
    with pytest.raises(ValueError):
        HttpConfig.model_validate({"basic_auth": {"username": "u", "password": "inline secrets are not accepted"}})


def test_username_with_a_colon_is_a_config_error():
    # RFC 7617 §2: the user-id cannot contain a colon (the first colon splits user and
    # password), so such a user could never authenticate: every scrape would get 401.
    with pytest.raises(ValueError, match="colon"):
        BasicAuthConfig.model_validate({"username": "team:prometheus", "password_file": "p"})
    with pytest.raises(ValueError, match="control"):
        BasicAuthConfig.model_validate({"username": "prom\n", "password_file": "p"})


@pytest.mark.parametrize("use_tls", [False, True])
def test_a_client_trickling_its_request_is_closed_after_read_timeout(pki, use_tls):
    # read_timeout bounded each read only: a client sending one header byte every 0.3 s (read_timeout 1 s)
    # kept its connection and a server thread forever (slowloris). The request line and headers must
    # arrive within read_timeout of the connection's start.
    h = _server(tls=_tls(pki["server_a"]) if use_tls else None, read_timeout=1.0)
    try:
        sock = socket.create_connection(("127.0.0.1", h.port))
        if use_tls:
            sock = _ctx(pki["a"].ca).wrap_socket(sock, server_hostname="localhost")
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: 1\r\n" * 4  # 64 trickled bytes, about 19 s
        sent = 0
        closed = False
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.3)
                if sent % 5 == 0:  # a closed connection shows as EOF / reset on read
                    sock.settimeout(0.01)
                    try:
                        if sock.recv(1024) == b"":
                            closed = True
                            break
                    except (socket.timeout, ssl.SSLWantReadError):
                        pass
                    sock.settimeout(None)
        except OSError:
            closed = True
        assert closed and sent < len(request)
        sock.close()
        assert _get(f"{'https' if use_tls else 'http'}://127.0.0.1:{h.port}/healthz", _ctx(pki["a"].ca) if use_tls else None)[0] == 200
    finally:
        h.stop()
