"""Vectorised statistics of the error-rate detector (numpy arrays in, arrays out).

Everything here works on whole arrays of series at once: one call per closed
window, never one per span. Ratios are in [0, 1]; counts are requests.

Methods and sources:

- Wilson score interval: E. B. Wilson, "Probable inference, the law of
  succession, and statistical inference", JASA 22 (1927) 209-212.
- Binomial upper tail ``P(X >= k | n, p)``: ``scipy.stats.binom.sf(k - 1, n, p)``
  (exact, regularised incomplete beta), one vectorised call per window.
- One-sided Bernoulli/binomial CUSUM: E. S. Page, "Continuous inspection
  schemes", Biometrika 41 (1954); the log-likelihood-ratio form for binomial
  counts per sample is in D. C. Montgomery, *Introduction to Statistical
  Quality Control*, ch. 9 (CUSUM for attributes). Threshold from Lorden's
  bound ``ARL0 >= exp(h)`` (G. Lorden, "Procedures for reacting to a change in
  distribution", Ann. Math. Stat. 42 (1971)), in samples (= windows here).
- False-alert budget: Bonferroni over series x windows x tests per day.
"""

from __future__ import annotations

import re

import numpy as np
from scipy.stats import binom

__all__ = [
    "wilson_bounds",
    "binom_tail",
    "alpha_for_budget",
    "cusum_threshold",
    "cusum_alternative",
    "cusum_step",
    "error_signature",
    "fmt_ratio",
]


def wilson_bounds(k: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``k`` successes in ``n`` trials, element-wise.

    Args:
        k, n: arrays of counts (same shape); ``n == 0`` gives ``(0, 1)``.
        z: normal quantile (2 ~ 95.4 %, 3 ~ 99.7 % two-sided).

    Returns:
        ``(lower, upper)`` arrays of ratios in [0, 1].

    Examples: 3/10 at z=3 -> lower 0.065; 10/10 at z=3 -> lower 0.526.
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    safe = np.maximum(n, 1.0)
    p = k / safe
    z2 = z * z
    denom = 1.0 + z2 / safe
    centre = (p + z2 / (2.0 * safe)) / denom
    half = z * np.sqrt(np.maximum(p * (1.0 - p) / safe + z2 / (4.0 * safe * safe), 0.0)) / denom
    empty = n <= 0
    lo = np.where(empty, 0.0, np.clip(centre - half, 0.0, 1.0))
    hi = np.where(empty, 1.0, np.clip(centre + half, 0.0, 1.0))
    return lo, hi


def binom_tail(k: np.ndarray, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``, element-wise (1.0 where ``k <= 0``).

    One scipy call for the whole array (scipy costs ~60 us per *call*, so this
    is done once per window on the subset of series that passed the cheap
    floors, never per series in a Python loop).
    """
    k = np.asarray(k, dtype=np.float64)
    if k.size == 0:
        return np.ones(0)
    out = binom.sf(k - 1.0, np.asarray(n, dtype=np.float64), np.asarray(p, dtype=np.float64))
    return np.where(k <= 0, 1.0, out)


def alpha_for_budget(false_alerts_per_day: np.ndarray | float, series: int, window_seconds: float, tests: int = 3) -> np.ndarray | float:
    """Per-test significance level that keeps false alerts under a daily budget.

    ``alpha = budget / (series x windows_per_day x tests)`` (Bonferroni). With
    1,000 series, 10 s windows and 3 tests per window this is ~3.9e-8 for a
    budget of 1 per day. ``series`` is floored at 100 so that a young process
    with few series is not hypersensitive.
    """
    windows_per_day = 86400.0 / window_seconds
    return np.asarray(false_alerts_per_day) / (max(series, 100) * windows_per_day * tests)


def cusum_threshold(false_alerts_per_day: np.ndarray | float, series: int, window_seconds: float, h_min: np.ndarray | float) -> np.ndarray:
    """CUSUM decision threshold ``h`` (log-likelihood units) for a daily budget.

    Lorden's bound gives an in-control average run length of at least
    ``exp(h)`` samples, one sample being one window's binomial count. So
    ``h = ln(windows_per_day x series / budget)`` keeps the expected false
    alarms per day under the budget (16.0 for 1,000 series, 10 s windows,
    budget 1/day). The bound is conservative; ``h`` never goes below ``h_min``.
    """
    windows_per_day = 86400.0 / window_seconds
    h = np.log(windows_per_day * max(series, 100) / np.asarray(false_alerts_per_day, dtype=np.float64))
    return np.maximum(h, h_min)


def cusum_alternative(p0: np.ndarray, ratio: np.ndarray | float, min_delta: np.ndarray | float) -> np.ndarray:
    """The CUSUM's out-of-control ratio ``p1 = max(ratio x p0, p0 + min_delta)``, kept below 0.999."""
    return np.minimum(np.maximum(p0 * ratio, p0 + min_delta), 0.999)


def cusum_step(s: np.ndarray, k: np.ndarray, n: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """One binomial CUSUM update per series: ``max(0, S + k ln(p1/p0) + (n-k) ln((1-p1)/(1-p0)))``.

    ``k`` errors out of ``n`` requests in the window; an empty window leaves
    ``S`` unchanged. Same result as ``n`` Bernoulli updates in any order
    (the log-likelihood ratio is additive), except that the ``max(0, .)`` is
    applied once per window instead of per event.
    """
    llr = k * np.log(p1 / p0) + (n - k) * np.log((1.0 - p1) / (1.0 - p0))
    return np.maximum(0.0, s + llr)


# --- error signatures (log bodies -> a bounded, non-personal template) --------------------------

_MASKS = (
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "<email>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b(?:0x)?[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\"[^\"]*\"|'[^']*'"), "<str>"),
    (re.compile(r"(?<![A-Za-z])[-+]?\d+(?:[.,:]\d+)*"), "<n>"),
    (re.compile(r"\s+"), " "),
)
SIGNATURE_MAX = 300


def error_signature(body: object) -> str:
    """A bounded template of an error log body: variable parts masked, first line, <= 300 chars.

    Masks e-mail addresses, UUIDs, IPv4 (with port), hex ids (8+ digits),
    quoted strings and numbers, so the same error with different ids maps to
    one signature and no identity ends up in an alert. Non-string bodies
    (kvlist, numbers) use their ``message``/``msg`` key or their type name.
    """
    if isinstance(body, dict):
        body = body.get("message") or body.get("msg") or "<kvlist>"
    if not isinstance(body, str):
        return f"<{type(body).__name__}>"
    text = body.strip().split("\n", 1)[0][: SIGNATURE_MAX * 4]
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    text = text.strip()
    return text[:SIGNATURE_MAX] if text else "<empty>"


def fmt_ratio(p: float) -> str:
    """Human percentage: 0.004 -> '0.4%', 0.23 -> '23%', 0.0005 -> '0.05%', 0.081 -> '8.1%'."""
    pct = p * 100.0
    if pct >= 10:
        return f"{pct:.0f}%"
    if pct >= 1:
        return f"{pct:.1f}".rstrip("0").rstrip(".") + "%"
    return f"{pct:.2g}%"
