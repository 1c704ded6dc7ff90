"""Config of the ``auth`` detector (``detectors.auth:``).

Two layers, as for every family:

* :class:`AuthTunables` — thresholds and horizons that ``overrides`` may change
  per service (glob on ``service.name``).
* :class:`AuthConfig` — adds what is global to the process: which spans and log
  lines are authentication events (patterns, attribute lists, log presets),
  allow-lists, state caps and ``reveal_identities``.

Defaults follow ``research/algorithms.md`` §2.3 and §5 (10 failures / 5 min per
principal, 10 principals / 10 min per source, 5 failures then a success within
15 min, 3 anonymous 2xx with a Wilson bound for bypass, 3 source networks per
token) and MITRE ATT&CK T1110.001/.003/.004 for the attack shapes.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, field_validator

from detector.config.types import Duration, OverridableMixin, StrictModel, override_model
from detector.detectors.base import AUTH_OPERATION_PATTERNS

# the shared notion of a login/token/session operation (error_rate uses the same list)
DEFAULT_SPAN_PATTERNS = list(AUTH_OPERATION_PATTERNS)


class AuthTunables(StrictModel):
    """Per-service tunables of the auth detector (what ``overrides`` may change).

    Counts are events inside the entity's horizon (a sliding span of whole
    windows ending with the closing window); ratios are in [0, 1].
    """

    # horizons
    principal_horizon: Duration = Field("5m", description="sliding horizon for per-principal counts (brute_force, forbidden_spike)")
    source_horizon: Duration = Field("10m", description="sliding horizon for per-source counts (password_spraying)")
    token_horizon: Duration = Field("10m", description="sliding horizon for per-token distinct sources (token_reuse)")
    service_horizon: Duration = Field("1m", description="sliding horizon for the service-wide login failure test (credential_stuffing)")
    success_lookback: Duration = Field("15m", description="a success after a failure run older than this is not success_after_failures")
    warmup: Duration = Field("10m", description="event time a service must be seen before baseline-relative kinds (stuffing, bypass, token_reuse, forbidden_spike) may fire")

    # brute_force
    brute_force_min_failures: int = Field(10, ge=1, description="failures on one principal within principal_horizon")
    brute_force_min_failure_ratio: float = Field(0.8, ge=0, le=1, description="failures / attempts on that principal")
    brute_force_source_min_failures_per_principal: float = Field(
        2.0, ge=1, description="source-level brute_force (one source, a few accounts): mean failures per failed principal")
    # password_spraying
    spraying_min_principals: int = Field(10, ge=2, description="distinct principals that failed from one source within source_horizon")
    spraying_max_attempts_per_principal: float = Field(3.0, gt=0, description="mean failures per failed principal must stay at or below this")
    spraying_min_failure_ratio: float = Field(0.9, ge=0, le=1, description="failures / attempts from that source")
    # credential_stuffing
    stuffing_min_failed_principals: int = Field(20, ge=1, description="distinct failing principals in service_horizon")
    stuffing_min_sources: float = Field(5.0, ge=1, description="effective number of failing sources in service_horizon (1/Σ share², so a few loud sources count as few)")
    stuffing_max_top_source_share: float = Field(0.5, ge=0, le=1, description="largest single source's share of failures (above: spraying, not stuffing)")
    stuffing_alpha: float = Field(1e-7, gt=0, lt=1, description="binomial tail probability of the failures given the learned failure ratio")
    stuffing_min_ratio_increase: float = Field(0.2, ge=0, le=1, description="failure ratio must exceed the learned one by this much")
    stuffing_min_baseline_attempts: int = Field(200, ge=1, description="attempts learned before the baseline failure ratio is trusted")
    # success_after_failures
    saf_min_failures: int = Field(5, ge=1, description="consecutive failures before a success, for a principal or from a source")
    # auth_bypass
    bypass_horizon: Duration = Field("5m", description="sliding horizon over which anonymous 2xx on a protected operation are counted")
    bypass_min_baseline_anonymous: int = Field(20, ge=1, description="anonymous requests learned on a protected operation before bypass may fire")
    bypass_min_baseline_deny_share: float = Field(0.95, ge=0, le=1, description="learned share of anonymous requests that were denied (401/403)")
    bypass_min_anonymous_ok: int = Field(3, ge=1, description="anonymous 2xx within bypass_horizon")
    bypass_min_ok_share: float = Field(0.2, ge=0, le=1, description="Wilson lower bound of the anonymous 2xx share must exceed this")
    bypass_wilson_z: float = Field(3.0, gt=0, description="z of the Wilson score lower bound")
    bypass_min_anonymous_share_jump: float = Field(0.5, ge=0, le=1, description="second path: share of requests without a principal rises by this while no request is denied")
    bypass_min_requests: int = Field(20, ge=1, description="requests in one window for the anonymous-share path")
    # token_reuse
    token_min_networks: int = Field(3, ge=2, description="distinct source networks (/24 IPv4, /48 IPv6) per token within token_horizon")
    token_min_user_agents: int = Field(2, ge=1, description="distinct user agents per token within token_horizon")
    # forbidden_spike
    forbidden_min: int = Field(10, ge=1, description="403 / PERMISSION_DENIED for one principal within principal_horizon")
    forbidden_own_factor: float = Field(5.0, ge=1, description="must exceed this times the principal's own learned rate over the horizon")
    # adaptive guards and the population model
    baseline_quantile: float = Field(0.999, gt=0.5, lt=1, description="population quantile learned per service for adaptive thresholds")
    baseline_multiplier: float = Field(3.0, ge=1, description="adaptive threshold = max(configured minimum, this × learned quantile)")
    baseline_min_samples: int = Field(500, ge=10, description="entity-windows learned before the adaptive part applies")
    model_enabled: bool = Field(True, description="score per-entity feature vectors with a HalfSpaceTrees population model")
    model_quantile: float = Field(0.95, gt=0.5, lt=1, description="running quantile of the model's scores on learned vectors; above it the entity is 'odd'")
    model_strong_factor: float = Field(2.0, ge=1, description="guards exceeded by this factor fire even when the model calls the entity typical")


AuthOverride = override_model(AuthTunables)


class LogPattern(StrictModel):
    """A user-defined log pattern (Python ``re`` syntax, searched in the body).

    Named groups used: ``user``, ``source``, ``status`` (HTTP code), ``outcome``
    (``success``/``failure``/``forbidden``, free text mapped by keyword),
    ``user_agent``, ``token``, ``count`` (repeat count).
    """

    pattern: str = Field(..., description="regex with named groups")
    outcome: Literal["success", "failure", "forbidden", "from_groups"] = Field(
        "from_groups", description="fixed outcome, or from the 'outcome'/'status' group"
    )
    unknown_principal: bool = Field(False, description="the principal does not exist (like sshd 'invalid user')")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regex: {e}") from None
        return v


class AuthConfig(AuthTunables, OverridableMixin):
    """``detectors.auth`` section."""

    enabled: bool = Field(True, description="run this detector")
    overrides: list[AuthOverride] = Field(default_factory=list, description="per-service changes, applied in order")

    span_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SPAN_PATTERNS),
        description="regexes (case-insensitive, searched) on the span's operation and name that mark login/token/session operations",
    )
    protected_patterns: list[str] = Field(
        default_factory=list,
        description="regexes of operations that require a principal (also learned: any operation that answered 401/403)",
    )
    span_kinds: list[Literal["server", "internal", "consumer", "unspecified", "client", "producer"]] = Field(
        default_factory=lambda: ["server", "unspecified"], description="span kinds that count as auth events (server side only by default)"
    )
    outcome_attributes: list[str] = Field(
        default_factory=lambda: ["event.outcome", "auth.outcome", "login.outcome"],
        description="attributes whose value (success/failure/…) overrides the status-based outcome",
    )
    principal_attributes: list[str] = Field(
        default_factory=lambda: ["user.id", "enduser.id", "user.name"], description="attributes holding the principal (spans and log attributes)"
    )
    source_attributes: list[str] = Field(
        default_factory=lambda: ["client.address", "http.client_ip", "net.sock.peer.addr", "source.address", "source.ip", "http.request.header.x-forwarded-for"],
        description="attributes holding the client address; for X-Forwarded-For the first value is used",
    )
    user_agent_attributes: list[str] = Field(
        default_factory=lambda: ["user_agent.original", "http.user_agent"], description="attributes holding the user agent"
    )
    token_attributes: list[str] = Field(
        default_factory=lambda: ["session.id"], description="attributes holding a session/token id (hashed on arrival, never stored raw)"
    )
    log_presets: list[Literal["openssh", "web_access", "structured"]] = Field(
        default_factory=lambda: ["openssh", "web_access", "structured"], description="built-in log recognisers"
    )
    log_patterns: list[LogPattern] = Field(default_factory=list, description="extra log patterns, tried before the presets")

    allow_sources: list[str] = Field(default_factory=list, description="CIDRs whose events are ignored (monitoring probes, office ranges)")
    allow_principals: list[str] = Field(default_factory=list, description="principals whose events are ignored (health-check users)")
    allow_user_agents: list[str] = Field(default_factory=list, description="regexes on the user agent whose events are ignored (probes)")
    reveal_identities: bool = Field(False, description="put raw principals/sources in alert JSON instead of salted hashes")

    max_principals: int = Field(100_000, ge=100, description="LRU cap on tracked principals (all services)")
    max_sources: int = Field(100_000, ge=100, description="LRU cap on tracked sources")
    max_tokens: int = Field(50_000, ge=100, description="LRU cap on tracked tokens")
    max_operations: int = Field(2_000, ge=10, description="cap on tracked protected operations")
    max_services: int = Field(500, ge=1, description="cap on services with their own population models")
    entity_ttl: Duration = Field("1h", description="idle time after which an entity's state is dropped")

    @field_validator("span_patterns", "protected_patterns", "allow_user_agents")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"invalid regex {p!r}: {e}") from None
        return v

    @field_validator("allow_sources")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for c in v:
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError as e:
                raise ValueError(f"invalid CIDR {c!r}: {e}") from None
        return v
