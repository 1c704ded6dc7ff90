"""Injected incidents and their ground-truth labels.

Each incident is built from one scenario YAML entry (``type`` plus parameters),
changes the :class:`~detector.sim.generator.Simulator`'s state while it is
active, and reports labels::

    {"detector", "kind", "service", "peer", "start", "end", "scenario",
     "optional": bool, "severity": "info"|null, "note": str}

``start``/``end`` are RFC 3339 UTC strings (event time). ``optional`` labels
are expected side effects (an error cascade to callers, the gateway seeing a
login attack too): an alert matching one is neither a true nor a false positive
and a miss is not counted. ``severity: info`` marks benign change the detector
should report at ``info`` at most.
"""

from __future__ import annotations

import datetime as _dt
import random
from typing import Any

from detector.config.types import parse_duration
from detector.sim import topology as topo
from detector.sim.traffic import ATTACK_AGENTS, USER_AGENTS, attacker_ip


def rfc3339(t: float) -> str:
    """Seconds since the epoch -> ``2026-11-02T09:00:00Z`` (millisecond precision when needed)."""
    d = _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc)
    if t != int(t):
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """RFC 3339 (``Z`` or offset) -> seconds since the epoch."""
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def callers_of(service: str) -> set[str]:
    """Every service that (transitively) calls ``service`` in the topology, gateway included."""
    direct: dict[str, set[str]] = {}
    for op in topo.OPS.values():
        for st in op.steps:
            if st.kind == "call":
                callee = topo.OPS[st.target].service
                direct.setdefault(callee, set()).add(op.service)
    for _m, _r, backend, _p, _a in topo.GATEWAY_ROUTES.values():
        direct.setdefault(topo.OPS[backend].service, set()).add("gateway")
    direct.setdefault("fulfilment", set()).add("orders")
    out: set[str] = set()
    todo = [service]
    while todo:
        s = todo.pop()
        for c in direct.get(s, ()):
            if c not in out:
                out.add(c)
                todo.append(c)
    out.discard(service)
    return out


class Incident:
    """Base: ``at`` (offset from scenario start) and ``duration``; subclasses act in :meth:`tick`."""

    type = "base"
    detector = ""

    def __init__(self, spec: dict, scenario_start: float) -> None:
        self.spec = dict(spec)
        self.start = scenario_start + parse_duration(spec.get("at", "0s"))
        self.end = self.start + parse_duration(spec.get("duration", "30m"))
        self.started = False
        self.ended = False
        self.rng = random.Random(int(self.start))  # replaced in bind() by one derived from the scenario seed
        self.scenario = ""
        self._labels: list[dict] = []

    def bind(self, sim) -> None:
        self.scenario = sim.scenario
        self.rng = random.Random(sim.seed * 1009 + int(self.start) % 100003)

    def tick(self, sim, s: float) -> None:
        if not self.started and s >= self.start:
            self.started = True
            self.on_start(sim, s)
        if self.started and not self.ended:
            if s >= self.end:
                self.ended = True
                self.on_end(sim, s)
            else:
                self.on_active(sim, s)

    def on_start(self, sim, s: float) -> None: ...

    def on_active(self, sim, s: float) -> None: ...

    def on_end(self, sim, s: float) -> None: ...

    def label(self, detector: str, kind: str, service: str, peer: str = "", start: float | None = None,
              end: float | None = None, optional: bool = False, severity: str | None = None, note: str = "") -> dict:
        lab = {
            "detector": detector,
            "kind": kind,
            "service": service,
            "peer": peer,
            "start": rfc3339(self.start if start is None else start),
            "end": rfc3339(self.end if end is None else end),
            "scenario": self.scenario,
            "optional": optional,
            "severity": severity,
            "note": note or self.spec.get("note", ""),
        }
        self._labels.append(lab)
        return lab

    def labels(self) -> list[dict]:
        """Ground truth for this incident (call after binding; stable before generation)."""
        self._labels = []
        self.make_labels()
        return self._labels

    def make_labels(self) -> None: ...


# ------------------------------------------------------------------ benign


class Deploy(Incident):
    """A harmless ``service.version`` bump at ``at`` (no label)."""

    type = "deploy"

    def on_start(self, sim, s):
        sim.deploy(s, self.spec["service"], self.spec.get("version"))
        self.ended = True


# --------------------------------------------------------------- error rate


class ErrorRate(Incident):
    """Extra failures on a service, one of its operations, or one caller→callee edge.

    Params: ``service``; ``operation`` (op key, e.g. ``GET /products``) or ``caller``
    (edge) optional; ``rate`` extra failure probability in [0, 1]; ``ramp`` duration
    to reach it linearly (default step); ``code`` HTTP status / gRPC code
    (default 500 / UNAVAILABLE); ``deploy`` bump the service's version at onset.
    """

    type = "error_rate"
    detector = "error_rate"

    def __init__(self, spec, scenario_start):
        super().__init__(spec, scenario_start)
        self.service = spec["service"]
        self.operation = spec.get("operation")
        self.caller = spec.get("caller")
        self.rate = float(spec.get("rate", 0.2))
        self.ramp = parse_duration(spec["ramp"]) if spec.get("ramp") else 0.0
        self.code = spec.get("code")
        self.key = (self.service, self.operation, self.caller)

    def on_start(self, sim, s):
        if self.spec.get("deploy"):
            sim.deploy(s, self.spec.get("deploy_service", self.service))

    def on_active(self, sim, s):
        p = self.rate if not self.ramp else self.rate * min(1.0, (s - self.start + 1) / self.ramp)
        sim.extra_fail[self.key] = (p, self.code)

    def on_end(self, sim, s):
        sim.extra_fail.pop(self.key, None)

    def make_labels(self):
        if self.caller:
            self.label("error_rate", "edge_error_rate", self.caller, self.service)
            cascade = callers_of(self.caller) | {self.caller}
        elif self.operation:
            self.label("error_rate", "operation_error_rate", self.service)
            cascade = callers_of(self.service)
        else:
            self.label("error_rate", "service_error_rate", self.service)
            cascade = callers_of(self.service)
        for c in sorted(cascade):
            self.label("error_rate", "service_error_rate", c, optional=True, note="cascade to a caller")
        self.label("error_rate", "log_error_rate", self.service, optional=True, note="error logs of the failing service")
        for svc in sorted({self.service} | ({self.caller} if self.caller else callers_of(self.service))):
            self.label("schema_drift", "value_distribution_shift", svc, optional=True,
                       note="new status-code values (e.g. 503) are a real value shift caused by the errors")


# ------------------------------------------------------------- schema drift


def _match_kind(kind: str) -> str:
    return {"client": "client", "server": "server", "consumer": "consumer", "producer": "producer"}[kind]


class _Transform(Incident):
    """Base of attribute-changing incidents: installs ``fn(name, attrs, rng)`` on
    spans of ``service`` of span kind ``span_kind`` (and span name ``span_name``)."""

    detector = "schema_drift"
    kind = ""

    def __init__(self, spec, scenario_start):
        super().__init__(spec, scenario_start)
        self.service = spec["service"]
        self.span_kind = _match_kind(spec.get("span_kind", "server"))
        self.span_name = spec.get("span_name")
        self.peer = spec.get("peer", "")
        self.permanent = spec.get("permanent", True)

    def fn(self, name, attrs, rng):
        return name, attrs

    def on_start(self, sim, s):
        if self.spec.get("deploy", True):
            sim.deploy(s, self.service)
        sim.transforms.setdefault((self.service, self.span_kind), []).append((self.span_name, self.fn))

    def on_end(self, sim, s):
        if not self.permanent:
            lst = sim.transforms.get((self.service, self.span_kind), [])
            lst[:] = [x for x in lst if x[1] != self.fn]

    def make_labels(self):
        self.label("schema_drift", self.kind, self.service, self.peer)


class Rename(_Transform):
    """Attribute ``from`` renamed to ``to``; optional ``reject: {rate, after, code}`` makes
    the callee (``peer``) answer errors to this caller afterwards (an edge error incident)."""

    type = "rename"
    kind = "attribute_renamed"

    def fn(self, name, attrs, rng):
        a, b = self.spec["from"], self.spec["to"]
        return name, [(b, v) if k == a else (k, v) for k, v in attrs]

    def on_active(self, sim, s):
        rj = self.spec.get("reject")
        if rj and s >= self.start + parse_duration(rj.get("after", "30s")):
            sim.extra_fail[(self.peer, None, self.service)] = (float(rj.get("rate", 0.5)), rj.get("code"))

    def on_end(self, sim, s):
        super().on_end(sim, s)
        sim.extra_fail.pop((self.peer, None, self.service), None)

    def make_labels(self):
        super().make_labels()
        rj = self.spec.get("reject")
        if rj:
            t = self.start + parse_duration(rj.get("after", "30s"))
            self.label("error_rate", "edge_error_rate", self.service, self.peer, start=t,
                       note="callee rejects requests after the rename")
            for c in sorted(callers_of(self.service)):
                self.label("error_rate", "service_error_rate", c, start=t, optional=True, note="cascade")
            self.label("error_rate", "service_error_rate", self.service, start=t, optional=True)


class TypeChange(_Transform):
    """Attribute ``key`` changes type (``to: string`` renders ints as strings; ``to: int``)."""

    type = "type_change"
    kind = "attribute_type_changed"

    def fn(self, name, attrs, rng):
        key, to = self.spec["key"], self.spec.get("to", "string")
        conv = str if to == "string" else (lambda v: int(float(v)))
        return name, [(k, conv(v)) if k == key else (k, v) for k, v in attrs]


class Remove(_Transform):
    """Attribute ``key`` no longer sent."""

    type = "remove"
    kind = "attribute_removed"

    def fn(self, name, attrs, rng):
        key = self.spec["key"]
        return name, [(k, v) for k, v in attrs if k != key]


class NewValue(_Transform):
    """A never-seen ``value`` for low-cardinality ``key`` in ``share`` (0..1) of spans."""

    type = "new_value"
    kind = "value_distribution_shift"

    def fn(self, name, attrs, rng):
        key, val, share = self.spec["key"], self.spec["value"], float(self.spec.get("share", 0.2))
        if rng.random() >= share:
            return name, attrs
        return name, [(k, val) if k == key else (k, v) for k, v in attrs]


class RouteIds(_Transform):
    """Ids leak into ``http.route`` (and the span name): ``/products/{id}`` -> ``/products/4711``."""

    type = "route_ids"
    kind = "cardinality_explosion"

    def fn(self, name, attrs, rng):
        path = None
        for k, v in attrs:
            if k in ("url.path", "http.target"):
                path = v
        if path is None:
            return name, attrs
        method = name.split(" ", 1)[0]
        return f"{method} {path}", [(k, path) if k == "http.route" else (k, v) for k, v in attrs]


class SemconvMigration(Incident):
    """A service upgrades its instrumentation from the old to the new semantic conventions
    (schema_url 1.17.0 -> 1.26.0, ``http.status_code`` -> ``http.response.status_code`` …). Benign: info."""

    type = "semconv_migration"
    detector = "schema_drift"

    def on_start(self, sim, s):
        svc = sim.services[self.spec["service"]]
        svc.set_gen(self.spec.get("to", "new"))
        sim.deploy(s, svc.name)

    def make_labels(self):
        self.label("schema_drift", "schema_url_changed", self.spec["service"], severity="info",
                   note="benign semantic-convention migration")


class LogFormat(Incident):
    """The service's log body changes: ``mode: structured`` (text -> kvlist) or ``text_v2`` (new template)."""

    type = "log_format"
    detector = "schema_drift"

    def on_start(self, sim, s):
        sim.services[self.spec.get("service", "orders")].log_mode = self.spec.get("mode", "structured")
        sim.deploy(s, self.spec.get("service", "orders"))

    def make_labels(self):
        self.label("schema_drift", "log_structure_changed", self.spec.get("service", "orders"))


# -------------------------------------------------------------------- auth


class _Attack(Incident):
    """Base of login attacks: ``rate`` attempts/s during [at, at+duration)."""

    detector = "auth"
    kind = ""

    def __init__(self, spec, scenario_start):
        super().__init__(spec, scenario_start)
        self.rate = float(spec.get("rate", 1.0))
        self._carry = 0.0

    def on_active(self, sim, s):
        self._carry += self.rate
        while self._carry >= 1.0:
            self._carry -= 1.0
            self.attempt(sim, s + self.rng.random())

    def attempt(self, sim, t: float) -> None: ...

    def make_labels(self):
        self.label("auth", self.kind, "auth")
        self.label("auth", self.kind, "gateway", optional=True, note="the gateway sees the same logins")
        self.label("error_rate", "edge_error_rate", "gateway", "auth", optional=True, note="401s on gateway client spans")
        self.label("error_rate", "log_error_rate", "auth", optional=True)
        for svc in ("auth", "gateway"):
            self.label("schema_drift", "value_distribution_shift", svc, optional=True,
                       note="attack tools bring never-seen user agents and status-code shares")


class BruteForce(_Attack):
    """One source guesses passwords of one existing account."""

    type = "brute_force"
    kind = "brute_force"

    def on_start(self, sim, s):
        self.victim = sim.pop.users[self.rng.randrange(100, len(sim.pop.users))].name
        self.ip = self.spec.get("source") or attacker_ip(self.rng)
        self.ua = self.rng.choice(ATTACK_AGENTS)

    def attempt(self, sim, t):
        sim.user_request(t, "login", user=None, ip=self.ip, ua=self.ua, session=None, login_ok=False, login_name=self.victim)


class PasswordSpraying(_Attack):
    """One source tries one or two common passwords across many accounts (T1110.003)."""

    type = "password_spraying"
    kind = "password_spraying"

    def on_start(self, sim, s):
        self.ip = self.spec.get("source") or attacker_ip(self.rng)
        self.ua = self.rng.choice(ATTACK_AGENTS)
        names = [u.name for u in sim.pop.users]
        self.rng.shuffle(names)
        self.targets = names[: int(self.spec.get("accounts", 300))]
        self.i = 0

    def attempt(self, sim, t):
        name = self.targets[self.i % len(self.targets)]
        self.i += 1
        sim.user_request(t, "login", user=None, ip=self.ip, ua=self.ua, session=None, login_ok=False, login_name=name)


class CredentialStuffing(_Attack):
    """Breached pairs from many sources: mostly failures, 30 % unknown accounts, ``success`` share valid (T1110.004)."""

    type = "credential_stuffing"
    kind = "credential_stuffing"

    def on_start(self, sim, s):
        self.ips = [attacker_ip(self.rng) for _ in range(int(self.spec.get("sources", 200)))]
        self.success = float(self.spec.get("success", 0.02))

    def attempt(self, sim, t):
        r = self.rng
        if r.random() < 0.3:
            name = f"{r.choice(('john', 'anna', 'admin', 'test', 'maria', 'li'))}{r.randint(1, 99999)}@mail.example"
        else:
            name = sim.pop.users[r.randrange(len(sim.pop.users))].name
        ok = r.random() < self.success and not name.endswith("mail.example")
        sim.user_request(t, "login", user=None, ip=r.choice(self.ips), ua=r.choice(ATTACK_AGENTS + USER_AGENTS),
                         session=None, login_ok=ok, login_name=name)


class SuccessAfterFailures(_Attack):
    """``failures`` failed logins on one account from a new source, then a success from it."""

    type = "success_after_failures"
    kind = "success_after_failures"

    def on_start(self, sim, s):
        self.victim = sim.pop.users[self.rng.randrange(100, len(sim.pop.users))].name
        self.ip = attacker_ip(self.rng)
        self.ua = self.rng.choice(ATTACK_AGENTS)
        self.n = int(self.spec.get("failures", 12))
        self.done = 0

    def attempt(self, sim, t):
        if self.done < self.n:
            sim.user_request(t, "login", user=None, ip=self.ip, ua=self.ua, session=None, login_ok=False, login_name=self.victim)
        elif self.done == self.n:
            sim.user_request(t, "login", user=None, ip=self.ip, ua=self.ua, session=None, login_ok=True, login_name=self.victim)
        self.done += 1


class AuthBypass(Incident):
    """After a gateway deploy, anonymous requests to protected ``route`` get 2xx; a scanner
    probes it anonymously at ``rate``/s. Fixed (and redeployed) at the end."""

    type = "auth_bypass"
    detector = "auth"

    def on_start(self, sim, s):
        sim.deploy(s, "gateway")
        sim.bypass_routes.add(self.spec.get("route", "/api/orders"))
        self.ip = attacker_ip(self.rng)
        self._carry = 0.0

    def on_active(self, sim, s):
        self._carry += float(self.spec.get("rate", 0.1))
        route = self.spec.get("route", "/api/orders")
        entry = next(k for k, v in topo.GATEWAY_ROUTES.items() if v[1] == route)
        while self._carry >= 1:
            self._carry -= 1
            sim.user_request(s + self.rng.random(), entry, user=None, ip=self.ip, ua="curl/8.5.0", session=None)

    def on_end(self, sim, s):
        sim.bypass_routes.discard(self.spec.get("route", "/api/orders"))
        sim.deploy(s, "gateway")

    def make_labels(self):
        self.label("auth", "auth_bypass", "gateway", severity=None)
        self.label("schema_drift", "attribute_removed", "gateway", optional=True, note="anonymous 2xx spans lack user.id")


class TokenReuse(Incident):
    """A victim's session token replayed from ``sources`` addresses (distinct /24s, other agents)."""

    type = "token_reuse"
    detector = "auth"

    def on_start(self, sim, s):
        self.victim = sim.pop.users[self.rng.randrange(100, len(sim.pop.users))]
        if self.victim.session is None:
            self.victim.session = "%016x" % self.rng.getrandbits(64)
        self.ips = [attacker_ip(self.rng) for _ in range(int(self.spec.get("sources", 15)))]
        self._carry = 0.0

    def on_active(self, sim, s):
        self._carry += float(self.spec.get("rate", 0.5))
        while self._carry >= 1:
            self._carry -= 1
            sim.user_request(s + self.rng.random(), self.rng.choice(("cart_view", "orders")), user=self.victim,
                             ip=self.rng.choice(self.ips), ua=self.rng.choice(ATTACK_AGENTS),
                             session=self.victim.session, token_valid=True)

    def make_labels(self):
        self.label("auth", "token_reuse", "gateway")
        self.label("schema_drift", "value_distribution_shift", "gateway", optional=True,
                   note="the replaying clients bring never-seen user agents")


class ForbiddenSpike(Incident):
    """One logged-in non-admin user probes admin routes: a burst of 403s at ``rate``/s."""

    type = "forbidden_spike"
    detector = "auth"

    def on_start(self, sim, s):
        self.user = sim.pop.users[self.rng.randrange(100, len(sim.pop.users))]
        if self.user.session is None:
            self.user.session = "%016x" % self.rng.getrandbits(64)
        self._carry = 0.0

    def on_active(self, sim, s):
        self._carry += float(self.spec.get("rate", 0.5))
        while self._carry >= 1:
            self._carry -= 1
            sim.user_request(s + self.rng.random(), "admin", user=self.user, ip=self.user.ips[0], ua=self.user.uas[0],
                             session=self.user.session, token_valid=True)

    def make_labels(self):
        self.label("auth", "forbidden_spike", "gateway")
        self.label("schema_drift", "value_distribution_shift", "gateway", optional=True,
                   note="403 becomes a common status code of the admin route")


INCIDENTS: dict[str, type[Incident]] = {
    c.type: c
    for c in (Deploy, ErrorRate, Rename, TypeChange, Remove, NewValue, RouteIds, SemconvMigration, LogFormat,
              BruteForce, PasswordSpraying, CredentialStuffing, SuccessAfterFailures, AuthBypass, TokenReuse, ForbiddenSpike)
}


def build(spec: dict, scenario_start: float) -> Incident:
    """An incident object from one YAML entry. Raises ValueError for an unknown ``type``."""
    t = spec.get("type")
    if t not in INCIDENTS:
        raise ValueError(f"unknown incident type {t!r}; known: {', '.join(sorted(INCIDENTS))}")
    return INCIDENTS[t](spec, scenario_start)
