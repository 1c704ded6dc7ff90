"""Three reference alerting rules, computed on exactly the data the detectors see.

All three read the simulator's spans per 10 s evaluation step (a Prometheus
rule-evaluation interval of 10 s over spanmetrics-style counters):

(a) ``static_5pct`` — the usual spanmetrics rule (OpenTelemetry Collector
    ``spanmetrics`` connector: ``calls_total{service_name, status_code}``; an
    error is a span with status ``STATUS_CODE_ERROR``)::

        sum by (service_name) (rate(calls_total{span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER",
                                                 status_code="STATUS_CODE_ERROR"}[5m]))
          / sum by (service_name) (rate(calls_total{span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"}[5m])) > 0.05
        for: 5m

(b) ``burn_rate`` — Google SRE workbook, "Alerting on SLOs", multiwindow
    multi-burn-rate alert for a 99.9 % objective (budget 0.001)::

        (ratio_rate1h > 14.4*0.001 and ratio_rate5m > 14.4*0.001)
        or (ratio_rate6h > 6*0.001 and ratio_rate30m > 6*0.001)

    Ranges shorter than the data so far use what exists (as ``rate()`` does).

(c) ``fail2ban`` — fail2ban's default jail semantics per source address:
    ``maxretry = 5`` failures within ``findtime = 10m`` bans the source for
    ``bantime = 10m``; each ban is one alert. Failures: ``POST /login`` server
    spans of the auth service answering 401/403, source from ``http.client_ip``
    / ``client.address``.

Rule alerts become episodes ``{detector, kind, service, peer, start, fired, severity}``
with the same fields the matcher uses for the detectors' alerts. ``start`` is
when the condition first held (the pending start), ``fired`` when the rule fired.
"""

from __future__ import annotations

from collections import deque

STEP = 10.0
BUDGET = 0.001


class ReferenceRules:
    """Accumulate per-step counts from simulator batches; :meth:`episodes` evaluates the rules."""

    def __init__(self, step: float = STEP) -> None:
        self.step = step
        self.calls: dict[int, dict[str, list[int]]] = {}  # step index -> service -> [total, errors]
        self.login_fail: list[tuple[float, str]] = []

    def observe(self, batch) -> None:
        """Count one :class:`~detector.sim.model.SimBatch` (server/consumer spans, login failures)."""
        step = self.step
        calls = self.calls
        for s in batch.spans:
            kind = s[5]
            if kind != 2 and kind != 5:
                continue
            idx = int(s[7] // step)
            d = calls.get(idx)
            if d is None:
                d = calls[idx] = {}
            svc = s[0].service
            c = d.get(svc)
            if c is None:
                c = d[svc] = [0, 0]
            c[0] += 1
            if s[9] == 2:
                c[1] += 1
            if svc == "auth" and s[4] == "POST /login":
                attrs = s[8]
                code = src = None
                for k, v in attrs:
                    if k in ("http.status_code", "http.response.status_code"):
                        code = v
                    elif k in ("http.client_ip", "client.address"):
                        src = v
                if code in (401, 403) and src:
                    self.login_fail.append((s[7], src))

    # ------------------------------------------------------------- evaluation

    def _series(self):
        if not self.calls:
            return [], {}
        lo, hi = min(self.calls), max(self.calls)
        services = sorted({svc for d in self.calls.values() for svc in d})
        idxs = list(range(lo, hi + 1))
        tot = {s: [0] * len(idxs) for s in services}
        err = {s: [0] * len(idxs) for s in services}
        for i, idx in enumerate(idxs):
            d = self.calls.get(idx)
            if d:
                for svc, (n, k) in d.items():
                    tot[svc][i] = n
                    err[svc][i] = k
        return idxs, {s: (tot[s], err[s]) for s in services}

    def static_5pct(self, threshold: float = 0.05, rng: float = 300.0, for_: float = 300.0) -> list[dict]:
        """Rule (a); episodes per service."""
        idxs, series = self._series()
        w = int(rng / self.step)
        need = int(for_ / self.step)
        out = []
        for svc, (tot, err) in series.items():
            st = se = 0
            pending_since = None
            firing = None
            for i in range(len(idxs)):
                st += tot[i]
                se += err[i]
                if i >= w:
                    st -= tot[i - w]
                    se -= err[i - w]
                t = (idxs[i] + 1) * self.step
                cond = st > 0 and se / st > threshold
                if cond:
                    if pending_since is None:
                        pending_since = t
                    if firing is None and t - pending_since >= need * self.step:
                        firing = {"detector": "error_rate", "kind": "service_error_rate", "service": svc, "peer": "",
                                  "start": pending_since, "fired": t, "severity": "warning", "rule": "static_5pct"}
                        out.append(firing)
                else:
                    pending_since = None
                    if firing is not None:
                        firing["resolved"] = t
                        firing = None
        return out

    def burn_rate(self, budget: float = BUDGET) -> list[dict]:
        """Rule (b); episodes per service."""
        idxs, series = self._series()
        spans = {"5m": 300, "30m": 1800, "1h": 3600, "6h": 21600}
        out = []
        for svc, (tot, err) in series.items():
            acc = {k: [0, 0] for k in spans}
            firing = None
            for i in range(len(idxs)):
                for k, sec in spans.items():
                    w = int(sec / self.step)
                    a = acc[k]
                    a[0] += tot[i]
                    a[1] += err[i]
                    if i >= w:
                        a[0] -= tot[i - w]
                        a[1] -= err[i - w]
                r = {k: (a[1] / a[0] if a[0] else 0.0) for k, a in acc.items()}
                cond = (r["1h"] > 14.4 * budget and r["5m"] > 14.4 * budget) or (r["6h"] > 6 * budget and r["30m"] > 6 * budget)
                t = (idxs[i] + 1) * self.step
                if cond and firing is None:
                    firing = {"detector": "error_rate", "kind": "service_error_rate", "service": svc, "peer": "",
                              "start": t - self.step, "fired": t, "severity": "critical", "rule": "burn_rate"}
                    out.append(firing)
                elif not cond and firing is not None:
                    firing["resolved"] = t
                    firing = None
        return out

    def fail2ban(self, maxretry: int = 5, findtime: float = 600.0, bantime: float = 600.0) -> list[dict]:
        """Rule (c); one episode per ban."""
        out = []
        recent: dict[str, deque] = {}
        banned_until: dict[str, float] = {}
        for t, src in sorted(self.login_fail):
            if banned_until.get(src, -1.0) > t:
                continue
            q = recent.setdefault(src, deque())
            q.append(t)
            while q and q[0] < t - findtime:
                q.popleft()
            if len(q) >= maxretry:
                out.append({"detector": "auth", "kind": "brute_force", "service": "auth", "peer": "",
                            "start": q[0], "fired": t, "severity": "warning", "rule": "fail2ban"})
                banned_until[src] = t + bantime
                q.clear()
        return out

    def episodes(self) -> dict[str, list[dict]]:
        """``{"static_5pct": [...], "burn_rate": [...], "fail2ban": [...]}``."""
        return {"static_5pct": self.static_5pct(), "burn_rate": self.burn_rate(), "fail2ban": self.fail2ban()}
