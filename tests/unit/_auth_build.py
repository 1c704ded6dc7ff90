"""Builders and a window driver for the auth detector tests (records built directly, no decode)."""

from __future__ import annotations

import hashlib
from typing import Iterable

from detector.detectors.auth.config import AuthConfig
from detector.detectors.auth.detector import AuthDetector
from detector.detectors.base import Candidate, DetectorContext, Deployments, IdentityHasher, Window
from detector.normalise.records import SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET, LogRecord, Resource, Scope, SpanRecord

SALT = b"test-salt"
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z, a multiple of 10 s
SCOPE = Scope("test")
_RESOURCES: dict[tuple[str, str], Resource] = {}


def resource(service: str, version: str = "1.0") -> Resource:
    key = (service, version)
    r = _RESOURCES.get(key)
    if r is None:
        r = _RESOURCES[key] = Resource(service, version, {"service.name": service, "service.version": version}, "")
    return r


def context(window: float = 10.0, deployments: Deployments | None = None) -> DetectorContext:
    return DetectorContext(window, IdentityHasher(SALT), deployments or Deployments())


def detector(window: float = 10.0, deployments: Deployments | None = None, **cfg) -> AuthDetector:
    return AuthDetector(AuthConfig(**cfg), context(window, deployments))


def hashed(value: str) -> str:
    return IdentityHasher(SALT)(value)


def _tid(*parts) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()[:16]


def span(t: float, principal: str | None, source: str | None, status: int | None = 200, *,
         service: str = "auth", op: str = "POST /login", ua: str | None = "Mozilla/5.0", token: str | None = None,
         grpc: int | None = None, kind: int = SPAN_KIND_SERVER, version: str = "1.0", attrs: dict | None = None,
         status_code: int | None = None) -> SpanRecord:
    """One server span ending at ``t`` (seconds) with the given auth fields."""
    a = dict(attrs or {})
    if token is not None:
        a["session.id"] = token
    if status_code is None:
        status_code = STATUS_ERROR if (status is not None and status >= 500) else STATUS_UNSET
    return SpanRecord(resource(service, version), SCOPE, _tid(t, principal, source, op), b"\x01" * 8, b"",
                      op, kind, t - 0.01, t, status_code, "", status, grpc, op, False, "", a,
                      principal, source, ua)


def log(t: float, body, *, service: str = "sshd", attrs: dict | None = None) -> LogRecord:
    return LogRecord(resource(service), SCOPE, t, 9, "INFO", body, attrs or {})


def run(det: AuthDetector, records: Iterable, window: float = 10.0, until: float | None = None) -> list[tuple[int, Candidate]]:
    """Feed spans/logs in event-time windows, closing each window in order (also empty ones up to ``until``).

    Returns ``(window_index_offset_from_first, candidate)`` pairs for anomalous candidates.
    """
    recs = sorted(records, key=lambda r: r.end if isinstance(r, SpanRecord) else r.time)
    if not recs:
        return []
    first = int((recs[0].end if isinstance(recs[0], SpanRecord) else recs[0].time) // window)
    groups: dict[int, tuple[list, list]] = {}
    for r in recs:
        t = r.end if isinstance(r, SpanRecord) else r.time
        g = groups.setdefault(int(t // window), ([], []))
        (g[0] if isinstance(r, SpanRecord) else g[1]).append(r)
    last = max(groups)
    if until is not None:
        last = max(last, int(until // window))
    out: list[tuple[int, Candidate]] = []
    for idx in range(first, last + 1):
        w = Window.of(idx, window)
        g = groups.get(idx)
        if g:
            if g[0]:
                det.observe_spans(w, g[0])
            if g[1]:
                det.observe_logs(w, g[1])
        for c in det.close_window(w):
            if c.anomalous:
                out.append((idx - first, c))
    return out


def kinds(results: list[tuple[int, Candidate]]) -> set[str]:
    return {c.kind for _, c in results}


def normal_logins(t0: float, seconds: float, per_second: float = 2.0, users: int = 300, typo: float = 0.03,
                  seed: int = 1, service: str = "auth", with_tokens: bool = False) -> list[SpanRecord]:
    """Benign login traffic: each user from a home address and agent; ``typo`` of logins fail once or twice first."""
    import random

    rnd = random.Random(seed)
    out: list[SpanRecord] = []
    n = int(seconds * per_second)
    for i in range(n):
        t = t0 + i / per_second + rnd.random() * 0.4
        u = rnd.randrange(users)
        src = f"198.51.{u // 250}.{u % 250 + 1}"
        ua = f"Mozilla/5.0 ({u % 7})"
        if rnd.random() < typo:
            for k in range(rnd.choice((1, 1, 2))):
                out.append(span(t - 3 + k, f"user{u}", src, 401, service=service, ua=ua))
        tok = f"tok-{u}" if with_tokens else None
        out.append(span(t, f"user{u}", src, 200, service=service, ua=ua, token=tok))
    return out


def protected_traffic(t0: float, seconds: float, per_second: float = 5.0, anon_share: float = 0.2, seed: int = 2,
                      op: str = "GET /api/orders", service: str = "orders", anon_status: int = 401,
                      version: str = "1.0") -> list[SpanRecord]:
    """Requests to a protected route: signed-in users get 200, anonymous callers ``anon_status``."""
    import random

    rnd = random.Random(seed)
    out = []
    for i in range(int(seconds * per_second)):
        t = t0 + i / per_second
        if rnd.random() < anon_share:
            out.append(span(t, None, f"192.0.2.{rnd.randrange(1, 250)}", anon_status, service=service, op=op,
                            version=version))
        else:
            u = rnd.randrange(100)
            out.append(span(t, f"user{u}", f"198.51.0.{u + 1}", 200, service=service, op=op, version=version))
    return out
