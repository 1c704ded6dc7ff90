"""Rising error rates per service, caller->callee edge, operation and in logs.

Answers "did errors on this service, or between these two services, just rise
beyond what is normal for *them*?" for a service failing 0.05 % of requests
and one failing 8 %, at 1 request per minute and at thousands per second,
through daily traffic cycles, without a threshold per service.

Series (``kind``, labels ``service``/``peer``, ``subject``):

- ``service_error_rate``: SERVER and CONSUMER spans of a service.
- ``edge_error_rate``: CLIENT and PRODUCER spans of caller -> ``peer``
  (``SpanRecord.peer``; spans without a known peer are not an edge).
- ``operation_error_rate``: SERVER/CONSUMER spans per ``SpanRecord.operation``
  (subject ``{"operation": ...}``), capped per service.
- ``log_error_rate``: share of log records with severity >= ERROR per
  service (subject ``{}``), and, per masked error *signature*, the ratio of
  this error to the service's activity in the window (max of its log records
  and its server requests; subject ``{"signature": ...}``), so a new kind of
  error is seen even when the total error share is flat. Signature series
  alert only while their baseline is below 0.5 % (a *new or rare* kind of
  error); rises of common signatures are left to the total series.

Error semantics come from normalisation (``SpanRecord.is_error``: server 4xx
is not a server error, client 4xx is; ``LogRecord.is_error``), with one
exception on edges: a client call to an *authentication operation* (login,
token, session … — ``client_auth_operation_patterns``) that the callee refused
(HTTP 401/403, gRPC UNAUTHENTICATED/PERMISSION_DENIED) is the callee's verdict
on an end user's credentials: a request, but an edge error only while such
refusals are most of the edge's calls, or when ``client_auth_failures_are_errors``
is set. Refusals on every other call are errors at once, like 5xx (see
:meth:`ErrorRateDetector._auth_errors`).

How it decides (per series, at each window close, all series at once with
numpy; only the ADWIN feed and candidate building loop in Python):

1. Baseline ``p0``: Beta-binomial shrinkage. Learned pseudo-counts ``a``
   (errors) and ``b`` (successes) forget by *requests* (half-life
   ``half_life_requests``), so a quiet night does not erase them; the prior is
   the population's ratio for the kind (capped at ``prior_max``, so chronic
   failers do not lift it) with an empirical-Bayes weight: Beta concentration
   ``mu(1-mu)/var - 1`` from the spread of the series' learned ratios (binomial
   noise removed; at least 10 and at most ``prior_weight`` requests), so a
   heterogeneous fleet (0.05 % and 8 % services) shrinks little; floored at
   ``rate_floor``. A new error signature starts from the signature's absence in
   all the service's learned log records. Learning is delayed by
   ``learn_delay`` (default: the warm-up; the oldest remembered window is learned) and skipped
   when any window since was anomalous, the CUSUM holds more than a quarter
   of its threshold, or the window lies in the CUSUM's current segment and that
   segment's binomial p-value is already below ``LEARN_P`` (a sparse
   incident's first errors, minutes apart), so neither the first windows of an
   incident nor a ramp drag the baseline up; after ``adapt_after`` of continuous anomaly — an alert episode,
   or a CUSUM held at or above its threshold since its segment began, even while single windows look calm and
   the episode keeps ending — the new level is learned anyway (a lasting change becomes normal; cf. river
   ``anomaly.filter`` ``protect_anomaly_detector``).

   Cold start: a series is tested from age ``warmup`` but learning lags by ``learn_delay`` (= ``warmup``), so
   at arming it has learned 1-10 windows (a few dozen requests), shrunk towards a population prior of
   ~0.1-1 %. A point estimate from so little data is not a null hypothesis: a series that normally fails
   2-8 % looked 5-20x its "baseline", went anomalous at once, and — learning being frozen while anomalous —
   stayed anomalous with that baseline for good (measured in the demo: gateway→frontend at ~1.9 % held at
   0.1 %, CUSUM pinned at its cap, for an hour). Tests compare the window with the *true* normal ratio,
   which a young baseline only bounds: while a series is younger than ``adapt_after`` *and* the upper
   Wilson score bound (Wilson 1927; z = ``YOUNG_Z`` = 2) of its own learned ratio cannot rule out
   ``min_ratio`` x the estimate (the smallest rise the detector reports, i.e. it is not yet known whether
   the series' normal is already "a rise"), the tested null is raised to that upper bound (at most
   ``prior_max``): the uncertainty of the baseline widens the null instead of being ignored. The bound
   itself, not a fraction of it (e.g. the CUSUM's balance point): a null below the true ratio lets the CUSUM
   drift up, which freezes learning (the guard above) in the elevated stretches only and biases the learned
   ratio low (measured in the demo: a gateway at ~1.5 % learned 0.66 % from 1,650 requests). The series
   then learns its own level like any calm series; the bound shrinks as ``1/sqrt(requests)`` and the
   widening switches itself off (a series at 1 % stops being widened at ~800 learned requests, at 3 % ~250; a
   series learned from 50 requests with 0 errors is tested against ~5 %, not 0.1 %). Older series and well
   learned young ones keep the point estimate and their sensitivity (the eval's incidents all hit series
   older than ``adapt_after``; a 1 % -> 20 % step alerts in its first window). Why not for every
   series: an established series' remaining estimation error is small against ``min_ratio``, while a low-
   traffic one (0.5 request/min, ~100 learned requests) would lose ~40 % of its speed (measured: eval
   ``error_low_traffic`` delay 1350 -> 2170 s with the bound always on). Why capped at ``prior_max``: a
   series with almost nothing learned (10 requests, 0 errors: bound 29 %) would otherwise need ~50 % more
   failing requests to alert (a new service at 1 request/window failing 100 %); ratios above ``prior_max``
   from birth are what ``new_series_floor`` reports — unless the estimate itself is higher: the null is never
   below ``min_ratio`` x the estimate while widened (a sparse log series at ~30 % that learned 29 records,
   12 %, is not held against 5 %). An error-signature series is widened only once it has learned
   occurrences of its own signature (a recurring error of a young service, e.g. the demo's "POST /checkout
   failed" at ~4 % of records, learned 1 of 58): before that it tests a *new kind* of error against its
   absence from the service's learned records, which is its purpose (the real-data case: "No instances
   available for ts-basic-service", absent from 87 learned records, must alert at once), and its novelty
   (``SIG_NOVEL_MAX``) is judged on the learned estimate. Alerts keep reporting the learned estimate as
   ``baseline.ratio`` (and in the summary); the widened null, when used, is ``baseline.tested_ratio``.
2. Tests, each with the effect-size floors (at least ``min_errors`` errors,
   ratio >= ``min_ratio`` x p0 and >= p0 + ``min_increase``):
   binomial tail of the window; of the last ``aggregate_windows`` windows
   (low traffic); of the CUSUM's current segment (since ``S`` left 0 — this
   is what lets a 1 request/minute service alert when 10 of its next 12 fail);
   and the one-sided binomial CUSUM itself (Page 1954; see
   :class:`~detector.detectors.error_rate.cusum.BinomialCUSUM`, the per-series
   river ``BinaryDriftDetector`` with the same recursion). The binomial tests
   use ``alpha = false_alerts_per_day / (series x windows/day x 3)`` and the
   CUSUM ``h = ln(windows/day x series / false_alerts_per_day)`` (Lorden's
   ``ARL0 >= e^h``), so the budget is per day for the whole fleet, not per test.
   Caveats: the binomial model assumes independent requests — retry storms and
   fan-out make real errors over-dispersed and the tests anti-conservative
   (``min_errors`` is the guard); the segment test's start is chosen by the
   data (where ``S`` left 0), which makes it mildly anti-conservative too.
3. ``river.drift.ADWIN`` per series, fed one value per window when the
   window has at least ``adwin_min_requests`` requests — one update per series
   per window instead of one per request keeps it off the per-span path
   (per-request bits would cost ``n`` Python calls per series per window). The
   value is ``min(ratio / baseline, 10) / 10`` (baseline fixed when the ADWIN
   is created): ADWIN's bound assumes values in [0, 1] and has an additive
   range term that would hide any change of a few points in raw ratios
   (measured: raw 1 % -> 3 % ratios never detected). An upward ADWIN change
   confirms a CUSUM holding at least half its threshold (slow drift), and is
   reported in ``observed.adwin_drift``. Measured here it is slow and needs history:
   1 % -> 3 % at 400 requests/window after 300 baseline windows is flagged 57-89
   windows in (69 in ``test_adwin_confirms_a_long_episode_on_a_busy_series``),
   after only 70 baseline windows 232 windows in or never — the CUSUM and
   binomial tests do the detecting; ADWIN is a second opinion for long
   episodes. It is only created once a series is armed.
4. Recovery: the CUSUM segment ends when the window is confidently back
   (Wilson upper bound, z=2, below the midpoint of p0 and p1) or after enough
   clean requests in a row that the incident's ratio would have produced an
   error with 99 % probability.
5. Warm-up: no rise alerts before ``warmup`` and ``warmup_requests``; a
   span series failing from birth is reported (severity warning) once the lower
   Wilson bound (z=3) of its ratio since birth reaches ``new_series_floor``.
6. Severity by effect size: lower Wilson bound (z=3) of the firing evidence
   >= ``critical_ratio`` x p0 or >= p0 + ``critical_increase`` -> critical;
   >= 2 x p0 -> warning; else info. Only rises are tested: drops never alert.

Score (``otel_anomaly_score``): ``-log10`` of the smallest p-value, or the
CUSUM as ``S/h x -log10(alpha)``; the threshold is ``-log10(alpha)``; capped
at 99.

Cost: per record two dict increments (+ an exemplar append on errors); per
window O(series) numpy. State: one row per series (see
:mod:`~detector.detectors.error_rate.series`), capped at ``max_series`` by a
segmented LRU with admission (established series are protected from a flood
of new ones, see :meth:`ErrorRateDetector._make_room`) and a TTL; evicted and
refused series are counted in ``evicted_total``.
"""

from __future__ import annotations

import math
from itertools import repeat
from typing import Any, Iterable, Sequence

import numpy as np
from river.drift import ADWIN

from detector.detectors.base import Candidate, Detector, DetectorContext, Window
from detector.detectors.error_rate.authops import AuthOperations
from detector.detectors.error_rate.config import ErrorRateConfig
from detector.detectors.error_rate.series import (
    K_EDGE,
    K_LOG,
    K_OPERATION,
    K_SERVICE,
    K_SIGNATURE,
    KIND_NAMES,
    NO_HOLD,
    PARAMS,
    SeriesTable,
)
from detector.detectors.error_rate.stats import (
    alpha_for_budget,
    binom_tail,
    cusum_alternative,
    cusum_step,
    cusum_threshold,
    error_signature,
    fmt_ratio,
    wilson_bounds,
)
from detector.normalise.records import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_PRODUCER,
    SPAN_KIND_SERVER,
    LogRecord,
    SpanRecord,
)

STATE_VERSION = 1
HOLD_WINDOWS = 3  # windows without anomaly that end an episode (and make a series evictable)
AUTH_HALF_LIFE = 5.0  # requests: half-life of the memory of an edge's recent auth-rejected share
PROTECTED_SHARE = 0.8  # share of max_series that established series may hold safe from new ones (segmented LRU)
MAX_SCORE = 99.0
_SIG_CACHE_MAX = 4096  # error log bodies -> signature, cleared when full
_SIG_CACHE_BODY = 2048  # longer bodies are not cached (bounded memory)
ADWIN_SATURATION = 10.0  # ADWIN sees min(ratio / baseline, 10) / 10
ADWIN_CLOCK = 1  # check for change on every update: one update per window, not per request (river default 32)
SIG_NOVEL_MAX = 0.005  # an error signature alerts only while its baseline share is below this (a new kind of error)
LEARN_GUARD = 4.0  # no learning while the CUSUM holds more than h / LEARN_GUARD
YOUNG_Z = 2.0  # Wilson z of the upper bound of a young series' learned ratio (cold start, see the module docstring)
LEARN_P = 1e-3  # ...nor of a window inside a CUSUM segment whose binomial p-value is already below this
MAX_RING = 360  # windows remembered per series (learning delay / aggregates); 360 x 10 s = 1 h
EB_MIN_SERIES = 5  # series with enough data before the population spread is trusted
EB_MIN_REQUESTS = 10.0  # learned requests for a series to count in the spread
EB_MIN_WEIGHT = 10.0  # the empirical-Bayes prior weight never goes below this (requests)


class _WindowAcc:
    """Counters of one open window: ``n``/``k`` per series key, ``ex`` exemplar trace ids, and ``a`` per edge:
    refused calls to authentication operations (see :meth:`ErrorRateDetector._auth_errors`)."""

    __slots__ = ("n", "k", "a", "ex")

    def __init__(self) -> None:
        self.n: dict[tuple, int] = {}
        self.k: dict[tuple, int] = {}
        self.a: dict[tuple, int] = {}
        self.ex: dict[tuple, list[bytes]] = {}

    def merge(self, other: "_WindowAcc") -> None:
        for src, dst in ((other.n, self.n), (other.k, self.k), (other.a, self.a)):
            for key, v in src.items():
                dst[key] = dst.get(key, 0) + v
        for key, v in other.ex.items():
            self.ex.setdefault(key, []).extend(v)


class ErrorRateDetector(Detector):
    """The ``error_rate`` detector family (see the module docstring for the method).

    Args:
        config: :class:`ErrorRateConfig` (``detectors.error_rate``).
        context: pipeline context; ``window_seconds`` sets alpha and the CUSUM
            threshold (windows per day), ``hasher`` is not needed (no identities).

    Attributes:
        evicted_total: series evicted by the cap or the TTL (monotonic).
        dropped_total: new series not tracked because of a per-service cap.
    """

    name = "error_rate"

    def __init__(self, config: ErrorRateConfig, context: DetectorContext) -> None:
        super().__init__(config, context)
        self.dropped_total = 0
        self._open: dict[int, _WindowAcc] = {}
        self._last_index: int | None = None
        self._per_service: dict[tuple[int, str], int] = {}
        self._svc_params: dict[str, np.ndarray] = {}
        # caller service -> its matcher of authentication operations (shared by services with the same patterns)
        self._auth_ops: dict[str, AuthOperations] = {}
        self._auth_by_patterns: dict[tuple[str, ...], AuthOperations] = {}
        self._sig_cache: dict[Any, str] = {}
        self._table = SeriesTable(ring=self._ring_size(config))
        # admission doorkeeper: keys refused for lack of room at the last admission -> consecutive admissions
        # they were refused in (at most one window's new keys; not checkpointed). See _create.
        self._refused: dict[tuple, int] = {}
        self._population = np.full(5, np.nan)
        self._kappa = np.full(5, np.inf)

    # -- configuration -------------------------------------------------------------------------
    def _ring_size(self, config: ErrorRateConfig) -> int:
        """Windows remembered per series: the longest aggregate and the learning delay (<= MAX_RING)."""
        sizes = [config.aggregate_windows] + [o.aggregate_windows for o in config.overrides if o.aggregate_windows]
        delay_s = config.learn_delay if config.learn_delay is not None else config.warmup
        delay = math.ceil(delay_s / self.context.window_seconds)
        return int(min(MAX_RING, max(max(sizes), delay, 1)))

    def _params_for(self, service: str) -> np.ndarray:
        vec = self._svc_params.get(service)
        if vec is not None:
            return vec
        c = self.config.for_service(service)
        w = self.context.window_seconds
        values = {
            "budget": c.false_alerts_per_day,
            "alpha_fixed": c.alpha if c.alpha is not None else math.nan,
            "warmup_w": math.ceil(c.warmup / w),
            "warmup_req": c.warmup_requests,
            "new_floor": c.new_series_floor,
            "half_life": c.half_life_requests,
            "prior_w": c.prior_weight,
            "prior_max": c.prior_max,
            "floor": c.rate_floor,
            "min_err": c.min_errors,
            "min_inc": c.min_increase,
            "min_ratio": c.min_ratio,
            "agg_w": min(c.aggregate_windows, self._table.ring),
            "c_ratio": c.cusum_ratio,
            "c_delta": c.cusum_min_delta,
            "h_min": c.cusum_h_min,
            "adapt_w": max(1, math.ceil(c.adapt_after / w)),
            "crit_ratio": c.critical_ratio,
            "crit_inc": c.critical_increase,
            "adwin_on": 1.0 if c.adwin else 0.0,
            "adwin_delta": c.adwin_delta,
            "adwin_min": c.adwin_min_requests,
            "auth_err": 1.0 if c.client_auth_failures_are_errors else 0.0,
            "auth_share": c.client_auth_wholesale_share,
        }
        vec = np.array([values[p] for p in PARAMS], dtype=np.float64)
        if len(self._svc_params) > 50_000:
            self._svc_params.clear()
        self._svc_params[service] = vec
        return vec

    def _apply_params(self, row: int, service: str) -> None:
        vec = self._params_for(service)
        cols = self._table.cols
        for i, name in enumerate(PARAMS):
            cols[name][row] = vec[i]

    def _auth_ops_for(self, service: str) -> AuthOperations:
        """The authentication-operation matcher of caller ``service`` (its ``client_auth_operation_patterns``)."""
        patterns = tuple(self.config.for_service(service).client_auth_operation_patterns)
        m = self._auth_by_patterns.get(patterns)
        if m is None:
            if len(self._auth_by_patterns) > 64:
                self._auth_by_patterns.clear()
                self._auth_ops.clear()
            m = self._auth_by_patterns[patterns] = AuthOperations(patterns)
        if len(self._auth_ops) > 50_000:
            self._auth_ops.clear()
        self._auth_ops[service] = m
        return m

    def _refresh_all_params(self) -> None:
        self._svc_params.clear()
        self._auth_ops.clear()
        self._auth_by_patterns.clear()
        t = self._table
        for row in range(t.hi):
            key = t.keys[row]
            if key is not None:
                self._apply_params(row, key[1])

    def reconfigure(self, config: ErrorRateConfig) -> None:
        """New thresholds from a SIGHUP; every learned baseline, CUSUM and ADWIN is kept."""
        self.config = config
        self._table.resize_ring(self._ring_size(config))  # a changed size drops only the short-term windows
        self._refresh_all_params()

    # -- hot path ------------------------------------------------------------------------------
    def _acc(self, window: Window) -> _WindowAcc:
        acc = self._open.get(window.index)
        if acc is None:
            acc = self._open[window.index] = _WindowAcc()
        return acc

    def observe_spans(self, window: Window, spans: Sequence[SpanRecord]) -> None:
        """Count requests and errors of ``spans`` into ``window``'s accumulator (dict increments only)."""
        acc = self._acc(window)
        n = acc.n
        k = acc.k
        a = acc.a
        ex = acc.ex
        n_get = n.get
        ops = self.config.operations
        limit = self.config.exemplars
        auth_ops = self._auth_ops
        for s in spans:
            kind = s.kind
            if kind == SPAN_KIND_SERVER or kind == SPAN_KIND_CONSUMER:
                svc = s.resource.service
                key = (K_SERVICE, svc, "")
                key2 = (K_OPERATION, svc, s.operation) if ops else None
            elif kind == SPAN_KIND_CLIENT or kind == SPAN_KIND_PRODUCER:
                if not s.peer:
                    continue
                key = (K_EDGE, s.resource.service, s.peer)
                key2 = None
            else:
                continue
            n[key] = n_get(key, 0) + 1
            if key2 is not None:
                n[key2] = n_get(key2, 0) + 1
            if s.is_error:
                if key[0] == K_EDGE and (
                    (hs := s.http_status) == 401 or hs == 403 or (gs := s.rpc_grpc_status) == 16 or gs == 7
                ):  # refused for credentials: on a call to an authentication operation counted apart (_auth_errors)
                    m = auth_ops.get(key[1])
                    if m is None:
                        m = self._auth_ops_for(key[1])
                    if m.targets_auth(s):
                        a[key] = a.get(key, 0) + 1
                        continue
                k[key] = k.get(key, 0) + 1
                if key2 is not None:
                    k[key2] = k.get(key2, 0) + 1
                if limit and s.trace_id:
                    lst = ex.get(key)
                    if lst is None:
                        ex[key] = [s.trace_id]
                    elif len(lst) < limit:
                        lst.append(s.trace_id)
                    if key2 is not None:
                        lst = ex.get(key2)
                        if lst is None:
                            ex[key2] = [s.trace_id]
                        elif len(lst) < limit:
                            lst.append(s.trace_id)

    def observe_logs(self, window: Window, logs: Sequence[LogRecord]) -> None:
        """Count log records and error records (and their signatures) per service into ``window``."""
        acc = self._acc(window)
        n = acc.n
        k = acc.k
        ex = acc.ex
        sigs = self.config.log_signatures
        limit = self.config.exemplars
        cache = self._sig_cache
        for r in logs:
            key = (K_LOG, r.resource.service, "")
            n[key] = n.get(key, 0) + 1
            if not r.is_error:
                continue
            k[key] = k.get(key, 0) + 1
            keys = (key,)
            if sigs:
                body = r.body
                try:
                    sig = cache.get(body)
                except TypeError:  # unhashable body (kvlist / array)
                    sig = None
                    body = None
                if sig is None:
                    sig = error_signature(r.body)
                    if body is not None and (type(body) is not str or len(body) <= _SIG_CACHE_BODY):
                        if len(cache) >= _SIG_CACHE_MAX:
                            cache.clear()
                        cache[body] = sig
                skey = (K_SIGNATURE, key[1], sig)
                k[skey] = k.get(skey, 0) + 1
                keys = (key, skey)
            if limit and r.trace_id:
                for kk in keys:
                    lst = ex.get(kk)
                    if lst is None:
                        ex[kk] = [r.trace_id]
                    elif len(lst) < limit:
                        lst.append(r.trace_id)

    # -- series management ---------------------------------------------------------------------
    def _cap_ok(self, key: tuple) -> bool:
        code = key[0]
        if code == K_OPERATION:
            cap = self.config.max_operations_per_service
        elif code == K_SIGNATURE:
            cap = self.config.max_signatures_per_service
        else:
            return True
        ck = (code, key[1])
        have = self._per_service.get(ck, 0)
        if have >= cap:
            self.dropped_total += 1
            return False
        self._per_service[ck] = have + 1
        return True

    def _evict_rows(self, rows: Iterable[int]) -> None:
        t = self._table
        for row in rows:
            key = t.keys[row]
            if key is None:
                continue
            self._release_cap(key)
            t.remove(row)
            self.evicted_total += 1

    def _release_cap(self, key: tuple) -> None:
        """Give back the per-service slot that :meth:`_cap_ok` took for ``key``."""
        if key[0] in (K_OPERATION, K_SIGNATURE):
            ck = (key[0], key[1])
            left = self._per_service.get(ck, 1) - 1
            if left > 0:
                self._per_service[ck] = left
            else:
                self._per_service.pop(ck, None)

    def _make_room(self, want: int, index: int) -> int:
        """Evict rows so that up to ``want`` new series fit under ``max_series``; return how many may be added.

        Segmented LRU with admission (cf. 2Q, Johnson & Shasha 1994; TinyLFU's
        admission, Einziger et al. 2017): a row *established* — seen in more than
        one window, or with a learned baseline — sits in the protected segment
        (at most ``PROTECTED_SHARE`` of the cap); the others are on probation.
        Victims are taken from probation first, least recently seen and least
        learned first, then from the protected rows beyond the segment's quota;
        rows in an alert episode only when nothing else is left. A new series
        never displaces a protected one: when probation cannot make room for all
        the window's new series, only as many as fit are admitted (the caller
        admits the busiest) and the rest are refused — counted in
        ``evicted_total`` like an eviction. So a flood of one-shot series (10,000
        new service names per window against a 20,000-row cap) churns through the
        probation segment and the established, learned series keep their baselines.
        """
        t = self._table
        cap = self.config.max_series
        over = len(t) + want - cap
        if over <= 0:
            return want
        over = min(max(over, cap // 100), len(t))
        hi = t.hi
        cols = t.cols
        used = t.used[:hi]
        last = cols["last_seen"][:hi]
        learned = cols["a"][:hi] + cols["b"][:hi]
        calm = used & (cols["hold"][:hi] >= HOLD_WINDOWS)
        established = used & ((last > cols["born"][:hi]) | (learned > 0))
        quota = int(cap * PROTECTED_SHARE)
        prot = np.flatnonzero(established)
        demoted = np.zeros(hi, dtype=bool)
        if len(prot) > quota:  # protected segment over its quota: its least recently seen rows are on probation again
            order = np.lexsort((learned[prot], last[prot]))
            demoted[prot[order[: len(prot) - quota]]] = True
        probation = used & (~established | demoted)
        victims: list[np.ndarray] = []
        need = over
        for mask in (probation & calm, probation):  # calm rows first; rows in an episode only if nothing else
            if need <= 0:
                break
            cand = np.flatnonzero(mask)
            if victims:
                cand = np.setdiff1d(cand, victims[0], assume_unique=True)
            if cand.size:
                # least recently seen first (rows with data in this window are marked seen before this runs),
                # among equally stale rows the ones that learned least
                take = cand[np.lexsort((learned[cand], last[cand]))[:need]]
                victims.append(take)
                need -= take.size
        for v in victims:
            self._evict_rows(int(r) for r in v)
        return max(0, min(want, cap - len(t)))

    def _expire(self, index: int) -> None:
        t = self._table
        ttl_w = self.config.series_ttl / self.context.window_seconds
        hi = t.hi
        old = t.used[:hi] & (t.cols["last_seen"][:hi] < index - ttl_w) & (t.cols["hold"][:hi] >= HOLD_WINDOWS)
        self._evict_rows(int(r) for r in np.flatnonzero(old))

    def _create(self, keys: list[tuple], index: int, volume: dict | None = None) -> None:
        """Add rows for new series ``keys``; ``volume`` (key -> records this window) orders admission under the cap."""
        t = self._table
        keys = [key for key in dict.fromkeys(keys) if key not in t.index and self._cap_ok(key)]
        if not keys:
            return
        room = self._make_room(len(keys), index)
        refused = self._refused
        if room < len(keys):
            # not enough room without displacing established series: admit first the series refused at the most
            # consecutive earlier admissions (they keep coming back; a flood's one-shot names do not: frequency
            # admission as in TinyLFU, Einziger et al. 2017), then the busiest. By volume alone, a new service no
            # busier than the flood's names was refused for as long as the flood lasted. Only this admission's
            # refused keys are remembered (a subset of the window's keys, so memory stays within one window's).
            vol = volume or {}
            keys.sort(key=lambda kk: (refused.get(kk, 0), vol.get(kk, 0)), reverse=True)
            for key in keys[room:]:
                self._release_cap(key)
            self._refused = {key: refused.get(key, 0) + 1 for key in keys[room:]}
            self.evicted_total += len(keys) - room
            keys = keys[:room]
        elif refused:
            self._refused = {}
        # parents (service log series) first, so signature rows can inherit from them
        keys.sort(key=lambda kk: kk[0] == K_SIGNATURE)
        cols = t.cols
        for key in keys:
            if key in t.index:
                continue
            row = t.add(key)
            cols["kind"][row] = key[0]
            cols["born"][row] = index
            cols["last_seen"][row] = index
            self._apply_params(row, key[1])
            if key[0] == K_SIGNATURE:
                parent = t.index.get((K_LOG, key[1], ""))
                if parent is not None and parent != row:
                    # the signature was absent from every learned record of the service
                    cols["born"][row] = cols["born"][parent]
                    cols["b"][row] = cols["a"][parent] + cols["b"][parent]
                    cols["cum_n"][row] = cols["cum_n"][parent]

    # -- window close --------------------------------------------------------------------------
    def close_window(self, window: Window) -> list[Candidate]:
        """Run the tests for every series on ``window`` and return candidates (see module doc)."""
        index = window.index
        acc = self._open.pop(index, None) or _WindowAcc()
        for older in [i for i in self._open if i < index]:  # a window the pipeline skipped
            acc.merge(self._open.pop(older))
        t = self._table

        # 1. counts of this window per series key (map over builtin dict methods: no per-key bytecode)
        n_by_key = acc.n
        k_by_key = acc.k
        tindex = t.index
        n_keys = list(n_by_key)
        rows_l = list(map(tindex.get, n_keys, repeat(-1)))
        seen = np.array([row for row in rows_l if row >= 0], dtype=np.int64)
        if seen.size:
            t.cols["last_seen"][seen] = index  # before any eviction: series with data now are not stale
        new = [key for key, row in zip(n_keys, rows_l) if row < 0]
        new += [key for key in k_by_key if key[0] == K_SIGNATURE and key not in tindex]
        if new:
            self._create(new, index, n_by_key)
            rows_l = list(map(tindex.get, n_keys, repeat(-1)))
        if index % 60 == 0:
            self._expire(index)
            rows_l = list(map(tindex.get, n_keys, repeat(-1)))
        hi = t.hi
        cols = t.cols
        n = np.zeros(hi)
        k = np.zeros(hi)
        if n_keys:
            rows = np.array(rows_l, dtype=np.int64)
            nv = np.array(list(n_by_key.values()), dtype=np.float64)
            kv = np.array(list(map(k_by_key.get, n_keys, repeat(0))), dtype=np.float64)
            ok = rows >= 0
            n[rows[ok]] = nv[ok]
            k[rows[ok]] = kv[ok]
        k += self._auth_errors(acc.a, n)
        # signature rows: errors of that signature out of all the service's log records in the window
        sig_rows = np.flatnonzero(t.used[:hi] & (cols["kind"][:hi] == K_SIGNATURE))
        if sig_rows.size:
            keys = t.keys
            sig_keys = [keys[r] for r in sig_rows.tolist()]
            n_get = n_by_key.get
            k_get = k_by_key.get
            # n: the service's activity in the window = max(log records, server requests); a service that
            # logs only its failures would otherwise give every signature a share near 100 %
            n[sig_rows] = [max(n_get((K_LOG, key[1], ""), 0), n_get((K_SERVICE, key[1], ""), 0)) for key in sig_keys]
            k[sig_rows] = np.minimum([k_get(key, 0) for key in sig_keys], n[sig_rows])

        # 2. ring of recent windows
        ring = t.ring
        gap = ring if self._last_index is None else max(1, min(ring, index - self._last_index))
        for g in range(gap):
            slot = (index - g) % ring
            t.ring_n[:hi, slot] = 0
            t.ring_k[:hi, slot] = 0
        slot = index % ring
        t.ring_n[:hi, slot] = n
        t.ring_k[:hi, slot] = k
        self._last_index = index

        candidates = self._evaluate(index, window, n, k, acc)
        return candidates

    def _auth_errors(self, a_by_key: dict, n: np.ndarray) -> np.ndarray:
        """Refusals of calls to authentication operations that count as edge errors in this window, per row.

        Returns a float array of length ``hi`` (errors to add to ``k``).

        The rule. The HTTP semantic conventions make every 4xx on a *client*
        span an error (https://opentelemetry.io/docs/specs/semconv/http/http-spans/#status:
        "for HTTP status codes in the 4xx range span status MUST be left unset
        in case of SpanKind.SERVER and SHOULD be set to Error in case of
        SpanKind.CLIENT"), and the gRPC conventions every non-OK code on a
        client span: the caller did not get what it needed. The same section
        notes that whether a status is an error "depends on the context" and
        that instrumentation with more context may decide more precisely; the
        target operation is that context here. The default holds for a
        401/403 (UNAUTHENTICATED/PERMISSION_DENIED) from a payment service or a
        protected API — the caller's credentials, or the ones it forwarded,
        were refused: a stale service token on one replica in three, a deploy
        that stopped forwarding credentials on some paths. Those count at once,
        like 5xx (:meth:`observe_spans` puts them in ``k``), and their rise
        is tested like any other error rise (40 % of 403 from 0 % alerts in the
        first window at 100 calls per window).

        The exception is a call whose *target is an authentication operation*
        (login, sign-in, token, session, OAuth, authenticate: the auth
        detector's notion, :mod:`~detector.detectors.error_rate.authops`): there
        refusing is the callee's job — its answer about an end user's password
        or session, not a failure of the call. A wave of them is people
        mistyping passwords, sessions expiring, or a login attack — the
        ``auth`` detector's question; counting them made the quiet week's only
        false alert (``edge_error_rate gateway→auth`` 0.57 % → 20 % (n=25) from
        ordinary failed logins). Those are kept apart in ``a_by_key`` and count
        as errors only when ``client_auth_failures_are_errors`` is set for the
        caller, or *wholesale*: when they are most of the edge's recent calls,
        i.e. the caller's *own* credentials are refused (an expired service
        token, a rotated key), an outage of that edge — lower Wilson bound
        (z=2) of the refused share of the last ~``AUTH_HALF_LIFE`` requests
        (counts decayed by requests, so a sparse edge keeps its memory across
        windows) at least ``client_auth_wholesale_share``. Below that share a
        partial credential failure on an authentication edge is not seen here
        (the gateway's own answers, and the auth detector, see it).
        Refused calls always count as requests. A callee rejecting the payload
        (400/422, INVALID_ARGUMENT after a rename) or failing (5xx) is never
        affected.
        """
        t = self._table
        hi = t.hi
        cols = t.cols
        a = np.zeros(hi)
        if a_by_key:
            tindex = t.index
            for key, v in a_by_key.items():
                row = tindex.get(key)
                if row is not None:
                    a[row] = v
        edge = t.used[:hi] & (cols["kind"][:hi] == K_EDGE) & (n > 0)
        if not edge.any():
            return a
        decay = np.where(edge, np.power(0.5, n / AUTH_HALF_LIFE), 1.0)
        cols["auth_r"][:hi] = cols["auth_r"][:hi] * decay + np.where(edge, a, 0.0)
        cols["auth_t"][:hi] = cols["auth_t"][:hi] * decay + np.where(edge, n, 0.0)
        lo, _ = wilson_bounds(cols["auth_r"][:hi], cols["auth_t"][:hi], 2.0)
        counted = (cols["auth_err"][:hi] > 0) | (lo >= cols["auth_share"][:hi])
        return np.where(counted, a, 0.0)

    def _evaluate(self, index: int, window: Window, n: np.ndarray, k: np.ndarray, acc: _WindowAcc) -> list[Candidate]:
        t = self._table
        hi = t.hi
        if hi == 0:
            return []
        c = {name: arr[:hi] for name, arr in t.cols.items()}
        used = t.used[:hi]
        kind = c["kind"]
        n_series = max(len(t), 1)
        wsec = self.context.window_seconds

        # population prior per kind: request-weighted learned ratio (mean, capped per row) and an
        # empirical-Bayes weight from the spread of the series' ratios (method of moments, binomial
        # noise removed), never above prior_weight
        learned = c["a"] + c["b"]
        for code in (K_SERVICE, K_EDGE, K_OPERATION, K_LOG):
            m = used & (kind == code) & (learned > 0)
            tot = learned[m].sum()
            mu = c["a"][m].sum() / tot if tot > 0 else math.nan
            self._population[code] = mu
            self._kappa[code] = math.inf
            big = m & (learned >= EB_MIN_REQUESTS)
            if tot > 0 and np.count_nonzero(big) >= EB_MIN_SERIES and 0.0 < mu < 1.0:
                r = c["a"][big] / learned[big]
                noise = mu * (1.0 - mu) * float(np.mean(1.0 / learned[big]))
                var = max(float(np.var(r)) - noise, 1e-12)
                self._kappa[code] = max(EB_MIN_WEIGHT, mu * (1.0 - mu) / var - 1.0)
        pop = self._population[kind]
        pop = np.where(np.isnan(pop), c["floor"], pop)
        pi = np.clip(pop, c["floor"], c["prior_max"])
        pi = np.where(kind == K_SIGNATURE, c["floor"], pi)
        prior_w = np.minimum(c["prior_w"], self._kappa[kind])
        den = learned + prior_w
        p0 = np.where(den > 0, (c["a"] + prior_w * pi) / np.maximum(den, 1e-12), pi)
        p0 = np.maximum(c["floor"], p0)
        p0_est = p0  # the point estimate (ADWIN's scale); p0 below is the tested null
        # cold start: a young series' null is the upper Wilson bound of its own learned ratio (at most prior_max,
        # at least min_ratio x the estimate) while that bound cannot rule out min_ratio x the estimate (see the
        # module docstring, "Cold start")
        age = index - c["born"] + 1
        young = (age < c["adapt_w"]) & (learned > 0) & ((kind != K_SIGNATURE) | (c["a"] > 0))
        if young.any():
            _, p0_hi = wilson_bounds(c["a"], learned, YOUNG_Z)
            young &= p0_hi >= c["min_ratio"] * p0
            widened = np.maximum(np.minimum(p0_hi, c["prior_max"]), c["min_ratio"] * p0)
            p0 = np.where(young, np.maximum(p0, widened), p0)
        p0 = np.minimum(p0, 0.99)
        p1 = cusum_alternative(p0, c["c_ratio"], c["c_delta"])
        h = cusum_threshold(c["budget"], n_series, wsec, c["h_min"])
        alpha = np.where(np.isnan(c["alpha_fixed"]), alpha_for_budget(c["budget"], n_series, wsec), c["alpha_fixed"])

        has = n > 0
        c["last_seen"][:] = np.where(has, index, c["last_seen"])
        c["cum_n"][:] += n
        c["cum_k"][:] += k
        armed = used & (age >= c["warmup_w"]) & (learned >= c["warmup_req"]) & (learned > 0)

        # CUSUM and its segment
        s_old = c["s"]
        s_new = np.where(armed, cusum_step(s_old, k, n, p0, p1), 0.0)
        cont = (s_new > 0) & (s_old > 0)
        run_n = np.where(s_new > 0, np.where(cont, c["run_n"] + n, n), 0.0)
        run_k = np.where(s_new > 0, np.where(cont, c["run_k"] + k, k), 0.0)
        clean = np.where(k == 0, c["clean"] + n, 0.0)
        seg_ratio = np.where(run_n > 0, run_k / np.maximum(run_n, 1), p1)
        seg_ratio = np.clip(np.maximum(seg_ratio, p1), 1e-9, 0.999)
        need_clean = np.log(0.01) / np.log1p(-seg_ratio)
        _, hi2 = wilson_bounds(k, n, 2.0)
        recovered = has & (s_new > 0) & ((clean >= need_clean) | (hi2 < (p0 + p1) / 2.0))
        s_new = np.where(recovered, 0.0, s_new)
        run_n = np.where(recovered, 0.0, run_n)
        run_k = np.where(recovered, 0.0, run_k)
        s_new = np.minimum(s_new, 2.0 * h)  # bounded memory of an incident: recovery in bounded time

        # aggregate of the last agg_w windows
        ring = t.ring
        aw = np.clip(c["agg_w"].astype(np.int64), 1, ring)
        if aw.size and np.all(aw == aw[0]):  # one aggregate length for every series: sum its slots
            slots = (index - np.arange(int(aw[0]))) % ring
            agg_n = t.ring_n[:hi][:, slots].sum(axis=1).astype(np.float64)
            agg_k = t.ring_k[:hi][:, slots].sum(axis=1).astype(np.float64)
        else:  # per-service overrides of aggregate_windows
            order = (index - np.arange(ring)) % ring
            agg_n = np.cumsum(t.ring_n[:hi][:, order], axis=1)[np.arange(hi), aw - 1].astype(np.float64)
            agg_k = np.cumsum(t.ring_k[:hi][:, order], axis=1)[np.arange(hi), aw - 1].astype(np.float64)

        def floors(kk: np.ndarray, nn: np.ndarray) -> np.ndarray:
            r = kk / np.maximum(nn, 1.0)
            return (kk >= c["min_err"]) & (r >= c["min_ratio"] * p0) & (r >= p0 + c["min_inc"])

        idle_w = max(6.0, 300.0 / wsec)
        fresh = (index - c["last_seen"]) <= idle_w
        # a window with traffic supports the multi-window evidence only if it looks elevated itself
        # (closer to p1 than to p0), so an alert does not outlive the incident by the aggregate's span
        mid = (p0 + p1) / 2.0
        elevated = k >= mid * n
        f_win = armed & has & floors(k, n)
        f_agg = armed & has & (k > 0) & elevated & floors(agg_k, agg_n)
        f_run = armed & fresh & (s_new > 0) & (~has | elevated) & floors(run_k, run_n)
        p_win = np.ones(hi)
        p_agg = np.ones(hi)
        p_run = np.ones(hi)
        for mask, out, kk, nn in ((f_win, p_win, k, n), (f_agg, p_agg, agg_k, agg_n), (f_run, p_run, run_k, run_n)):
            idx = np.flatnonzero(mask)
            if idx.size:
                out[idx] = binom_tail(kk[idx], nn[idx], p0[idx])
        p_min = np.minimum(np.minimum(p_win, p_agg), p_run)
        fired_p = p_min < alpha
        fired_c = f_run & (s_new > h)

        # ADWIN on per-window ratios (Python loop over rows with enough requests only)
        adwin_rows = np.flatnonzero(armed & (c["adwin_on"] > 0) & (n >= c["adwin_min"]) & (n > 0))
        if adwin_rows.size:
            adwins = t.adwins
            ref = c["adwin_ref"]
            fresh_ref = adwin_rows[ref[adwin_rows] <= 0]
            ref[fresh_ref] = np.minimum(p0_est, 0.99)[fresh_ref]
            # input in [0, 1] as ADWIN's bound assumes: the ratio relative to the baseline, saturating at 10x
            xs = np.minimum(k[adwin_rows] / n[adwin_rows] / ref[adwin_rows], ADWIN_SATURATION) / ADWIN_SATURATION
            until = c["adwin_until"]
            for row, x in zip(adwin_rows.tolist(), xs.tolist()):
                ad = adwins[row]
                if ad is None:
                    ad = adwins[row] = ADWIN(delta=float(c["adwin_delta"][row]), clock=ADWIN_CLOCK)
                ad.update(x)
                if ad.drift_detected and ad.estimation * ADWIN_SATURATION * ref[row] > p0[row]:
                    until[row] = index + int(c["agg_w"][row])
        adwin_up = c["adwin_until"] >= index
        fired_a = f_run & adwin_up & (s_new > h / 2.0)

        # warm-up: failing from birth
        lo_cum, _ = wilson_bounds(c["cum_k"], c["cum_n"], 3.0)
        # (not for log series: a service that logs only its failures is "failing from birth" by construction)
        born_failing = used & ~armed & (kind < K_LOG) & (c["cum_k"] >= c["min_err"]) & (lo_cum >= c["new_floor"]) & (agg_k > 0)

        # signature series report *new kinds* of error only: a signature that is already common (baseline
        # above SIG_NOVEL_MAX) rises together with the service's total error share, which its own series tests
        novel = (kind != K_SIGNATURE) | (p0_est <= SIG_NOVEL_MAX)
        anomalous = (armed & novel & (fired_p | fired_c | fired_a)) | born_failing

        prev_anom = c["hold"] == 0
        c["since"][:] = np.where(anomalous, np.where(c["since"] < 0, index, c["since"]), np.where(c["hold"] + 1 >= HOLD_WINDOWS, -1, c["since"]))
        c["hold"][:] = np.where(anomalous, 0, np.minimum(c["hold"] + 1, NO_HOLD))

        # learning, delayed by the ring: the oldest remembered window is learned only when no window
        # since (itself included) was anomalous and the CUSUM is under half its threshold, so the
        # first windows of an incident never reach the baseline; after adapt_after of continuous
        # anomaly the new level is learned anyway.
        old_slot = (index + 1) % ring
        ln = t.ring_n[:hi, old_slot].astype(np.float64)
        lk = t.ring_k[:hi, old_slot].astype(np.float64)
        episode_age = np.where(c["since"] >= 0, index - c["since"], 0)
        # ...nor when it lies inside the CUSUM's current segment and that segment is already significant on its
        # own (p < LEARN_P): a sparse incident's first errors arrive minutes apart, each window looks harmless, and
        # learning them tripled a 1 % baseline before the fifth error could make the alert (error_low_traffic)
        seg_start = np.where(s_new > 0, np.where(cont, c["seg_start"], index), -1)
        c["seg_start"][:] = seg_start
        # a CUSUM held at or above h for adapt_after is one lasting change even when single windows look calm
        # and the alert episode (``since``) keeps ending: it is learned too (the escape from a baseline that was
        # wrong from the start, e.g. a series armed on too few requests)
        episode_age = np.maximum(episode_age, np.where((s_new >= h) & (seg_start >= 0), index - seg_start, 0))
        in_seg = (s_new > 0) & (run_k > 0) & (seg_start >= 0) & (seg_start <= index - ring + 1)
        seg_p = np.ones(hi)
        idx = np.flatnonzero(in_seg)
        if idx.size:
            seg_p[idx] = binom_tail(run_k[idx], run_n[idx], p0[idx])
        learn = ((c["hold"] >= ring) & (s_new <= h / LEARN_GUARD) & (seg_p >= LEARN_P)) | (episode_age >= c["adapt_w"])
        learn &= used & (ln > 0)
        decay = np.where(learn, np.power(0.5, ln / c["half_life"]), 1.0)
        lw = learn.astype(np.float64)
        c["a"][:] = c["a"] * decay + lw * lk
        c["b"][:] = c["b"] * decay + lw * (ln - lk)

        c["s"][:] = s_new
        c["run_n"][:] = run_n
        c["run_k"][:] = run_k
        c["clean"][:] = clean
        c["p0"][:] = p0
        thr = -np.log10(alpha)
        with np.errstate(divide="ignore"):
            score = np.maximum(-np.log10(np.maximum(p_min, 1e-300)), np.where(armed, s_new / h * thr, 0.0))
        score = np.where(born_failing, np.maximum(score, lo_cum / c["new_floor"] * thr), score)
        c["score"][:] = np.where(used, np.minimum(score, MAX_SCORE), 0.0)

        # exemplars of this window
        if acc.ex:
            tindex = t.index
            limit = self.config.exemplars
            for key, ids in acc.ex.items():
                row = tindex.get(key)
                if row is None:
                    continue
                keep = t.exemplars[row] or []
                for tid in ids:
                    h_id = tid.hex()
                    if h_id in keep:
                        continue
                    keep.append(h_id)
                keep = keep[-limit:] if limit else []
                t.exemplars[row] = keep

        # candidates: anomalous rows, and one non-anomalous "recovering" candidate after an anomalous window
        out: list[Candidate] = []
        rows = np.flatnonzero(used & (anomalous | prev_anom))
        if rows.size == 0:
            return out
        for row in rows.tolist():
            out.append(
                self._candidate(
                    row, window, bool(anomalous[row]), bool(born_failing[row]), c, p0, p0_est, pi, h, alpha, thr,
                    n, k, agg_n, agg_k, run_n, run_k, p_win, p_agg, p_run, fired_c, adwin_up, lo_cum,
                )
            )
        return out

    def _candidate(
        self, row, window, anomalous, born, c, p0, p0_est, pi, h, alpha, thr,
        n, k, agg_n, agg_k, run_n, run_k, p_win, p_agg, p_run, fired_c, adwin_up, lo_cum,
    ) -> Candidate:
        t = self._table
        code, service, x = t.keys[row]
        base = float(p0[row])  # the tested null (severity); the learned estimate is what users read
        learned_ratio = float(min(p0_est[row], 0.99))
        # the evidence that fired (smallest p-value; the CUSUM segment; or since birth)
        if born:
            test, en, ek, pv, windows = "new_series", c["cum_n"][row], c["cum_k"][row], None, int(window.index - c["born"][row] + 1)
        else:
            options = [
                (p_win[row], "window", n[row], k[row], 1),
                (p_agg[row], "aggregate", agg_n[row], agg_k[row], int(c["agg_w"][row])),
                (p_run[row], "segment", run_n[row], run_k[row], None),
            ]
            pv, test, en, ek, windows = min(options, key=lambda o: o[0])
            if pv >= 1.0 and fired_c[row]:
                test, en, ek, pv, windows = "cusum", run_n[row], run_k[row], p_run[row], None
            if pv >= 1.0 and not anomalous:
                test, en, ek, windows = "window", n[row], k[row], 1
        en = int(en)
        ek = int(ek)
        ratio = ek / en if en else 0.0
        lo3 = float(wilson_bounds(np.array([ek]), np.array([en]), 3.0)[0][0])
        if born:
            severity = "warning"
        elif lo3 >= c["crit_ratio"][row] * base or lo3 >= base + c["crit_inc"][row]:
            severity = "critical"
        elif lo3 >= 2.0 * base:
            severity = "warning"
        else:
            severity = "info"
        if windows is None:
            windows = int(max(1, window.index - c["since"][row] + 1)) if c["since"][row] >= 0 else 1
        subject: dict[str, Any] = {}
        peer = ""
        if code == K_EDGE:
            peer = x
            what = f"errors {service}→{peer}"
        elif code == K_OPERATION:
            subject = {"operation": x}
            what = f"errors of {service} {x}"
        elif code == K_LOG:
            what = f"error logs of {service}"
        elif code == K_SIGNATURE:
            subject = {"signature": x}
            short = x if len(x) <= 90 else x[:87] + "..."
            what = f'error "{short}" in {service} logs'
        else:
            what = f"errors of {service}"
        unit = " of records" if code in (K_LOG, K_SIGNATURE) else ""
        if born:
            summary = f"new series: {what} failing from the start, {ek:,} of {en:,}{unit} ({fmt_ratio(ratio)})"
        elif anomalous:
            summary = f"{what} rose {fmt_ratio(learned_ratio)} → {fmt_ratio(ratio)}{unit} (n={en:,})"
        else:
            summary = f"{what} at {fmt_ratio(ratio)}{unit} (n={en:,}), baseline {fmt_ratio(learned_ratio)}"
        observed = {
            "errors": ek,
            "requests": en,
            "ratio": round(ratio, 6),
            "windows": windows,
            "test": test,
            "window_errors": int(k[row]),
            "window_requests": int(n[row]),
            "cusum": round(float(c["s"][row]), 3),
            "cusum_threshold": round(float(h[row]), 3),
            "adwin_drift": bool(adwin_up[row]),
            "ratio_lower_bound": round(lo3, 6),
        }
        if pv is not None:
            observed["p_value"] = float(pv)
        baseline = {
            "ratio": round(learned_ratio, 6),
            "requests_learned": int(round(float(c["a"][row] + c["b"][row]))),
            "prior_ratio": round(float(pi[row]), 6),
            "alpha": float(alpha[row]),
        }
        if base > learned_ratio:
            baseline["tested_ratio"] = round(base, 6)  # a young series is tested against its widened null
        return Candidate(
            detector=self.name,
            kind=KIND_NAMES[code],
            service=service,
            peer=peer,
            subject=subject,
            anomalous=anomalous,
            score=float(c["score"][row]),
            threshold=float(thr[row]),
            severity=severity,
            observed=observed,
            baseline=baseline,
            summary=summary,
            exemplar_trace_ids=list(t.exemplars[row] or []),
        )

    # -- introspection -------------------------------------------------------------------------
    def tracked_series(self) -> int:
        return len(self._table)

    def scores(self) -> Iterable[tuple[str, str, str, float]]:
        """Latest score per ``(kind, service, peer)`` label set (max over operations/signatures).

        Only series seen in the last 30 windows; one row per label set, so the
        number of rows is bounded by services x (peers + 3).
        """
        t = self._table
        hi = t.hi
        if hi == 0 or self._last_index is None:
            return []
        cols = t.cols
        rows = np.flatnonzero(t.used[:hi] & (cols["last_seen"][:hi] >= self._last_index - 30))
        best: dict[tuple[str, str, str], float] = {}
        score = cols["score"]
        for row in rows.tolist():
            code, service, x = t.keys[row]
            label = (KIND_NAMES[code], service, x if code == K_EDGE else "")
            v = float(score[row])
            if v > best.get(label, -1.0):
                best[label] = v
        return [(kd, svc, peer, v) for (kd, svc, peer), v in best.items()]

    def baseline_of(self, kind: str, service: str, peer: str = "", subject: dict | None = None) -> dict | None:
        """Learned state of one series (for tests and debugging), or None when untracked."""
        code = {
            "service_error_rate": K_SERVICE,
            "edge_error_rate": K_EDGE,
            "operation_error_rate": K_OPERATION,
            "log_error_rate": K_LOG,
        }[kind]
        x = peer
        if subject:
            if "operation" in subject:
                x = subject["operation"]
            elif "signature" in subject:
                code, x = K_SIGNATURE, subject["signature"]
        row = self._table.index.get((code, service, x))
        if row is None:
            return None
        cols = self._table.cols
        return {
            "p0": float(cols["p0"][row]),
            "learned": float(cols["a"][row] + cols["b"][row]),
            "errors_learned": float(cols["a"][row]),
            "cusum": float(cols["s"][row]),
            "seen": float(cols["cum_n"][row]),
            "score": float(cols["score"][row]),
        }

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Learned state as plain data + numpy arrays + river ADWIN objects (pickle pins river 0.26.1)."""
        return {
            "version": STATE_VERSION,
            "table": self._table.state_dict(),
            "open": {
                i: (dict(a.n), dict(a.k), {kk: list(v) for kk, v in a.ex.items()}, dict(a.a)) for i, a in self._open.items()
            },
            "last_index": self._last_index,
            "per_service": dict(self._per_service),
            "evicted_total": self.evicted_total,
            "dropped_total": self.dropped_total,
        }

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; per-row parameters are rebuilt from the current config.

        Raises:
            ValueError: ``state`` is not empty and is not this detector's layout
                (``version`` != :data:`STATE_VERSION`): the app's all-or-nothing
                restore then starts every detector cold instead of this one alone, silently.
        """
        if not state:
            return
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"error_rate state version {state.get('version')!r}, expected {STATE_VERSION}")
        self._table = SeriesTable.from_state(state["table"], ring=self._ring_size(self.config))
        self._open = {}
        for i, (n, k, ex, *rest) in state.get("open", {}).items():
            acc = _WindowAcc()
            acc.n, acc.k, acc.ex = dict(n), dict(k), {kk: list(v) for kk, v in ex.items()}
            acc.a = dict(rest[0]) if rest else {}
            self._open[int(i)] = acc
        self._last_index = state.get("last_index")
        self._per_service = dict(state.get("per_service", {}))
        self.evicted_total = int(state.get("evicted_total", 0))
        self.dropped_total = int(state.get("dropped_total", 0))
        self._refresh_all_params()
