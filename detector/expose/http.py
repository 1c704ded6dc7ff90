"""The HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz``, ``/api/v1/alerts``.

``/api/v1/alerts`` takes optional filters ``state``, ``detector``, ``kind``,
``service``, ``severity`` (repeatable, exact match), e.g. ``?state=firing&detector=auth``.

stdlib :mod:`wsgiref` with one thread per request (``ThreadingMixIn``);
``/metrics`` is prometheus-client's WSGI app on the app's own registry, which
serves the Prometheus text format, or OpenMetrics (with exemplars) when the
``Accept`` header asks for ``application/openmetrics-text``, gzip-compressed
when ``Accept-Encoding`` allows. Handlers only read immutable snapshots.

Security (``http.tls``, ``http.basic_auth``):

* TLS: each accepted connection is wrapped with the server's current
  :class:`ssl.SSLContext` (``PROTOCOL_TLS_SERVER``, TLS >= 1.2; client
  certificates required when ``client_ca_file`` is set) and the handshake runs
  on the request's own thread with ``read_timeout``, so a client that connects
  and stays silent holds one thread for at most that long and never blocks
  ``accept``. :meth:`HttpServer.reload_credentials` builds a new context from
  the files and swaps it in: new connections use the new certificate,
  connections already open keep theirs (Python docs, ``ssl`` "SSL contexts").
  prometheus-client's own ``start_wsgi_server(certfile=, keyfile=,
  client_cafile=, client_auth_required=)`` wraps the *listening* socket once
  (handshake inside ``accept``, no reload, no basic auth), so it is not used.
* Basic auth (RFC 7617): ``Authorization: Basic base64(user:password)``,
  user and password compared in constant time (:func:`hmac.compare_digest`
  over SHA-256 digests, so the length does not leak either). Missing or wrong
  -> ``401`` with ``WWW-Authenticate: Basic realm="...", charset="UTF-8"``.
  ``/healthz`` and ``/readyz`` stay open unless ``protect_probes`` is set
  (kubelet HTTP probes cannot send credentials; they still go over TLS with
  ``scheme: HTTPS``, which kubelet does without verifying the certificate).
  They reveal only liveness and readiness.
* Refusals are counted, not logged per request:
  ``otel_anomaly_http_refused_requests_total{reason="tls_handshake"|"unauthorized"}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import logging
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, make_wsgi_app

from detector.expose.config import BasicAuthConfig, HttpTlsConfig

log = logging.getLogger("otel_anomaly.http")

PROBE_PATHS = frozenset({"/healthz", "/readyz"})


class HttpServerError(RuntimeError):
    """TLS or basic-auth files cannot be used (unreadable, invalid, key not matching).

    The message names the config key and the file, never its content.
    """


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    ssl_context: ssl.SSLContext | None = None
    read_timeout: float = 30.0
    tls_failures: Any = None  # Counter child: otel_anomaly_http_refused_requests_total{reason="tls_handshake"}

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        ctx = self.ssl_context  # read once: a reload may swap it concurrently
        if ctx is not None:
            try:
                sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError):
                sock.close()
                raise
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # TLS handshake failures (plain HTTP on the TLS port, unknown CA), resets and
        # timeouts of one client: no traceback on stderr, a debug line only
        log.debug("HTTP connection from %s failed", client_address[0] if client_address else "?", exc_info=True)


class _DeadlineReader(io.RawIOBase):
    """Reads from ``sock`` until the monotonic ``deadline`` at the latest (the whole request, not each read).

    A per-read timeout alone lets a client that trickles one byte just inside it
    keep the connection and its thread forever (slowloris). Raises
    :class:`TimeoutError` once the deadline has passed.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request not received within http.read_timeout")
        self._sock.settimeout(left)
        return self._sock.recv_into(b)


class _QuietHandler(WSGIRequestHandler):
    def setup(self) -> None:
        read_timeout = self.server.read_timeout  # type: ignore[attr-defined]
        deadline = time.monotonic() + read_timeout
        self.request.settimeout(read_timeout)  # the TLS handshake has one deadline for the whole of it (CPython _ssl)
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except OSError:  # plain HTTP, unknown CA, no client certificate, reset or silent (timeout) mid-handshake
                if self.server.tls_failures is not None:  # type: ignore[attr-defined]
                    self.server.tls_failures.inc()  # type: ignore[attr-defined]
                raise
        super().setup()
        # the request line and headers too: all within read_timeout of the connection's start
        self.rfile = io.BufferedReader(_DeadlineReader(self.request, deadline))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@dataclass(frozen=True)
class _BasicAuth:
    user_digest: bytes
    password_digest: bytes
    challenge: str
    protect_probes: bool


def _sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def load_ssl_context(tls: HttpTlsConfig) -> ssl.SSLContext:
    """A server :class:`ssl.SSLContext` from ``http.tls`` (TLS >= 1.2; mTLS with ``client_ca_file``).

    Raises:
        HttpServerError: a file is unreadable, not PEM, or the key does not
            match the certificate (encrypted keys are refused, never prompted for).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for key, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file), ("client_ca_file", tls.client_ca_file)):
        if path is not None and not Path(path).is_file():
            raise HttpServerError(f"http.tls.{key} {path!r} is not a readable file")
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=lambda: b"")
    except (OSError, ssl.SSLError) as exc:
        raise HttpServerError(
            f"cannot load http.tls.cert_file {tls.cert_file!r} with key_file {tls.key_file!r}: {_reason(exc)}"
        ) from None
    if tls.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise HttpServerError(f"cannot load http.tls.client_ca_file {tls.client_ca_file!r}: {_reason(exc)}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)


def load_basic_auth(cfg: BasicAuthConfig) -> _BasicAuth:
    """Read ``password_file`` (surrounding whitespace stripped) into digests.

    Raises:
        HttpServerError: the file is unreadable or empty.
    """
    try:
        password = Path(cfg.password_file).read_bytes().strip()
    except OSError as exc:
        raise HttpServerError(f"cannot read http.basic_auth.password_file {cfg.password_file!r}: {exc.strerror or exc}") from None
    if not password:
        raise HttpServerError(f"http.basic_auth.password_file {cfg.password_file!r} is empty")
    realm = cfg.realm.replace("\\", "\\\\").replace('"', '\\"')
    return _BasicAuth(_sha256(cfg.username.encode("utf-8")), _sha256(password), f'Basic realm="{realm}", charset="UTF-8"', cfg.protect_probes)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``"host:port"`` (``[v6]:port`` too) -> ``(host, port)``; raises ValueError."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"endpoint {endpoint!r} must be host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class HttpServer:
    """Serves the four paths on ``endpoint`` in a background thread.

    Args:
        endpoint: ``host:port`` (port 0 picks a free port; see :attr:`port`).
        registry: the app's registry (self-metrics + the alert collector).
        alerts: returns the alert JSON objects for ``/api/v1/alerts``.
        ready: returns ``(is_ready, reason)`` for ``/readyz``.
        tls: ``http.tls``; None = plain HTTP.
        basic_auth: ``http.basic_auth``; None = no authentication.
        read_timeout: seconds a connection may stay silent (handshake, request line, headers).

    Raises:
        HttpServerError: TLS / password files unusable (see :func:`load_ssl_context`).
        OSError: the address cannot be bound.
    """

    def __init__(
        self,
        endpoint: str,
        registry: CollectorRegistry,
        alerts: Callable[[], Iterable[dict]],
        ready: Callable[[], tuple[bool, str]],
        *,
        tls: HttpTlsConfig | None = None,
        basic_auth: BasicAuthConfig | None = None,
        read_timeout: float = 30.0,
    ) -> None:
        self.host, port = split_endpoint(endpoint)
        self._metrics_app = make_wsgi_app(registry)
        self._alerts = alerts
        self._ready = ready
        ctx = load_ssl_context(tls) if tls is not None else None
        self._basic = load_basic_auth(basic_auth) if basic_auth is not None else None
        self._server = make_server(self.host, port, self._wsgi, server_class=_Server, handler_class=_QuietHandler)
        self._server.ssl_context = ctx
        self._server.read_timeout = read_timeout
        refused = Counter(
            "otel_anomaly_http_refused_requests", "HTTP connections/requests refused: reason tls_handshake or unauthorized.",
            ["reason"], registry=registry,
        )  # fmt: skip
        self._server.tls_failures = refused.labels(reason="tls_handshake")
        self._unauthorized = refused.labels(reason="unauthorized")
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def tls(self) -> bool:
        """True while connections are served over TLS."""
        return self._server.ssl_context is not None

    def reload_credentials(self, tls: HttpTlsConfig | None, basic_auth: BasicAuthConfig | None, read_timeout: float | None = None) -> None:
        """Re-read the TLS and password files and use them for new connections / requests.

        All or nothing: every file is loaded first; on any error nothing
        changes and :class:`HttpServerError` is raised (the running
        certificate and password stay). Connections already open keep the
        certificate they were set up with.
        """
        ctx = load_ssl_context(tls) if tls is not None else None
        basic = load_basic_auth(basic_auth) if basic_auth is not None else None
        self._server.ssl_context = ctx
        self._basic = basic
        if read_timeout is not None:
            self._server.read_timeout = read_timeout

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving (safe before :meth:`start` and when called twice)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def _wsgi(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", b"method not allowed\n")
        basic = self._basic
        if basic is not None and (basic.protect_probes or path not in PROBE_PATHS) and not _authorized(basic, environ):
            self._unauthorized.inc()
            start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "13"),
                                                ("WWW-Authenticate", basic.challenge)])  # fmt: skip
            return [b"unauthorized\n"]
        if path == "/metrics":
            return self._metrics_app(environ, start_response)
        if path == "/healthz":
            return _reply(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            ok, reason = self._ready()
            return _reply(start_response, "200 OK" if ok else "503 Service Unavailable", (reason or ("ready" if ok else "not ready")).encode() + b"\n")
        if path == "/api/v1/alerts":
            alerts = list(self._alerts())
            query = parse_qs(environ.get("QUERY_STRING", ""))
            for key in ("state", "detector", "kind", "service", "severity"):
                if key in query:
                    wanted = set(query[key])
                    alerts = [a for a in alerts if a.get(key) in wanted]
            body = json.dumps({"alerts": alerts}, ensure_ascii=False, default=str).encode("utf-8", "replace")
            return _reply(start_response, "200 OK", body, "application/json")
        if path == "/":
            return _reply(start_response, "200 OK", b"otel-anomaly: /metrics /healthz /readyz /api/v1/alerts\n")
        return _reply(start_response, "404 Not Found", b"not found\n")


def _authorized(basic: _BasicAuth, environ: dict) -> bool:
    """``Authorization: Basic ...`` matches (RFC 7617; scheme case-insensitive, RFC 7235 §2.1)."""
    scheme, _, param = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(param.strip().encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        return False
    user, sep, password = decoded.partition(b":")
    if not sep:
        return False
    # both compared every time (no early exit on a wrong user name)
    user_ok = hmac.compare_digest(_sha256(user), basic.user_digest)
    password_ok = hmac.compare_digest(_sha256(password), basic.password_digest)
    return user_ok and password_ok


def _reply(start_response: Callable, status: str, body: bytes, ctype: str = "text/plain; charset=utf-8") -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]
