"""Authentication events from spans: which spans are auth events, and their outcome.

A span becomes an :class:`AuthEvent` when its kind is one of ``span_kinds``
and either

* its operation (``http.route`` with method, ``rpc.service/rpc.method`` or the
  span name, see :class:`~detector.normalise.records.SpanRecord`) or name
  matches one of ``span_patterns`` — a *login* operation (login, signin,
  session, token, oauth, authenticate by default), or
* its operation is *protected*: it matches ``protected_patterns`` or has
  answered 401/403 (gRPC UNAUTHENTICATED 16 / PERMISSION_DENIED 7) at least
  once. Protected operations feed ``auth_bypass`` and ``forbidden_spike``.

Everything else is rejected by one dict lookup on the operation string (the
compiled patterns run once per distinct operation; the result is cached) and
two integer comparisons: well under 1 µs per span.

Outcome (login operations): an outcome attribute (``event.outcome`` …) wins;
else HTTP 2xx/3xx = success, 400/401/403 = failure (OAuth answers
``invalid_grant`` with 400, RFC 6749 §5.2), other 4xx/5xx = ignored; else
gRPC 0 = success, 16/7 = failure; else span status ERROR = failure, OK/UNSET
= success. Semantic conventions: http-spans.md (status codes), rpc-spans.md
(gRPC status), registry ``user``/``enduser``/``client``/``session``.
"""

from __future__ import annotations

import re
from typing import Any

from detector.detectors.base import any_of
from detector.normalise.records import SPAN_KIND_NAMES, STATUS_ERROR, SpanRecord

OK = 0
FAIL = 1
FORBID = 2
OTHER = 3
INVALID_MARK = 4  # sshd "Invalid user X from S": unknown principal probed (deduplicated at close)

OP_NONE = 0
OP_LOGIN = 1
OP_PROTECTED = 2

_DENY_HTTP = (401, 403)
_DENY_GRPC = (16, 7)

_OUTCOME_WORDS = {
    "success": OK, "succeeded": OK, "successful": OK, "ok": OK, "true": OK, "allow": OK, "allowed": OK, "accepted": OK,
    "failure": FAIL, "failed": FAIL, "fail": FAIL, "false": FAIL, "deny": FAIL, "denied": FAIL, "rejected": FAIL,
    "invalid": FAIL, "unauthorized": FAIL, "unauthenticated": FAIL,
    "forbidden": FORBID, "permission_denied": FORBID,
}


def outcome_word(value: Any) -> int | None:
    """Map an outcome attribute value (``success``, ``failure``, ``denied``, bool…) to a code, or None."""
    if isinstance(value, bool):
        return OK if value else FAIL
    if isinstance(value, str):
        return _OUTCOME_WORDS.get(value.strip().lower())
    return None


def outcome_attr(attrs: dict, keys: tuple[str, ...]) -> int | None:
    """The code of the first of ``keys`` in ``attrs`` whose value is an outcome word (:func:`outcome_word`), or None."""
    for k in keys:
        v = attrs.get(k)
        if v is not None:
            outcome = outcome_word(v)
            if outcome is not None:
                return outcome
    return None


class AuthEvent:
    """One authentication-relevant occurrence, before hashing.

    Attributes:
        service: ``service.name``. op: operation string. op_class: ``OP_LOGIN`` | ``OP_PROTECTED``.
        outcome: ``OK`` | ``FAIL`` | ``FORBID`` | ``OTHER`` | ``INVALID_MARK``.
        principal, source, user_agent, token: raw strings or None (hashed by the detector).
        time: event time, seconds since the epoch. trace_id: bytes or ``b""``.
        count: how many identical attempts this stands for (sshd "message repeated N times").
        unknown: the principal is known not to exist (sshd "invalid user").
        http_ok: for protected operations, True when the answer was 2xx/3xx (gRPC 0).
    """

    __slots__ = ("service", "op", "op_class", "outcome", "principal", "source", "user_agent", "token", "time",
                 "trace_id", "count", "unknown", "http_ok")

    def __init__(self, service: str, op: str, op_class: int, outcome: int, principal: str | None, source: str | None,
                 user_agent: str | None, token: str | None, time: float, trace_id: bytes = b"", count: int = 1,
                 unknown: bool = False, http_ok: bool = False) -> None:
        self.service = service
        self.op = op
        self.op_class = op_class
        self.outcome = outcome
        self.principal = principal
        self.source = source
        self.user_agent = user_agent
        self.token = token
        self.time = time
        self.trace_id = trace_id
        self.count = count
        self.unknown = unknown
        self.http_ok = http_ok

    def __repr__(self) -> str:
        return f"AuthEvent({self.service!r}, {self.op!r}, outcome={self.outcome}, n={self.count})"


def first_forwarded(value: str) -> str:
    """First address of an ``X-Forwarded-For`` value (RFC 7239 §5.2 order: client first)."""
    return value.split(",", 1)[0].strip()


def _first_str(attrs: dict, keys: tuple[str, ...]) -> str | None:
    for k in keys:
        v = attrs.get(k)
        if v is not None and v != "":
            if isinstance(v, list):
                v = v[0] if v else None
                if v is None:
                    continue
            return str(v)
    return None


class SpanExtractor:
    """Turns spans into :class:`AuthEvent` s (see the module docstring).

    Args:
        config: an :class:`~detector.detectors.auth.config.AuthConfig`.

    ``extract(span)`` returns an event or None; ``fields(span)`` the same as a
    plain tuple (the detector's hot path: no object per event). The
    per-operation cache is bounded (cleared at 100 000 distinct operations,
    e.g. ids leaking into routes).
    """

    CACHE_MAX = 100_000

    def __init__(self, config: Any) -> None:
        self._login = any_of(config.span_patterns, re.IGNORECASE)
        self._protected = any_of(config.protected_patterns, re.IGNORECASE)
        names = {v: k for k, v in SPAN_KIND_NAMES.items()}
        self._kinds = frozenset(names[k] for k in config.span_kinds)
        self._outcome_keys = tuple(config.outcome_attributes)
        self._principal_keys = tuple(config.principal_attributes)
        self._source_keys = tuple(config.source_attributes)
        self._ua_keys = tuple(config.user_agent_attributes)
        self._token_keys = tuple(config.token_attributes)
        self._cache: dict[str, int] = {}

    def classify(self, op: str, name: str) -> int:
        """``OP_LOGIN``, ``OP_PROTECTED`` or ``OP_NONE`` for an operation (cached by ``op``)."""
        code = OP_NONE
        if self._login is not None and (self._login.search(op) or (name != op and self._login.search(name))):
            code = OP_LOGIN
        elif self._protected is not None and (self._protected.search(op) or (name != op and self._protected.search(name))):
            code = OP_PROTECTED
        if len(self._cache) >= self.CACHE_MAX:
            self._cache.clear()
        self._cache[op] = code
        return code

    def extract(self, span: SpanRecord) -> AuthEvent | None:
        """The auth event of ``span``, or None when the span is not one."""
        f = self.fields(span)
        if f is None:
            return None
        code, outcome, principal, source, ua, token, count, unknown, op, http_ok = f
        return AuthEvent(span.resource.service, op, code, outcome, principal, source, ua, token, span.end,
                         span.trace_id, count, unknown, http_ok)

    def fields(self, span: SpanRecord) -> tuple | None:
        """``(op_class, outcome, principal, source, user_agent, token, count=1, unknown=False, op, http_ok)``
        of ``span`` (see :class:`AuthEvent` for each), or None when the span is not an auth event."""
        op = span.operation
        code = self._cache.get(op)
        if code is None:
            code = self.classify(op, span.name)
        if code == OP_NONE:
            hs = span.http_status
            gs = span.rpc_grpc_status
            if hs not in _DENY_HTTP and gs not in _DENY_GRPC:
                return None
            # learned: this operation denies requests, so it is protected
            code = OP_PROTECTED
            self._cache[op] = code
        if span.kind not in self._kinds:
            return None
        attrs = span.attrs
        principal = span.principal
        if principal is None and self._principal_keys:
            principal = _first_str(attrs, self._principal_keys)
        source = span.source
        if source is None and self._source_keys:
            source = _first_str(attrs, self._source_keys)
        if source is not None and "," in source:
            source = first_forwarded(source)
        ua = span.user_agent
        if ua is None and self._ua_keys:
            ua = _first_str(attrs, self._ua_keys)
        token = _first_str(attrs, self._token_keys) if self._token_keys else None
        hs = span.http_status
        gs = span.rpc_grpc_status
        outcome = outcome_attr(attrs, self._outcome_keys) if (attrs and self._outcome_keys) else None
        http_ok = False
        if hs is not None:
            http_ok = 200 <= hs < 400
            if outcome is None:
                if http_ok:
                    outcome = OK
                elif hs == 403:
                    outcome = FAIL if code == OP_LOGIN else FORBID
                elif hs == 401 or (hs == 400 and code == OP_LOGIN):
                    outcome = FAIL
                else:
                    outcome = OTHER
        elif gs is not None:
            http_ok = gs == 0
            if outcome is None:
                if gs == 0:
                    outcome = OK
                elif gs == 16:
                    outcome = FAIL
                elif gs == 7:
                    outcome = FAIL if code == OP_LOGIN else FORBID
                else:
                    outcome = OTHER
        elif outcome is None:
            outcome = FAIL if span.status_code == STATUS_ERROR else OK
            http_ok = outcome == OK
        return (code, outcome, principal, source, ua, token, 1, False, op, http_ok)
