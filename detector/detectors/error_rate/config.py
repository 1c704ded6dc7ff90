"""Config of the ``error_rate`` detector (``detectors.error_rate:``).

Every key of :class:`ErrorRateTunables` may be changed per service with
``overrides`` (``{match: {service: GLOB}, key: value}``), e.g. a noisy batch
service made less sensitive with a smaller ``false_alerts_per_day``. Keys that
only make sense for the whole detector (memory caps) live on
:class:`ErrorRateConfig` itself.
"""

from __future__ import annotations

import re
from typing import Annotated, Optional

from pydantic import AfterValidator, Field, model_validator

from detector.config.types import Duration, OverridableMixin, StrictModel, override_model
from detector.detectors.base import AUTH_OPERATION_PATTERNS


def _regex(v: str) -> str:
    """Check that ``v`` compiles as a Python regex (ValueError naming it otherwise)."""
    try:
        re.compile(v)
    except re.error as e:
        raise ValueError(f"invalid regex {v!r}: {e}") from None
    return v


Regex = Annotated[str, AfterValidator(_regex)]


class ErrorRateTunables(StrictModel):
    """Per-service tunables of the error_rate detector (what ``overrides`` may change)."""

    false_alerts_per_day: float = Field(
        1.0,
        gt=0,
        description="sensitivity: false alerts per day the whole detector may raise on stationary data; sets the "
        "per-test significance (alpha = budget / (series x windows per day)) and the CUSUM threshold",
    )
    alpha: Optional[float] = Field(
        None,
        gt=0,
        lt=1,
        description="fixed significance level of the one-window and multi-window binomial tests; null = derive from "
        "false_alerts_per_day",
    )
    warmup: Duration = Field("5m", description="a series does not alert on rises before it is this old (event time)")
    warmup_requests: int = Field(20, ge=0, description="...and before it has learned from this many requests")
    new_series_floor: float = Field(
        0.5,
        gt=0,
        le=1,
        description="a series still in warm-up is reported (severity warning) when the lower Wilson bound (z=3) of "
        "its error ratio since birth is at least this; 10 failures out of 10 give 0.53",
    )
    half_life_requests: int = Field(
        20_000, ge=100, description="baseline forgetting, counted in requests (not time, so quiet nights do not erase it)"
    )
    prior_weight: float = Field(
        200.0, ge=0, description="maximum weight, in requests, of the population prior that shrinks a series' baseline; the weight used is estimated from the spread of the population (empirical Bayes)"
    )
    prior_max: float = Field(0.05, gt=0, le=1, description="cap on the population prior ratio (chronic failers do not lift it)")
    rate_floor: float = Field(0.001, gt=0, lt=1, description="the baseline error ratio is never taken below this")
    min_errors: int = Field(5, ge=1, description="minimum errors in the tested window(s) before a binomial test may fire")
    min_increase: float = Field(
        0.005, ge=0, lt=1, description="minimum absolute rise of the ratio over the baseline (0.005 = half a point)"
    )
    min_ratio: float = Field(2.0, ge=1, description="minimum relative rise: observed ratio at least this times the baseline")
    aggregate_windows: int = Field(
        6, ge=1, le=60, description="windows summed for the multi-window test (low-traffic series); 6 x 10s = 1 min"
    )
    cusum_ratio: float = Field(3.0, gt=1, description="CUSUM alternative: p1 = max(cusum_ratio x p0, p0 + cusum_min_delta)")
    cusum_min_delta: float = Field(0.01, gt=0, lt=1, description="see cusum_ratio")
    cusum_h_min: float = Field(
        10.0, gt=0, description="smallest CUSUM threshold (log-likelihood units); raised with the series' volume to meet the budget"
    )
    adapt_after: Duration = Field(
        "1h", description="after this long anomalous, a series learns its new level anyway (a lasting change becomes normal)"
    )
    critical_ratio: float = Field(5.0, ge=1, description="severity critical when the lower Wilson bound is >= this x baseline")
    critical_increase: float = Field(0.10, ge=0, le=1, description="...or >= baseline + this")
    adwin: bool = Field(True, description="feed river ADWIN with per-window ratios as a slow-drift confirmation")
    adwin_delta: float = Field(0.002, gt=0, lt=1, description="ADWIN confidence (river drift.ADWIN delta)")
    adwin_min_requests: int = Field(10, ge=1, description="windows with fewer requests are not fed to ADWIN")
    client_auth_failures_are_errors: bool = Field(
        False,
        description="count HTTP 401/403 and gRPC UNAUTHENTICATED/PERMISSION_DENIED on this service's client/producer "
        "spans as edge errors always, like any other client 4xx (semconv); false = the same, except on calls to an "
        "authentication operation (client_auth_operation_patterns: login, token, session...), where a refusal is "
        "the callee's verdict on end users' credentials (mistyped passwords, expired sessions, login attacks: the "
        "auth detector's business) and counts only while refusals are most of the edge's calls "
        "(client_auth_wholesale_share)",
    )
    client_auth_operation_patterns: list[Regex] = Field(
        default_factory=lambda: list(AUTH_OPERATION_PATTERNS),
        description="regexes (case-insensitive, searched) on a client span's operation, span name and URL path "
        "(url.template, url.path, http.target, path of url.full / http.url) that mark a call to an authentication "
        "operation (same defaults as the auth detector's span_patterns); ['.'] = every call of this service "
        "forwards end users' credentials",
    )
    client_auth_wholesale_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="refusals of calls to authentication operations count as edge errors when the lower Wilson bound "
        "(z=2) of their share of the edge's recent calls (counts decayed with a half-life of 5 requests) is at least "
        "this: the caller's own credentials are refused (expired service token, rotated key); 1 = never",
    )


ErrorRateOverride = override_model(ErrorRateTunables)


class ErrorRateConfig(ErrorRateTunables, OverridableMixin):
    """``detectors.error_rate`` section."""

    enabled: bool = Field(True, description="run this detector")
    max_series: int = Field(100_000, ge=10, description="cap on tracked series; least recently seen are evicted (counted)")
    series_ttl: Duration = Field("24h", description="a series idle this long (event time) is forgotten")
    learn_delay: Optional[Duration] = Field(
        None,
        description="a window enters the baseline only this long after it closed, and only if nothing was anomalous "
        "since, so a slowly detected incident does not teach itself as normal (at most 360 windows); null = warmup",
    )
    operations: bool = Field(True, description="track operation_error_rate (service + route / rpc method / span name)")
    max_operations_per_service: int = Field(
        200, ge=0, description="cap on operation series per service (span names can explode)"
    )
    log_signatures: bool = Field(
        True,
        description="also track log_error_rate per error signature (masked message) so a new kind of error is seen "
        "even when the service's total error share is flat",
    )
    max_signatures_per_service: int = Field(20, ge=0, description="cap on error signatures tracked per service")
    exemplars: int = Field(3, ge=0, le=20, description="trace ids of failing spans kept per series for the alert body")
    overrides: list[ErrorRateOverride] = Field(default_factory=list, description="per-service changes, applied in order")

    @model_validator(mode="after")
    def _check(self) -> "ErrorRateConfig":
        if self.warmup < 0:
            raise ValueError("warmup must not be negative")
        return self
