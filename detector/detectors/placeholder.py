"""Placeholder ``error_rate`` detector: a static threshold on each service's error ratio.

Exercises the spine until the real detector
(:mod:`detector.detectors.error_rate.detector`) replaces it in the registry
(:data:`detector.app.DETECTOR_CLASSES`). Per window and service it counts
server/consumer spans, or every span for a service that sends none, and their
errors (``SpanRecord.is_error``); a window with at least
:data:`MIN_REQUESTS` such spans and an error ratio above :data:`THRESHOLD`
is anomalous (kind ``service_error_rate``). No baseline, no learning; the
score is the ratio in [0, 1]. Severity ``critical`` at a ratio of 0.5 or more,
else ``warning``.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from detector.detectors.base import Candidate, Detector, DetectorContext, Window, first_exemplars
from detector.normalise.records import SPAN_KIND_CONSUMER, SPAN_KIND_SERVER, SpanRecord

THRESHOLD = 0.2
"""Error ratio (errors / requests, in [0, 1]) above which a window is anomalous."""
MIN_REQUESTS = 20
"""Requests a service needs in one window before it is tested."""
MAX_SERVICES = 10_000
"""Services tracked at most; more are counted in ``evicted_total`` and ignored."""


class PlaceholderErrorRateDetector(Detector):
    """Static-threshold error ratio per service; see the module docstring.

    Args:
        config: the ``detectors.error_rate`` section (only ``enabled`` is read).
        context: the pipeline's :class:`DetectorContext`.
    """

    name = "error_rate"

    def __init__(self, config: Any, context: DetectorContext) -> None:
        super().__init__(config, context)
        # window index -> service -> [requests, errors, entry_requests, entry_errors, exemplars]
        self._windows: dict[int, dict[str, list]] = {}
        self._scores: dict[str, float] = {}

    def observe_spans(self, window: Window, spans: Sequence[SpanRecord]) -> None:
        per = self._windows.setdefault(window.index, {})
        for s in spans:
            svc = s.resource.service
            row = per.get(svc)
            if row is None:
                if len(per) >= MAX_SERVICES:
                    self.evicted_total += 1
                    continue
                row = per[svc] = [0, 0, 0, 0, []]
            entry = s.kind == SPAN_KIND_SERVER or s.kind == SPAN_KIND_CONSUMER
            row[0] += 1
            if entry:
                row[2] += 1
            if s.is_error:
                row[1] += 1
                if entry:
                    row[3] += 1
                if len(row[4]) < 5 and s.trace_id:
                    row[4].append(s)

    def close_window(self, window: Window) -> list[Candidate]:
        per = self._windows.pop(window.index, {})
        out: list[Candidate] = []
        for svc, (n, err, n_entry, err_entry, ex) in per.items():
            if n_entry:
                n, err = n_entry, err_entry
            ratio = err / n if n else 0.0
            if len(self._scores) < MAX_SERVICES or svc in self._scores:
                self._scores[svc] = ratio
            if n < MIN_REQUESTS:
                continue
            anomalous = ratio > THRESHOLD
            out.append(
                Candidate(
                    detector="error_rate",
                    kind="service_error_rate",
                    service=svc,
                    anomalous=anomalous,
                    score=ratio,
                    threshold=THRESHOLD,
                    severity="critical" if ratio >= 0.5 else "warning",
                    observed={"requests": n, "errors": err, "error_ratio": round(ratio, 4)},
                    baseline={"max_error_ratio": THRESHOLD, "min_requests": MIN_REQUESTS},
                    summary=f"{svc}: {err} of {n} requests failed ({ratio:.0%}) in 10 s window, above the static {THRESHOLD:.0%} threshold.".replace(
                        "10 s", f"{window.end - window.start:g} s"
                    ),
                    exemplar_trace_ids=first_exemplars(ex) if anomalous else [],
                )
            )
        return out

    def tracked_series(self) -> int:
        return len(self._scores)

    def scores(self) -> Iterable[tuple[str, str, str, float]]:
        return [("service_error_rate", svc, "", score) for svc, score in self._scores.items()]

    def state_dict(self) -> dict:
        return {"scores": dict(self._scores)}

    def load_state(self, state: dict) -> None:
        self._scores = dict(state.get("scores", {}))
