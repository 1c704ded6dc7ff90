"""serve warns when a password or bearer token would cross the network in clear (no TLS on that endpoint)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from detector.app import App
from detector.config.root import Config


def _start(tmp_path, caplog, http_tls: bool) -> list[str]:
    (tmp_path / "pw").write_text("s3cret-password\n")
    (tmp_path / "token").write_text("s3cret-token\n")
    http = {"endpoint": "127.0.0.1:0", "basic_auth": {"username": "prom", "password_file": str(tmp_path / "pw")}}
    if http_tls:
        from tests.support.certs import Pki

        cert, key = Pki(tmp_path / "pki", "ca").issue("server")
        http["tls"] = {"cert_file": str(cert), "key_file": str(key)}
    cfg = Config.model_validate({
        "receiver": {"grpc": {"endpoint": "127.0.0.1:0", "auth": {"bearer_token_file": str(tmp_path / "token")}}},
        "http": http, "state": {"directory": None},
    })  # fmt: skip
    app = App(cfg, registry=CollectorRegistry(), salt=b"x")
    with caplog.at_level(logging.WARNING, logger="otel_anomaly.app"):
        app.start()
        app.stop(grace=1.0)
    text = [r.getMessage() for r in caplog.records if "in clear" in r.getMessage()]
    assert not any("s3cret" in r.getMessage() for r in caplog.records)
    return text


def test_basic_auth_and_bearer_token_without_tls_are_warned_about(tmp_path, caplog):
    lines = _start(tmp_path, caplog, http_tls=False)
    assert any(line.startswith("http.basic_auth") for line in lines)
    assert any(line.startswith("receiver.grpc.auth") for line in lines)


def test_no_warning_for_the_endpoint_with_tls(tmp_path, caplog):
    lines = _start(tmp_path, caplog, http_tls=True)
    assert not any(line.startswith("http.basic_auth") for line in lines)
    assert any(line.startswith("receiver.grpc.auth") for line in lines)
