"""The OTLP/gRPC receiver: Trace, Logs and Metrics ``Export`` on one grpcio server.

Generic RPC handlers take the raw request bytes (``request_deserializer=None``)
so decoding, UTF-8 salvage and normalisation happen in one pass in
:mod:`detector.normalise`. A handler only validates, normalises and enqueues
(``Sink.submit`` never blocks); all analysis happens on the pipeline's worker,
so calls are answered in milliseconds (a Collector keeps ~10 calls in flight
with a 5 s deadline).

Status codes (OTLP spec "OTLP/gRPC Response", the project contract):

==========================  ==========================================================
OK                          accepted; ``partial_success`` (rejected count + message)
                            only when some spans / log records were unusable
INVALID_ARGUMENT            body is not a protobuf request of the service (not retryable);
                            also for a request that crashes normalisation (a bug: logged
                            with its traceback at most once a minute, counted as
                            ``internal_error``; retrying would not help)
RESOURCE_EXHAUSTED          analysis queue full; carries ``google.rpc.RetryInfo``
                            (``receiver.grpc.retry_delay``) so the Collector retries
UNAVAILABLE                 shutting down (``set_accepting(False)`` / sink not accepting),
                            or the sink raised (logged, counted as ``internal_error``)
UNAUTHENTICATED             auth configured and ``authorization: Bearer`` missing/wrong
INTERNAL ("Error parsing   grpc core itself (grpcio 1.85, measured), for a ``grpc-encoding``
'grpc-encoding' metadata")  it cannot decode (zstd, snappy) — gRPC specifies UNIMPLEMENTED but
                            grpcio rejects the header while parsing it, before any Python
                            code runs. Configure the sender with ``compression: gzip`` or none
RESOURCE_EXHAUSTED (no      grpc core itself, for a message larger than
RetryInfo)                  ``max_recv_msg_size_mib`` after decompression: the
                            Collector does not retry it
==========================  ==========================================================

Counting (``SelfMetrics``): ``received_items{signal}`` counts items *accepted
into the queue* (so received == processed at quiescence, and a batch refused
with RESOURCE_EXHAUSTED and re-sent is counted once);
``rejected_items{signal,reason}`` counts items refused: ``invalid_trace_id``,
``invalid_span_id`` (items), ``queue_full``, ``shutting_down`` (items of the
refused request), ``undecodable``, ``unauthenticated`` (one per *request*: the
body is not decoded so its items are unknown), ``internal_error`` (a bug; per
request when normalising failed, items when the sink raised). ``utf8_repaired_requests{signal}``
counts salvaged requests; ``truncated_values{signal,reason}`` counts values cut from
accepted items (``depth``, incl. requests nested beyond the protobuf parser's limit,
salvaged; ``array``; ``attributes``). Oversized and unsupported-encoding requests are
refused by grpc core before the handler and are not counted: grpcio calls the generic
handler's ``service()`` (and server interceptors) with the method and metadata when the
call starts, but the message, its size and the failure never reach Python (measured,
grpcio 1.85); grpc core logs the bad ``grpc-encoding`` at ERROR on stderr.

TLS and credential reload (SIGHUP, :meth:`Receiver.reload_credentials`): the
server is built with ``grpc.dynamic_ssl_server_credentials``, whose fetcher
grpc core calls before every new TLS handshake; a reload validates the new
PEM files with the stdlib :mod:`ssl` (grpc itself would accept garbage and
fail every later handshake), then hands the fetcher one new
``grpc.ssl_server_certificate_configuration``. New connections get the new
certificate / client CA; open connections keep theirs; nothing learned is
touched. Switching TLS or mTLS on or off needs a restart (grpc fixes it when
the port is added). The bearer token file is re-read too.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import ssl
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from detector.expose.metrics import SelfMetrics
from detector.normalise import UndecodableRequest, check_protobuf_backend, decode_logs, decode_metrics, decode_traces
from detector.pipeline.batch import Batch, Sink
from detector.receive.config import AuthConfig, GrpcConfig, ReceiverConfig, TlsConfig

log = logging.getLogger(__name__)

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
MIB = 1024 * 1024


class ReceiverError(RuntimeError):
    """The receiver cannot start (port in use, unreadable TLS/auth files)."""


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ReceiverError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None


def load_tls_material(tls: TlsConfig, prefix: str = "receiver.grpc.tls") -> tuple[bytes, bytes, bytes | None]:
    """``(cert_chain, private_key, client_ca or None)`` PEM bytes, validated with :mod:`ssl`.

    Checks that the chain and key are PEM, that the key matches the
    certificate (``SSL_CTX_check_private_key`` via ``load_cert_chain``) and
    that the CA bundle parses; the bytes checked are the bytes returned.

    Raises:
        ReceiverError: naming the key and file (never the content).
    """
    cert = _read(tls.cert_file, f"{prefix}.cert_file")
    key = _read(tls.key_file, f"{prefix}.key_file")
    ca = _read(tls.client_ca_file, f"{prefix}.client_ca_file") if tls.client_ca_file else None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain only takes paths: check the bytes just read through a private temp dir
    with tempfile.TemporaryDirectory(prefix="otel-anomaly-tls-") as d:
        cpath, kpath = Path(d, "cert.pem"), Path(d, "key.pem")
        cpath.write_bytes(cert)
        kpath.touch(0o600)
        kpath.write_bytes(key)
        try:
            ctx.load_cert_chain(cpath, kpath, password=lambda: b"")
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            raise ReceiverError(
                f"cannot use {prefix}.cert_file {tls.cert_file!r} with key_file {tls.key_file!r}: {reason}"
            ) from None
    if ca is not None:
        try:
            ctx.load_verify_locations(cadata=ca.decode("ascii", "replace"))
        except (OSError, ssl.SSLError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            raise ReceiverError(f"cannot use {prefix}.client_ca_file {tls.client_ca_file!r}: {reason}") from None
    return cert, key, ca


def read_bearer_token(auth: AuthConfig) -> bytes:
    """The expected ``authorization`` value, ``b"Bearer <token>"``, from ``bearer_token_file``.

    Raises:
        ReceiverError: the file is unreadable or empty.
    """
    token = _read(auth.bearer_token_file, "receiver.grpc.auth.bearer_token_file").decode("utf-8", "replace").strip()
    if not token:
        raise ReceiverError(f"receiver.grpc.auth.bearer_token_file {auth.bearer_token_file!r} is empty")
    return ("Bearer " + token).encode()


def _digest(value: bytes) -> bytes:
    """SHA-256 of an ``authorization`` value: what is kept and compared (constant length)."""
    return hashlib.sha256(value).digest()


def retry_info_status(message: str, delay_seconds: float) -> grpc.Status:
    """A RESOURCE_EXHAUSTED :class:`grpc.Status` carrying a ``google.rpc.RetryInfo`` detail.

    The detail travels in the ``grpc-status-details-bin`` trailer (grpcio-status
    ``rpc_status.to_status``); the Collector's otlp exporter retries
    RESOURCE_EXHAUSTED only when it is present, waiting ``retry_delay``.
    """
    secs = int(delay_seconds)
    delay = duration_pb2.Duration(seconds=secs, nanos=int(round((delay_seconds - secs) * 1e9)))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    st = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message, details=[detail])
    return rpc_status.to_status(st)


class Receiver:
    """OTLP/gRPC server feeding normalised batches into a :class:`Sink`.

    Args:
        config: the ``receiver:`` section.
        sink: the pipeline queue; ``submit`` must not block.
        metrics: self-metrics to count received / rejected items on.
        auth_token: expected bearer token; when None and
            ``config.grpc.auth`` is set, it is read from ``bearer_token_file``
            (whitespace stripped). Never logged.

    Raises:
        ReceiverError: the token file cannot be read or is empty.

    Lifecycle: :meth:`start` binds (raises :class:`ReceiverError` when it
    cannot), :meth:`set_accepting` ``(False)`` makes new calls answer
    UNAVAILABLE, :meth:`stop` stops accepting and shuts the server down. Stop is
    safe before start and safe to repeat.
    """

    def __init__(self, config: ReceiverConfig, sink: Sink, metrics: SelfMetrics, auth_token: str | None = None) -> None:
        self.config = config
        self.sink = sink
        self.metrics = metrics
        grpc_cfg = config.grpc
        if auth_token is None and grpc_cfg.auth is not None:
            self._expected_auth: bytes | None = _digest(read_bearer_token(grpc_cfg.auth))
        else:
            self._expected_auth = _digest(("Bearer " + auth_token).encode()) if auth_token else None
        self._pending_cert: grpc.ServerCertificateConfiguration | None = None
        self._cert_lock = threading.Lock()
        self._accepting = True
        self._server: grpc.Server | None = None
        self._port: int | None = None
        self._lock = threading.Lock()
        self._last_error_log = -1e9
        self._retry_status = retry_info_status(
            "analysis queue is full; retry after the RetryInfo delay", grpc_cfg.retry_delay
        )
        m = metrics
        self._counters = {}
        for signal in ("spans", "log_records", "data_points"):
            self._counters[signal] = (
                m.received.labels(signal=signal),
                {r: m.rejected.labels(signal=signal, reason=r) for r in ("queue_full", "shutting_down", "undecodable", "unauthenticated", "internal_error")},
                m.utf8_repaired.labels(signal=signal),
            )
        check_protobuf_backend()

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int | None:
        """The bound TCP port (useful with endpoint ``host:0``); None before :meth:`start`."""
        return self._port

    @property
    def accepting(self) -> bool:
        return self._accepting

    def set_accepting(self, accepting: bool) -> None:
        """False: new Export calls get UNAVAILABLE (retryable) — the first step of a graceful stop."""
        self._accepting = accepting

    def _options(self) -> list[tuple[str, int]]:
        g = self.config.grpc
        max_bytes = int(g.max_recv_msg_size_mib * MIB)
        return [
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_concurrent_streams", g.max_concurrent_streams),
            ("grpc.keepalive_time_ms", int(g.keepalive.time * 1000)),
            ("grpc.keepalive_timeout_ms", int(g.keepalive.timeout * 1000)),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", int(g.keepalive.min_client_ping_interval * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_ping_strikes", 2),
            # grpc enables SO_REUSEPORT by default: a second process could bind the same
            # port silently and steal half the connections. Fail instead.
            ("grpc.so_reuseport", 0),
        ]

    def _credentials(self) -> grpc.ServerCredentials | None:
        tls = self.config.grpc.tls
        if tls is None:
            return None
        cert, key, ca = load_tls_material(tls)
        initial = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
        return grpc.dynamic_ssl_server_credentials(initial, self._fetch_cert_config, require_client_authentication=ca is not None)

    def _fetch_cert_config(self) -> grpc.ServerCertificateConfiguration | None:
        # grpc core calls this before every new TLS handshake: a new config once after a reload, else None
        if self._pending_cert is None:  # the common case: no lock taken
            return None
        with self._cert_lock:
            cfg, self._pending_cert = self._pending_cert, None
        return cfg

    def reload_credentials(self, grpc_cfg: GrpcConfig) -> None:
        """Re-read the TLS files and the bearer token file of ``grpc_cfg`` (SIGHUP).

        All or nothing: every file is read and validated first; on any error
        nothing changes (the running certificate and token stay) and
        :class:`ReceiverError` is raised with the reason. New TLS handshakes
        use the new certificate / client CA; open connections keep theirs.

        Raises:
            ReceiverError: a file is unusable, or TLS / mTLS would be switched
                on or off (needs a restart).
        """
        old_tls = self.config.grpc.tls
        new_tls = grpc_cfg.tls
        if (old_tls is None) != (new_tls is None):
            raise ReceiverError("receiver.grpc.tls switched on or off: restart to apply")
        if old_tls is not None and new_tls is not None and (old_tls.client_ca_file is None) != (new_tls.client_ca_file is None):
            raise ReceiverError("receiver.grpc.tls.client_ca_file (mTLS) switched on or off: restart to apply")
        cert_cfg = None
        if new_tls is not None:
            cert, key, ca = load_tls_material(new_tls)
            cert_cfg = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
        expected = _digest(read_bearer_token(grpc_cfg.auth)) if grpc_cfg.auth is not None else None
        self._expected_auth = expected
        if cert_cfg is not None:
            with self._cert_lock:
                self._pending_cert = cert_cfg
        self.config = self.config.model_copy(update={"grpc": self.config.grpc.model_copy(update={"tls": new_tls, "auth": grpc_cfg.auth})})

    def start(self) -> int:
        """Bind ``receiver.grpc.endpoint`` and start serving; returns the bound port.

        Raises:
            ReceiverError: the address cannot be bound, or TLS files are unreadable.
        """
        with self._lock:
            if self._server is not None:
                return self._port  # type: ignore[return-value]
            g = self.config.grpc
            creds = self._credentials()
            server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=g.workers, thread_name_prefix="otlp-grpc"),
                handlers=[self._handlers()],
                options=self._options(),
            )
            try:
                if creds is None:
                    port = server.add_insecure_port(g.endpoint)
                else:
                    port = server.add_secure_port(g.endpoint, creds)
            except RuntimeError as exc:
                raise ReceiverError(f"cannot listen on receiver.grpc.endpoint {g.endpoint!r}: {exc}") from None
            if not port:
                raise ReceiverError(f"cannot listen on receiver.grpc.endpoint {g.endpoint!r} (address in use or invalid)")
            server.start()
            self._server = server
            self._port = port
            self._accepting = True
            log.info(
                "OTLP/gRPC receiver listening on %s (port %d, tls=%s, auth=%s, max_recv_msg_size_mib=%g)",
                g.endpoint, port, g.tls is not None, self._expected_auth is not None, g.max_recv_msg_size_mib,
            )  # fmt: skip
            return port

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting (UNAVAILABLE), let in-flight calls finish for up to ``grace`` seconds, close."""
        self._accepting = False
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait(grace + 1.0)
            log.info("OTLP/gRPC receiver stopped")

    # ------------------------------------------------------------------ handlers
    def _handlers(self) -> grpc.GenericRpcHandler:
        methods = {
            TRACE_METHOD: self._make("spans", decode_traces, ExportTraceServiceResponse, "rejected_spans"),
            LOGS_METHOD: self._make("log_records", decode_logs, ExportLogsServiceResponse, "rejected_log_records"),
            METRICS_METHOD: self._make("data_points", decode_metrics, ExportMetricsServiceResponse, "rejected_data_points"),
        }
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(fn, request_deserializer=None, response_serializer=None)
            for name, fn in methods.items()
        }

        class _Generic(grpc.GenericRpcHandler):
            def service(self, handler_call_details):
                return handlers.get(handler_call_details.method)

        return _Generic()

    def _internal_error(self, what: str) -> None:
        """Log an unexpected exception with its traceback, at most once a minute."""
        now = time.monotonic()
        if now - self._last_error_log >= 60.0:
            self._last_error_log = now
            log.exception("OTLP receiver: %s (further errors suppressed for 60 s)", what)

    def _authenticated(self, context: grpc.ServicerContext) -> bool:
        expected = self._expected_auth
        if expected is None:
            return True
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                got = value.encode("utf-8", "replace") if isinstance(value, str) else bytes(value)
                # scheme is case-insensitive (RFC 7235 §2.1); the token is compared in constant time
                if got[:7].lower() == b"bearer ":
                    got = b"Bearer " + got[7:].strip()
                # digests of equal length: the compare's time reveals neither content nor token length
                return hmac.compare_digest(_digest(got), expected)
        return False

    def _make(self, signal: str, decode, response_cls, rejected_field: str):
        received, refused, repaired = self._counters[signal]
        rejected_metric = self.metrics.rejected
        truncated_metric = self.metrics.truncated_values
        sink = self.sink
        retry_status = self._retry_status
        empty_response = response_cls().SerializeToString()
        is_metrics = signal == "data_points"

        def export(request: bytes, context: grpc.ServicerContext) -> bytes:
            if not self._authenticated(context):
                refused["unauthenticated"].inc()
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
            if not (self._accepting and sink.accepting):
                refused["shutting_down"].inc()
                context.abort(grpc.StatusCode.UNAVAILABLE, "receiver is shutting down; retry another instance or later")
            try:
                res = decode(request)
            except UndecodableRequest as exc:
                refused["undecodable"].inc()
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except Exception as exc:  # a normalisation bug must not kill the call with UNKNOWN
                self._internal_error("normalising a %s request failed" % signal)
                refused["internal_error"].inc()
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request could not be normalised ({type(exc).__name__})")
            items = res.data_points if is_metrics else len(res.spans) + len(res.logs)
            if items:
                batch = Batch(res.spans, res.logs, res.data_points, time.time())
                try:
                    ok = sink.submit(batch)
                except Exception:
                    self._internal_error("the analysis queue raised on submit")
                    refused["internal_error"].inc(items)
                    context.abort(grpc.StatusCode.UNAVAILABLE, "internal error while enqueueing; retry later")
                if not ok:
                    if not (self._accepting and sink.accepting):
                        refused["shutting_down"].inc(items)
                        context.abort(grpc.StatusCode.UNAVAILABLE, "receiver is shutting down")
                    refused["queue_full"].inc(items)
                    context.abort_with_status(retry_status)
                received.inc(items)
            if res.utf8_repaired:
                repaired.inc()
            if res.cut:
                for reason, n in res.cut.items():
                    truncated_metric.labels(signal=signal, reason=reason).inc(n)
            if not res.rejected:
                return empty_response
            for reason, n in res.reasons.items():
                rejected_metric.labels(signal=signal, reason=reason).inc(n)
            resp = response_cls()
            setattr(resp.partial_success, rejected_field, res.rejected)
            resp.partial_success.error_message = res.error_message
            return resp.SerializeToString()

        return export


__all__ = ["Receiver", "ReceiverError", "retry_info_status", "TRACE_METHOD", "LOGS_METHOD", "METRICS_METHOD"]
