"""Evaluation harness: event-level matching and the reference rules, on constructed data."""

from __future__ import annotations

from detector.eval.match import episodes_from_transitions, match, summarize
from detector.eval.reference import ReferenceRules
from detector.sim.incidents import rfc3339
from detector.sim.model import Res, SimBatch

T0 = 1_793_700_000.0  # a multiple of 10


def _lab(kind="edge_error_rate", service="checkout", peer="payment", start=T0, end=T0 + 1800, optional=False, det="error_rate"):
    return {"detector": det, "kind": kind, "service": service, "peer": peer, "start": rfc3339(start), "end": rfc3339(end),
            "scenario": "t", "optional": optional, "severity": None}


def _ep(service, peer="", start=T0 + 20, det="error_rate", kind="service_error_rate", sev="warning"):
    return {"detector": det, "kind": kind, "service": service, "peer": peer, "start": start, "fired": start + 10, "severity": sev}


def test_edge_label_matches_either_side_and_counts_once():
    labs = [_lab()]
    eps = [_ep("checkout", "payment", kind="edge_error_rate"), _ep("payment"), _ep("checkout")]
    out = match(eps, labs)
    assert len(out.detected) == 1 and not out.false_pos
    assert out.detected[0][1] == 30.0 and out.detected[0][2] is True


def test_wrong_peer_wrong_time_and_family_are_false_positives():
    labs = [_lab()]
    eps = [_ep("checkout", "cart"), _ep("checkout", start=T0 + 1800 + 301), _ep("checkout", det="auth", kind="brute_force")]
    out = match(eps, labs)
    assert not out.detected and len(out.missed) == 1
    assert len(out.false_pos) == 3


def test_optional_labels_absorb_but_do_not_count():
    labs = [_lab(), _lab(kind="service_error_rate", service="gateway", peer="", optional=True)]
    out = match([_ep("gateway")], labs)
    assert not out.false_pos and len(out.missed) == 1 and not out.detected


def test_info_alerts_are_not_false_positives():
    out = match([_ep("cart", sev="info", det="schema_drift", kind="attribute_added")], [_lab()])
    assert not out.false_pos and len(out.info_unmatched) == 1


def test_episodes_merge_refires_of_one_series():
    tr = [
        {"id": "a", "state": "firing", "started_at": rfc3339(T0), "detector": "auth", "kind": "brute_force", "service": "auth", "peer": "", "severity": "warning"},
        {"id": "a", "state": "resolved", "started_at": rfc3339(T0)},
        {"id": "a", "state": "firing", "started_at": rfc3339(T0), "detector": "auth", "kind": "brute_force", "service": "auth", "peer": "", "severity": "critical"},
        {"id": "a", "state": "firing", "started_at": rfc3339(T0 + 3600), "detector": "auth", "kind": "brute_force", "service": "auth", "peer": "", "severity": "warning"},
    ]
    eps = episodes_from_transitions(tr, 10.0, open_after=2)
    assert [(e["start"], e["fired"], e["severity"]) for e in eps] == [(T0, T0 + 20, "critical"), (T0 + 3600, T0 + 3620, "warning")]


def test_summarize():
    assert summarize([]) == (None, None)
    assert summarize([10, 20, 30, 40]) == (25.0, 40)


RES = Res("svc", "1", "svc-0", "new", "go", "s")
AUTH = Res("auth", "1", "auth-0", "old", "go", "s")


def _batch(t, n, k, extra=()):
    b = SimBatch(t, t + 10)
    for i in range(n):
        b.spans.append((RES, b"t" * 16, b"s" * 8, b"", "GET /", 2, t, t + 1, [], 2 if i < k else 0, ""))
    b.spans.extend(extra)
    return b


def test_static_rule_needs_five_minutes_above_five_percent():
    rr = ReferenceRules()
    for i in range(60):  # 10 min of 10 % errors after 10 min of 0 %
        rr.observe(_batch(T0 + i * 10, 10, 0))
    for i in range(60, 120):
        rr.observe(_batch(T0 + i * 10, 10, 1))
    eps = rr.static_5pct()
    assert len(eps) == 1
    # at step j after onset the ratio is (j+1)/300; > 0.05 from j = 15 -> pending at T0+600+160, fires 5 min later
    assert eps[0]["start"] == T0 + 600 + 160
    assert eps[0]["fired"] == T0 + 600 + 160 + 300


def test_burn_rate_fast_window():
    rr = ReferenceRules()
    for i in range(360):  # 1 h clean
        rr.observe(_batch(T0 + i * 10, 100, 0))
    for i in range(360, 420):  # then 5 % errors
        rr.observe(_batch(T0 + i * 10, 100, 5))
    eps = rr.burn_rate()
    assert len(eps) == 1
    # the 6h/30m pair (> 6 x 0.001) is met before the 1h/5m pair (> 14.4 x 0.001); 6h covers all data so far
    j = next(j for j in range(1, 61) if 5 * j / (36000 + 100 * j) > 0.006 and 5 * j / min(18000, 100 * (360 + j)) > 0.006)
    assert eps[0]["fired"] == T0 + (360 + j) * 10


def test_fail2ban_five_in_ten_minutes():
    rr = ReferenceRules()
    spans = []
    for i, dt in enumerate((0, 100, 200, 300, 400, 1000, 1100)):
        spans.append((AUTH, b"t" * 16, b"s" * 8, b"", "POST /login", 2, T0 + dt, T0 + dt, [("http.status_code", 401), ("http.client_ip", "1.2.3.4")], 0, ""))
    for i in range(4):  # another source: only 4 failures
        spans.append((AUTH, b"t" * 16, b"s" * 8, b"", "POST /login", 2, T0 + i, T0 + i, [("http.status_code", 401), ("http.client_ip", "5.6.7.8")], 0, ""))
    b = SimBatch(T0, T0 + 2000)
    b.spans = spans
    rr.observe(b)
    eps = rr.fail2ban()
    assert [(e["start"], e["fired"]) for e in eps] == [(T0, T0 + 400)]
