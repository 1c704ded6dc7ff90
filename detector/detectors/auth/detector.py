"""The ``auth`` detector: odd authentication patterns in spans and logs.

Kinds (CONTRACT.md) and the guard each alert explains itself with (defaults
from :mod:`detector.detectors.auth.config`; "horizon" = the last whole windows
covering ``*_horizon``):

* ``brute_force`` (principal): ≥ 10 failures in 5 min on one principal, failure
  ratio ≥ 0.8 (MITRE T1110.001). Evidence: hashed top sources. Also (source):
  one source with ≥ 10 failures in 10 min on a few principals, ≥ 2 failures per
  principal on average, not already listed as a top source of a principal alert.
* ``password_spraying`` (source): ≥ 10 distinct failing principals in 10 min
  from one source, ≤ 3 failures per principal, failure ratio ≥ 0.9 (T1110.003).
* ``credential_stuffing`` (service): login failure ratio over 1 min above the
  learned ratio + 0.2 with binomial tail < 1e-7, ≥ 20 failing principals from
  ≥ 5 effective sources (inverse Simpson index of failures per source), no
  source above half the failures (T1110.004).
* ``success_after_failures`` (principal, or source): a success right after a
  run of ≥ 5 consecutive failures within 15 min — critical when the success came
  from a source of the failure run or one never seen to succeed for the principal.
* ``auth_bypass`` (protected operation, critical): anonymous requests used to be
  denied (≥ 20 learned, ≥ 95 % 401/403) and now ≥ 3 got 2xx with a Wilson
  lower bound (z = 3) of the 2xx share > 0.2; or the share of requests without
  a principal jumps by ≥ 0.5 while no request is denied any more.
* ``token_reuse`` (token): one token from ≥ 3 source networks (/24, /48) and
  ≥ 2 user agents in 10 min.
* ``forbidden_spike`` (principal): ≥ 10 403/PERMISSION_DENIED in 5 min and
  ≥ 5× the principal's own learned level.

Adaptive part: count thresholds are ``max(configured minimum, 3 × the learned
population p99.9)`` per service (P² quantile, learned only from entities that
are not alerting), and per-entity feature vectors are scored by one
``HalfSpaceTrees`` population model per service for sources and one for
principals (:class:`~detector.detectors.auth.models.PopulationModel`). A
brute-force/spraying guard hit fires when the model calls the entity *odd* or
is still *warming up*, or when the guard is exceeded ``model_strong_factor``
times; a borderline hit on an entity the model finds typical is reported only
in ``scores()``. Baseline-relative kinds (stuffing, bypass, token_reuse,
forbidden_spike) wait for ``warmup``; absolute-guard kinds alert from the start.

Evaluation: one table-driven pass (:mod:`detector.detectors.auth.rules`: per
kind the feature, its effective threshold, the guards from config, severity,
evidence and summary builders) over per-entity feature dicts, built at window
close only for entities that can fire. Candidates: ``score`` = the guard
statistic divided by its effective threshold (≥ 1 fires), ``threshold`` = 1.0; ``observed``/``baseline`` carry the raw
numbers and the model verdict. Principals, sources, tokens and user agents
are hashed on arrival with ``context.hasher`` (salted HMAC, raw values kept
only in a bounded in-memory memo that is never persisted), so state,
checkpoints and alert JSON hold hashes unless ``reveal_identities``.

Cost: a non-auth span is rejected by one dict lookup on its operation; an auth
event costs a few µs (see ``tests/bench/bench_auth.py``); models run at window
close on a bounded sample.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections import OrderedDict
from typing import Any, Callable, Iterable, Sequence


from detector.detectors.auth.accum import MAX_ENTITIES, SET_CAP_WINDOW, PAcc, SAcc, ServiceAcc, TAcc, keep_event
from detector.detectors.auth.config import AuthConfig
from detector.detectors.auth.events import (
    _DENY_GRPC, _DENY_HTTP, FAIL, FORBID, INVALID_MARK, OK, OP_LOGIN, OP_NONE, OP_PROTECTED, SpanExtractor,
)
from detector.detectors.auth.logparse import LogParser
from detector.detectors.auth.rules import RULES_BY_ENTITY
from detector.detectors.auth.models import (
    SMALL_CAP, LRUTable, OpState, PrincipalState, ServiceState, SourceState, TokenState, prune_members, touch_capped,
    wilson_lower,
)
from detector.detectors.base import Candidate, Detector, DetectorContext, IdentityHasher, Window, any_of
from detector.normalise.records import LogRecord, SpanRecord

STATE_VERSION = 1
MEMO_MAX = 32_768
LEARN_PER_WINDOW = 8  # HST learns per population per window: max(1, entities // 32), at most this
OPS_PER_SERVICE = 500

KINDS = ("brute_force", "password_spraying", "credential_stuffing", "success_after_failures", "auth_bypass",
         "token_reuse", "forbidden_spike")


def _nwin(seconds: float, window: float) -> int:
    return max(1, int(math.ceil(seconds / window - 1e-9)))


def _touch_pairs(pairs: tuple, keys: tuple, idx: int, oldest: int) -> tuple:
    """``((key, last_idx), …)`` updated with ``keys`` (distinct) seen in window ``idx``, pruned below ``oldest``, capped."""
    if len(keys) == 1 and (not pairs or (len(pairs) == 1 and pairs[0][0] == keys[0])):
        return ((keys[0], idx),)  # the common cases: a new token, or the same single network / agent again
    if not pairs and not keys:
        return ()
    d = {k: last for k, last in pairs if last >= oldest}
    for k in keys:
        if k in d or len(d) < SMALL_CAP:
            d[k] = idx
    return tuple(d.items())


def _stride(n: int) -> int:
    """Learn every ``stride``-th entity vector: ≈ n/32 learns, at least 1, at most ``LEARN_PER_WINDOW``."""
    learns = min(LEARN_PER_WINDOW, max(1, n // 32))
    return max(1, n // learns)


def _ordered_events(acc: PAcc | SAcc) -> list[tuple]:
    """A principal's or source's window events ``(t, outcome, other id, n)`` in time order; the events past
    ``EVENT_CAP`` (counted in ``xfail``/``xsucc``) follow at the last event's time, failures first."""
    events = sorted(acc.events or (), key=lambda e: e[0])
    if acc.xfail or acc.xsucc:
        t_last = events[-1][0] if events else 0.0
        if acc.xfail:
            events.append((t_last, FAIL, None, acc.xfail))
        if acc.xsucc:
            events.append((t_last, OK, None, acc.xsucc))
    return events


def hmac_sha256_hex12(salt: bytes) -> Callable[[str], str]:
    """``value -> "h:" + first 12 hex digits of HMAC-SHA256(salt, UTF-8 value)``: the value
    :class:`~detector.detectors.base.IdentityHasher` gives (RFC 2104), with the key schedule done once.

    The inner and outer SHA-256 states (key XOR ipad / opad, RFC 2104 §2) are computed here; each call
    copies them (two C-level ``copy`` + ``update``), ≈2× cheaper than ``hmac.digest`` re-keying per value
    (0.8 vs 1.7 µs measured, tests/bench/bench_auth.py). Salts longer than the 64-byte block are hashed
    first, as RFC 2104 says.
    """
    key = salt if len(salt) <= 64 else hashlib.sha256(salt).digest()
    key = key.ljust(64, b"\0")
    icopy = hashlib.sha256(bytes(b ^ 0x36 for b in key)).copy
    ocopy = hashlib.sha256(bytes(b ^ 0x5C for b in key)).copy

    def h(raw: str) -> str:
        inner = icopy()
        inner.update(raw.encode("utf-8", "surrogatepass"))
        outer = ocopy()
        outer.update(inner.digest())
        return "h:" + outer.hexdigest()[:12]

    return h


def _net_of(addr: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of an address as text; the address itself if not an IP."""
    if ":" not in addr:
        parts = addr.split(".")
        if len(parts) == 4:
            return ".".join(parts[:3]) + ".0/24"
        return addr
    try:
        return str(ipaddress.ip_network(addr + "/48", strict=False))
    except ValueError:
        return addr


class AuthDetector(Detector):
    """Detector family ``auth`` (see the module docstring for kinds, guards and models).

    Args:
        config: :class:`~detector.detectors.auth.config.AuthConfig`.
        context: :class:`~detector.detectors.base.DetectorContext` (window length
            in seconds, identity hasher, deployments).
    """

    name = "auth"

    def __init__(self, config: AuthConfig, context: DetectorContext) -> None:
        super().__init__(config, context)
        self._acc: dict[int, dict[str, ServiceAcc]] = {}
        self._services: OrderedDict[str, ServiceState] = OrderedDict()
        self._principals = LRUTable(config.max_principals, PrincipalState)
        self._sources = LRUTable(config.max_sources, SourceState)
        self._tokens = LRUTable(config.max_tokens, TokenState)
        self._memo: dict[str, str] = {}
        self._src_memo: dict[str, list] = {}
        self._ua_memo: dict[str, str | None] = {}
        self._scores: dict[tuple[str, str], float] = {}
        self._pending_saf: list[Candidate] = []
        self.allowlisted_total = 0
        self.events_total = 0
        self.overflow_total = 0
        self._evicted_other = 0
        self._setup(config)

    # ------------------------------------------------------------------ config
    def _setup(self, config: AuthConfig) -> None:
        self.config = config
        base = self.context.hasher
        self._hasher = IdentityHasher(base.salt, True) if config.reveal_identities and not base.reveal else base
        # the standard hasher's output with its HMAC key schedule done once (hmac_sha256_hex12)
        self._ikey = hashlib.sha256(b"otel-anomaly/auth/internal:" + base.salt).digest()
        fast = type(self._hasher) is IdentityHasher and not self._hasher.reveal
        self._hash = hmac_sha256_hex12(base.salt) if fast else self._hasher
        self._spans = SpanExtractor(config)
        self._logs = LogParser(config, self._spans._login)
        self._allow_nets = [ipaddress.ip_network(c, strict=False) for c in config.allow_sources]
        self._allow_principals = frozenset(config.allow_principals)
        self._allow_ua = any_of(config.allow_user_agents)
        self._principals.cap = config.max_principals
        self._sources.cap = config.max_sources
        self._tokens.cap = config.max_tokens
        self._memo.clear()
        self._src_memo.clear()
        self._ua_memo.clear()

    def reconfigure(self, config: AuthConfig) -> None:
        """New patterns, allow-lists and thresholds; learned state is kept."""
        self._setup(config)

    # ------------------------------------------------------------------ hot path
    def _h(self, raw: str) -> str:
        h = self._memo.get(raw)
        if h is None:
            if len(self._memo) >= MEMO_MAX:
                self._memo.clear()
            h = self._memo[raw] = self._hash(raw)
        return h

    def _internal_key(self, raw: str) -> str:
        """Keyed BLAKE2s (RFC 7693) of a value that never leaves the detector (networks, user agents):
        stable across restarts with the same salt, ≈3× cheaper than the HMAC used for identities."""
        return hashlib.blake2s(raw.encode("utf-8", "surrogatepass"), digest_size=8, key=self._ikey).hexdigest()

    def _source_info(self, raw: str) -> list:
        """``[hashed source, hashed network or None until a token needs it, allow-listed]``, memoised."""
        allowed = False
        if self._allow_nets:
            try:
                ip = ipaddress.ip_address(raw)
                allowed = any(ip in n for n in self._allow_nets)
            except ValueError:
                allowed = False
        info = [self._hash(raw), None, allowed]
        if len(self._src_memo) >= MEMO_MAX:
            self._src_memo.clear()
        self._src_memo[raw] = info
        return info

    def _ua_info(self, raw: str) -> str | None:
        """Hashed user agent, or None when the agent is allow-listed."""
        if len(self._ua_memo) >= MEMO_MAX:
            self._ua_memo.clear()
        h = None if (self._allow_ua is not None and self._allow_ua.search(raw)) else self._internal_key(raw)
        self._ua_memo[raw] = h
        return h

    def observe_spans(self, window: Window, spans: Sequence[SpanRecord]) -> None:
        fields = self._spans.fields
        cache = self._spans._cache
        ingest = self._ingest
        widx = window.index
        for span in spans:
            # fast reject (inlined): a known non-auth operation that did not deny the request
            if cache.get(span.operation) == OP_NONE and span.http_status not in _DENY_HTTP \
                    and span.rpc_grpc_status not in _DENY_GRPC:
                continue
            f = fields(span)
            if f is not None:
                ingest(widx, span.resource.service, span.end, span.trace_id, *f)

    def observe_logs(self, window: Window, logs: Sequence[LogRecord]) -> None:
        parse = self._logs.parse
        widx = window.index
        for rec in logs:
            p = parse(rec)
            if p is None:
                continue
            outcome, user, source, ua, token, count, unknown, op, ok = p
            self._ingest(widx, rec.resource.service, rec.time or window.start, rec.trace_id, OP_LOGIN, outcome, user,
                         source or None, ua, token, count, unknown, op, ok)

    def _ingest(self, widx: int, service: str, t: float, trace: bytes, op_class: int, outcome: int,
                p: str | None, src: str | None, ua: str | None, token: str | None, n: int, unknown: bool, op: str,
                http_ok: bool) -> None:
        """Account one event (the fields of :class:`~detector.detectors.auth.events.AuthEvent`, passed
        positionally: no object per event) into the window's accumulators, hashing identities on arrival."""
        hs = info = None
        if src is not None:
            info = self._src_memo.get(src)
            if info is None:
                info = self._source_info(src)
            if info[2]:
                self.allowlisted_total += n
                return
            hs = info[0]
        hp = None
        if p is not None:
            if p in self._allow_principals:
                self.allowlisted_total += n
                return
            hp = self._memo.get(p)
            if hp is None:
                hp = self._h(p)
        hua = None
        if ua is not None:
            hua = self._ua_memo.get(ua, 0)
            if hua == 0:
                hua = self._ua_info(ua)
            if hua is None:
                self.allowlisted_total += n
                return
        self.events_total += n
        by_svc = self._acc.get(widx)
        if by_svc is None:
            by_svc = self._acc[widx] = {}
        sa = by_svc.get(service)
        if sa is None:
            sa = by_svc[service] = ServiceAcc()
            sa.first_time = t
        if token is not None:
            ht = self._hash(token)  # tokens are mostly unique: no memo
            ta = sa.tok.get(ht)
            if ta is None:
                if len(sa.tok) >= MAX_ENTITIES:
                    sa.overflow += 1
                    ta = None
                else:
                    ta = sa.tok[ht] = TAcc()
                    ta.trace = trace
            if ta is not None:
                # small tuples: nearly every token has one network and one agent (and tuples of
                # strings are untracked by the cyclic GC)
                if info is not None:
                    hnet = info[1]
                    if hnet is None:  # the source's /24 or /48, computed once a token needs it
                        hnet = info[1] = self._internal_key(_net_of(src))
                    if hnet not in ta.nets and len(ta.nets) < SMALL_CAP:
                        ta.nets += (hnet,)
                if hua is not None and hua not in ta.uas and len(ta.uas) < SMALL_CAP:
                    ta.uas += (hua,)
        if op_class == OP_PROTECTED:
            o = sa.ops.get(op)
            if o is None:
                if len(sa.ops) >= OPS_PER_SERVICE:
                    return
                o = sa.ops[op] = [0, 0, 0, 0, 0, b""]
            o[0] += n
            denied = outcome == FAIL or outcome == FORBID
            if denied:
                o[4] += n
            if hp is None:
                o[1] += n
                if http_ok:
                    o[2] += n
                    if not o[5]:
                        o[5] = trace
                elif denied:
                    o[3] += n
            elif outcome == FORBID:
                pa = sa.pr.get(hp)
                if pa is None:
                    if len(sa.pr) >= MAX_ENTITIES:
                        sa.overflow += 1
                        return
                    pa = sa.pr[hp] = PAcc()
                    pa.trace = trace
                pa.forb += n
            return
        if outcome == INVALID_MARK:
            key = (hs, hp)
            iv = sa.inv.get(key)
            if iv is None:
                if len(sa.inv) >= MAX_ENTITIES:
                    return
                iv = sa.inv[key] = [0, 0, t, trace]
            iv[0] += 1
            return
        if outcome == FAIL:
            sa.att += n
            sa.fail += n
            if unknown:
                sa.unknown += n
                iv = sa.inv.get((hs, hp))
                if iv is not None:
                    iv[1] += n
            if len(sa.fail_principals) < SET_CAP_WINDOW:
                sa.fail_principals.add(hp)
            fs = sa.fail_sources
            if hs in fs:
                fs[hs] += n
            elif len(fs) < SET_CAP_WINDOW:
                fs[hs] = n
        elif outcome == OK:
            sa.att += n
        elif outcome == FORBID:
            pass
        else:
            return
        self._account(sa, hp, hs, hua, outcome, n, t, trace, unknown, service)

    def _account(self, sa: ServiceAcc, hp: str | None, hs: str | None, hua: str | None, outcome: int, n: int,
                 t: float, trace: bytes, unknown: bool, service: str) -> None:
        """Per-entity window counters. Ordered events are kept only where a failure run can be
        involved (a failure in this window, or a run carried over in the entity's state), so the
        common success-only login allocates no event list."""
        if hp is not None:
            pa = sa.pr.get(hp)
            if pa is None:
                if len(sa.pr) >= MAX_ENTITIES:
                    sa.overflow += 1
                    pa = None
                else:
                    pa = sa.pr[hp] = PAcc()
            if pa is not None:
                keep = True
                if outcome == FAIL:
                    pa.fail += n
                    sf = pa.src_fail
                    if sf is None:
                        pa.src_fail = {hs: n}
                    else:
                        sf[hs] = sf.get(hs, 0) + n
                    if not pa.trace:
                        pa.trace = trace
                elif outcome == OK:
                    pa.succ += n
                    if pa.srcs is None:
                        pa.srcs = {hs}
                    elif len(pa.srcs) < SMALL_CAP:
                        pa.srcs.add(hs)
                    if pa.events is None:
                        ps = self._principals.data.get((service, hp))
                        keep = ps is not None and ps.run > 0
                else:
                    pa.forb += n
                    keep = False
                if keep:
                    keep_event(pa, t, outcome, hs, n, outcome == FAIL)
        if hs is not None:
            s = sa.src.get(hs)
            if s is None:
                if len(sa.src) >= MAX_ENTITIES:
                    sa.overflow += 1
                    return
                s = sa.src[hs] = SAcc()
            keep = True
            if outcome == FAIL:
                s.fail += n
                if unknown:
                    s.unknown += n
                if hp is not None:
                    pr = s.principals
                    if pr is None:
                        s.principals = {hp: n}
                    else:
                        pr[hp] = pr.get(hp, 0) + n
                if not s.trace:
                    s.trace = trace
            elif outcome == OK:
                s.succ += n
                if s.events is None:
                    ss = self._sources.data.get((service, hs))
                    keep = ss is not None and ss.run > 0
            else:
                return
            if hua is not None:
                if s.uas is None:
                    s.uas = {hua}
                elif len(s.uas) < SMALL_CAP:
                    s.uas.add(hua)
            if keep:
                keep_event(s, t, outcome, hp, n, outcome == FAIL)

    # ------------------------------------------------------------------ window close
    def close_window(self, window: Window) -> list[Candidate]:
        """Evaluate every service that had auth events in ``window``; expire idle entities."""
        by_svc = self._acc.pop(window.index, None)
        out: list[Candidate] = []
        scores: dict[tuple[str, str], float] = {}
        if by_svc:
            for service, sa in by_svc.items():
                out.extend(self._close_service(window, service, sa, scores))
        self._scores = scores
        ttl = _nwin(self.config.entity_ttl, self.context.window_seconds)
        oldest = window.index - ttl
        self._principals.expire(oldest)
        self._sources.expire(oldest)
        self._tokens.expire(oldest)
        for name in [s for s, st in self._services.items() if st.last < oldest and not st.ops]:
            del self._services[name]
        for st in self._services.values():
            stale = [op for op, o in st.ops.items() if o.last < window.index - 10 * ttl]
            for op in stale:
                del st.ops[op]
        self.evicted_total = self._principals.evicted + self._sources.evicted + self._tokens.evicted + self._evicted_other
        return out

    def _service(self, service: str, t: float) -> ServiceState:
        st = self._services.get(service)
        if st is None:
            if len(self._services) >= self.config.max_services:
                self._services.popitem(last=False)
                self._evicted_other += 1
            cfg = self.config
            st = self._services[service] = ServiceState(cfg.baseline_quantile, cfg.model_quantile, t)
        else:
            self._services.move_to_end(service)
        return st

    def _close_service(self, window: Window, service: str, sa: ServiceAcc, scores: dict) -> list[Candidate]:
        cfg = self.config.for_service(service)
        ws = self.context.window_seconds
        idx = window.index
        st = self._service(service, min(sa.first_time or window.start, window.start))
        st.last = idx
        warm = window.end - st.first_seen >= cfg.warmup
        self._resolve_invalid_marks(sa, service)
        out: list[Candidate] = []
        out += self._principals_close(window, service, sa, st, cfg, scores, warm)
        out += self._sources_close(window, service, sa, st, cfg, scores, out)
        out += self._tokens_close(window, service, sa, st, cfg, scores, warm)
        out += self._ops_close(window, service, sa, st, cfg, scores, warm)
        stuffing = self._stuffing_close(window, service, sa, st, cfg, scores, warm, _nwin(cfg.service_horizon, ws))
        if self._pending_saf and (stuffing or st.stuffing_alerting >= idx):
            # successes from sources taking part in a credential-stuffing run are its compromised
            # accounts: reported in the stuffing alert (made critical), not as one alert per source
            c = stuffing[0] if stuffing else self._cand(
                "credential_stuffing", service, {}, 1.0, "critical", {"continuing": True}, {},
                "credential stuffing continues with successful logins from its sources", [])
            c.severity = "critical"
            c.observed["successes_after_failure_runs"] = c.observed.get("successes_after_failure_runs", 0) + len(self._pending_saf)
            c.observed["compromised_principals"] = [p.observed["success_principal"] for p in self._pending_saf][:5]
            c.summary += f"; {len(self._pending_saf)} source(s) then logged in successfully (possible compromise)"
            stuffing = [c]
            self._pending_saf = []
        out += stuffing + self._pending_saf
        self._pending_saf = []
        if sa.overflow:
            self.overflow_total += sa.overflow
        return out

    def _resolve_invalid_marks(self, sa: ServiceAcc, service: str) -> None:
        """sshd 'Invalid user U from S' without a following 'Failed … invalid user U' line = one failed probe."""
        for (hs, hp), (marks, failed, t, trace) in sa.inv.items():
            extra = marks - failed
            if extra <= 0:
                continue
            sa.att += extra
            sa.fail += extra
            sa.unknown += extra
            if len(sa.fail_principals) < SET_CAP_WINDOW:
                sa.fail_principals.add(hp)
            sa.fail_sources[hs] = sa.fail_sources.get(hs, 0) + extra
            self._account(sa, hp, hs, None, FAIL, extra, t, trace, True, service)
        sa.inv.clear()

    # -- helpers
    def _threshold(self, minimum: float, baseline, cfg) -> tuple[float, float | None]:
        q = baseline.get(cfg.baseline_min_samples)
        if q is None:
            return float(minimum), None
        return max(float(minimum), cfg.baseline_multiplier * q), q

    def _cand(self, kind: str, service: str, subject: dict, ratio: float, severity: str, observed: dict,
              baseline: dict, summary: str, traces: Iterable[bytes] = ()) -> Candidate:
        ex = []
        for t in traces:
            if t and t.hex() not in ex:
                ex.append(t.hex())
            if len(ex) >= 5:
                break
        return Candidate(detector=self.name, kind=kind, service=service, peer="", subject=subject, anomalous=True,
                         score=round(ratio, 4), threshold=1.0, severity=severity, observed=observed,
                         baseline=baseline, summary=summary, exemplar_trace_ids=ex)

    @staticmethod
    def _bump(scores: dict, kind: str, service: str, v: float) -> None:
        k = (kind, service)
        if v > scores.get(k, 0.0):
            scores[k] = v

    def _gate(self, cfg, model, vector: list[float], ratio: float) -> tuple[bool, dict]:
        if not cfg.model_enabled:
            return True, {"state": "disabled"}
        verdict = model.judge(vector)
        fire = verdict["state"] != "typical" or ratio >= cfg.model_strong_factor
        return fire, verdict

    def _judge(self, entity: str, f: dict, cfg, service: str, scores: dict, out: list[Candidate],
               model: Any = None) -> bool:
        """The one evaluation pass: every rule of ``entity`` (:data:`~detector.detectors.auth.rules.RULES`,
        table order) on the features ``f``; firing rules append candidates to ``out``. True when one fired."""
        for rule in RULES_BY_ENTITY[entity]:
            if not rule.applies(f, cfg):
                continue
            r = f[rule.feature] / f[rule.per] if rule.per else f[rule.feature]
            f["r"] = r
            self._bump(scores, rule.kind, service, r)
            if r < 1.0 or not rule.guard(f, cfg):
                continue
            if rule.gated:
                fire, f["model"] = self._gate(cfg, model, f["vector"], r)
                if not fire:
                    continue
            f["alerting"] = True
            sev = rule.severity if type(rule.severity) is str else rule.severity(f)
            out.append(self._cand(rule.kind, service, {rule.subject: f["subject"]} if rule.subject else {}, r, sev,
                                  rule.observed(f, cfg), rule.baseline(f, cfg), rule.summary(f, cfg), (f["trace"],)))
        return f.get("alerting", False)

    # -- principals: brute_force, success_after_failures, forbidden_spike
    def _principals_close(self, window: Window, service: str, sa: ServiceAcc, st: ServiceState, cfg,
                          scores: dict, warm: bool) -> list[Candidate]:
        out: list[Candidate] = []
        ws = self.context.window_seconds
        idx = window.index
        hp_w = _nwin(cfg.principal_horizon, ws)
        lookback = cfg.success_lookback
        bf_thr, bf_q = self._threshold(cfg.brute_force_min_failures, st.b_pr_fail, cfg)
        fb_thr, fb_q = self._threshold(cfg.forbidden_min, st.b_pr_forb, cfg)
        stride = _stride(len(sa.pr))
        model = st.m_principal
        table = self._principals
        tdata = table.data
        b_fail: list[float] = []  # baseline samples, fed in order after the loop (nothing reads them in it)
        b_forb: list[float] = []
        i = 0
        for hp, pa in sa.pr.items():
            i += 1
            key = (service, hp)
            ps = tdata.get(key)
            if ps is None:
                if not (pa.fail or pa.forb):
                    # success-only principal without history: a normal member of the population
                    b_fail.append(0.0)
                    if i % stride == 0:
                        model.learn([0, pa.succ, 0, len(pa.srcs or ()), 0, 0.0])
                    continue
                ps = table.get_or_create(key, idx)
            else:  # table.get_or_create without the second lookup
                tdata.move_to_end(key)
                ps.last = idx
            ps.buckets.add(idx, [pa.fail, pa.succ, pa.forb])
            for hs, c in (pa.src_fail or {}).items():
                touch_capped(ps.sources, hs, idx, c, SMALL_CAP)
            oldest = idx - hp_w + 1
            prune_members(ps.sources, oldest)
            f, s, fb = ps.buckets.sums(oldest, 3)
            known = ps.known or ()
            new_source = 1 if pa.srcs and any(hs not in known for hs in pa.srcs) else 0
            ratio_f = f / (f + s) if f + s else 0.0
            vector = [f, s, fb, len(ps.sources), new_source, ratio_f]
            fthr = max(fb_thr, cfg.forbidden_own_factor * max(ps.ew_forb, 1.0))
            alerting = self._judge("principal", {
                "subject": hp, "trace": pa.trace, "vector": vector, "warm": warm, "horizon_seconds": hp_w * ws,
                "failures": f, "successes": s, "forbidden": fb, "failure_ratio": ratio_f, "sources": ps.sources,
                "window_failures": pa.fail, "window_forbidden": pa.forb, "min_failures": bf_thr,
                "failures_quantile": bf_q, "forbidden_threshold": fthr, "forbidden_quantile": fb_q,
                "own_forbidden": ps.ew_forb}, cfg, service, scores, out, model)
            # success_after_failures (ordered within the window)
            for t, run, hs, in_run, known in self._run_principal(ps, pa, cfg.saf_min_failures, lookback):
                alerting = self._judge("principal_success", {
                    "subject": hp, "trace": pa.trace, "failures_before_success": run, "min_failures": cfg.saf_min_failures,
                    "success_source": hs, "in_run": in_run, "known": known, "success_time": t},
                    cfg, service, scores, out) or alerting
            if pa.srcs:  # successes without a run in this window were not kept as events
                kn = ps.known or ()
                for hs in pa.srcs:
                    if hs is not None and hs not in kn and len(kn) < SMALL_CAP:
                        kn = kn + (hs,)
                ps.known = kn or None
            if alerting:
                ps.alerting = idx + hp_w
            elif ps.alerting < idx:
                b_fail.append(float(f))
                if fb or ps.ew_forb:
                    b_forb.append(float(fb))
                ps.ew_forb = 0.9 * ps.ew_forb + 0.1 * fb
                if i % stride == 0:
                    model.learn(vector)
        st.b_pr_fail.update_many(b_fail)
        st.b_pr_forb.update_many(b_forb)
        return out

    @staticmethod
    def _run_principal(ps: PrincipalState, pa: PAcc, min_run: int, lookback: float) -> list[tuple]:
        hits = []
        for t, o, hs, n in _ordered_events(pa):
            if o == FAIL:
                if ps.run and t - ps.run_last > lookback:
                    ps.run = 0
                    ps.run_sources = None
                ps.run += n
                ps.run_last = t
                # small tuples, not sets: most runs and most principals involve one or two sources
                rs = ps.run_sources
                if rs is None:
                    ps.run_sources = (hs,)
                elif hs not in rs and len(rs) < SMALL_CAP:
                    ps.run_sources = rs + (hs,)
            elif o == OK:
                if ps.run >= min_run and t - ps.run_last <= lookback:
                    in_run = hs in (ps.run_sources or ())
                    known = hs in (ps.known or ())
                    hits.append((t, ps.run, hs, in_run, known))
                ps.run = 0
                ps.run_sources = None
                kn = ps.known or ()
                if hs is not None and hs not in kn and len(kn) < SMALL_CAP:
                    ps.known = kn + (hs,)  # sources that authenticated the principal before
        return hits

    # -- sources: password_spraying, success_after_failures (source path)
    def _sources_close(self, window: Window, service: str, sa: ServiceAcc, st: ServiceState, cfg, scores: dict,
                       so_far: list[Candidate]) -> list[Candidate]:
        out: list[Candidate] = []
        ws = self.context.window_seconds
        idx = window.index
        hs_w = _nwin(cfg.source_horizon, ws)
        sp_thr, sp_q = self._threshold(cfg.spraying_min_principals, st.b_src_principals, cfg)
        stride = _stride(len(sa.src))
        model = st.m_source
        table = self._sources
        tdata = table.data
        b_prin: list[float] = []  # baseline samples, fed in order after the loop
        saf_principals = {c.subject.get("principal") for c in so_far if c.kind == "success_after_failures"}
        explained = {s for c in so_far if c.kind == "brute_force" for s, _ in c.observed.get("top_sources", ())}
        bf_thr, bf_q = self._threshold(cfg.brute_force_min_failures, st.b_pr_fail, cfg)
        i = 0
        for hs, s_ in sa.src.items():
            i += 1
            key = (service, hs)
            ss = tdata.get(key)
            if ss is None:
                if not s_.fail:
                    b_prin.append(0.0)
                    if i % stride == 0:
                        model.learn([0, s_.succ, 0, 0.0, 0, 0.0, len(s_.uas or ())])
                    continue
                ss = table.get_or_create(key, idx)
            else:
                tdata.move_to_end(key)
                ss.last = idx
            ss.buckets.add(idx, [s_.fail, s_.succ, s_.unknown])
            for hp, c in (s_.principals or {}).items():
                touch_capped(ss.principals, hp, idx, c)
            for hua in s_.uas or ():
                touch_capped(ss.uas, hua, idx, 0, SMALL_CAP)
            oldest = idx - hs_w + 1
            prune_members(ss.principals, oldest)
            prune_members(ss.uas, oldest)
            f, s, u = ss.buckets.sums(oldest, 3)
            fp = len(ss.principals)
            per = (sum(e[1] for e in ss.principals.values()) / fp) if fp else 0.0
            ratio_f = f / (f + s) if f + s else 0.0
            vector = [f, s, fp, ratio_f, per, (u / f) if f else 0.0, len(ss.uas)]
            alerting = self._judge("source", {
                "subject": hs, "trace": s_.trace, "vector": vector, "horizon_seconds": hs_w * ws, "failures": f,
                "successes": s, "failed_principals": fp, "failure_ratio": ratio_f, "failures_per_principal": per,
                "unknown_failures": u, "user_agents": len(ss.uas), "principals": ss.principals,
                "window_failures": s_.fail, "min_principals": sp_thr, "principals_quantile": sp_q,
                "min_failures": bf_thr, "failures_quantile": bf_q, "explained": hs in explained}, cfg, service, scores,
                out, model)
            for t, run, hp, nprin in self._run_source(ss, s_, cfg.saf_min_failures, cfg.success_lookback):
                alerting = self._judge("source_success", {
                    "subject": hs, "trace": s_.trace, "failures_before_success": run, "min_failures": cfg.saf_min_failures,
                    "principals_in_run": nprin, "success_principal": hp, "success_time": t,
                    "reported": hp in saf_principals}, cfg, service, scores, self._pending_saf) or alerting
            if alerting:
                ss.alerting = idx + hs_w
            elif ss.alerting < idx:
                b_prin.append(float(fp))
                if i % stride == 0:
                    model.learn(vector)
        st.b_src_principals.update_many(b_prin)
        return out

    @staticmethod
    def _run_source(ss: SourceState, s_: SAcc, min_run: int, lookback: float) -> list[tuple]:
        hits = []
        for t, o, hp, n in _ordered_events(s_):
            if o == FAIL:
                if ss.run and t - ss.run_last > lookback:
                    ss.run = 0
                    ss.run_principals = None
                ss.run += n
                ss.run_last = t
                if hp is not None:
                    if ss.run_principals is None:
                        ss.run_principals = {hp}
                    elif len(ss.run_principals) < SMALL_CAP:
                        ss.run_principals.add(hp)
            elif o == OK:
                if ss.run >= min_run and t - ss.run_last <= lookback:
                    hits.append((t, ss.run, hp, len(ss.run_principals or ())))
                ss.run = 0
                ss.run_principals = None
        return hits

    # -- tokens: token_reuse
    def _tokens_close(self, window: Window, service: str, sa: ServiceAcc, st: ServiceState, cfg, scores: dict,
                      warm: bool) -> list[Candidate]:
        out: list[Candidate] = []
        if not sa.tok:
            return out
        ws = self.context.window_seconds
        idx = window.index
        ht_w = _nwin(cfg.token_horizon, ws)
        thr, q = self._threshold(cfg.token_min_networks, st.b_tok_nets, cfg)
        oldest = idx - ht_w + 1
        get_or_create = self._tokens.get_or_create
        b_nets: list[float] = []  # baseline samples, fed in order after the loop
        r_max = 0.0
        for ht, ta in sa.tok.items():
            ts = get_or_create((service, ht), idx)
            ts.nets = _touch_pairs(ts.nets, ta.nets, idx, oldest)
            ts.uas = _touch_pairs(ts.uas, ta.uas, idx, oldest)
            nets = len(ts.nets)
            uas = len(ts.uas)
            r = nets / thr
            if r > r_max:
                r_max = r
            # only tokens over the threshold are judged (nearly every token has one network)
            if r >= 1.0 and self._judge("token", {
                    "subject": ht, "trace": ta.trace, "warm": warm, "networks": nets, "user_agents": uas,
                    "window_networks": len(ta.nets), "horizon_seconds": ht_w * ws, "min_networks": thr,
                    "networks_quantile": q}, cfg, service, scores, out):
                ts.alerting = idx + ht_w
            elif ts.alerting < idx:
                b_nets.append(float(nets))
        self._bump(scores, "token_reuse", service, r_max)
        st.b_tok_nets.update_many(b_nets)
        return out

    # -- protected operations: auth_bypass
    def _ops_close(self, window: Window, service: str, sa: ServiceAcc, st: ServiceState, cfg, scores: dict,
                   warm: bool) -> list[Candidate]:
        out: list[Candidate] = []
        idx = window.index
        h_w = _nwin(cfg.bypass_horizon, self.context.window_seconds)
        for op, (total, anon, anon_ok, anon_deny, deny, trace) in sa.ops.items():
            o = st.ops.get(op)
            if o is None:
                if len(st.ops) >= OPS_PER_SERVICE:
                    self._evicted_other += 1
                    continue
                o = st.ops[op] = OpState()
            o.last = idx
            o.recent.add(idx, [anon, anon_ok, anon_deny])
            o.recent.sums(idx - h_w + 1, 3)  # prune to the horizon
            # counted from the first window (within the horizon) with an anonymous 2xx, so that the
            # denials from before a change do not dilute what happens after it
            anon_h = ok_h = deny_h = 0
            started = False
            for row in o.recent.rows:
                started = started or row[2] > 0
                if started:
                    anon_h += row[1]
                    ok_h += row[2]
                    deny_h += row[3]
            base_deny = (o.anon_deny + 0.5) / (o.anon + 1.0)
            strict = o.anon >= cfg.bypass_min_baseline_anonymous and base_deny >= cfg.bypass_min_baseline_deny_share
            lb = wilson_lower(ok_h, anon_h, cfg.bypass_wilson_z)
            r_a = lb / cfg.bypass_min_ok_share if cfg.bypass_min_ok_share else 0.0
            base_share = o.total_anon / o.total if o.total else 0.0
            share = anon / total if total else 0.0
            r_b = ((share - base_share) / cfg.bypass_min_anonymous_share_jump) if (o.deny > 0 and deny == 0) else 0.0
            dep = self.context.deployments.last(service)
            if dep is not None and window.end - dep[0] <= 3600:
                dep = {"at": dep[0], "from_version": dep[1], "to_version": dep[2],
                       "seconds_before": round(window.start - dep[0], 1)}
            else:
                dep = None
            if self._judge("operation", {
                    "subject": op, "trace": trace, "warm": warm, "strict": strict,
                    "ratio_denied": r_a if strict else 0.0, "ratio_share": r_b, "requests": total, "anonymous": anon,
                    "anonymous_2xx": anon_ok, "anonymous_denied": anon_deny, "denied": deny, "horizon_anonymous": anon_h,
                    "horizon_anonymous_2xx": ok_h, "horizon_anonymous_denied": deny_h,
                    "horizon_seconds": h_w * self.context.window_seconds, "lower_bound": lb, "anonymous_share": share,
                    "learned_anonymous": o.anon, "learned_deny_share": base_deny, "learned_anonymous_share": base_share,
                    "learned_total": o.total, "deployment": dep}, cfg, service, scores, out):
                o.alerting = idx + 3
            elif o.alerting < idx and not (strict and anon_ok):
                # a strictly protected operation's anonymous 2xx are never learned as normal
                o.anon += anon
                o.anon_deny += anon_deny
                o.total += total
                o.total_anon += anon
                o.deny += deny
                if o.total > 20_000:  # forget by volume: half weight
                    for a in ("anon", "anon_deny", "total", "total_anon", "deny"):
                        setattr(o, a, getattr(o, a) / 2)
        return out

    # -- service level: credential_stuffing
    def _stuffing_close(self, window: Window, service: str, sa: ServiceAcc, st: ServiceState, cfg, scores: dict,
                        warm: bool, h_w: int) -> list[Candidate]:
        idx = window.index
        st.history.append((idx, sa.att, sa.fail, sa.fail_principals, sa.fail_sources, sa.unknown))
        oldest = idx - h_w + 1
        while st.history and st.history[0][0] < oldest:
            st.history.pop(0)
        if sa.att == 0:
            return []
        n = sum(h[1] for h in st.history)
        k = sum(h[2] for h in st.history)
        unknown = sum(h[5] for h in st.history)
        principals: set = set()
        sources: dict = {}
        for h in st.history:
            principals |= h[3]
            for s, c in h[4].items():
                sources[s] = sources.get(s, 0) + c
        principals.discard(None)
        nsrc = len(sources) - (1 if None in sources else 0)
        top_share = max(sources.values()) / k if (k and sources) else 0.0
        tot = sum(sources.values())
        # effective number of sources (inverse Simpson index, 1/Σ share²): two loud attackers plus a few
        # typos count as ~2, two hundred equal sources as 200
        eff = (tot * tot / sum(c * c for c in sources.values())) if tot else 0.0
        p0 = (st.fail + 0.5) / (st.att + 1.0)
        ratio = k / n if n else 0.0
        need = min(1.0, p0 + cfg.stuffing_min_ratio_increase)
        r = min(ratio / need if need else 0.0, len(principals) / cfg.stuffing_min_failed_principals)
        out: list[Candidate] = []
        if self._judge("service", {
                "subject": "", "trace": b"", "warm": warm, "ratio": r, "attempts": n, "failures": k,
                "failure_ratio": ratio, "need": need, "failed_principals": len(principals), "sources": nsrc,
                "effective_sources": eff, "top_source_share": top_share, "unknown": unknown,
                "horizon_seconds": h_w * self.context.window_seconds, "learned_ratio": p0,
                "learned_attempts": st.learned_att, "window_failures": sa.fail}, cfg, service, scores, out):
            st.stuffing_alerting = idx + h_w
            return out
        if st.stuffing_alerting < idx:
            decay = 0.5 ** (sa.att / 20_000)
            st.att = st.att * decay + sa.att
            st.fail = st.fail * decay + sa.fail
            st.learned_att += sa.att
        return out

    # ------------------------------------------------------------------ introspection / state
    def tracked_series(self) -> int:
        return len(self._principals) + len(self._sources) + len(self._tokens) + sum(len(s.ops) for s in self._services.values())

    def scores(self) -> Iterable[tuple[str, str, str, float]]:
        return [(kind, service, "", round(v, 4)) for (kind, service), v in self._scores.items()]

    def state_dict(self) -> dict:
        """Picklable snapshot: hashed entity tables, per-service baselines and models, open window accumulators."""
        return {
            "version": STATE_VERSION,
            "services": self._services,
            "principals": self._principals.data,
            "sources": self._sources.data,
            "tokens": self._tokens.data,
            "acc": self._acc,
            "evicted": [self._principals.evicted, self._sources.evicted, self._tokens.evicted, self._evicted_other],
            "counters": [self.allowlisted_total, self.events_total, self.overflow_total],
        }

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state_dict` output.

        Raises:
            ValueError: ``state`` is not empty and is not this detector's layout
                (``version`` != :data:`STATE_VERSION`): the app's all-or-nothing
                restore then starts every detector cold instead of this one alone, silently.
        """
        if not state:
            return
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"auth state version {state.get('version')!r}, expected {STATE_VERSION}")
        self._services = OrderedDict(state["services"])
        self._principals.data = OrderedDict(state["principals"])
        self._sources.data = OrderedDict(state["sources"])
        self._tokens.data = OrderedDict(state["tokens"])
        self._acc = dict(state.get("acc", {}))
        ev = state.get("evicted", [0, 0, 0, 0])
        self._principals.evicted, self._sources.evicted, self._tokens.evicted, self._evicted_other = ev
        self.allowlisted_total, self.events_total, self.overflow_total = state.get("counters", [0, 0, 0])
        self.evicted_total = sum(ev)
