"""App wiring without sockets: detector registry, state seam, SIGHUP reload logic."""

from __future__ import annotations

import pickle

from prometheus_client import CollectorRegistry

from detector.app import DETECTOR_CLASSES, App, detector_classes
from detector.config.root import Config
from detector.detectors.placeholder import PlaceholderErrorRateDetector
from detector.pipeline.batch import Batch
from tests.support.records import span

T0 = 1_700_000_000.0


def make_app(path=None, **cfg) -> App:
    config = Config.model_validate({"state": {"directory": None}, **cfg})
    return App(config, config_path=path, serve=False, registry=CollectorRegistry())


def feed_error_burst(app: App) -> None:
    for k in range(4):
        app.pipeline.process(Batch([span("checkout", T0 + 10 * k + i * 0.1, error=i % 2 == 0) for i in range(40)]))
    app.pipeline.flush()


def test_registry_is_one_dict_and_error_rate_defaults_to_a_detector_class():
    assert set(DETECTOR_CLASSES) == {"error_rate", "schema_drift", "auth"}
    app = make_app()
    assert type(app.detectors["error_rate"]).name == "error_rate"


def test_env_override_and_disabled_families(monkeypatch):
    monkeypatch.setenv("OTEL_ANOMALY_DETECTOR_CLASSES", "error_rate=detector.detectors.placeholder:PlaceholderErrorRateDetector")
    assert detector_classes()["error_rate"].endswith("PlaceholderErrorRateDetector")
    app = make_app(detectors={"schema_drift": {"enabled": False}, "auth": {"enabled": False}})
    assert list(app.detectors) == ["error_rate"]
    assert isinstance(app.detectors["error_rate"], PlaceholderErrorRateDetector)


def test_state_dict_round_trip_restores_alerts_and_clock(monkeypatch):
    monkeypatch.setenv("OTEL_ANOMALY_DETECTOR_CLASSES", "error_rate=detector.detectors.placeholder:PlaceholderErrorRateDetector")
    app = make_app()
    feed_error_burst(app)
    assert [a["service"] for a in app.alerts_json()] == ["checkout"]
    state = pickle.loads(pickle.dumps(app.state_dict()))
    app2 = make_app()
    app2.load_state(state)
    assert app2.restored and app2.context.restored
    assert app2.alerts_json() == app.alerts_json()
    assert app2.pipeline.clock.last_closed == app.pipeline.clock.last_closed


def test_reload_invalid_keeps_config_and_counts_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("alerts:\n  open_after: 1\n")
    app = make_app(str(path))
    path.write_text("alerts:\n  open_after: x\n")
    assert app.reload() is False
    assert app.registry.get_sample_value("otel_anomaly_config_reloads_total", {"result": "error"}) == 1
    assert app.alerts.config.open_after == 1
    path.write_text("state: {directory: null}\nalerts:\n  open_after: 4\n")
    assert app.reload() is True
    assert app.alerts.config.open_after == 4 and app.config.alerts.open_after == 4
    assert app.registry.get_sample_value("otel_anomaly_config_reloads_total", {"result": "ok"}) == 1


def test_ready_status_before_start():
    app = make_app()
    assert app.ready_status() == (False, "restoring state")


def test_reload_applies_pipeline_lateness_but_not_window(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("state: {directory: null}\n")
    app = make_app(str(path))
    path.write_text("state: {directory: null}\npipeline:\n  allowed_lateness: 30s\n  window: 1m\n")
    assert app.reload() is True
    assert app.pipeline.clock.lateness == 30.0
    assert app.pipeline.clock.length == 10.0 and app.pipeline.config.window == 10.0


def test_deploy_then_error_burst_links_the_deployment(monkeypatch):
    monkeypatch.setenv("OTEL_ANOMALY_DETECTOR_CLASSES", "error_rate=detector.detectors.placeholder:PlaceholderErrorRateDetector")
    app = make_app()
    seen = []
    app.alerts.listeners.append(seen.append)
    app.pipeline.process(Batch([span("checkout", T0 + i * 0.1, version="1.0") for i in range(40)]))
    app.pipeline.process(Batch([span("checkout", T0 + 10 + i * 0.1, version="1.1", error=i % 2 == 0) for i in range(40)]))
    app.pipeline.flush()
    assert app.registry.get_sample_value("otel_anomaly_deployments_total", {"service": "checkout"}) == 1
    firing = [a for a in seen if a["state"] == "firing"]
    assert len(firing) == 1
    assert firing[0]["related"] == ["deploy:checkout:1.1"] and firing[0]["severity"] == "critical"
    assert "deployment of checkout 1.0 -> 1.1" in firing[0]["summary"]


def test_per_detector_series_metrics_exist_before_the_first_window_closes():
    # the contract's otel_anomaly_tracked_series{detector} / evicted_series_total{detector} had no sample at all
    # until a window closed (a fresh instance showed "no data" on dashboards and absent() rules)
    from prometheus_client import CollectorRegistry

    from detector.app import App
    from detector.config.root import Config

    app = App(Config.model_validate({"state": {"directory": None}}), registry=CollectorRegistry(), serve=False, salt=b"x")
    for name in ("error_rate", "schema_drift", "auth"):
        assert app.registry.get_sample_value("otel_anomaly_tracked_series", {"detector": name}) == 0.0
        assert app.registry.get_sample_value("otel_anomaly_evicted_series_total", {"detector": name}) == 0.0
