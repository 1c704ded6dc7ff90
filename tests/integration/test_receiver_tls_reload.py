"""Certificate and token reload of the real OTLP/gRPC Receiver (:meth:`Receiver.reload_credentials`).

Real grpcio server on a free port, real TLS channels: after a reload, a *new*
connection validates with the new CA; broken files are refused and the running
certificate stays; mTLS client CA rotation; switching TLS off is refused.
"""

from __future__ import annotations

import grpc
import pytest
from prometheus_client import CollectorRegistry

from detector.expose.metrics import SelfMetrics
from detector.receive.config import GrpcConfig, ReceiverConfig
from detector.receive.server import TRACE_METHOD, Receiver, ReceiverError
from tests.integration.test_receiver import SVC, ListSink
from tests.support.certs import Pki
from tests.unit._otlp_build import trace_request

REQ = trace_request({}, resource=SVC).SerializeToString()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    a, b = Pki(d / "a", "ca-a"), Pki(d / "b", "ca-b")
    return {"a": a, "b": b, "server_a": a.issue("server"), "server_b": b.issue("server"),
            "client_a": a.issue("client"), "client_b": b.issue("client")}  # fmt: skip


def _export(port: int, ca, client=None, metadata=None) -> None:
    """One Export on a brand-new channel (a new TLS handshake)."""
    kw = {}
    if client:
        kw = {"private_key": client[1].read_bytes(), "certificate_chain": client[0].read_bytes()}
    creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes(), **kw)
    # a distinct channel arg keeps grpc from reusing a subchannel (connection) of an earlier channel
    with grpc.secure_channel(f"localhost:{port}", creds, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        ch.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)(REQ, timeout=10, metadata=metadata)


def _install(dst_dir, pair):
    cert, key = dst_dir / "tls.crt", dst_dir / "tls.key"
    cert.write_bytes(pair[0].read_bytes())
    key.write_bytes(pair[1].read_bytes())
    return cert, key


def _receiver(grpc_cfg: dict) -> tuple[Receiver, CollectorRegistry, ListSink]:
    reg, sink = CollectorRegistry(), ListSink()
    r = Receiver(ReceiverConfig.model_validate({"grpc": {"endpoint": "127.0.0.1:0", **grpc_cfg}}), sink, SelfMetrics(reg))
    r.start()
    return r, reg, sink


def test_server_certificate_reload(pki, tmp_path):
    cert, key = _install(tmp_path, pki["server_a"])
    token = tmp_path / "token"
    token.write_text("t1\n")
    cfg = {"tls": {"cert_file": str(cert), "key_file": str(key)}, "auth": {"bearer_token_file": str(token)}}
    r, reg, sink = _receiver(cfg)
    md1 = [("authorization", "Bearer t1")]
    try:
        _export(r.port, pki["a"].ca, metadata=md1)
        # broken rotations are refused and change nothing
        key.write_bytes(pki["server_b"][1].read_bytes())  # key of B, cert of A
        with pytest.raises(ReceiverError, match="receiver.grpc.tls.cert_file .* with key_file"):
            r.reload_credentials(GrpcConfig.model_validate(cfg))
        cert.write_text("garbage")
        with pytest.raises(ReceiverError):
            r.reload_credentials(GrpcConfig.model_validate(cfg))
        token.write_text("")
        cert.write_bytes(pki["server_b"][0].read_bytes())
        with pytest.raises(ReceiverError, match="bearer_token_file .* is empty"):
            r.reload_credentials(GrpcConfig.model_validate(cfg))
        _export(r.port, pki["a"].ca, metadata=md1)  # still certificate A and token t1
        with pytest.raises(grpc.RpcError) as err:
            _export(r.port, pki["b"].ca, metadata=md1)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # a good rotation: cert B + token t2
        token.write_text("t2")
        r.reload_credentials(GrpcConfig.model_validate(cfg))
        _export(r.port, pki["b"].ca, metadata=[("authorization", "Bearer t2")])
        with pytest.raises(grpc.RpcError) as err:
            _export(r.port, pki["b"].ca, metadata=md1)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            _export(r.port, pki["a"].ca, metadata=[("authorization", "Bearer t2")])
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reg.get_sample_value("otel_anomaly_received_items_total", {"signal": "spans"}) == 3
        # TLS cannot be switched off by a reload
        with pytest.raises(ReceiverError, match="restart"):
            r.reload_credentials(GrpcConfig.model_validate({"endpoint": "127.0.0.1:0"}))
    finally:
        r.stop(0.2)


def test_client_ca_rotation_for_mtls(pki, tmp_path):
    cert, key = _install(tmp_path, pki["server_a"])
    client_ca = tmp_path / "clients.pem"
    client_ca.write_bytes(pki["a"].ca.read_bytes())
    cfg = {"tls": {"cert_file": str(cert), "key_file": str(key), "client_ca_file": str(client_ca)}}
    r, reg, _ = _receiver(cfg)
    try:
        _export(r.port, pki["a"].ca, client=pki["client_a"])
        with pytest.raises(grpc.RpcError):
            _export(r.port, pki["a"].ca, client=pki["client_b"])
        client_ca.write_bytes(pki["b"].ca.read_bytes())
        r.reload_credentials(GrpcConfig.model_validate(cfg))
        _export(r.port, pki["a"].ca, client=pki["client_b"])
        with pytest.raises(grpc.RpcError):
            _export(r.port, pki["a"].ca, client=pki["client_a"])
        with pytest.raises(ReceiverError, match="mTLS"):
            r.reload_credentials(GrpcConfig.model_validate({"tls": {"cert_file": str(cert), "key_file": str(key)}}))
        assert reg.get_sample_value("otel_anomaly_received_items_total", {"signal": "spans"}) == 2
    finally:
        r.stop(0.2)
