"""The contract between the pipeline and every detector family.

Life of a detector (one instance per family per process, driven by the single
analysis worker thread, so no locking is needed inside a detector):

1. ``__init__(config, context)`` — config is the family's pydantic model.
2. ``observe_spans(window, spans)`` / ``observe_logs(window, logs)`` — called
   for every batch, already grouped by the event-time window each record
   belongs to. Per-record work must be cheap (dict increments); models run at
   window close.
3. ``close_window(window)`` — the watermark passed the end of ``window``: run
   the tests for every series that saw data (vectorised with numpy where the
   work is per series), update baselines, and return :class:`Candidate` s.
   Windows close in increasing order; a window may close with no data.
4. ``reconfigure(config)`` — SIGHUP: new thresholds, same learned state.
5. ``state_dict()`` / ``load_state(state)`` — checkpointing (plain data or
   picklable objects; see :mod:`detector.state`).

Candidates: return one for every series that is anomalous in this window
(``anomalous=True``). Returning non-anomalous candidates is allowed (the
alert manager uses them to resolve early and to refresh the score) but not
required: an alert resolves after ``alerts.resolve_after`` closed windows
without an anomalous candidate for its id.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Sequence

from detector.normalise.records import LogRecord, SpanRecord

SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}

# Regexes (Python ``re``, searched case-insensitively) that mark an *authentication operation* — login, sign-in,
# session, token, OAuth, authenticate — in an operation string, span name or URL path. Shared notion: the auth
# detector's default ``span_patterns`` (login/token/session operations) and the error_rate detector's default
# ``client_auth_operation_patterns`` (where a 401/403 is a user outcome, not an edge error) are this list.
AUTH_OPERATION_PATTERNS = (
    r"log_?in",
    r"sign_?in",
    r"session",
    r"token",
    r"oauth",
    r"authenticat",
)


def any_of(patterns: Iterable[str], flags: int = 0) -> re.Pattern[str] | None:
    """One compiled alternation ``(?:p1)|(?:p2)|…`` of config regexes, searched as a
    whole (one scan per string instead of one per pattern); None for an empty list.

    Raises:
        re.error: a pattern does not compile (configs validate them first).
    """
    patterns = list(patterns)
    return re.compile("|".join(f"(?:{p})" for p in patterns), flags) if patterns else None


@dataclass(frozen=True, slots=True)
class Window:
    """One event-time window ``[start, end)`` in seconds since the epoch.

    ``index`` is ``int(start // length)``; consecutive windows differ by 1.
    """

    index: int
    start: float
    end: float

    @classmethod
    def of(cls, index: int, length: float) -> "Window":
        return cls(index, index * length, (index + 1) * length)


@dataclass(slots=True)
class Candidate:
    """A detector's verdict on one series for one closed window.

    The alert id is derived from ``(detector, kind, service, peer, subject)``,
    so ``subject`` must hold only what identifies the series (attribute key,
    route, hashed principal…), never per-window numbers: those go in
    ``observed``/``baseline``.

    Attributes:
        detector: ``error_rate`` | ``schema_drift`` | ``auth``.
        kind: one of the contract's kinds for that detector.
        service: ``service.name``; peer: other side of an edge or ``""``.
        anomalous: True when this window is evidence for an alert.
        score, threshold: the score compared with the threshold (same units).
        severity: ``info`` | ``warning`` | ``critical``.
        observed, baseline: JSON-able numbers for the alert body.
        summary: one human sentence with the numbers.
        exemplar_trace_ids: hex trace ids of example offending records.
        related: alert ids the detector itself knows to be related.
    """

    detector: str
    kind: str
    service: str
    peer: str = ""
    subject: dict[str, Any] = field(default_factory=dict)
    anomalous: bool = True
    score: float = 0.0
    threshold: float = 0.0
    severity: str = "warning"
    observed: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    exemplar_trace_ids: list[str] = field(default_factory=list)
    related: list[str] = field(default_factory=list)

    @property
    def alert_id(self) -> str:
        return alert_id(self.detector, self.kind, self.service, self.peer, self.subject)


def alert_id(detector: str, kind: str, service: str, peer: str, subject: dict[str, Any]) -> str:
    """Stable id of an alert series: 16 hex chars of SHA-256 over its identity."""
    ident = json.dumps([detector, kind, service, peer, subject], sort_keys=True, default=str)
    return hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class IdentityHasher:
    """Salted hashing of personal or unbounded values (principals, sources, tokens).

    ``hash(value)`` returns ``"h:" + 12 hex chars`` of HMAC-SHA256 keyed with the
    salt (RFC 2104), or the value itself when ``reveal`` is true. The salt comes
    from config or is generated once and persisted with the state, so hashes are
    stable across restarts.
    """

    def __init__(self, salt: bytes, reveal: bool = False) -> None:
        self.salt = salt
        self.reveal = reveal

    def __call__(self, value: str) -> str:
        if self.reveal:
            return value
        digest = hmac.new(self.salt, value.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return "h:" + digest.hexdigest()[:12]


class Deployments:
    """Deployments seen in the stream: a change of ``service.version`` per service.

    Filled by the pipeline worker from the records' resources; read by detectors
    (e.g. schema drift treats additive change right after a deploy as benign)
    and by alert correlation.
    """

    def __init__(self, keep: int = 10_000) -> None:
        self._version: dict[str, str] = {}
        self._last: dict[str, tuple[float, str, str]] = {}
        self._keep = keep
        self.count: dict[str, int] = {}

    def observe(self, service: str, version: str, time: float) -> bool:
        """Record ``version`` for ``service`` at event time ``time`` (seconds).

        Returns True when this is a deployment (a known service changed version).
        """
        old = self._version.get(service)
        if old == version or not version:
            return False
        if len(self._version) >= self._keep and old is None:
            self._version.pop(next(iter(self._version)))
        self._version[service] = version
        if old is None:
            return False
        self._last[service] = (time, old, version)
        if len(self._last) > self._keep:
            self._last.pop(next(iter(self._last)))
        self.count[service] = self.count.pop(service, 0) + 1  # re-inserted: most recent last
        if len(self.count) > self._keep:
            self.count.pop(next(iter(self.count)))
        return True

    def last(self, service: str) -> tuple[float, str, str] | None:
        """``(time, old_version, new_version)`` of the service's last deployment, or None."""
        return self._last.get(service)

    def state_dict(self) -> dict:
        return {"version": dict(self._version), "last": dict(self._last), "count": dict(self.count)}

    def load_state(self, state: dict) -> None:
        self._version = dict(state.get("version", {}))
        self._last = {k: tuple(v) for k, v in state.get("last", {}).items()}
        self.count = dict(state.get("count", {}))


@dataclass
class DetectorContext:
    """What the pipeline hands every detector besides its config.

    Attributes:
        window_seconds: length of one event-time window, seconds.
        hasher: salted hashing for identities (see :class:`IdentityHasher`).
        deployments: deployments seen so far (see :class:`Deployments`).
        restored: True when state was restored from a checkpoint (no re-warm-up).
    """

    window_seconds: float
    hasher: IdentityHasher
    deployments: Deployments
    restored: bool = False


class Detector(abc.ABC):
    """Base class of a detector family; see the module docstring for the life cycle."""

    name: ClassVar[str]

    def __init__(self, config: Any, context: DetectorContext) -> None:
        self.config = config
        self.context = context
        self.evicted_total = 0

    def observe_spans(self, window: Window, spans: Sequence[SpanRecord]) -> None:
        """Account ``spans`` (all in ``window``) into the open window's counters."""

    def observe_logs(self, window: Window, logs: Sequence[LogRecord]) -> None:
        """Account ``logs`` (all in ``window``) into the open window's counters."""

    @abc.abstractmethod
    def close_window(self, window: Window) -> list[Candidate]:
        """Evaluate ``window`` and return candidates (see module docstring)."""

    def reconfigure(self, config: Any) -> None:
        """Apply a new config (SIGHUP) keeping learned state."""
        self.config = config

    def tracked_series(self) -> int:
        """Number of series (entities) this detector currently holds state for."""
        return 0

    def scores(self) -> Iterable[tuple[str, str, str, float]]:
        """Latest score per tracked series: ``(kind, service, peer, score)``.

        Called by the worker after each window close to publish
        ``otel_anomaly_score``; keep the number of rows bounded.
        """
        return ()

    def state_dict(self) -> dict:
        """Everything learned, as picklable data."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


def first_exemplars(records: Iterable[SpanRecord | LogRecord], limit: int = 5) -> list[str]:
    """Hex trace ids of the first ``limit`` records that have a trace id."""
    out: list[str] = []
    for r in records:
        if r.trace_id:
            h = r.trace_id.hex()
            if h not in out:
                out.append(h)
                if len(out) >= limit:
                    break
    return out
