"""The whole App's learned state survives a checkpoint byte-for-byte in behaviour.

An in-process :class:`~detector.app.App` (replay mode, the real detectors)
learns 40 windows of traffic; its ``state_dict()`` goes through the real
checkpoint encoding (pickle + header + checksum) into a second App. Both then
see the same 25 further windows, including an error-rate incident, a brute
force on one account and an attribute type change: the restored App must emit
exactly the same alert transitions and scores as the one that never stopped.
"""

from __future__ import annotations

import json
import os

import pytest
from prometheus_client import CollectorRegistry

from detector.app import App
from detector.config.root import Config
from detector.normalise.records import SPAN_KIND_SERVER
from detector.pipeline.batch import Batch
from detector.state import checkpoint as ck
from tests.support.records import log_record, span

WIN = 10.0
T0 = 1_700_000_000.0
REAL = "error_rate=detector.detectors.error_rate.detector:ErrorRateDetector"
CFG = {
    "state": {"directory": None},
    "detectors": {"error_rate": {"warmup": "60s"}, "schema_drift": {"warmup": "60s"}},
}


def _window(w: int) -> Batch:
    t0 = T0 + w * WIN
    spans, logs = [], []
    incident = 45 <= w < 50
    for s in ("checkout", "cart", "search"):
        for i in range(50):
            t = t0 + (i + 0.5) * WIN / 50
            err = (i % 10 < 4) if (incident and s == "checkout") else ((w * 50 + i) % 97 == 0)
            code = 500 if err else 200
            attrs = {"http.request.method": "GET", "http.route": f"/{s}", "http.response.status_code": code}
            if s == "search" and w >= 50:
                attrs["http.response.status_code"] = str(code)  # type change
            spans.append(span(s, end=t, error=err, name=f"GET /{s}", kind=SPAN_KIND_SERVER, attrs=attrs))
    for i in range(20):
        t = t0 + (i + 0.5) * WIN / 20
        user = "alice" if (incident and i % 2 == 0) else f"user{(w * 20 + i) % 60}"
        fail = user == "alice" or (w * 20 + i) % 40 == 0
        sp = span("login", end=t, name="POST /login", kind=SPAN_KIND_SERVER,
                  attrs={"http.request.method": "POST", "http.route": "/login", "user.id": user, "client.address": f"10.0.0.{i % 7}"})  # fmt: skip
        sp.http_status = 401 if fail else 200
        sp.principal = user
        sp.source = f"10.0.0.{i % 7}"
        spans.append(sp)
        logs.append(log_record("login", time=t, severity=17 if fail else 9, body=f"login {'failed' if fail else 'ok'} for {user}"))
    spans.sort(key=lambda r: r.end)
    return Batch(spans, logs, 0, 0.0)


def _app(monkeypatch) -> tuple[App, list[dict]]:
    monkeypatch.setenv("OTEL_ANOMALY_DETECTOR_CLASSES", REAL)
    app = App(Config.model_validate(CFG), registry=CollectorRegistry(), serve=False, salt=b"roundtrip-salt")
    seen: list[dict] = []
    app.alerts.listeners.append(lambda a: seen.append(json.loads(json.dumps(a, default=str))))
    return app, seen


def test_restored_app_behaves_exactly_like_the_one_that_never_stopped(monkeypatch, tmp_path):
    batches = [_window(w) for w in range(65)]
    a, seen_a = _app(monkeypatch)
    for b in batches[:40]:
        a.pipeline.process(b)
    assert set(a.detectors) == {"error_rate", "schema_drift", "auth"}
    assert type(a.detectors["error_rate"]).__name__ == "ErrorRateDetector"
    meta = ck.CheckpointMeta.current(ck.feature_schema({**a.detectors, "alerts": a.alerts}))
    ck.save(tmp_path, a.state_dict(), meta)
    state = ck.load(tmp_path, meta)
    assert state is not None

    b_app, seen_b = _app(monkeypatch)
    b_app.load_state(state)
    assert b_app.context.restored
    for name in a.detectors:
        assert b_app.detectors[name].tracked_series() == a.detectors[name].tracked_series() > 0, name
    before = len(seen_a)
    for b in batches[40:]:
        a.pipeline.process(b)
        b_app.pipeline.process(b)
    a.pipeline.flush()
    b_app.pipeline.flush()
    after_a = seen_a[before:]
    # error_rate and auth checkpoint their open windows too: identical transitions, numbers included
    exact = ("error_rate", "auth")
    assert [t for t in after_a if t["detector"] in exact] == [t for t in seen_b if t["detector"] in exact]
    # schema_drift leaves open windows out of its state by design ("a restart loses at most the
    # counts of the windows not yet closed"): the same alerts, at the same times, numbers may differ
    def ident(ts):
        return [(t["id"], t["state"], t["started_at"], t["severity"]) for t in ts if t["detector"] == "schema_drift"]

    assert ident(after_a) == ident(seen_b)
    kinds = {(t["detector"], t["kind"], t["service"]) for t in after_a if t["state"] == "firing"}
    assert ("error_rate", "service_error_rate", "checkout") in kinds, kinds
    assert any(d == "schema_drift" and s == "search" for d, _, s in kinds), kinds
    scores_a = {row[:4]: row[4] for row in a.pipeline.snapshot.scores}
    scores_b = {row[:4]: row[4] for row in b_app.pipeline.snapshot.scores}
    assert scores_a.keys() == scores_b.keys()
    assert {k: v for k, v in scores_a.items() if k[0] in exact} == {k: v for k, v in scores_b.items() if k[0] in exact}


def test_every_detector_state_pickles_without_lambdas_or_locks(monkeypatch):
    a, _ = _app(monkeypatch)
    for b in (_window(w) for w in range(12)):
        a.pipeline.process(b)
    data = ck.encode(a.state_dict(), ck.CheckpointMeta.current())
    assert len(data) > 1000
    state, header = ck.decode(data)
    assert set(state["detectors"]) == {"error_rate", "schema_drift", "auth"}
    assert header["payload_length"] == len(data) - data.index(b"}") - 1 - 32
