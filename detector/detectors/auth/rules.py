"""The auth detector's alert kinds as one rule table, evaluated by one pass (``AuthDetector._judge``).

Each :class:`Rule` reads a *features* dict ``f`` that the detector builds at
window close for one entity (a principal, a source, a token, a protected
operation, the service) or one success after a failure run, and only for
entities that can fire: success-only principals/sources without a failure
history, and tokens below their threshold, never reach the table.

The pass, per rule of the entity, in table order:

1. ``applies(f, cfg)`` — the entity had this kind's activity (else: not scored);
2. ``r = f[feature] / f[per]`` (or ``f[feature]`` when ``per`` is None) — the
   guard statistic over its effective threshold: the kind's score
   (``scores()``, max per service) and the candidate's ``score``;
3. fires when ``r >= 1`` and ``guard(f, cfg)`` (the other guards from config,
   warm-up included) and, for ``gated`` kinds, the population model does not
   call a borderline hit typical (``AuthDetector._gate``);
4. a firing rule sets ``f["alerting"]`` (later rules of the entity may read it)
   and adds a candidate: ``severity``, ``observed(f, cfg)``,
   ``baseline(f, cfg)``, ``summary(f, cfg)``.

Thresholds and their sources are in :mod:`detector.detectors.auth.detector`'s
docstring and :class:`~detector.detectors.auth.config.AuthTunables`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from scipy.stats import binom

Features = dict[str, Any]


class Rule(NamedTuple):
    """One alert kind on one kind of entity (see the module docstring for the pass).

    Attributes:
        kind: contract kind. entity: which features it reads (``principal``, ``principal_success``,
            ``source``, ``source_success``, ``token``, ``operation``, ``service``).
        subject: key of the candidate's subject (``f["subject"]`` is the value); "" = the service itself.
        feature, per: names in ``f``; ``r = f[feature] / f[per]`` (``per`` None: ``f[feature]`` is already the ratio).
        guard: the other guards (config minimums, ratios, warm-up), given ``f["r"]``.
        severity: ``"warning"`` / ``"critical"`` or a function of ``f``.
        observed, baseline, summary: the evidence and the one-line explanation of a firing candidate.
        applies: whether the entity is scored for this kind at all. gated: population-model gate.
    """

    kind: str
    entity: str
    subject: str
    feature: str
    per: str | None
    severity: str | Callable[[Features], str]
    observed: Callable[[Features, Any], dict]
    baseline: Callable[[Features, Any], dict]
    summary: Callable[[Features, Any], str]
    guard: Callable[[Features, Any], bool] = lambda f, c: True
    applies: Callable[[Features, Any], bool] = lambda f, c: True
    gated: bool = False


def _top(members: dict) -> list[list]:
    """The five members with the most failures, ``[[hashed id, failures], …]`` (``members``: id → [last_idx, failures])."""
    top = sorted(members.items(), key=lambda kv: -kv[1][1])[:5]
    return [[k, v[1]] for k, v in top if k is not None]


def _brute_force_baseline(f: Features, c: Any) -> dict:
    return {"min_failures": f["min_failures"], "configured_min_failures": c.brute_force_min_failures,
            "population_quantile": f["failures_quantile"], "min_failure_ratio": c.brute_force_min_failure_ratio}


def _saf_baseline(f: Features, c: Any) -> dict:
    return {"min_failures": c.saf_min_failures, "lookback_seconds": c.success_lookback}


def _bypass_observed(path: str) -> Callable[[Features, Any], dict]:
    def observed(f: Features, c: Any) -> dict:
        out = {"path": path, "requests": f["requests"], "anonymous": f["anonymous"], "anonymous_2xx": f["anonymous_2xx"],
               "anonymous_denied": f["anonymous_denied"], "denied": f["denied"], "horizon_anonymous": f["horizon_anonymous"],
               "horizon_anonymous_2xx": f["horizon_anonymous_2xx"], "horizon_anonymous_denied": f["horizon_anonymous_denied"],
               "horizon_seconds": f["horizon_seconds"], "anonymous_2xx_share_lower_bound": round(f["lower_bound"], 4),
               "anonymous_share": round(f["anonymous_share"], 4)}
        if f["deployment"] is not None:
            out["deployment"] = f["deployment"]
        return out
    return observed


def _bypass_baseline(f: Features, c: Any) -> dict:
    return {"anonymous_learned": round(f["learned_anonymous"], 1), "anonymous_denied_share": round(f["learned_deny_share"], 4),
            "anonymous_share": round(f["learned_anonymous_share"], 4), "min_anonymous_2xx": c.bypass_min_anonymous_ok,
            "min_2xx_share": c.bypass_min_ok_share, "wilson_z": c.bypass_wilson_z}


def _stuffing_guard(f: Features, c: Any) -> bool:
    """Every stuffing guard; the binomial tail (scipy, ≈60 µs) only once the cheap ones pass."""
    if not (f["warm"] and f["learned_attempts"] >= c.stuffing_min_baseline_attempts and f["window_failures"]
            and f["failed_principals"] >= c.stuffing_min_failed_principals and f["effective_sources"] >= c.stuffing_min_sources
            and f["top_source_share"] <= c.stuffing_max_top_source_share and f["failure_ratio"] >= f["need"]):
        return False
    k, n, p0 = f["failures"], f["attempts"], f["learned_ratio"]
    f["binomial_tail"] = p = float(binom.sf(k - 1, n, min(max(p0, 1e-6), 1 - 1e-9)))
    return p < c.stuffing_alpha


RULES: tuple[Rule, ...] = (
    # -- principal: brute_force, forbidden_spike
    Rule(
        "brute_force", "principal", "principal", "failures", "min_failures",
        guard=lambda f, c: f["failure_ratio"] >= c.brute_force_min_failure_ratio,
        severity="warning",
        observed=lambda f, c: {
            "failures": f["failures"], "successes": f["successes"], "failure_ratio": round(f["failure_ratio"], 4),
            "window_failures": f["window_failures"], "sources": len(f["sources"]), "top_sources": _top(f["sources"]),
            "horizon_seconds": f["horizon_seconds"], "model": f["model"]},
        baseline=_brute_force_baseline,
        summary=lambda f, c: (
            f"{f['failures']} failed logins for one principal in {f['horizon_seconds']:g}s (threshold "
            f"{f['min_failures']:g}, failure ratio {f['failure_ratio']:.2f}) from {len(f['sources'])} source(s)"),
        applies=lambda f, c: bool(f["window_failures"] and f["failures"]),
        gated=True,
    ),
    Rule(
        "forbidden_spike", "principal", "principal", "forbidden", "forbidden_threshold",
        guard=lambda f, c: f["warm"],
        severity="warning",
        observed=lambda f, c: {"forbidden": f["forbidden"], "window_forbidden": f["window_forbidden"],
                               "horizon_seconds": f["horizon_seconds"]},
        baseline=lambda f, c: {
            "threshold": f["forbidden_threshold"], "own_level": round(f["own_forbidden"], 3),
            "own_factor": c.forbidden_own_factor, "population_quantile": f["forbidden_quantile"],
            "configured_min": c.forbidden_min},
        summary=lambda f, c: (
            f"{f['forbidden']} forbidden (403) answers for one principal in {f['horizon_seconds']:g}s; its own level "
            f"{f['own_forbidden']:.1f}, threshold {f['forbidden_threshold']:g}"),
        applies=lambda f, c: bool(f["window_forbidden"] and f["forbidden"]),
    ),
    # -- one success after a failure run of a principal
    Rule(
        "success_after_failures", "principal_success", "principal", "failures_before_success", "min_failures",
        severity=lambda f: "critical" if (f["in_run"] or not f["known"]) else "warning",
        observed=lambda f, c: {
            "failures_before_success": f["failures_before_success"], "success_source": f["success_source"],
            "source_in_failure_run": f["in_run"], "source_known_for_principal": f["known"],
            "success_time": f["success_time"]},
        baseline=_saf_baseline,
        summary=lambda f, c: (
            f"a principal logged in successfully after {f['failures_before_success']} consecutive failures"
            + (" from a source that took part in the failures" if f["in_run"] else "")
            + ("" if f["known"] else " from a source never seen to succeed for it")),
    ),
    # -- source: password_spraying, then brute_force on a few principals
    Rule(
        "password_spraying", "source", "source", "failed_principals", "min_principals",
        guard=lambda f, c: (f["failures_per_principal"] <= c.spraying_max_attempts_per_principal
                            and f["failure_ratio"] >= c.spraying_min_failure_ratio),
        severity="warning",
        observed=lambda f, c: {
            "failed_principals": f["failed_principals"], "failures": f["failures"], "successes": f["successes"],
            "failure_ratio": round(f["failure_ratio"], 4), "failures_per_principal": round(f["failures_per_principal"], 3),
            "unknown_principal_failures": f["unknown_failures"], "user_agents": f["user_agents"],
            "top_principals": _top(f["principals"]), "horizon_seconds": f["horizon_seconds"], "model": f["model"]},
        baseline=lambda f, c: {
            "min_principals": f["min_principals"], "configured_min_principals": c.spraying_min_principals,
            "population_quantile": f["principals_quantile"],
            "max_failures_per_principal": c.spraying_max_attempts_per_principal,
            "min_failure_ratio": c.spraying_min_failure_ratio},
        summary=lambda f, c: (
            f"one source failed to log in as {f['failed_principals']} distinct principals in {f['horizon_seconds']:g}s "
            f"({f['failures_per_principal']:.1f} failures each, failure ratio {f['failure_ratio']:.2f}; threshold "
            f"{f['min_principals']:g} principals)"),
        applies=lambda f, c: bool(f["window_failures"] and f["failed_principals"]),
        gated=True,
    ),
    # one source guessing passwords of a few principals, none of them over the per-principal threshold
    # on its own (T1110.001 spread over a handful of accounts; stuffing and spraying try each ~once);
    # not when a principal alert already lists the source among its top sources
    Rule(
        "brute_force", "source", "source", "failures", "min_failures",
        severity="warning",
        observed=lambda f, c: {
            "failures": f["failures"], "successes": f["successes"], "failure_ratio": round(f["failure_ratio"], 4),
            "window_failures": f["window_failures"], "failed_principals": f["failed_principals"],
            "top_principals": _top(f["principals"]), "horizon_seconds": f["horizon_seconds"], "model": f["model"]},
        baseline=_brute_force_baseline,
        summary=lambda f, c: (
            f"one source failed {f['failures']} logins in {f['horizon_seconds']:g}s on {f['failed_principals']} "
            f"principal(s) (threshold {f['min_failures']:g}, failure ratio {f['failure_ratio']:.2f})"),
        applies=lambda f, c: bool(
            f["window_failures"] and f["failed_principals"]
            and f["failures_per_principal"] >= c.brute_force_source_min_failures_per_principal
            and not f.get("alerting") and not f["explained"] and f["failures"] >= f["min_failures"]
            and f["failure_ratio"] >= c.brute_force_min_failure_ratio),
        gated=True,
    ),
    # -- one success after a failure run from a source (reported with a credential-stuffing alert if one runs)
    Rule(
        "success_after_failures", "source_success", "source", "failures_before_success", "min_failures",
        severity="critical",
        observed=lambda f, c: {
            "failures_before_success": f["failures_before_success"], "principals_in_failure_run": f["principals_in_run"],
            "success_principal": f["success_principal"], "success_time": f["success_time"]},
        baseline=_saf_baseline,
        summary=lambda f, c: (
            f"a source logged in successfully after {f['failures_before_success']} consecutive failures across "
            f"{f['principals_in_run']} principal(s)"),
        # not when reported for the principal already, or nothing is known about who was tried
        applies=lambda f, c: bool(not f["reported"] and f["principals_in_run"] and f["success_principal"] is not None),
    ),
    # -- token
    Rule(
        "token_reuse", "token", "token", "networks", "min_networks",
        guard=lambda f, c: bool(f["warm"] and f["user_agents"] >= c.token_min_user_agents and f["window_networks"]),
        severity="warning",
        observed=lambda f, c: {"networks": f["networks"], "user_agents": f["user_agents"],
                               "window_networks": f["window_networks"], "horizon_seconds": f["horizon_seconds"]},
        baseline=lambda f, c: {
            "min_networks": f["min_networks"], "configured_min_networks": c.token_min_networks,
            "population_quantile": f["networks_quantile"], "min_user_agents": c.token_min_user_agents},
        summary=lambda f, c: (
            f"one token used from {f['networks']} networks and {f['user_agents']} user agents in "
            f"{f['horizon_seconds']:g}s (threshold {f['min_networks']:g} networks)"),
    ),
    # -- protected operation: anonymous requests that used to be denied get 2xx ...
    Rule(
        "auth_bypass", "operation", "operation", "ratio_denied", None,
        guard=lambda f, c: (f["warm"] and f["strict"] and f["horizon_anonymous_2xx"] >= c.bypass_min_anonymous_ok
                            and f["r"] > 1.0),
        severity="critical",
        observed=_bypass_observed("denied"),
        baseline=_bypass_baseline,
        summary=lambda f, c: (
            f"{f['horizon_anonymous_2xx']} of {f['horizon_anonymous']} anonymous requests to {f['subject']} got 2xx in "
            f"the last {f['horizon_seconds']:g}s (lower bound {f['lower_bound']:.2f}); it used to deny "
            f"{f['learned_deny_share']:.1%} of anonymous requests"),
    ),
    # ... or the share of requests without a principal jumps while none is denied any more
    Rule(
        "auth_bypass", "operation", "operation", "ratio_share", None,
        guard=lambda f, c: (not f.get("alerting") and f["warm"] and f["learned_total"] >= c.bypass_min_baseline_anonymous
                            and f["requests"] >= c.bypass_min_requests),
        severity="critical",
        observed=_bypass_observed("anonymous_share"),
        baseline=_bypass_baseline,
        summary=lambda f, c: (
            f"{f['anonymous_share']:.0%} of requests to {f['subject']} carry no principal (was "
            f"{f['learned_anonymous_share']:.0%}) and none is denied any more"),
    ),
    # -- service: credential_stuffing
    Rule(
        "credential_stuffing", "service", "", "ratio", None,
        guard=_stuffing_guard,
        severity="warning",
        observed=lambda f, c: {
            "attempts": f["attempts"], "failures": f["failures"], "failure_ratio": round(f["failure_ratio"], 4),
            "failed_principals": f["failed_principals"], "sources": f["sources"],
            "effective_sources": round(f["effective_sources"], 1), "top_source_share": round(f["top_source_share"], 4),
            "unknown_principal_share": round(f["unknown"] / f["failures"], 4) if f["failures"] else 0.0,
            "binomial_tail": f["binomial_tail"], "horizon_seconds": f["horizon_seconds"]},
        baseline=lambda f, c: {
            "failure_ratio": round(f["learned_ratio"], 5), "attempts_learned": f["learned_attempts"],
            "min_ratio_increase": c.stuffing_min_ratio_increase, "alpha": c.stuffing_alpha,
            "min_failed_principals": c.stuffing_min_failed_principals, "min_sources": c.stuffing_min_sources},
        summary=lambda f, c: (
            f"login failure ratio {f['failure_ratio']:.2f} (normal {f['learned_ratio']:.3f}) over {f['attempts']} "
            f"attempts: {f['failed_principals']} principals failing from {f['sources']} sources, binomial tail "
            f"{f['binomial_tail']:.1e}"),
    ),
)

RULES_BY_ENTITY: dict[str, tuple[Rule, ...]] = {}
for _rule in RULES:
    RULES_BY_ENTITY[_rule.entity] = RULES_BY_ENTITY.get(_rule.entity, ()) + (_rule,)
del _rule
