"""Which ``receiver`` / ``http`` changes SIGHUP applies and which need a restart (:func:`detector.app._restart_keys`)."""

from __future__ import annotations

from types import SimpleNamespace

from detector.app import _restart_keys
from detector.config.root import Config

TLS = {"cert_file": "/c.pem", "key_file": "/k.pem"}


def _cfg(**sections) -> Config:
    return Config.model_validate(sections)


def _running(tls: dict | None):
    """A stand-in for the running Receiver: only its ``config.grpc.tls`` is read."""
    return SimpleNamespace(config=_cfg(receiver={"grpc": {"tls": tls}}).receiver)


def test_credential_changes_are_hot_the_rest_needs_restart():
    old = _cfg(receiver={"grpc": {"tls": TLS}}, http={"tls": TLS})
    hot = _cfg(
        receiver={"grpc": {"tls": {"cert_file": "/new.pem", "key_file": "/new.key"}, "auth": {"bearer_token_file": "/t"}}},
        http={"tls": None, "basic_auth": {"username": "u", "password_file": "/p"}, "read_timeout": "5s"},
    )
    assert _restart_keys(hot, old, _running(TLS)) == []
    cold = _cfg(receiver={"grpc": {"endpoint": "0.0.0.0:4318", "workers": 4, "tls": {**TLS, "client_ca_file": "/ca"}}},
                http={"endpoint": "0.0.0.0:9465", "tls": TLS})  # fmt: skip
    assert _restart_keys(cold, old, _running(TLS)) == ["receiver.grpc.endpoint", "receiver.grpc.workers", "receiver.grpc.tls", "http.endpoint"]


def test_tls_switch_is_compared_with_what_the_receiver_runs():
    # a first SIGHUP turned TLS on in the file (not applied); the next one must still say so
    old = _cfg(receiver={"grpc": {"tls": TLS}})
    assert _restart_keys(old, old, _running(None)) == ["receiver.grpc.tls"]
    assert _restart_keys(_cfg(), _cfg(), None) == []
