"""The HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz``, ``/api/v1/alerts``.

``/api/v1/alerts`` takes optional filters ``state``, ``detector``, ``kind``,
``service``, ``severity`` (repeatable, exact match), e.g. ``?state=firing&detector=auth``.

stdlib :mod:`wsgiref` with one thread per request (``ThreadingMixIn``);
``/metrics`` is prometheus-client's WSGI app on the app's own registry, which
serves the Prometheus text format, or OpenMetrics (with exemplars) when the
``Accept`` header asks for ``application/openmetrics-text``, gzip-compressed
when ``Accept-Encoding`` allows. Handlers only read immutable snapshots.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger("otel_anomaly.http")


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


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
    """

    def __init__(
        self,
        endpoint: str,
        registry: CollectorRegistry,
        alerts: Callable[[], Iterable[dict]],
        ready: Callable[[], tuple[bool, str]],
    ) -> None:
        self.host, port = split_endpoint(endpoint)
        self._metrics_app = make_wsgi_app(registry)
        self._alerts = alerts
        self._ready = ready
        self._server = make_server(self.host, port, self._wsgi, server_class=_Server, handler_class=_QuietHandler)
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

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


def _reply(start_response: Callable, status: str, body: bytes, ctype: str = "text/plain; charset=utf-8") -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]
