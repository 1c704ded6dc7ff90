"""One alert series and its JSON form (CONTRACT.md, "Alert JSON")."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from detector.detectors.base import SEVERITY_RANK, Candidate

PENDING = "pending"
FIRING = "firing"
RESOLVED = "resolved"


def rfc3339(t: float | None) -> str | None:
    """Seconds since the epoch -> RFC 3339 UTC with milliseconds (``2024-05-01T10:00:00.000Z``)."""
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def max_severity(a: str, b: str) -> str:
    """The more severe of two severities (``info`` < ``warning`` < ``critical``)."""
    return a if SEVERITY_RANK.get(a, 0) >= SEVERITY_RANK.get(b, 0) else b


@dataclass
class Alert:
    """Lifecycle state of one alert series (id from :func:`detector.detectors.base.alert_id`).

    Times are event-time seconds. ``streak`` counts anomalous windows in a row
    while pending; ``quiet`` counts closed windows without evidence while firing;
    ``refires`` counts how often this episode fired again within the cooldown
    after resolving (flap damping, see :mod:`detector.alerts.manager`).
    """

    id: str
    detector: str
    kind: str
    service: str
    peer: str
    subject: dict[str, Any]
    state: str = PENDING
    severity: str = "warning"
    started_at: float = 0.0
    resolved_at: float | None = None
    observed: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0
    threshold: float = 0.0
    summary: str = ""
    related: list[str] = field(default_factory=list)
    exemplar_trace_ids: list[str] = field(default_factory=list)
    streak: int = 0
    quiet: int = 0
    last_index: int = -1
    cause: str = ""
    refires: int = 0

    @classmethod
    def from_candidate(cls, c: Candidate, started_at: float, index: int) -> "Alert":
        a = cls(c.alert_id, c.detector, c.kind, c.service, c.peer, dict(c.subject), started_at=started_at, severity=c.severity)
        a.last_index = index
        return a

    def update_from(self, c: Candidate, max_exemplars: int) -> None:
        """Take the latest numbers from an anomalous candidate; severity only rises."""
        self.severity = max_severity(self.severity, c.severity)
        self.observed = dict(c.observed)
        self.baseline = dict(c.baseline)
        self.score = float(c.score)
        self.threshold = float(c.threshold)
        self.summary = c.summary
        for r in c.related:
            if r not in self.related:
                self.related.append(r)
        for t in c.exemplar_trace_ids:
            if len(self.exemplar_trace_ids) >= max_exemplars:
                break
            if t not in self.exemplar_trace_ids:
                self.exemplar_trace_ids.append(t)

    def to_json(self) -> dict[str, Any]:
        """The contract's alert object (a fresh dict; safe to hand to other threads)."""
        summary = self.summary
        if self.cause:
            summary = f"{summary} {self.cause}".strip()
        return {
            "id": self.id,
            "state": RESOLVED if self.state == RESOLVED else FIRING,
            "detector": self.detector,
            "kind": self.kind,
            "severity": self.severity,
            "service": self.service,
            "peer": self.peer,
            "subject": plain(self.subject),
            "started_at": rfc3339(self.started_at),
            "resolved_at": rfc3339(self.resolved_at),
            "observed": plain(self.observed),
            "baseline": plain(self.baseline),
            "score": _num(self.score),
            "threshold": _num(self.threshold),
            "summary": summary,
            "related": list(self.related),
            "exemplar_trace_ids": [str(t) for t in self.exemplar_trace_ids],
        }

    def state_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "Alert":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def plain(value: Any, depth: int = 0) -> Any:
    """A JSON-serialisable copy of ``value``: numpy scalars/arrays -> Python numbers/lists,
    tuples/sets -> lists, NaN/inf -> None, bytes -> hex, other objects -> ``str``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _num(value)
    if depth > 20:
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if hasattr(value, "tolist"):  # numpy scalar or array
        return plain(value.tolist(), depth + 1)
    return str(value)


def _num(x: float) -> float | None:
    x = float(x)
    return x if x == x and x not in (float("inf"), float("-inf")) else None
