"""Test-only detectors.

``Recorder`` remembers every call (unit tests of the pipeline).
``SlowPlaceholder`` is the placeholder error_rate detector slowed down by
``OTEL_ANOMALY_TEST_SLOW_SECONDS`` seconds per observed batch (default 0.05),
so a burst fills the queue; select it in a ``serve`` subprocess with
``OTEL_ANOMALY_DETECTOR_CLASSES=error_rate=tests.support.detectors:SlowPlaceholder``.
"""

from __future__ import annotations

import os
import time

from detector.detectors.base import Candidate, Detector, Window
from detector.detectors.placeholder import PlaceholderErrorRateDetector


class Recorder(Detector):
    """Records ``("spans"|"logs", window index, n)`` and closed window indices."""

    name = "recorder"

    def __init__(self, config=None, context=None) -> None:
        super().__init__(config, context)
        self.observed: list[tuple[str, int, int]] = []
        self.spans: list = []
        self.closed: list[int] = []
        self.fail = False
        self.candidates: dict[int, list[Candidate]] = {}

    def observe_spans(self, window: Window, spans) -> None:
        if self.fail:
            raise RuntimeError("boom")
        self.observed.append(("spans", window.index, len(spans)))
        self.spans.extend(spans)

    def observe_logs(self, window: Window, logs) -> None:
        self.observed.append(("logs", window.index, len(logs)))

    def close_window(self, window: Window) -> list[Candidate]:
        self.closed.append(window.index)
        return list(self.candidates.get(window.index, []))

    def span_count(self) -> int:
        return sum(n for kind, _, n in self.observed if kind == "spans")


class SlowPlaceholder(PlaceholderErrorRateDetector):
    """The placeholder detector, sleeping per observed batch (see module docstring)."""

    def observe_spans(self, window, spans) -> None:
        time.sleep(float(os.environ.get("OTEL_ANOMALY_TEST_SLOW_SECONDS", "0.05")))
        super().observe_spans(window, spans)
