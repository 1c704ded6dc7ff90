"""One-sided binomial CUSUM as a river drift detector (the per-series reference).

The detector itself (:mod:`detector.detectors.error_rate.detector`) runs the
same recursion for *all* series at once with :func:`stats.cusum_step` on numpy
arrays at each window close; this class is the readable one-series version,
composable with river (``river.base.BinaryDriftDetector``: ``update(x)`` with
``x`` = 1 for an error, ``drift_detected`` after each update) and used by the
unit tests to check the vectorised code gives the same ``S`` and the same
alarm.

Why not river's own binary detectors: measured in
``shared/research/algorithms.md`` §1.5 — DDM/EDDM false-alarm at low error
ratios (DDM fires on the first error after a clean warm-up), HDDM_W/FHDDM with
defaults missed every 1 % -> 3 % step, HDDM_A needed ~12.8 k events. The
one-sided CUSUM found 1 % -> 3 % in ~700-900 events with no false alarm.
"""

from __future__ import annotations

import math

from river import base

from detector.detectors.error_rate.stats import cusum_alternative


class BinomialCUSUM(base.BinaryDriftDetector):
    """Page's one-sided CUSUM for a rise of a Bernoulli error ratio above ``p0``.

    ``S_t = max(0, S_{t-1} + x ln(p1/p0) + (1-x) ln((1-p1)/(1-p0)))`` with
    ``p1 = max(ratio x p0, p0 + min_delta)``; drift when ``S > h``. Only rises
    accumulate: a drop of the error ratio drives ``S`` to 0 and never alarms.
    After an alarm ``S`` restarts at 0 (river convention: detectors reset on
    detection).

    Parameters
    ----------
    p0
        In-control error ratio in (0, 1); the baseline (floored by the caller).
    ratio
        Relative size of the rise to detect quickly (3 = three times p0).
    min_delta
        Smallest absolute rise the alternative is set to (0.01 = one point).
    h
        Decision threshold in log-likelihood units; the in-control average run
        length is at least ``exp(h)`` samples (Lorden 1971).

    Examples
    --------
    >>> cusum = BinomialCUSUM(p0=0.01, ratio=3.0, min_delta=0.01, h=10.0)
    >>> for i in range(2000):
    ...     cusum.update(i % 100 == 0)          # 1 % errors: in control
    ...     assert not cusum.drift_detected
    >>> hits = []
    >>> for i in range(2000):
    ...     cusum.update(i % 10 == 0)           # 10 % errors
    ...     if cusum.drift_detected:
    ...         hits.append(i)
    >>> hits[0]
    100

    References
    ----------
    [^1]: Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2), 100-115.
    [^2]: Lorden, G. (1971). Procedures for reacting to a change in distribution. Ann. Math. Stat. 42(6).
    """

    def __init__(self, p0: float = 0.01, ratio: float = 3.0, min_delta: float = 0.01, h: float = 10.0) -> None:
        super().__init__()
        if not 0.0 < p0 < 1.0:
            raise ValueError(f"p0 must be in (0, 1), got {p0}")
        if ratio <= 1.0 or min_delta <= 0.0 or h <= 0.0:
            raise ValueError("ratio must be > 1, min_delta > 0 and h > 0")
        self.p0 = p0
        self.ratio = ratio
        self.min_delta = min_delta
        self.h = h
        self.p1 = float(cusum_alternative(p0, ratio, min_delta))
        self._up = math.log(self.p1 / p0)
        self._down = math.log((1.0 - self.p1) / (1.0 - p0))
        self.s = 0.0

    def _reset(self) -> None:
        super()._reset()
        self.s = 0.0

    def update(self, x: bool) -> None:
        """Account one request: ``x`` true (or 1) for an error."""
        if self._drift_detected:
            self._reset()
        self.s = max(0.0, self.s + (self._up if x else self._down))
        self._drift_detected = self.s > self.h

    def update_counts(self, k: int, n: int) -> None:
        """Account a whole window: ``k`` errors out of ``n`` requests (one ``max(0, .)`` per window)."""
        if self._drift_detected:
            self._reset()
        if n:
            self.s = max(0.0, self.s + k * self._up + (n - k) * self._down)
        self._drift_detected = self.s > self.h

    @classmethod
    def _unit_test_params(cls):
        yield {"p0": 0.01}
        yield {"p0": 0.001, "ratio": 5.0, "min_delta": 0.02, "h": 12.0}
