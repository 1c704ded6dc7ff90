"""Alert lifecycle, correlation, JSON shape, scrape-time collector and HTTP endpoints."""

from __future__ import annotations

import json
import pickle
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from detector.alerts.config import AlertsConfig
from detector.alerts.manager import AlertManager
from detector.alerts.model import rfc3339
from detector.detectors.base import Candidate, Deployments, Window
from detector.expose.collector import AlertCollector
from detector.expose.http import HttpServer
from detector.pipeline.worker import Snapshot

T0 = 1_700_000_000.0
BASE = int(T0 // 10)
KEYS = {
    "id", "state", "detector", "kind", "severity", "service", "peer", "subject", "started_at", "resolved_at",
    "observed", "baseline", "score", "threshold", "summary", "related", "exemplar_trace_ids",
}  # fmt: skip


def w(i: int) -> Window:
    return Window.of(BASE + i, 10.0)


def cand(service="checkout", detector="error_rate", kind="service_error_rate", peer="", severity="warning", score=0.5, anomalous=True, **kw):
    return Candidate(detector, kind, service, peer, anomalous=anomalous, score=score, threshold=0.2, severity=severity, summary=f"{service} bad", **kw)


def manager(**cfg) -> tuple[AlertManager, list[dict]]:
    m = AlertManager(AlertsConfig(**cfg), Deployments(), 10.0)
    seen: list[dict] = []
    m.listeners.append(seen.append)
    return m, seen


def test_opens_after_n_consecutive_windows_and_resolves_after_m_quiet_ones():
    m, seen = manager(open_after=2, resolve_after=3)
    assert m.process(w(0), [cand()]) == []
    assert m.process(w(1), []) == []  # streak broken
    assert m.process(w(2), [cand()]) == []
    out = m.process(w(3), [cand(exemplar_trace_ids=["ab" * 16])])
    assert [a["state"] for a in out] == ["firing"]
    a = out[0]
    assert set(a) == KEYS
    assert a["started_at"] == rfc3339(w(2).start) and a["started_at"].endswith("Z")
    assert a["resolved_at"] is None and a["exemplar_trace_ids"] == ["ab" * 16]
    assert m.process(w(4), []) == [] and m.process(w(5), []) == []
    out = m.process(w(6), [cand(anomalous=False, score=0.01)])
    assert [(x["state"], x["resolved_at"], x["score"]) for x in out] == [("resolved", rfc3339(w(6).end), 0.01)]
    assert seen == [a, out[0]]
    assert dict(m.view().totals) == {("error_rate", "service_error_rate", "checkout", "warning"): 1}


def test_evidence_resets_the_quiet_count():
    m, _ = manager(resolve_after=2)
    m.process(w(0), [cand()])
    m.process(w(1), [])
    m.process(w(2), [cand()])
    assert m.process(w(3), []) == []
    assert [a["state"] for a in m.process(w(4), [])] == ["resolved"]


def test_refire_within_cooldown_reopens_the_same_episode():
    m, _ = manager(resolve_after=1, cooldown="1m")
    first = m.process(w(0), [cand()])[0]
    m.process(w(1), [])
    again = m.process(w(3), [cand()])
    assert [(a["state"], a["started_at"], a["id"]) for a in again] == [("firing", first["started_at"], first["id"])]
    assert dict(m.view().totals)[("error_rate", "service_error_rate", "checkout", "warning")] == 1
    m.process(w(4), [])
    assert m.process(w(5), [])[0]["state"] == "resolved"  # the re-fired episode needs 2 quiet windows (flap damping)
    later = m.process(w(20), [cand()])  # 140 s after resolving: new episode
    assert later[0]["started_at"] == rfc3339(w(20).start)
    assert dict(m.view().totals)[("error_rate", "service_error_rate", "checkout", "warning")] == 2


def test_evidence_every_few_windows_is_one_damped_episode_not_a_flapping_alert():
    # a detector holding a rise that only some windows show (demo: gateway->frontend at 1.9 % against a
    # 0.1 % baseline, 1-2 errors per 30-request window): anomalous every 5th window for 10 minutes.
    # Undamped that was FIRING/RESOLVED 12 times; damped: quiet windows needed 3, 6, 12 -> stays firing.
    m, seen = manager(resolve_after=3, cooldown="5m")
    for i in range(60):
        m.process(w(i), [cand()] if i % 5 == 0 else [])
    # fires at 0, resolves after 3 quiet windows, re-fires at 5 (same episode, now needs 6), then the
    # 4-window gaps never reach 6: one episode, three transitions
    assert [(a["state"], a["resolved_at"]) for a in seen] == [("firing", None), ("resolved", rfc3339(w(3).end)), ("firing", None)]
    assert len({a["started_at"] for a in seen}) == 1
    assert dict(m.view().totals)[("error_rate", "service_error_rate", "checkout", "warning")] == 1
    # after the evidence ends, it resolves after the damped quiet count (3 x 2 = 6 windows) ...
    a = m.get(seen[0]["id"])
    assert m.resolve_windows(a) == 6 and a.state == "firing"
    out = []
    for i in range(60, 66):
        out += m.process(w(i), [])
    assert [x["state"] for x in out] == ["resolved"]
    # ... and a new episode (after the cooldown) starts undamped again
    for i in range(66, 100):
        m.process(w(i), [])
    first = m.process(w(100), [cand()])
    assert first[0]["started_at"] == rfc3339(w(100).start)
    assert m.resolve_windows(m.get(first[0]["id"])) == 3


def test_flap_damping_is_capped_by_max_damping_and_by_the_cooldown():
    from detector.alerts.manager import MAX_DAMPING

    m, _ = manager(resolve_after=3, cooldown="5m")
    a = m.process(w(0), [cand()])[0]
    alert = m.get(a["id"])
    assert [m.resolve_windows(alert) for alert.refires in range(6)] == [3, 6, 12, 24, 30, 30]  # cooldown: 30 windows
    m1, _ = manager(resolve_after=3, cooldown="1h")
    a1 = m1.get(m1.process(w(0), [cand()])[0]["id"])
    assert [m1.resolve_windows(a1) for a1.refires in range(7)] == [3, 6, 12, 24, 48, 48, 48] == [
        min(3 << r, 3 * MAX_DAMPING) for r in range(7)]
    m2, _ = manager(resolve_after=3, cooldown="40s")  # 4 windows fit in the cooldown
    a2 = m2.get(m2.process(w(0), [cand()])[0]["id"])
    a2.refires = 5
    assert m2.resolve_windows(a2) == 4
    m3, _ = manager(resolve_after=3, cooldown="10s")  # never below resolve_after
    a3 = m3.get(m3.process(w(0), [cand()])[0]["id"])
    a3.refires = 2
    assert m3.resolve_windows(a3) == 3


def test_dedup_by_id_in_one_window_keeps_highest_score_and_severity_is_the_max():
    m, _ = manager()
    out = m.process(w(0), [cand(score=0.3), cand(score=0.9, severity="critical"), cand(score=0.5)])
    assert len(out) == 1 and out[0]["score"] == 0.9 and out[0]["severity"] == "critical"
    m.process(w(1), [cand(score=0.4, severity="info")])
    assert m.view().alerts[0]["severity"] == "critical"


def test_cap_on_active_alerts_counts_overflow_once_per_episode():
    overflows = []
    m = AlertManager(AlertsConfig(max_active=2), Deployments(), 10.0, on_overflow=lambda: overflows.append(1))
    out = m.process(w(0), [cand("a"), cand("b"), cand("c")])
    assert len(out) == 2
    m.process(w(1), [cand("a"), cand("b"), cand("c")])
    assert len(overflows) == 1 and m.overflow_total == 1
    assert len(m.view().active) == 2


def test_error_alert_after_deploy_of_peer_is_related_and_critical():
    m, _ = manager(correlation_window="10m")
    m.deployments.observe("payment", "1.0", T0 - 600)
    m.deployments.observe("payment", "1.1", T0 - 120)
    a = m.process(w(0), [cand("checkout", kind="edge_error_rate", peer="payment")])[0]
    assert a["related"] == ["deploy:payment:1.1"]
    assert a["severity"] == "critical"
    assert "deployment of payment 1.0 -> 1.1" in a["summary"] and a["summary"].startswith("checkout bad")
    assert dict(m.view().totals) == {("error_rate", "edge_error_rate", "checkout", "critical"): 1}


def test_old_deploy_is_not_related():
    m, _ = manager(correlation_window="1m")
    m.deployments.observe("checkout", "1.0", T0 - 600)
    m.deployments.observe("checkout", "1.1", T0 - 300)
    a = m.process(w(0), [cand("checkout")])[0]
    assert a["related"] == [] and a["severity"] == "warning"


def test_error_alert_after_schema_drift_on_either_side_is_related():
    m, _ = manager()
    drift = m.process(w(0), [cand("payment", detector="schema_drift", kind="attribute_removed", subject={"key": "user.id"})])[0]
    err = m.process(w(3), [cand("checkout", kind="edge_error_rate", peer="payment")])[0]
    assert err["related"] == [drift["id"]] and err["severity"] == "critical"
    assert "schema drift (attribute_removed) on payment" in err["summary"]
    unrelated = m.process(w(4), [cand("search")])[0]
    assert unrelated["related"] == []


def test_drift_of_a_status_code_is_the_error_itself_not_its_cause():
    # demo incident 1: catalog answers 503 to frontend; schema_drift sees a new value 503 of
    # http.response.status_code on both sides in the same windows. Linking it made every error alert
    # "critical ... Likely cause: schema drift (value_distribution_shift)" - a symptom named as the cause.
    m, _ = manager()
    status = cand("catalog", detector="schema_drift", kind="value_distribution_shift", peer="frontend",
                  subject={"attribute": "http.response.status_code", "side": "server"})
    method = cand("catalog", detector="schema_drift", kind="value_distribution_shift", peer="cart",
                  subject={"attribute": "http.request.method", "side": "server"})
    m.process(w(0), [status])
    out = m.process(w(1), [status, cand("frontend", kind="edge_error_rate", peer="catalog", severity="warning")])
    err = [a for a in out if a["detector"] == "error_rate"][0]
    assert err["related"] == [] and err["severity"] == "warning" and "Likely cause" not in err["summary"]
    m.process(w(2), [method])
    out = m.process(w(3), [method, cand("catalog", severity="warning")])
    err = [a for a in out if a["detector"] == "error_rate"][0]
    assert err["severity"] == "critical" and "value_distribution_shift" in err["summary"] and len(err["related"]) == 1


def test_drift_and_error_in_the_same_window_link_regardless_of_candidate_order():
    m, _ = manager()
    out = m.process(w(0), [cand("checkout"), cand("checkout", detector="schema_drift", kind="attribute_added")])
    err = next(a for a in out if a["detector"] == "error_rate")
    assert len(err["related"]) == 1


def test_resolved_alerts_stay_visible_for_keep_resolved():
    m, _ = manager(resolve_after=1, keep_resolved="1m", cooldown="10s")
    m.process(w(0), [cand()])
    m.process(w(1), [])
    assert [a["state"] for a in m.view().alerts] == ["resolved"]
    for i in range(2, 10):
        m.process(w(i), [])
    assert m.view().alerts == ()


def test_state_round_trip_through_pickle():
    m, _ = manager(open_after=2)
    m.process(w(0), [cand("a")])
    m.process(w(1), [cand("a"), cand("b")])
    state = pickle.loads(pickle.dumps(m.state_dict()))
    m2, _ = manager(open_after=2)
    m2.load_state(state)
    assert m2.view() == m.view()
    assert [a["state"] for a in m2.process(w(2), [cand("b")])] == ["firing"]  # pending streak survived


# ---------------------------------------------------------------- exposition


def registry_for(snapshot: Snapshot) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(AlertCollector(lambda: snapshot))
    return reg


def test_collector_series_from_snapshot_and_resolved_alerts_leave_no_series():
    m, _ = manager(resolve_after=1)
    m.process(w(0), [cand("checkout", exemplar_trace_ids=["0af7651916cd43dd8448eb211c80319c"]), cand("bad\udcffsvc" + "x" * 300)])
    snap = Snapshot(m.view(), (("error_rate", "service_error_rate", "checkout", "", 0.5),))
    reg = registry_for(snap)
    text = generate_latest(reg).decode()
    assert 'otel_anomaly_alert_active{detector="error_rate",kind="service_error_rate",peer="",service="checkout",severity="warning"} 1.0' in text
    assert 'otel_anomaly_alerts_total{detector="error_rate",kind="service_error_rate",service="checkout",severity="warning"} 1.0' in text
    assert 'otel_anomaly_score{detector="error_rate",kind="service_error_rate",peer="",service="checkout"} 0.5' in text
    assert 'service="bad?svc' in text  # lone surrogate replaced, scrape still works
    assert max(len(line) for line in text.splitlines()) < 400  # label length capped
    assert "_created" not in text
    om = generate_openmetrics(reg).decode()
    assert '# {trace_id="0af7651916cd43dd8448eb211c80319c"} 1.0' in om
    m.process(w(1), [])
    text = generate_latest(registry_for(Snapshot(m.view()))).decode()
    assert "otel_anomaly_alert_active{" not in text
    assert 'otel_anomaly_alerts_total{detector="error_rate",kind="service_error_rate",service="checkout",severity="warning"} 1.0' in text


def test_http_endpoints():
    m, _ = manager()
    m.process(w(0), [cand("checkout")])
    snap = Snapshot(m.view())
    state = {"ready": False}
    srv = HttpServer("127.0.0.1:0", registry_for(snap), lambda: snap.alerts.alerts, lambda: (state["ready"], "restoring state"))
    srv.start()
    base = f"http://127.0.0.1:{srv.port}"
    try:
        assert urllib.request.urlopen(base + "/healthz").status == 200
        try:
            urllib.request.urlopen(base + "/readyz")
            raise AssertionError("expected 503")
        except urllib.error.HTTPError as e:
            assert e.code == 503
        state["ready"] = True
        assert urllib.request.urlopen(base + "/readyz").status == 200
        body = json.load(urllib.request.urlopen(base + "/api/v1/alerts"))
        assert [a["service"] for a in body["alerts"]] == ["checkout"]
        assert json.load(urllib.request.urlopen(base + "/api/v1/alerts?state=resolved"))["alerts"] == []
        assert len(json.load(urllib.request.urlopen(base + "/api/v1/alerts?state=firing&service=checkout"))["alerts"]) == 1
        req = urllib.request.Request(base + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        resp = urllib.request.urlopen(req)
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert resp.read().decode().rstrip().endswith("# EOF")
        assert "otel_anomaly_alert_active" in urllib.request.urlopen(base + "/metrics").read().decode()
    finally:
        srv.stop()
        srv.stop()


def test_alert_json_is_plain_json_even_with_numpy_values():
    import numpy as np

    m, _ = manager()
    c = cand(observed={"n": np.int64(5), "r": np.float64(0.5), "a": np.arange(3), "bad": float("nan")}, baseline={"t": (1, 2)})
    a = m.process(w(0), [c])[0]
    assert json.loads(json.dumps(a))["observed"] == {"n": 5, "r": 0.5, "a": [0, 1, 2], "bad": None}
    assert a["baseline"] == {"t": [1, 2]}


def test_alert_active_is_one_when_several_alerts_share_its_labels():
    """Two operations of one service firing at once: one series, value 1 (contract), two alerts in JSON."""
    m, _ = manager()
    m.process(
        w(0),
        [
            cand("checkout", kind="operation_error_rate", subject={"operation": "GET /cart"}),
            cand("checkout", kind="operation_error_rate", subject={"operation": "POST /pay"}),
        ],
    )
    assert len(m.view().active) == 2
    text = generate_latest(registry_for(Snapshot(m.view()))).decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("otel_anomaly_alert_active{")]
    assert lines == [
        'otel_anomaly_alert_active{detector="error_rate",kind="operation_error_rate",peer="",service="checkout",severity="warning"} 1.0'
    ]
    assert 'otel_anomaly_alerts_total{detector="error_rate",kind="operation_error_rate",service="checkout",severity="warning"} 2.0' in text
