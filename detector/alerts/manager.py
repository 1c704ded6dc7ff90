"""The alert lifecycle shared by every detector.

Driven by the analysis worker once per closed window with every detector's
candidates (:meth:`AlertManager.process`). Per alert id (see
:func:`detector.detectors.base.alert_id`):

* **pending → firing** after ``alerts.open_after`` anomalous windows in a row
  (``started_at`` = start of the first of them); counted in
  ``otel_anomaly_alerts_total{detector,kind,service,severity}``.
* **firing → resolved** after ``alerts.resolve_after`` closed windows without
  an anomalous candidate (``resolved_at`` = end of the last of them).
* **resolved → firing (same episode)** when it fires again within
  ``alerts.cooldown`` of resolving: same ``started_at``, not counted again, no
  ``open_after`` wait (hysteresis against flapping). Later re-fires start a
  new episode.
* **flap damping**: each such re-fire doubles the quiet windows the episode
  needs before it resolves again (``resolve_after`` × 2^re-fires), at most
  :data:`MAX_DAMPING` × ``resolve_after`` and never more windows than fit in
  ``alerts.cooldown`` (but at least ``resolve_after``). Evidence that comes and
  goes every few windows — a detector holding a rise that only some windows
  show, e.g. 1-2 errors in 30 requests against a 0.1 % baseline — then makes
  one long episode with a few transitions instead of a FIRING/RESOLVED pair
  every minute. An episode that never re-fires resolves after exactly
  ``resolve_after``. Method: the exponential penalty of BGP route flap
  damping (RFC 2439 §4.2, without its decay: the penalty ends with the
  episode) and the intent of Prometheus' ``keep_firing_for``.
* **dedup**: candidates with the same id in one window merge (highest score
  wins); an id is one alert at a time.
* **cap**: at most ``alerts.max_active`` firing; an alert that would open
  beyond that stays pending and is counted once per episode in
  ``otel_anomaly_alerts_overflow_total``.
* **severity** is the maximum seen during the episode.
* **correlation**: an ``error_rate`` alert that opens within
  ``alerts.correlation_window`` after a deployment (``service.version``
  change) of its service or peer, or after a ``schema_drift`` alert on either
  side, gets those ids in ``related`` (``deploy:<service>:<version>`` for
  deployments), severity ``critical`` and a summary naming the cause. A
  drift alert about an *outcome* attribute (a status code or ``error.type``,
  :data:`OUTCOME_ATTRIBUTES`: a new ``503`` share) is the error itself seen by
  schema_drift, not its cause, and is not linked.
* resolved alerts stay visible for ``alerts.keep_resolved`` (event time).

The open/resolve hysteresis mirrors Prometheus alerting rules' ``for`` and
``keep_firing_for``, counted in windows instead of seconds.

Every transition is handed to the ``listeners`` callbacks as the alert
JSON (state ``firing`` or ``resolved``); the app logs each as one JSON line
and ``replay`` prints it. Not thread-safe: only the worker thread calls in;
other threads read :class:`AlertView` snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from detector.alerts.config import AlertsConfig
from detector.alerts.model import FIRING, PENDING, RESOLVED, Alert, rfc3339
from detector.detectors.base import SEVERITY_RANK, Candidate, Deployments, Window

Transition = Callable[[dict[str, Any]], None]

OUTCOME_ATTRIBUTES = frozenset({
    "http.response.status_code", "http.status_code", "rpc.grpc.status_code", "rpc.response.status_code",
    "error.type", "otel.status_code",
})
"""Attributes that carry a request's outcome (semconv, old and new names): drift in their values is a symptom."""

MAX_DAMPING = 16
"""Cap on the flap-damping factor (× ``resolve_after``); the cooldown caps it too (10 s windows,
``resolve_after`` 3, ``cooldown`` 5m: 3, 6, 12, 24, then 30 quiet windows)."""


@dataclass(frozen=True)
class AlertView:
    """Immutable picture of the alerts for the HTTP thread.

    Attributes:
        alerts: alert JSON objects: firing ones, then resolved within ``keep_resolved``.
        active: ``(detector, kind, service, peer, severity)`` of each firing alert.
        totals: ``((detector, kind, service, severity), opened count)`` pairs.
        exemplars: ``((detector, kind, service, severity), trace id hex, event time)``
            of the latest opened alert per series that had an exemplar.
    """

    alerts: tuple[dict[str, Any], ...] = ()
    active: tuple[tuple[str, str, str, str, str], ...] = ()
    totals: tuple[tuple[tuple[str, str, str, str], int], ...] = ()
    exemplars: tuple[tuple[tuple[str, str, str, str], str, float], ...] = ()


class AlertManager:
    """See the module docstring.

    Args:
        config: the ``alerts:`` section.
        deployments: the pipeline's :class:`Deployments` (read for correlation).
        window_seconds: window length (a deployment or drift alert up to one
            window *after* the error alert's first window still counts).
        on_overflow: called when an alert is not opened because of ``max_active``.
    """

    STATE_VERSION = 1
    """Bump when the layout of :meth:`state_dict` changes incompatibly (checkpoint feature schema)."""

    def __init__(
        self,
        config: AlertsConfig,
        deployments: Deployments,
        window_seconds: float,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.deployments = deployments
        self.window_seconds = window_seconds
        self.on_overflow = on_overflow
        self.listeners: list[Transition] = []
        self._alerts: dict[str, Alert] = {}
        self._totals: dict[tuple[str, str, str, str], int] = {}
        self._exemplars: dict[tuple[str, str, str, str], tuple[str, float]] = {}
        self._overflowed: set[str] = set()
        self.overflow_total = 0
        self.now = 0.0  # event time of the last processed window end

    # ------------------------------------------------------------------ lifecycle

    def reconfigure(self, config: AlertsConfig) -> None:
        """New rules (SIGHUP); alerts in flight keep their state."""
        self.config = config

    def process(self, window: Window, candidates: Iterable[Candidate]) -> list[dict[str, Any]]:
        """Apply one closed window's candidates; return the transitions (alert JSON)."""
        cfg = self.config
        anomalous: dict[str, Candidate] = {}
        quiet_scores: dict[str, Candidate] = {}
        for c in candidates:
            aid = c.alert_id
            if c.anomalous:
                prev = anomalous.get(aid)
                if prev is None or c.score > prev.score:
                    anomalous[aid] = c
            else:
                quiet_scores[aid] = c
        out: list[dict[str, Any]] = []
        # error_rate last so that drift alerts opening in the same window can be linked.
        for aid, c in sorted(anomalous.items(), key=lambda kv: (kv[1].detector == "error_rate", kv[0])):
            a = self._alerts.get(aid)
            if a is None or (a.state == RESOLVED and window.start - (a.resolved_at or 0.0) > cfg.cooldown):
                a = Alert.from_candidate(c, window.start, window.index)
                self._alerts[aid] = a
                self._overflowed.discard(aid)
                a.streak = 1
                a.update_from(c, cfg.max_exemplars)
                if a.streak >= cfg.open_after:
                    self._open(a, out, reopen=False)
            elif a.state == PENDING:
                if a.last_index == window.index - 1:
                    a.streak += 1
                else:
                    a.streak = 1
                    a.started_at = window.start
                    a.severity = c.severity
                a.last_index = window.index
                a.update_from(c, cfg.max_exemplars)
                if a.streak >= cfg.open_after:
                    self._open(a, out, reopen=False)
            elif a.state == FIRING:
                a.quiet = 0
                a.last_index = window.index
                a.update_from(c, cfg.max_exemplars)
            else:  # resolved within cooldown: same episode fires again
                a.last_index = window.index
                a.refires += 1
                a.update_from(c, cfg.max_exemplars)
                self._open(a, out, reopen=True)
        for aid, a in list(self._alerts.items()):
            if aid in anomalous:
                continue
            q = quiet_scores.get(aid)
            if a.state == FIRING:
                if q is not None:
                    a.score = float(q.score)
                a.quiet += 1
                if a.quiet >= self.resolve_windows(a):
                    a.state = RESOLVED
                    a.resolved_at = window.end
                    out.append(self._emit(a))
            elif a.state == PENDING and a.last_index < window.index:
                del self._alerts[aid]
        self.now = max(self.now, window.end)
        self._purge()
        return out

    def resolve_windows(self, a: Alert) -> int:
        """Quiet windows (count) alert ``a`` needs before it resolves: ``resolve_after``, doubled per
        re-fire of its episode within the cooldown, capped (see the module docstring, flap damping)."""
        cfg = self.config
        base = int(cfg.resolve_after)
        if a.refires <= 0:
            return base
        factor = 1 << min(a.refires, MAX_DAMPING.bit_length() - 1)  # 2^refires, at most MAX_DAMPING
        cap = max(base, int(cfg.cooldown // self.window_seconds)) if self.window_seconds > 0 else base
        return max(base, min(base * factor, base * MAX_DAMPING, cap))

    def _open(self, a: Alert, out: list[dict[str, Any]], reopen: bool) -> None:
        firing = sum(1 for x in self._alerts.values() if x.state == FIRING)
        if firing >= self.config.max_active:
            if a.id not in self._overflowed:
                self._overflowed.add(a.id)
                self.overflow_total += 1
                if self.on_overflow is not None:
                    self.on_overflow()
            if a.state == RESOLVED:
                a.state = PENDING
            return
        a.state = FIRING
        a.quiet = 0
        a.resolved_at = None
        if not reopen:
            self._correlate(a)
            key = (a.detector, a.kind, a.service, a.severity)
            self._totals[key] = self._totals.get(key, 0) + 1
            if a.exemplar_trace_ids:
                self._exemplars[key] = (a.exemplar_trace_ids[0], a.started_at)
        out.append(self._emit(a))

    def _correlate(self, a: Alert) -> None:
        if a.detector != "error_rate":
            return
        sides = [s for s in dict.fromkeys((a.service, a.peer)) if s]
        lo = a.started_at - self.config.correlation_window
        hi = a.started_at + self.window_seconds
        causes: list[str] = []
        for s in sides:
            last = self.deployments.last(s)
            if last is not None and lo <= last[0] <= hi:
                rid = f"deploy:{s}:{last[2]}"
                if rid not in a.related:
                    a.related.append(rid)
                causes.append(f"deployment of {s} {last[1] or '?'} -> {last[2]} at {rfc3339(last[0])}")
        for other in self._alerts.values():
            if other.detector != "schema_drift" or other.state == PENDING or other.service not in sides:
                continue
            if isinstance(other.subject, dict) and other.subject.get("attribute") in OUTCOME_ATTRIBUTES:
                continue
            if lo <= other.started_at <= hi:
                if other.id not in a.related:
                    a.related.append(other.id)
                causes.append(f"schema drift ({other.kind}) on {other.service} since {rfc3339(other.started_at)}")
        if causes:
            a.severity = "critical"
            a.cause = "Likely cause: " + "; ".join(causes) + "."

    def _emit(self, a: Alert) -> dict[str, Any]:
        doc = a.to_json()
        for fn in self.listeners:
            fn(doc)
        return doc

    def _purge(self) -> None:
        keep = max(self.config.keep_resolved, self.config.cooldown)
        for aid in [k for k, a in self._alerts.items() if a.state == RESOLVED and self.now - (a.resolved_at or 0.0) > keep]:
            del self._alerts[aid]
            self._overflowed.discard(aid)

    # ------------------------------------------------------------------ reading

    def get(self, alert_id: str) -> Alert | None:
        return self._alerts.get(alert_id)

    def firing(self) -> list[Alert]:
        return [a for a in self._alerts.values() if a.state == FIRING]

    def view(self) -> AlertView:
        """An immutable snapshot for other threads (see :class:`AlertView`)."""
        firing = sorted(self.firing(), key=lambda a: (-SEVERITY_RANK.get(a.severity, 0), a.started_at, a.id))
        resolved = sorted(
            (a for a in self._alerts.values() if a.state == RESOLVED and self.now - (a.resolved_at or 0.0) <= self.config.keep_resolved),
            key=lambda a: -(a.resolved_at or 0.0),
        )
        return AlertView(
            alerts=tuple(a.to_json() for a in firing + resolved),
            active=tuple((a.detector, a.kind, a.service, a.peer, a.severity) for a in firing),
            totals=tuple(sorted(self._totals.items())),
            exemplars=tuple((k, t, ts) for k, (t, ts) in sorted(self._exemplars.items())),
        )

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Plain data: alerts in flight, opened counts, exemplars, overflow count."""
        return {
            "alerts": [a.state_dict() for a in self._alerts.values()],
            "totals": [[list(k), v] for k, v in self._totals.items()],
            "exemplars": [[list(k), t, ts] for k, (t, ts) in self._exemplars.items()],
            "overflow_total": self.overflow_total,
            "now": self.now,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._alerts = {}
        for d in state.get("alerts", []):
            a = Alert.from_state(d)
            self._alerts[a.id] = a
        self._totals = {tuple(k): int(v) for k, v in state.get("totals", [])}
        self._exemplars = {tuple(k): (t, ts) for k, t, ts in state.get("exemplars", [])}
        self.overflow_total = int(state.get("overflow_total", 0))
        self.now = float(state.get("now", 0.0))
