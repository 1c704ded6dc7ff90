"""Exact decisions of the auth detector per kind, on records built directly and windows driven by hand."""

from __future__ import annotations

import json
import pickle

import pytest

from detector.detectors.auth.config import AuthConfig
from detector.detectors.auth.detector import AuthDetector
from detector.detectors.base import Deployments, Window
from tests.unit._auth_build import (
    T0, context, detector, hashed, kinds, normal_logins, protected_traffic, run, span,
)

ATTACKER = "203.0.113.66"


def only(results, kind):
    return [(i, c) for i, c in results if c.kind == kind]


# ---------------------------------------------------------------- no alert cases


def test_typo_failures_followed_by_success_do_not_alert():
    recs = []
    for u in range(50):  # 50 users, each mistypes twice then logs in
        t = T0 + u * 7
        recs += [span(t, f"u{u}", f"198.51.100.{u}", 401), span(t + 2, f"u{u}", f"198.51.100.{u}", 401),
                 span(t + 5, f"u{u}", f"198.51.100.{u}", 200)]
    assert run(detector(), recs) == []


def test_one_user_failing_three_times_does_not_alert():
    recs = [span(T0 + i * 20, "bob", "198.51.100.7", 401) for i in range(3)]
    assert run(detector(), recs, until=T0 + 1200) == []


def test_nat_office_many_users_succeeding_is_not_spraying():
    # 400 employees behind one NAT address; 10 % mistype once before succeeding
    office = "198.51.100.1"
    recs = []
    for u in range(400):
        t = T0 + u * 1.5
        if u % 10 == 0:
            recs.append(span(t - 1, f"emp{u}", office, 401))
        recs.append(span(t, f"emp{u}", office, 200))
    res = run(detector(), recs)
    assert res == []


def test_benign_traffic_with_typos_for_an_hour_is_quiet():
    recs = normal_logins(T0, 3600, per_second=2.0, users=300, typo=0.03, with_tokens=True)
    assert run(detector(), recs) == []


# ---------------------------------------------------------------- brute_force


def test_brute_force_one_principal_fires_in_first_window_at_one_attempt_per_second():
    recs = [span(T0 + i, "alice", ATTACKER, 401) for i in range(60)]
    res = run(detector(), recs)
    assert kinds(res) == {"brute_force"}
    first_window, c = res[0]
    assert first_window == 0
    assert c.subject == {"principal": hashed("alice")}
    assert c.severity == "warning"
    assert c.observed["failures"] == 10 and c.observed["failure_ratio"] == 1.0
    assert c.observed["top_sources"] == [[hashed(ATTACKER), 10]]
    assert c.baseline["min_failures"] == 10
    assert c.score == 1.0 and c.threshold == 1.0
    assert [i for i, _ in res] == [0, 1, 2, 3, 4, 5]  # every window of the attack is evidence


def test_brute_force_needs_failure_ratio():
    # 12 failures but 8 successes from the account's own scripts: ratio 0.6 < 0.8
    recs = [span(T0 + i * 5, "svc", "198.51.100.9", 401) for i in range(12)]
    recs += [span(T0 + 2 + i * 7, "svc", "198.51.100.9", 200) for i in range(8)]
    assert only(run(detector(), recs), "brute_force") == []


def test_brute_force_from_one_source_over_a_few_accounts():
    # 4 accounts × 4 failures: no account reaches 10, the source does (16 failures in 10 min)
    recs = [span(T0 + i * 3, f"acct{i % 4}", ATTACKER, 401) for i in range(16)]
    res = run(detector(), recs)
    assert kinds(res) == {"brute_force"}
    subjects = {json.dumps(c.subject) for _, c in res}
    assert subjects == {json.dumps({"source": hashed(ATTACKER)})}
    assert res[0][0] == 2  # the 10th failure is at T0+27 s: window offset 2
    assert res[0][1].observed["failed_principals"] == 4


# ---------------------------------------------------------------- password_spraying


def test_password_spraying_one_source_many_principals():
    recs = normal_logins(T0, 600, per_second=1.0, typo=0.02)
    recs += [span(T0 + 300 + i * 0.5, f"victim{i}", ATTACKER, 401) for i in range(40)]
    res = run(detector(), recs)
    assert kinds(res) == {"password_spraying"}
    i, c = res[0]
    assert i == 30  # the 10th principal fails at T0+304.5 s: window offset 30
    assert c.subject == {"source": hashed(ATTACKER)}
    assert c.observed["failed_principals"] == 20
    assert c.observed["failures_per_principal"] == 1.0
    assert len(c.observed["top_principals"]) == 5


def test_spraying_allow_listed_office_range_is_ignored():
    recs = [span(T0 + i, f"victim{i}", "10.20.30.40", 401) for i in range(40)]
    det = detector(allow_sources=["10.0.0.0/8"])
    assert run(det, recs) == []
    assert det.allowlisted_total == 40


# ---------------------------------------------------------------- success_after_failures


def test_success_after_failure_run_is_critical():
    recs = [span(T0 + i * 4, "carol", ATTACKER, 401) for i in range(6)]
    recs.append(span(T0 + 30, "carol", ATTACKER, 200))
    res = run(detector(), recs)
    assert kinds(res) == {"success_after_failures"}
    assert len(res) == 1  # principal path only; the source path is de-duplicated
    _, c = res[0]
    assert c.severity == "critical"
    assert c.subject == {"principal": hashed("carol")}
    assert c.observed["failures_before_success"] == 6
    assert c.observed["source_in_failure_run"] is True


def test_success_after_four_failures_does_not_alert():
    recs = [span(T0 + i * 4, "dave", "198.51.100.3", 401) for i in range(4)] + [span(T0 + 20, "dave", "198.51.100.3", 200)]
    assert run(detector(), recs) == []


def test_success_long_after_failures_does_not_alert():
    recs = [span(T0 + i * 4, "erin", "198.51.100.3", 401) for i in range(6)] + [span(T0 + 3600, "erin", "198.51.100.3", 200)]
    assert run(detector(), recs) == []


def test_source_success_after_spraying_run():
    recs = [span(T0 + i, f"victim{i}", ATTACKER, 401) for i in range(8)]
    recs.append(span(T0 + 9, "victim99", ATTACKER, 200))
    res = run(detector(), recs)
    assert [(c.kind, c.subject) for _, c in res] == [("success_after_failures", {"source": hashed(ATTACKER)})]
    assert res[0][1].observed["principals_in_failure_run"] == 8


# ---------------------------------------------------------------- credential_stuffing


def test_credential_stuffing_many_sources_many_principals():
    recs = normal_logins(T0, 1200, per_second=2.0, typo=0.02)
    # after 20 min: 60 sources × 4 principals each, all failing, within 40 s
    t1 = T0 + 1200
    for s in range(60):
        for k in range(4):
            recs.append(span(t1 + (s * 4 + k) / 6, f"leaked{s * 4 + k}", f"100.64.{s}.9", 401))
    recs += normal_logins(t1, 120, per_second=2.0, typo=0.02, seed=5)
    res = run(detector(), recs)
    assert kinds(res) == {"credential_stuffing"}
    i, c = res[0]
    assert i in (120, 121)
    assert c.subject == {}
    assert c.observed["failed_principals"] >= 20 and c.observed["sources"] >= 5
    assert c.observed["binomial_tail"] < 1e-7
    assert c.baseline["failure_ratio"] < 0.1


def test_credential_stuffing_waits_for_warmup():
    recs = []
    for s in range(60):
        for k in range(4):
            recs.append(span(T0 + (s * 4 + k) / 6, f"leaked{s * 4 + k}", f"100.64.{s}.9", 401))
    assert only(run(detector(), recs), "credential_stuffing") == []


# ---------------------------------------------------------------- auth_bypass


def test_auth_bypass_after_deploy_is_critical():
    deps = Deployments()
    det = detector(deployments=deps)
    before = protected_traffic(T0, 900, per_second=5.0, anon_share=0.2)
    res = run(det, before)
    assert res == []
    t1 = T0 + 900
    deps.observe("orders", "1.0", T0)
    deps.observe("orders", "2.0", t1)
    after = protected_traffic(t1, 60, per_second=5.0, anon_share=0.2, anon_status=200, version="2.0", seed=3)
    first = int(t1 // 10)
    out = []
    for idx in range(first, first + 6):
        w = Window.of(idx, 10.0)
        det.observe_spans(w, [s for s in after if int(s.end // 10) == idx])
        out += [(idx - first, c) for c in det.close_window(w)]
    assert {c.kind for _, c in out} == {"auth_bypass"}
    i, c = out[0]
    assert i == 0
    assert c.severity == "critical"
    assert c.subject == {"operation": "GET /api/orders"}
    assert c.observed["path"] == "denied"
    assert c.observed["anonymous_2xx"] >= 3
    assert c.observed["deployment"]["to_version"] == "2.0"
    assert c.baseline["anonymous_denied_share"] > 0.95


def test_auth_bypass_anonymous_share_path():
    # principals vanish from the spans (auth middleware removed), nothing is denied any more
    det = detector()
    run(det, protected_traffic(T0, 900, per_second=5.0, anon_share=0.1))
    t1 = T0 + 900
    after = [span(t1 + i * 0.2, None, f"198.51.0.{i % 90 + 1}", 200, service="orders", op="GET /api/orders")
             for i in range(100)]
    res = run(det, after)
    assert {c.kind for _, c in res} == {"auth_bypass"}
    assert res[0][0] == 0


def test_protected_route_keeps_denying_no_bypass():
    det = detector()
    assert run(det, protected_traffic(T0, 1800, per_second=5.0, anon_share=0.3)) == []


# ---------------------------------------------------------------- token_reuse


def test_token_reuse_many_networks_and_agents():
    recs = normal_logins(T0, 900, per_second=1.0, with_tokens=True)
    t1 = T0 + 900
    for k, net in enumerate(["100.64.1.", "100.65.7.", "100.66.3.", "100.67.9."]):
        recs.append(span(t1 + k * 5, "user1", net + "10", 200, token="stolen-token", ua=f"curl/{k}"))
    res = run(detector(), recs)
    assert kinds(res) == {"token_reuse"}
    i, c = res[0]
    assert c.subject == {"token": hashed("stolen-token")}
    assert c.observed["networks"] == 4 and c.observed["user_agents"] == 4  # t1+10 s and t1+15 s share a window
    assert i == 91  # the third network arrives at t1+10 s: window offset 91


def test_token_from_one_network_is_fine():
    recs = normal_logins(T0, 900, per_second=1.0, with_tokens=True)
    recs += [span(T0 + 900 + k, "user1", f"198.51.0.{k + 1}", 200, token="tok-x", ua=f"app/{k}") for k in range(20)]
    assert run(detector(), recs) == []


# ---------------------------------------------------------------- forbidden_spike


def test_forbidden_spike_one_principal():
    det = detector()
    recs = protected_traffic(T0, 900, per_second=3.0, op="GET /admin/users", service="admin", anon_status=401)
    # a few normal 403s spread over users
    recs += [span(T0 + 30 * k, f"user{k % 10}", "198.51.0.5", 403, service="admin", op="GET /admin/users")
             for k in range(20)]
    t1 = T0 + 900
    recs += [span(t1 + i * 2, "mallory", "198.51.0.77", 403, service="admin", op=f"GET /admin/users")
             for i in range(30)]
    res = run(det, recs)
    assert kinds(res) == {"forbidden_spike"}
    i, c = res[0]
    assert c.subject == {"principal": hashed("mallory")}
    assert c.observed["forbidden"] == 10
    assert i == 91


# ---------------------------------------------------------------- privacy, state, bounds, config


def test_no_raw_identity_in_candidates():
    recs = [span(T0 + i, f"victim{i}", ATTACKER, 401, token="secret-token-1") for i in range(40)]
    recs += [span(T0 + i, "alice", "203.0.113.99", 401) for i in range(40)]
    res = run(detector(), recs)
    assert kinds(res) >= {"password_spraying", "brute_force"}
    blob = json.dumps([c.__dict__ if hasattr(c, "__dict__") else {f: getattr(c, f) for f in c.__slots__} for _, c in res],
                      default=str)
    for raw in (ATTACKER, "203.0.113.99", "alice", "victim1", "secret-token-1"):
        assert raw not in blob


@pytest.mark.parametrize("salt", [b"", b"test-salt", bytes(range(64)), bytes(range(65)), b"\xff" * 200])
def test_keyed_once_hmac_equals_identity_hasher(salt):
    """The hot path's HMAC (key schedule done once) gives IdentityHasher's value, also for long salts (RFC 2104)."""
    from detector.detectors.auth.detector import hmac_sha256_hex12
    from detector.detectors.base import IdentityHasher

    h = hmac_sha256_hex12(salt)
    for value in ("alice", "", "ünïcødé@example.com", "x" * 1000, "surrogate \udcff"):
        assert h(value) == IdentityHasher(salt)(value)


def test_reveal_identities_shows_raw_values():
    recs = [span(T0 + i, "alice", ATTACKER, 401) for i in range(12)]
    res = run(detector(reveal_identities=True), recs)
    assert res[0][1].subject == {"principal": "alice"}
    assert res[0][1].observed["top_sources"][0][0] == ATTACKER


def test_state_dict_pickles_and_restores_mid_attack():
    recs = [span(T0 + i * 3, "alice", ATTACKER, 401) for i in range(20)]
    first, second = recs[:3], recs[3:]
    a = detector()
    assert run(a, first) == []
    blob = pickle.dumps(a.state_dict())
    b = detector()
    b.load_state(pickle.loads(blob))
    assert b.tracked_series() == a.tracked_series() > 0
    res = run(b, second)
    assert kinds(res) == {"brute_force"}
    assert res[0][1].observed["failures"] == 10  # the 3 failures before the checkpoint count


def test_reconfigure_keeps_state_and_applies_thresholds():
    det = detector()
    run(det, [span(T0 + i * 3, "alice", ATTACKER, 401) for i in range(8)])
    n = det.tracked_series()
    det.reconfigure(AuthConfig(brute_force_min_failures=5))
    assert det.tracked_series() == n
    res = run(det, [span(T0 + 30, "alice", ATTACKER, 401)])
    assert kinds(res) == {"brute_force"}
    assert res[0][1].observed["failures"] == 9


def test_per_service_override():
    cfg = AuthConfig(overrides=[{"match": {"service": "legacy-*"}, "brute_force_min_failures": 50}])
    det = AuthDetector(cfg, context())
    recs = [span(T0 + i, "alice", ATTACKER, 401, service="legacy-login") for i in range(30)]
    recs += [span(T0 + i, "alice", ATTACKER, 401, service="auth") for i in range(30)]
    res = run(det, recs)
    assert {c.service for _, c in res} == {"auth"}


def test_entity_tables_are_bounded_and_evictions_counted():
    det = detector(max_principals=200, max_sources=200)
    recs = [span(T0 + i * 0.01, f"p{i}", f"100.{i // 65000}.{(i // 250) % 250}.{i % 250}", 401) for i in range(2000)]
    run(det, recs)
    assert len(det._principals) <= 200 and len(det._sources) <= 200
    assert det.evicted_total >= 3600


def test_entities_expire_after_ttl():
    det = detector(entity_ttl="10m")
    run(det, [span(T0 + i, f"p{i}", "198.51.100.1", 401) for i in range(5)], until=T0 + 700)
    assert det.tracked_series() == 0
    assert det.evicted_total > 0


def test_scores_are_bounded_rows_without_identities():
    det = detector()
    run(det, [span(T0 + i, "alice", ATTACKER, 401) for i in range(12)])
    rows = list(det.scores())
    assert rows and all(len(r) == 4 and r[2] == "" for r in rows)
    assert {r[0] for r in rows} <= {"brute_force", "password_spraying", "credential_stuffing"}
    assert all("alice" not in str(r) and ATTACKER not in str(r) for r in rows)


@pytest.mark.parametrize("status,grpc,expected", [(200, None, set()), (401, None, {"brute_force"}),
                                                  (None, 16, {"brute_force"}), (None, 0, set())])
def test_outcomes_from_http_and_grpc(status, grpc, expected):
    recs = [span(T0 + i, "alice", ATTACKER, status, grpc=grpc, op="auth.v1.Auth/Authenticate") for i in range(12)]
    assert kinds(run(detector(), recs)) == expected


def test_stuffing_successes_from_failing_sources_make_it_critical_not_separate_alerts():
    recs = normal_logins(T0, 1200, per_second=2.0, typo=0.02)
    t1 = T0 + 1200
    # 30 sources, each tries 8 leaked pairs (all fail) and then one that works
    for s in range(30):
        for k in range(8):
            recs.append(span(t1 + s + k * 0.05, f"leaked{s}-{k}", f"100.64.{s}.9", 401))
        recs.append(span(t1 + s + 0.5, f"valid{s}", f"100.64.{s}.9", 200))
    res = run(detector(), recs)
    assert kinds(res) == {"credential_stuffing"}
    crit = [c for _, c in res if c.severity == "critical"]
    assert crit and crit[0].observed["successes_after_failure_runs"] >= 1
    assert all(p.startswith("h:") for p in crit[0].observed["compromised_principals"])


def test_stuffing_sources_are_not_brute_force():
    # one source, 12 different accounts once each, a success in between: neither spraying (ratio) nor brute force
    recs = [span(T0 + i, f"acct{i}", ATTACKER, 401) for i in range(12)]
    recs += [span(T0 + 3.5, "ok1", ATTACKER, 200), span(T0 + 7.5, "ok2", ATTACKER, 200)]
    assert only(run(detector(), recs), "brute_force") == []


def test_population_model_warms_up_then_separates_odd_from_typical():
    import random

    from detector.detectors.auth.models import SOURCE_CAPS, SOURCE_FEATURES, PopulationModel

    m = PopulationModel(SOURCE_FEATURES, SOURCE_CAPS, quantile=0.95)
    rnd = random.Random(3)
    typical = [0, 3, 0, 0.0, 0, 0.0, 1]
    assert m.judge(typical)["state"] == "warming_up"  # HST scores 0 before its first window: not "normal"
    for _ in range(400):  # normal sources: a few successes, now and then one typo
        f = 1 if rnd.random() < 0.05 else 0
        m.learn([f, rnd.randint(1, 6), f, f / (f + 3), f, 0.0, rnd.randint(1, 2)])
    assert m.judge(typical)["state"] == "typical"
    odd = m.judge([40, 0, 25, 1.0, 1.6, 0.8, 1])
    assert odd["state"] == "odd" and odd["score"] > odd["threshold"]


def test_model_gate_suppresses_borderline_hit_on_a_typical_entity_only():
    from detector.detectors.auth.models import PRINCIPAL_CAPS, PRINCIPAL_FEATURES, PopulationModel

    det = detector()
    cfg = det.config
    m = PopulationModel(PRINCIPAL_FEATURES, PRINCIPAL_CAPS, quantile=0.95)
    for i in range(400):  # a population where 10-12 failures per horizon is common (e.g. a flaky client fleet)
        m.learn([10 + i % 3, 1, 0, 1, 0, 0.9])
    fire, verdict = det._gate(cfg, m, [11, 1, 0, 1, 0, 0.92], ratio=1.1)
    assert (fire, verdict["state"]) == (False, "typical")
    fire, verdict = det._gate(cfg, m, [11, 1, 0, 1, 0, 0.92], ratio=2.5)  # far over the guard: fires anyway
    assert fire
    fire, verdict = det._gate(cfg, m, [300, 0, 0, 30, 1, 1.0], ratio=1.1)
    assert fire and verdict["state"] == "odd"


def test_allow_listed_principals_and_probe_agents_are_ignored():
    recs = [span(T0 + i, "healthcheck", ATTACKER, 401) for i in range(20)]
    recs += [span(T0 + i, f"v{i}", "203.0.113.4", 401, ua="kube-probe/1.29") for i in range(20)]
    det = detector(allow_principals=["healthcheck"], allow_user_agents=[r"^kube-probe/"])
    assert run(det, recs) == []
    assert det.allowlisted_total == 40
