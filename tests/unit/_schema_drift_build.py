"""Builders shared by the schema_drift tests: records, a detector, a window driver."""

from __future__ import annotations

from detector.detectors.base import Candidate, DetectorContext, Deployments, IdentityHasher, Window
from detector.detectors.schema_drift.config import SchemaDriftConfig
from detector.detectors.schema_drift.detector import SchemaDriftDetector
from detector.normalise.records import LogRecord, Resource, Scope, SpanRecord

WIN = 10.0
T0 = 1_700_000_000.0


def make(reveal: bool = True, **cfg) -> SchemaDriftDetector:
    ctx = DetectorContext(window_seconds=WIN, hasher=IdentityHasher(b"salt", reveal=reveal), deployments=Deployments())
    return SchemaDriftDetector(SchemaDriftConfig.model_validate(cfg), ctx)


def resource(service: str, schema_url: str = "", version: str = "1.0", **attrs) -> Resource:
    a = {"service.name": service, "service.version": version, "telemetry.sdk.language": "python", **attrs}
    return Resource(service, version, a, schema_url)


def span(res: Resource, name: str, attrs: dict, kind: int = 2, peer: str = "", t: float = T0, i: int = 0,
         scope: Scope | None = None) -> SpanRecord:
    tid = (i + 1).to_bytes(16, "big")
    return SpanRecord(res, scope or Scope("lib", "1.0", res.schema_url), tid, (i + 1).to_bytes(8, "big"), b"", name,
                      kind, t - 0.01, t, 0, "", None, None, name, False, peer, attrs)


def logrec(res: Resource, body, t: float, scope: str = "app", i: int = 0) -> LogRecord:
    return LogRecord(res, Scope(scope), t, 9, "INFO", body, {}, (i + 1).to_bytes(16, "big"), b"")


class Driver:
    """Feeds windows of records to a detector and keeps every candidate per window index."""

    def __init__(self, det: SchemaDriftDetector) -> None:
        self.det = det
        self.index = int(T0 // WIN)
        self.out: dict[int, list[Candidate]] = {}

    @property
    def t(self) -> float:
        return self.index * WIN

    def window(self, make_spans=None, make_logs=None) -> list[Candidate]:
        w = Window.of(self.index, WIN)
        if make_spans is not None:
            spans = make_spans(w)
            if spans:
                self.det.observe_spans(w, spans)
        if make_logs is not None:
            logs = make_logs(w)
            if logs:
                self.det.observe_logs(w, logs)
        cands = self.det.close_window(w)
        self.out[self.index] = cands
        self.index += 1
        return cands

    def run(self, n: int, make_spans=None, make_logs=None) -> list[Candidate]:
        got: list[Candidate] = []
        for _ in range(n):
            got.extend(self.window(make_spans, make_logs))
        return got


def anomalous(cands: list[Candidate]) -> list[Candidate]:
    return [c for c in cands if c.anomalous]
