"""Checkpoint restore is all or nothing (issue #8).

A checkpoint whose payload is valid but which one detector cannot load (its
``load_state`` raises after another detector already loaded) must not leave
the app half-restored: every detector, the alert manager and the deployments
stay cold, ``otel_anomaly_checkpoint_restore_failures_total`` is 1, one error
line says so, and the app keeps processing.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from detector.app import STATE_FORMAT, App
from detector.config.root import Config
from detector.normalise.records import SPAN_KIND_SERVER
from detector.pipeline.batch import Batch
from detector.state import checkpoint as ck
from tests.support.records import span

WIN = 10.0
T0 = 1_700_000_000.0


def _batch(w: int, version: str = "1.0") -> Batch:
    spans = []
    for s in ("checkout", "cart"):
        for i in range(30):
            t = T0 + w * WIN + (i + 0.5) * WIN / 30
            err = (w * 30 + i) % 17 == 0
            attrs = {"http.request.method": "GET", "http.route": f"/{s}", "http.response.status_code": 500 if err else 200}
            spans.append(span(s, end=t, error=err, name=f"GET /{s}", kind=SPAN_KIND_SERVER, attrs=attrs, version=version))
    spans.sort(key=lambda r: r.end)
    return Batch(spans, [], 0, 0.0)


def _app(directory=None) -> App:
    return App(Config.model_validate({"state": {"directory": directory}}), registry=CollectorRegistry(), serve=False, salt=b"atomic")


def _meta(app: App) -> ck.CheckpointMeta:
    # the same stamp App._restore expects
    schema = ck.feature_schema({**app.detectors, "alerts": app.alerts, "pipeline": app.pipeline, "app": STATE_FORMAT})
    return ck.CheckpointMeta.current(schema)


def _learned(tmp_path) -> App:
    a = _app()
    for w in range(20):
        a.pipeline.process(_batch(w, "1.0" if w < 10 else "2.0"))
    assert a.detectors["error_rate"].tracked_series() > 0
    assert a.deployments.state_dict()["version"], "the deploy at window 10 was seen"
    ck.save(tmp_path, a.state_dict(), _meta(a))
    return a


def test_one_detector_failing_to_load_leaves_every_detector_cold(tmp_path, monkeypatch, caplog):
    _learned(tmp_path)
    b = _app(str(tmp_path))
    assert list(b.detectors)[:2] == ["error_rate", "schema_drift"]  # error_rate loads first
    cold_alerts = b.alerts.state_dict()

    def boom(self, state):
        raise ValueError("layout changed")

    monkeypatch.setattr(type(b.detectors["schema_drift"]), "load_state", boom)
    with caplog.at_level(logging.ERROR, logger="otel_anomaly.app"):
        b._restore()
    # without the all-or-nothing restore, error_rate kept the learned series here
    assert b.detectors["error_rate"].tracked_series() == 0
    assert b.detectors["schema_drift"].tracked_series() == 0
    assert b.deployments.state_dict()["version"] == {}
    assert b.alerts.state_dict() == cold_alerts
    assert not b.restored and not b.context.restored
    assert b.registry.get_sample_value("otel_anomaly_checkpoint_restore_failures_total") == 1.0
    lines = [r.getMessage() for r in caplog.records if "checkpoint could not be applied" in r.getMessage()]
    assert len(lines) == 1 and "ValueError: layout changed" in lines[0] and "cold" in lines[0]
    # and the cold app still works
    b.pipeline.process(_batch(20))
    b.pipeline.process(_batch(22))
    assert b.detectors["error_rate"].tracked_series() > 0


def test_restore_swaps_in_fresh_components_that_the_pipeline_uses(tmp_path):
    a = _learned(tmp_path)
    b = _app(str(tmp_path))
    listener_calls: list[dict] = []
    b.alerts.listeners.append(listener_calls.append)
    detectors_dict = b.detectors
    b._restore()
    assert b.restored and b.context.restored
    assert b.detectors is detectors_dict  # same dict object, new instances inside
    assert b.pipeline.detectors is b.detectors and b.pipeline.alerts is b.alerts and b.pipeline.deployments is b.deployments
    assert b.alerts.deployments is b.deployments and b.detectors["error_rate"].context is b.context
    assert listener_calls.append in b.alerts.listeners  # listeners added before the restore are kept
    assert b.detectors["error_rate"].tracked_series() == a.detectors["error_rate"].tracked_series()
    assert b.deployments.state_dict() == a.deployments.state_dict()
    assert b.registry.get_sample_value("otel_anomaly_checkpoint_restore_failures_total") in (None, 0.0)


def test_pipeline_part_failing_rolls_back_the_clock(tmp_path, monkeypatch):
    a = _learned(tmp_path)
    b = _app(str(tmp_path))
    before = b.pipeline.state_dict()
    real = type(b.pipeline.clock).load_state
    calls = []

    def half(self, state, wall):
        calls.append(state)
        if len(calls) == 1:  # the checkpoint's clock: apply it, then fail
            real(self, state, wall)
            raise KeyError("watermark")
        real(self, state, wall)

    monkeypatch.setattr(type(b.pipeline.clock), "load_state", half)
    b._restore()
    assert b.pipeline.state_dict() == before != a.pipeline.state_dict()
    assert b.detectors["error_rate"].tracked_series() == 0
    assert b.registry.get_sample_value("otel_anomaly_checkpoint_restore_failures_total") == 1.0


import pytest  # noqa: E402


@pytest.mark.parametrize("family", ["error_rate", "schema_drift", "auth"])
def test_a_detector_part_with_a_foreign_version_fails_the_whole_restore(tmp_path, caplog, family):
    """A checkpoint whose digests and header stamp are valid but whose payload
    holds a part that is not what the detector wrote (wrong version/format key:
    hand-edited, or a bug that wrote the wrong layout) must not be skipped
    silently for that detector while the others load: every detector starts
    cold, the failure is counted and logged once."""
    a = _learned(tmp_path)
    state = a.state_dict()
    state["detectors"][family] = {"version": "nonsense", "format": "nonsense"}
    ck.save(tmp_path, state, _meta(a))
    b = _app(str(tmp_path))
    with caplog.at_level(logging.ERROR, logger="otel_anomaly.app"):
        b._restore()
    assert b.detectors["error_rate"].tracked_series() == 0
    assert b.detectors["schema_drift"].tracked_series() == 0
    assert not b.restored
    assert b.registry.get_sample_value("otel_anomaly_checkpoint_restore_failures_total") == 1.0
    lines = [r.getMessage() for r in caplog.records if "checkpoint could not be applied" in r.getMessage()]
    assert len(lines) == 1 and family in lines[0]


def test_a_refused_checkpoint_is_kept_aside_not_overwritten(tmp_path):
    # the cold-started process's first checkpoint used to overwrite the refused file: the evidence and the
    # state a rollback to the version that wrote it could have used were lost
    a = _learned(tmp_path)
    good = (tmp_path / ck.FILENAME).read_bytes()
    # 1. a file the checks refuse (truncated)
    (tmp_path / ck.FILENAME).write_bytes(good[: len(good) // 2])
    b = _app(str(tmp_path))
    b._restore()
    assert not b.restored
    assert (tmp_path / (ck.FILENAME + ".rejected")).read_bytes() == good[: len(good) // 2]
    assert not (tmp_path / ck.FILENAME).exists()
    # 2. a file that passes the checks but one detector cannot load (all-or-nothing restore)
    state = a.state_dict()
    state["detectors"]["auth"] = {"version": "nonsense"}
    ck.save(tmp_path, state, _meta(a))
    bad = (tmp_path / ck.FILENAME).read_bytes()
    c = _app(str(tmp_path))
    c._restore()
    assert not c.restored
    assert (tmp_path / (ck.FILENAME + ".rejected")).read_bytes() == bad
    assert not (tmp_path / ck.FILENAME).exists()
    # 3. a good file is restored and stays where it is
    (tmp_path / ck.FILENAME).write_bytes(good)
    d = _app(str(tmp_path))
    d._restore()
    assert d.restored and (tmp_path / ck.FILENAME).read_bytes() == good


@pytest.mark.parametrize(
    "damage",
    [
        {"clock": {"watermark": "x"}},
        {"clock": {"max_event": [1]}},
        {"clock": {"last_closed": 1.5}},
        {"clock": "not a mapping"},  # replaced whole, not merged
        {"windows_closed": "many"},
    ],
)
def test_a_damaged_pipeline_clock_fails_the_whole_restore(tmp_path, damage):
    """A pipeline part of the wrong shape used to be accepted ("state restored") with a
    watermark that is a string; every later window comparison would then raise."""
    a = _learned(tmp_path)
    state = a.state_dict()
    part = state["pipeline"]
    for key, value in damage.items():
        part[key] = {**part["clock"], **value} if isinstance(value, dict) else value
    ck.save(tmp_path, state, _meta(a))
    b = _app(str(tmp_path))
    before = b.pipeline.state_dict()
    b._restore()
    assert not b.restored
    assert b.pipeline.state_dict() == before
    assert b.detectors["error_rate"].tracked_series() == 0
    assert b.registry.get_sample_value("otel_anomaly_checkpoint_restore_failures_total") == 1.0
    b.pipeline.process(_batch(30))  # and the cold app works (a window closes when the next one's data arrives)
    b.pipeline.process(_batch(32))
    assert b.detectors["error_rate"].tracked_series() > 0
