"""The simulated shop: services, their operations, and the span attributes they emit.

Thirteen services (``gateway`` is the edge; ``recommendations`` appears only
when a scenario switches it on)::

    gateway ─┬─ frontend ─┬─ catalog ── redis, postgres
             │            ├─ recommendations ── redis        (optional call)
             │            └─ search (gRPC) ── elasticsearch
             ├─ auth (POST /login; gRPC TokenService/Verify) ── postgres, redis
             ├─ cart ── catalog, redis
             ├─ checkout ─┬─ cart
             │            ├─ payment (gRPC) ── postgres
             │            ├─ shipping ── redis
             │            └─ orders ── postgres ──(kafka order-events)──> fulfilment ── postgres
             ├─ orders (GET /orders)
             └─ reports (admin only, ≤ 1 request/min) ── postgres

Each service emits one semantic-convention generation (``old``: 1.17.0 names
such as ``http.status_code``, ``http.method``, ``net.peer.name``; ``new``:
1.26.0 names such as ``http.response.status_code``, ``http.request.method``,
``server.address``), following the OpenTelemetry HTTP, RPC, database and
messaging semantic conventions for span names, kinds, attributes and status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from detector.sim.model import Res

# ------------------------------------------------------------------ services


@dataclass(slots=True)
class Service:
    """Mutable state of one simulated service.

    Attributes:
        name: ``service.name``. gen: ``old`` | ``new`` semconv generation.
        base_error: probability in [0, 1] that one of its server spans fails on its own.
        version: current ``service.version``; bumped by deploys.
        instances: how many processes (each its own OTLP Resource).
        active: False until a scenario switches a new service on.
        log_mode: ``text`` | ``structured`` | ``text_v2`` (see :mod:`detector.sim.generator`).
    """

    name: str
    gen: str
    base_error: float
    language: str
    scope: str
    version: str = "1.0.0"
    instances: int = 2
    active: bool = True
    log_mode: str = "text"
    _res: list = field(default_factory=list)

    def resources(self) -> list[Res]:
        if not self._res:
            self._res = [
                Res(self.name, self.version, f"{self.name}-{i}", self.gen, self.language, self.scope)
                for i in range(self.instances)
            ]
        return self._res

    def bump(self, version: str | None = None) -> str:
        """Deploy: set (or bump the minor of) ``service.version``; returns the new version."""
        if version is None:
            major, minor, patch = (int(x) for x in self.version.split("."))
            version = f"{major}.{minor + 1}.0"
        self.version = version
        self._res = []
        return version

    def set_gen(self, gen: str) -> None:
        self.gen = gen
        self._res = []


def default_services() -> dict[str, Service]:
    """The shop's services with their base error rates (0.05 % .. 10 %)."""
    specs = [
        # name, gen, base error, language, instrumentation scope
        ("gateway", "new", 0.0005, "go", "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"),
        ("frontend", "new", 0.001, "python", "opentelemetry.instrumentation.flask"),
        ("auth", "old", 0.0005, "go", "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"),
        ("catalog", "new", 0.002, "java", "io.opentelemetry.spring-webmvc-6.0"),
        ("search", "old", 0.08, "go", "go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"),
        ("recommendations", "new", 0.10, "python", "opentelemetry.instrumentation.fastapi"),
        ("cart", "new", 0.003, "go", "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"),
        ("checkout", "new", 0.005, "java", "io.opentelemetry.spring-webmvc-6.0"),
        ("payment", "old", 0.01, "java", "io.opentelemetry.grpc-1.6"),
        ("shipping", "old", 0.02, "python", "opentelemetry.instrumentation.flask"),
        ("orders", "new", 0.002, "go", "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"),
        ("fulfilment", "old", 0.005, "java", "io.opentelemetry.kafka-clients-2.6"),
        ("reports", "old", 0.03, "python", "opentelemetry.instrumentation.django"),
    ]
    out = {}
    for name, gen, err, lang, scope in specs:
        out[name] = Service(name, gen, err, lang, scope, instances=1 if name in ("reports", "recommendations") else 2)
    out["recommendations"].active = False
    return out


# -------------------------------------------------------------- operations


@dataclass(slots=True)
class Step:
    """One thing an operation does, in order.

    kind: ``call`` (target = op key of another service), ``db`` (target = (system, operation, table)),
    ``cache`` (target = redis command), ``produce`` (target = topic).
    critical: a failing ``call``/``db`` makes this operation fail too.
    prob: probability the step happens at all.
    """

    kind: str
    target: Any
    critical: bool = True
    prob: float = 1.0


@dataclass(slots=True)
class Op:
    """One server-side operation of a service.

    proto ``http`` (method + route) | ``grpc`` (rpc service + method) | ``consumer`` (topic).
    ms: median own processing time in milliseconds (log-normal, sigma 0.45).
    """

    service: str
    key: str
    proto: str
    method: str = ""
    route: str = ""
    rpc_service: str = ""
    rpc_method: str = ""
    ms: float = 5.0
    steps: list[Step] = field(default_factory=list)
    attrs: Callable | None = None


def _ops() -> dict[str, Op]:
    ops = [
        Op("frontend", "GET /", "http", "GET", "/", ms=6, steps=[
            Step("call", "catalog GET /products"),
            Step("call", "recommendations GET /recommendations", critical=False)]),
        Op("frontend", "GET /products/{id}", "http", "GET", "/products/{id}", ms=5, steps=[
            Step("call", "catalog GET /products/{id}"),
            Step("call", "recommendations GET /recommendations", critical=False, prob=0.5)]),
        Op("frontend", "GET /search", "http", "GET", "/search", ms=4, steps=[Step("call", "search SearchService/Query")]),
        Op("catalog", "GET /products", "http", "GET", "/products", ms=4, steps=[
            Step("cache", "GET"), Step("db", ("postgresql", "SELECT", "products"), prob=0.3)]),
        Op("catalog", "GET /products/{id}", "http", "GET", "/products/{id}", ms=3, steps=[
            Step("cache", "GET"), Step("db", ("postgresql", "SELECT", "products"), prob=0.2)]),
        Op("search", "SearchService/Query", "grpc", rpc_service="shop.search.v1.SearchService", rpc_method="Query", ms=12,
           steps=[Step("db", ("elasticsearch", "search", "products"))]),
        Op("recommendations", "GET /recommendations", "http", "GET", "/recommendations", ms=15, steps=[Step("cache", "GET")]),
        Op("auth", "POST /login", "http", "POST", "/login", ms=35, steps=[Step("db", ("postgresql", "SELECT", "users"))]),
        Op("auth", "TokenService/Verify", "grpc", rpc_service="shop.auth.v1.TokenService", rpc_method="Verify", ms=1.5,
           steps=[Step("cache", "GET")]),
        Op("cart", "GET /cart", "http", "GET", "/cart", ms=2, steps=[Step("cache", "HGETALL")]),
        Op("cart", "POST /cart/items", "http", "POST", "/cart/items", ms=3, steps=[
            Step("call", "catalog GET /products/{id}"), Step("cache", "HSET")]),
        Op("checkout", "POST /checkout", "http", "POST", "/checkout", ms=10, steps=[
            Step("call", "cart GET /cart"),
            Step("call", "payment PaymentService/Charge"),
            Step("call", "shipping POST /quote"),
            Step("call", "orders POST /orders")]),
        Op("payment", "PaymentService/Charge", "grpc", rpc_service="shop.payment.v1.PaymentService", rpc_method="Charge", ms=60,
           steps=[Step("db", ("postgresql", "INSERT", "payments"))]),
        Op("shipping", "POST /quote", "http", "POST", "/quote", ms=8, steps=[Step("cache", "GET")]),
        Op("orders", "POST /orders", "http", "POST", "/orders", ms=6, steps=[
            Step("db", ("postgresql", "INSERT", "orders")), Step("produce", "order-events")]),
        Op("orders", "GET /orders", "http", "GET", "/orders", ms=4, steps=[Step("db", ("postgresql", "SELECT", "orders"))]),
        Op("fulfilment", "order-events process", "consumer", ms=20, steps=[Step("db", ("postgresql", "UPDATE", "shipments"))]),
        Op("reports", "GET /reports", "http", "GET", "/reports", ms=250, steps=[Step("db", ("postgresql", "SELECT", "orders"))]),
    ]
    return {f"{o.service} {o.key}": o for o in ops}


OPS: dict[str, Op] = _ops()

# Gateway routes: (method, route, backend op key or special, protected, admin only)
GATEWAY_ROUTES = {
    "home": ("GET", "/", "frontend GET /", False, False),
    "product": ("GET", "/products/{id}", "frontend GET /products/{id}", False, False),
    "search": ("GET", "/search", "frontend GET /search", False, False),
    "login": ("POST", "/api/login", "auth POST /login", False, False),
    "cart_view": ("GET", "/api/cart", "cart GET /cart", True, False),
    "cart_add": ("POST", "/api/cart/items", "cart POST /cart/items", True, False),
    "checkout": ("POST", "/api/checkout", "checkout POST /checkout", True, False),
    "orders": ("GET", "/api/orders", "orders GET /orders", True, False),
    "admin": ("GET", "/api/admin/reports", "reports GET /reports", True, True),
}

# Peak requests per second at the gateway for rate_scale = 1 (before seasonality).
ENTRY_RATES = {
    "home": 1.0,
    "product": 1.4,
    "search": 0.5,
    "login": 0.15,
    "cart_view": 0.45,
    "cart_add": 0.35,
    "checkout": 0.12,
    "orders": 0.18,
}
ADMIN_RATE = 0.5 / 60  # reports: 0.5 request/min, flat (a low-traffic service)

# ------------------------------------------------------- attribute builders
# Each returns a fresh list of (key, value) pairs.


def http_server_attrs(gen: str, method: str, route: str, target: str, code: int) -> list:
    if gen == "new":
        return [
            ("http.request.method", method),
            ("http.route", route),
            ("url.path", target),
            ("url.scheme", "http"),
            ("http.response.status_code", code),
            ("network.protocol.version", "1.1"),
        ]
    return [
        ("http.method", method),
        ("http.route", route),
        ("http.target", target),
        ("http.scheme", "http"),
        ("http.status_code", code),
        ("http.flavor", "1.1"),
    ]


def http_client_attrs(gen: str, method: str, callee: str, target: str, code: int) -> list:
    if gen == "new":
        return [
            ("http.request.method", method),
            ("server.address", callee),
            ("server.port", 8080),
            ("url.full", f"http://{callee}:8080{target}"),
            ("http.response.status_code", code),
            ("peer.service", callee),
        ]
    return [
        ("http.method", method),
        ("net.peer.name", callee),
        ("net.peer.port", 8080),
        ("http.url", f"http://{callee}:8080{target}"),
        ("http.status_code", code),
        ("peer.service", callee),
    ]


def grpc_attrs(gen: str, rpc_service: str, rpc_method: str, code: int, callee: str | None) -> list:
    out = [("rpc.system", "grpc"), ("rpc.service", rpc_service), ("rpc.method", rpc_method), ("rpc.grpc.status_code", code)]
    if callee is not None:
        if gen == "new":
            out += [("server.address", callee), ("server.port", 50051)]
        else:
            out += [("net.peer.name", callee), ("net.peer.port", 50051)]
        out.append(("peer.service", callee))
    return out


_DB_HOST = {"postgresql": "postgres", "redis": "redis", "elasticsearch": "elasticsearch"}


def db_attrs(gen: str, system: str, operation: str, table: str, statement: str) -> list:
    host = _DB_HOST[system]
    if gen == "new":
        out = [("db.system", system), ("db.operation.name", operation), ("server.address", host)]
        if system != "redis":
            out += [("db.namespace", "shop"), ("db.collection.name", table)]
        out.append(("db.query.text", statement))
        return out
    out = [("db.system", system), ("db.operation", operation), ("net.peer.name", host)]
    if system != "redis":
        out += [("db.name", "shop"), ("db.sql.table", table)]
    out.append(("db.statement", statement))
    return out


def messaging_attrs(gen: str, topic: str, op: str, message_id: str) -> list:
    out = [("messaging.system", "kafka"), ("messaging.destination.name", topic), ("messaging.message.id", message_id)]
    if gen == "new":
        out += [("messaging.operation.type", op), ("server.address", "kafka")]
    else:
        out += [("messaging.operation", op), ("net.peer.name", "kafka")]
    if op in ("process", "receive"):
        out.append(("messaging.kafka.consumer.group", "fulfilment"))
    return out


def client_address_attrs(gen: str, ip: str, ua: str | None) -> list:
    if gen == "new":
        out = [("client.address", ip)]
        if ua:
            out.append(("user_agent.original", ua))
        return out
    out = [("http.client_ip", ip)]
    if ua:
        out.append(("http.user_agent", ua))
    return out


def user_attrs(gen: str, user: str) -> tuple:
    return ("user.id", user) if gen == "new" else ("enduser.id", user)


# gRPC status codes whose server span status is ERROR (OTel RPC semconv, gRPC section)
GRPC_SERVER_ERRORS = {2, 4, 12, 13, 14, 15}
