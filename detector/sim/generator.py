"""The deterministic shop simulator: event-time batches of spans and logs.

``Simulator(start, duration, seed=…).batches()`` yields one
:class:`~detector.sim.model.SimBatch` per ``batch_seconds`` of event time. The
same seed and scenario always give the same bytes (one ``random.Random``; ids
come from it too). Incidents (:mod:`detector.sim.incidents`) change the
simulator's state at their onset (deploys, fault probabilities, attribute
transforms, attack traffic) and write ground-truth labels.

Rates: with ``rate_scale=1`` the gateway sees ≈ 4.3 requests/s at the daily peak:
≈ 30 spans/s and ≈ 2 log records/s, ≈ 70 spans/s in a flash-sale burst, 1.6 M
spans per weekday (``tests/bench/bench_sim.py``); ``reports`` gets 0.5 request/min;
``rate_scale`` multiplies the rest. Spans of one
trace are emitted in the batch of the trace's start; traces last < 3 s, so
records are at most a few seconds out of order — well within the pipeline's
allowed lateness.

Semantics follow the OpenTelemetry conventions: HTTP server spans are ERROR for
5xx only (4xx leaves the status unset), HTTP client spans for ≥ 400; gRPC server
spans are ERROR for UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
UNAVAILABLE, DATA_LOSS, client spans for any non-OK code.
"""

from __future__ import annotations

import heapq
import math
import random
from typing import Any, Callable, Iterator

from detector.sim import topology as topo
from detector.sim.model import SimBatch
from detector.sim.traffic import DAY, Bursts, Population, daily, poisson, weekly

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5
ERROR = 2
_DB_MS = {"postgresql": 2.5, "redis": 0.4, "elasticsearch": 9.0}
_CURRENCIES = ("EUR", "EUR", "EUR", "USD", "GBP")
_PAY_METHODS = ("card",) * 7 + ("paypal",) * 2 + ("giftcard",)
_CARRIERS = ("dhl", "ups", "gls", "dpd")
_QUERIES = ("shoes", "red dress", "laptop bag", "socks", "rain jacket", "usb-c cable", "mug", "headphones")


class Simulator:
    """Generate the shop's telemetry for ``[start, start + duration)`` (seconds since the epoch).

    Args:
        start, duration: event-time range in seconds.
        seed: everything random derives from it.
        rate_scale: multiplies every entry rate (not the admin/reports rate).
        batch_seconds: event-time span of one yielded batch (1–5 s is typical).
        incidents: objects following :class:`detector.sim.incidents.Incident`.
        deploys_per_day: harmless ``service.version`` bumps per service per day (work hours).
        new_service_at: time (s) the ``recommendations`` service appears, or None.
        doubling_at, doubling_ramp: traffic doubles from ``doubling_at`` over ``doubling_ramp`` seconds.
        logs: emit log records.
    """

    def __init__(
        self,
        start: float,
        duration: float,
        seed: int = 1,
        rate_scale: float = 1.0,
        batch_seconds: float = 2.0,
        incidents: list | None = None,
        deploys_per_day: float = 1.0,
        new_service_at: float | None = None,
        doubling_at: float | None = None,
        doubling_ramp: float = 3600.0,
        logs: bool = True,
        scenario: str = "",
    ) -> None:
        self.start = float(start)
        self.end = float(start + duration)
        self.seed = seed
        self.rng = random.Random(seed)
        self.rate_scale = rate_scale
        self.batch_seconds = batch_seconds
        self.scenario = scenario
        self.services = topo.default_services()
        self.pop = Population(seed)
        self.bursts = Bursts(seed)
        self.emit_logs = logs
        self.new_service_at = new_service_at
        self.doubling_at = doubling_at
        self.doubling_ramp = doubling_ramp
        # incident hooks
        self.extra_fail: dict[tuple, tuple[float, Any]] = {}
        self.transforms: dict[tuple[str, str], list[tuple[str | None, Callable]]] = {}
        self.bypass_routes: set[str] = set()
        self.incidents = list(incidents or [])
        self.labels: list[dict] = []
        self.deploy_log: list[tuple[float, str, str]] = []
        self._heap: list = []
        self._seq = 0
        self._spans: list = []
        self._logs: list = []
        self._deploys = self._plan_deploys(deploys_per_day)
        self._order_seq = 100000
        self._t = self.start
        self._di = 0
        for inc in self.incidents:
            inc.bind(self)

    # ------------------------------------------------------------ schedule

    def _plan_deploys(self, per_day: float) -> list[tuple[float, str]]:
        r = random.Random(self.seed * 31 + 5)
        out = []
        day0 = int(self.start // DAY)
        day1 = int(self.end // DAY) + 1
        for day in range(day0, day1):
            for name in self.services:
                n = poisson(r, per_day)
                for _ in range(n):
                    t = day * DAY + r.uniform(9 * 3600, 18 * 3600)
                    if self.start <= t < self.end:
                        out.append((t, name))
        out.sort()
        return out

    def schedule(self, t: float, fn: Callable, *args: Any) -> None:
        """Run ``fn(t, *args)`` when the generator reaches event time ``t``."""
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def deploy(self, t: float, service: str, version: str | None = None) -> str:
        """Bump ``service.version`` of ``service`` at ``t``; returns the new version."""
        v = self.services[service].bump(version)
        self.deploy_log.append((t, service, v))
        return v

    def multiplier(self, t: float) -> float:
        """Traffic multiplier at ``t``: daily × weekly × burst × growth."""
        m = daily(t) * weekly(t) * self.bursts.factor(t)
        if self.doubling_at is not None and t >= self.doubling_at:
            m *= 1.0 + min(1.0, (t - self.doubling_at) / max(self.doubling_ramp, 1.0))
        return m

    # ------------------------------------------------------------- driving

    def batches(self, until: float | None = None) -> Iterator[SimBatch]:
        """Yield batches in event-time order until ``start + duration`` (or ``until``, seconds).

        Resumable: a later call continues where the previous one stopped, so a
        simulator can be run to a point, copied (``copy.deepcopy``), given more
        incidents (:meth:`add_incidents`) and continued.
        """
        bs = self.batch_seconds
        deploys = self._deploys
        stop = self.end if until is None else min(self.end, until)
        while self._t < stop:
            t = self._t
            batch = SimBatch(t, min(t + bs, self.end))
            self._spans = batch.spans
            self._logs = batch.logs
            s = t
            while s < batch.end:
                while self._di < len(deploys) and deploys[self._di][0] < s + 1:
                    self.deploy(deploys[self._di][0], deploys[self._di][1])
                    self._di += 1
                self._tick(s, min(1.0, batch.end - s))
                s += 1.0
            self._t = batch.end
            yield batch

    def add_incidents(self, incidents: list) -> None:
        """Bind more incidents (they act from their own start times) and add their labels."""
        for inc in incidents:
            inc.bind(self)
            self.incidents.append(inc)
            self.labels.extend(inc.labels())

    def _tick(self, s: float, dt: float) -> None:
        rng = self.rng
        for inc in self.incidents:
            inc.tick(self, s)
        if self.new_service_at is not None and s >= self.new_service_at:
            self.services["recommendations"].active = True
        m = self.multiplier(s) * self.rate_scale * dt
        for entry, rate in topo.ENTRY_RATES.items():
            for _ in range(poisson(rng, rate * m)):
                self.user_request(s + rng.random() * dt, entry)
        if rng.random() < topo.ADMIN_RATE * dt:
            self.user_request(s + rng.random() * dt, "admin")
        heap = self._heap
        while heap and heap[0][0] < s + dt:
            tt, _, fn, args = heapq.heappop(heap)
            fn(tt, *args)

    # ----------------------------------------------------------- utilities

    def _tid(self) -> bytes:
        return (self.rng.getrandbits(128) | 1).to_bytes(16, "big")

    def _sid(self) -> bytes:
        return (self.rng.getrandbits(64) | 1).to_bytes(8, "big")

    def _lat(self, ms: float) -> float:
        return ms * math.exp(self.rng.gauss(0.0, 0.45)) / 1000.0

    def _res(self, svc: str):
        rs = self.services[svc].resources()
        return rs[0] if len(rs) == 1 else rs[self.rng.randrange(len(rs))]

    def _emit(self, res, tid, sid, pid, name, kind, start, end, attrs, status, msg="") -> None:
        key = (res.service, _KIND_NAME[kind])
        tfs = self.transforms.get(key)
        if tfs:
            op = name
            for only, fn in tfs:
                if only is None or only == op:
                    name, attrs = fn(name, attrs, self.rng)
        self._spans.append((res, tid, sid, pid, name, kind, start, end, attrs, status, msg))

    def log(self, res, t: float, sev: int, body: Any, attrs: list, tid: bytes = b"", sid: bytes = b"") -> None:
        """Append one log record (severity_number per the OTel logs data model: 9 INFO, 13 WARN, 17 ERROR)."""
        if self.emit_logs:
            self._logs.append((res, t, sev, body, attrs, tid, sid))

    def fail_code(self, svc: str, op: str, caller: str) -> Any:
        """Decide whether this server operation fails by itself; returns None or the code to answer."""
        u = self.rng.random()
        p = self.services[svc].base_error
        if u < p:
            return "default"
        if self.extra_fail:
            for key in ((svc, None, None), (svc, op, None), (svc, None, caller), (svc, op, caller)):
                v = self.extra_fail.get(key)
                if v is not None:
                    p += v[0]
                    if u < p:
                        return v[1] or "default"
        return None

    # ------------------------------------------------------------- traffic

    def user_request(self, t: float, entry: str, **kw: Any) -> int:
        """One request through the gateway. Returns the HTTP status the client got.

        Keyword args override the normal choice of caller: ``user`` (a
        :class:`~detector.sim.traffic.User` or None for anonymous), ``ip``, ``ua``,
        ``session`` (token id; None = no token), ``login_ok``, ``login_name``.
        """
        rng = self.rng
        method, route, backend, protected, admin_only = topo.GATEWAY_ROUTES[entry]
        ctx: dict[str, Any] = {}
        if "user" in kw or "ip" in kw:
            user = kw.get("user")
            ip = kw.get("ip") or (user.ips[0] if user else self.pop.visitor(rng)[0])
            ua = kw.get("ua") or (user.uas[0] if user else self.pop.visitor(rng)[1])
            session = kw.get("session", user.session if user else None)
        elif entry == "login":
            user = self.pop.pick(rng)
            ip, ua = rng.choice(user.ips), rng.choice(user.uas)
            session = None
            return self._login_flow(t, user, ip, ua)
        elif protected:
            user = self.pop.admins[rng.randrange(len(self.pop.admins))] if admin_only else self.pop.pick(rng)
            ip, ua = rng.choice(user.ips), rng.choice(user.uas)
            if user.session is None:
                user.session = "%016x" % rng.getrandbits(64)
            session = user.session
            r = rng.random()
            if r < 0.03:  # crawlers, expired cookies, logged-out tabs: anonymous
                ip, ua = self.pop.visitor(rng)
                user, session = None, None
            elif r < 0.033:  # a stale token
                session = "%016x" % rng.getrandbits(64)
            elif not admin_only and r < 0.0335:  # a customer clicking an admin link
                entry = "admin"
                method, route, backend, protected, admin_only = topo.GATEWAY_ROUTES[entry]
        else:
            user = None
            ip, ua = self.pop.visitor(rng)
            session = None
        ctx["user"] = user
        ctx["ip"] = ip
        ctx["ua"] = ua
        ctx["login_ok"] = kw.get("login_ok", True)
        ctx["login_name"] = kw.get("login_name") or (user.name if user else "")
        if "token_valid" in kw:
            ctx["token_valid"] = kw["token_valid"]
        else:
            ctx["token_valid"] = session is not None and (user is not None and session == user.session)
        return self._gateway(t, entry, method, route, backend, protected, admin_only, ctx, session)

    def _login_flow(self, t: float, user, ip: str, ua: str) -> int:
        """A normal login: 2 % typo then success 4–30 s later; 0.3 % wrong username first; 0.3 % give up."""
        rng = self.rng
        r = rng.random()
        if r < 0.02:
            self.user_request(t, "login", user=user, ip=ip, ua=ua, session=None, login_ok=False)
            self.schedule(t + rng.uniform(4, 30), self._login_ok, user, ip, ua)
            return 401
        if r < 0.023:
            bad = user.name.replace("@shop.example", "@shop.exmaple")
            self.user_request(t, "login", user=user, ip=ip, ua=ua, session=None, login_ok=False, login_name=bad)
            self.schedule(t + rng.uniform(5, 40), self._login_ok, user, ip, ua)
            return 401
        if r < 0.026:
            for i in range(rng.randint(2, 3)):
                self.schedule(t + i * rng.uniform(8, 30), self._login_fail, user, ip, ua)
            return 401
        return self._login_ok(t, user, ip, ua)

    def _login_ok(self, t: float, user, ip: str, ua: str) -> int:
        code = self.user_request(t, "login", user=user, ip=ip, ua=ua, session=None, login_ok=True)
        if code == 200:
            user.session = "%016x" % self.rng.getrandbits(64)
        return code

    def _login_fail(self, t: float, user, ip: str, ua: str) -> int:
        return self.user_request(t, "login", user=user, ip=ip, ua=ua, session=None, login_ok=False)

    # ----------------------------------------------------------- the edge

    def _gateway(self, t, entry, method, route, backend, protected, admin_only, ctx, session) -> int:
        rng = self.rng
        res = self._res("gateway")
        tid, sid = self._tid(), self._sid()
        cur = t + self._lat(0.4)
        code = 200
        user = ctx["user"]
        forward = True
        if protected:
            if session is None:
                forward = route in self.bypass_routes
                code = 200 if forward else 401
            else:
                cur, gcode = self._call("gateway", res, "auth TokenService/Verify", tid, sid, cur, ctx)
                if gcode == 16:
                    code, forward = 401, False
                elif gcode != 0:
                    code, forward = 503, False
                elif admin_only and (user is None or not user.admin):
                    code, forward = 403, False
        if forward:
            target = route
            if "{id}" in route:
                ctx["pid"] = pid = rng.randint(1, 5000)
                target = route.replace("{id}", str(pid))
            ctx["target"] = target
            cur, code = self._call("gateway", res, backend, tid, sid, cur, ctx)
            if code >= 500:
                code = 502 if code != 503 else 503
        end = cur + self._lat(0.3)
        attrs = topo.http_server_attrs("new", method, route, ctx.get("target", route), code)
        attrs += topo.client_address_attrs("new", ctx["ip"], ctx["ua"])
        if user is not None and session is not None and ctx.get("token_valid"):
            attrs.append(("user.id", user.name))
        if session is not None:
            attrs.append(("session.id", session))
        self._emit(res, tid, sid, b"", f"{method} {route}", SERVER, t, end, attrs, ERROR if code >= 500 else 0)
        if code >= 500:
            self.log(res, end, 17, f"upstream error on {method} {route}: status {code}", [("http.route", route)], tid, sid)
        return code

    # ------------------------------------------------------ calls & serving

    def _call(self, caller: str, cres, op_key: str, tid: bytes, psid: bytes, t: float, ctx: dict) -> tuple[float, int]:
        """A client span from ``caller`` to the op's service; returns (end, HTTP status or gRPC code)."""
        op = topo.OPS[op_key]
        callee = op.service
        if not self.services[callee].active:
            return t, 0 if op.proto == "grpc" else 200
        csid = self._sid()
        start = t
        net = self._lat(0.6)
        end_srv, code = self._serve(op, tid, csid, start + net, caller, ctx)
        end = end_srv + self._lat(0.5)
        gen = cres.gen
        if op.proto == "grpc":
            attrs = topo.grpc_attrs(gen, op.rpc_service, op.rpc_method, code, callee)
            name = f"{op.rpc_service}/{op.rpc_method}"
            status = ERROR if code != 0 else 0
        else:
            target = ctx.get("target", op.route) if "{id}" in op.route else op.route
            if "{id}" in op.route and "pid" in ctx:
                target = op.route.replace("{id}", str(ctx["pid"]))
            attrs = topo.http_client_attrs(gen, op.method, callee, target, code)
            name = op.method if gen == "new" else f"HTTP {op.method}"
            status = ERROR if code >= 400 else 0
        extra = _CLIENT_EXTRA.get(op_key)
        if extra is not None:
            attrs += extra(self, ctx)
        self._emit(cres, tid, csid, psid, name, CLIENT, start, end, attrs, status)
        return end, code

    def _serve(self, op, tid: bytes, psid: bytes, t: float, caller: str, ctx: dict) -> tuple[float, int]:
        svc = op.service
        res = self._res(svc)
        gen = res.gen
        sid = self._sid()
        rng = self.rng
        cur = t + self._lat(op.ms * 0.5)
        dep_failed = False
        key = f"{svc} {op.key}"
        for step in op.steps:
            if step.prob < 1.0 and rng.random() >= step.prob:
                continue
            if step.kind == "call":
                cur, c = self._call(svc, res, step.target, tid, sid, cur, ctx)
                if step.critical and (c >= 500 if c >= 100 else c not in (0, 16, 7, 5)):
                    dep_failed = True
                    break
            elif step.kind == "cache":
                cur = self._db(res, tid, sid, cur, "redis", step.target, "", ctx)
            elif step.kind == "db":
                system, operation, table = step.target
                cur = self._db(res, tid, sid, cur, system, operation, table, ctx)
            elif step.kind == "produce":
                cur = self._produce(res, tid, sid, cur, step.target, ctx)
        cur += self._lat(op.ms * 0.5)
        own = self.fail_code(svc, op.key, caller)
        reason = ""
        if op.proto == "grpc":
            if own is not None:
                code = 14 if own == "default" else int(own)
                reason = "backend unavailable" if code == 14 else f"rejected with gRPC status {code}"
            elif dep_failed:
                code, reason = 13, "dependency failed"
            else:
                code = 0
                if key == "auth TokenService/Verify" and not ctx.get("token_valid", True):
                    code = 16
            attrs = topo.grpc_attrs(gen, op.rpc_service, op.rpc_method, code, None)
            name = f"{op.rpc_service}/{op.rpc_method}"
            status = ERROR if code in topo.GRPC_SERVER_ERRORS else 0
            failed = status == ERROR or (own is not None)
        else:
            if own is not None:
                code = 500 if own == "default" else int(own)
                reason = "internal error" if code == 500 else f"status {code}"
            elif dep_failed:
                code, reason = 502, "dependency failed"
            else:
                code = 200
                if key == "auth POST /login" and not ctx.get("login_ok", True):
                    code = 401
            target = op.route
            if "{id}" in op.route:
                target = op.route.replace("{id}", str(ctx.get("pid", 1)))
            attrs = topo.http_server_attrs(gen, op.method, op.route, target, code)
            name = f"{op.method} {op.route}"
            status = ERROR if code >= 500 else 0
            failed = code >= 500
        extra = _SERVER_EXTRA.get(key)
        if extra is not None:
            attrs += extra(self, ctx, gen)
        r = rng.random()
        if r < 0.03:
            attrs.append(("http.request.body.size" if op.proto == "http" else "rpc.request.size", rng.randint(80, 4000)))
        elif r < 0.04:
            attrs.append(("app.debug", True))
        self._emit(res, tid, sid, psid, name, SERVER, t, cur, attrs, status, reason if status == ERROR else "")
        if self.emit_logs:
            lg = _LOGS.get(key)
            if lg is not None:
                lg(self, res, cur, ctx, tid, sid)
            if failed:
                self.log(
                    res, cur, 17,
                    f"{name} failed: {reason or 'error'} (trace {tid.hex()[:8]})",
                    [("exception.type", "UpstreamError" if dep_failed else "ServerError"), ("exception.message", reason or "error")],
                    tid, sid,
                )
        return cur, code

    def _db(self, res, tid, psid, t, system, operation, table, ctx) -> float:
        d = self._lat(_DB_MS[system])
        if system == "redis":
            stmt = f"{operation} {res.service}:{self.rng.randint(1, 9999)}"
            name = operation
        elif system == "elasticsearch":
            stmt = '{"query":{"match":{"title":"?"}}}'
            name = f"{operation} {table}"
        else:
            stmt = {
                "SELECT": f"SELECT * FROM {table} WHERE id = $1",
                "INSERT": f"INSERT INTO {table} VALUES ($1, $2, $3)",
                "UPDATE": f"UPDATE {table} SET state = $1 WHERE id = $2",
            }[operation]
            name = f"{operation} shop.{table}"
        attrs = topo.db_attrs(res.gen, system, operation, table, stmt)
        self._emit(res, tid, self._sid(), psid, name, CLIENT, t, t + d, attrs, 0)
        return t + d + 0.0001

    def _produce(self, res, tid, psid, t, topic, ctx) -> float:
        sid = self._sid()
        d = self._lat(1.2)
        mid = "%012x" % self.rng.getrandbits(48)
        gen = res.gen
        self._emit(res, tid, sid, psid, f"{topic} publish", PRODUCER, t, t + d,
                   topo.messaging_attrs(gen, topic, "publish", mid), 0)
        if self.services["fulfilment"].active:
            lag = self._lat(150)
            op = topo.OPS["fulfilment order-events process"]
            cres = self._res("fulfilment")
            csid = self._sid()
            cstart = t + d + lag
            cur = cstart + self._lat(op.ms * 0.5)
            for step in op.steps:
                system, operation, table = step.target
                cur = self._db(cres, tid, csid, cur, system, operation, table, ctx)
            cur += self._lat(op.ms * 0.5)
            own = self.fail_code("fulfilment", op.key, "orders")
            attrs = topo.messaging_attrs(cres.gen, topic, "process", mid)
            self._emit(cres, tid, csid, sid, f"{topic} process", CONSUMER, cstart, cur, attrs,
                       ERROR if own is not None else 0, "processing failed" if own is not None else "")
            if self.emit_logs:
                if own is not None:
                    self.log(cres, cur, 17, f"Failed to schedule shipment for message {mid}: carrier API error",
                             [("exception.type", "CarrierError")], tid, csid)
                elif self.rng.random() < 0.5:
                    self.log(cres, cur, 9, f"Shipment scheduled for order {ctx.get('oid', '?')} (carrier {self.rng.choice(_CARRIERS)})",
                             [], tid, csid)
        return t + d


_KIND_NAME = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}

# ------------------------------------------------------------ per-op extras


def _checkout_payment_client(sim: Simulator, ctx: dict) -> list:
    amt = ctx.setdefault("amount", round(sim.rng.uniform(5, 400), 2))
    return [("app.payment.amount", amt), ("app.payment.currency", sim.rng.choice(_CURRENCIES))]


_CLIENT_EXTRA = {"payment PaymentService/Charge": _checkout_payment_client}


def _catalog_product(sim, ctx, gen):
    return [("app.product.id", ctx.get("pid", 1))]


def _payment_charge(sim, ctx, gen):
    amt = ctx.setdefault("amount", round(sim.rng.uniform(5, 400), 2))
    # service-to-service call authenticated with checkout's service token (mTLS peer = a checkout pod)
    peer = "10.1.0.11" if sim.rng.random() < 0.5 else "10.1.0.12"
    return [("app.payment.method", sim.rng.choice(_PAY_METHODS)), ("app.payment.amount", amt),
            topo.user_attrs(gen, "svc-checkout"), ("net.sock.peer.addr" if gen == "old" else "client.address", peer)]


def _orders_post(sim, ctx, gen):
    sim._order_seq += 1
    ctx["oid"] = oid = f"ORD-{sim._order_seq}"
    ctx["items"] = n = sim.rng.randint(1, 6)
    return [("app.order.id", oid), ("app.order.items", n)]


def _cart_add(sim, ctx, gen):
    return [("app.cart.items", sim.rng.randint(1, 12))]


def _search(sim, ctx, gen):
    return [("app.search.results", sim.rng.randint(0, 300))]


def _login(sim, ctx, gen):
    out = topo.client_address_attrs(gen, ctx["ip"], ctx["ua"])
    if ctx.get("login_name"):
        out.append(topo.user_attrs(gen, ctx["login_name"]))
    return out


_LOCALES = ("en-GB",) * 5 + ("de-DE",) * 3 + ("fr-FR",) * 2 + ("nl-NL",)


def _frontend(sim, ctx, gen):
    loc = ctx.get("locale")
    if loc is None:
        loc = ctx["locale"] = sim.rng.choice(_LOCALES)
    return [("app.locale", loc)]


_SERVER_EXTRA = {
    "frontend GET /": _frontend,
    "frontend GET /products/{id}": _frontend,
    "frontend GET /search": _frontend,
    "catalog GET /products/{id}": _catalog_product,
    "payment PaymentService/Charge": _payment_charge,
    "orders POST /orders": _orders_post,
    "cart POST /cart/items": _cart_add,
    "search SearchService/Query": _search,
    "auth POST /login": _login,
}

# -------------------------------------------------------------------- logs


def _log_catalog(sim, res, t, ctx, tid, sid):
    if sim.rng.random() < 0.3:
        n, src, ms = sim.rng.randint(1, 48), sim.rng.choice(("cache", "cache", "db")), sim.rng.randint(1, 40)
        mode = sim.services["catalog"].log_mode
        if mode == "structured":
            body: Any = {"event": "products.fetched", "count": n, "source": src, "duration_ms": ms}
        elif mode == "text_v2":
            body = f"products_fetched count={n} source={src} duration_ms={ms}"
        else:
            body = f"Fetched {n} products from {src} in {ms} ms"
        sim.log(res, t, 9, body, [], tid, sid)


def _log_cart(sim, res, t, ctx, tid, sid):
    sim.log(res, t, 9, f"Cart {sim.rng.getrandbits(32):08x} updated: {sim.rng.randint(1, 12)} items", [], tid, sid)


def _log_checkout(sim, res, t, ctx, tid, sid):
    sim.log(res, t, 9, {"event": "checkout.completed", "order_id": ctx.get("oid", ""), "amount": ctx.get("amount", 0.0),
                        "items": ctx.get("items", 0)}, [("event.name", "checkout.completed")], tid, sid)


def _log_payment(sim, res, t, ctx, tid, sid):
    sim.log(res, t, 9, f"Charged {ctx.get('amount', 0.0):.2f} {sim.rng.choice(_CURRENCIES)} via card, auth code {sim.rng.getrandbits(24):06X}",
            [], tid, sid)


def _log_orders(sim, res, t, ctx, tid, sid):
    mode = sim.services["orders"].log_mode
    oid, n, amt = ctx.get("oid", "ORD-0"), ctx.get("items", 1), ctx.get("amount", 0.0)
    if mode == "structured":
        body: Any = {"event": "order.placed", "order.id": oid, "items": n, "total": amt, "currency": "EUR"}
    elif mode == "text_v2":
        body = f"order_placed id={oid} items={n} total={amt:.2f} currency=EUR"
    else:
        body = f"Order {oid} placed with {n} items, total {amt:.2f} EUR"
    sim.log(res, t, 9, body, [], tid, sid)


def _log_auth(sim, res, t, ctx, tid, sid):
    name, ip = ctx.get("login_name", ""), ctx.get("ip", "")
    if ctx.get("login_ok", True):
        sim.log(res, t, 9, f"Login succeeded for {name} from {ip}", [], tid, sid)
    else:
        why = "unknown user" if name not in sim.pop.by_name else "invalid password"
        sim.log(res, t, 13, f"Login failed for {name} from {ip}: {why}", [], tid, sid)


def _log_search(sim, res, t, ctx, tid, sid):
    if sim.rng.random() < 0.2:
        sim.log(res, t, 9, f"Query '{sim.rng.choice(_QUERIES)}' returned {sim.rng.randint(0, 300)} hits in {sim.rng.randint(3, 90)} ms",
                [], tid, sid)


def _log_shipping(sim, res, t, ctx, tid, sid):
    sim.log(res, t, 9, f"Quote {sim.rng.choice(_CARRIERS)} {sim.rng.uniform(3, 25):.2f} EUR for {sim.rng.randint(1, 6)} parcels",
            [], tid, sid)


_LOGS = {
    "catalog GET /products": _log_catalog,
    "catalog GET /products/{id}": _log_catalog,
    "cart POST /cart/items": _log_cart,
    "checkout POST /checkout": _log_checkout,
    "payment PaymentService/Charge": _log_payment,
    "orders POST /orders": _log_orders,
    "auth POST /login": _log_auth,
    "search SearchService/Query": _log_search,
    "shipping POST /quote": _log_shipping,
}
