"""Memory budget planning (detector.state.budget)."""

from __future__ import annotations

import logging

import pytest

from detector.config.root import Config
from detector.state import budget


def test_plan_divides_the_budget_and_stays_inside_it():
    p = budget.plan(1024)
    total = sum(p.mib.values())
    assert total <= 1024 - budget.BASE_MIB
    assert total >= 0.85 * (1024 - budget.BASE_MIB)
    assert p.caps["detectors.auth.max_principals"] == int((1024 - budget.BASE_MIB) * 0.12 * budget.MIB // 3_500)
    assert "detectors.error_rate.max_series" in p.describe()
    # twice the budget above the base: twice the caps
    q = budget.plan(2 * 1024 - budget.BASE_MIB)
    assert q.caps["pipeline.queue_items"] == pytest.approx(2 * p.caps["pipeline.queue_items"], rel=0.01)


def test_plan_refuses_a_budget_below_the_base():
    with pytest.raises(ValueError, match="below the base RSS"):
        budget.plan(100)


def test_apply_budget_lowers_defaults_and_keeps_explicit_caps(caplog):
    cfg = Config.model_validate({"state": {"memory_budget_mib": 256}, "pipeline": {"queue_items": 500_000}})
    p = budget.apply_budget(cfg)
    # queue_items was explicit: kept (and warned about, as it alone overruns the budget)
    assert cfg.pipeline.queue_items == 500_000
    for path, cap in p.caps.items():
        found = budget._walk(cfg, path)
        if found is None or path == "pipeline.queue_items":
            continue
        node, key = found
        assert getattr(node, key) <= cap or getattr(node, key) == type(node).model_fields[key].default


def test_apply_budget_warns_when_explicit_caps_overrun(caplog):
    cfg = Config.model_validate({"state": {"memory_budget_mib": 256}, "pipeline": {"queue_items": 5_000_000}})
    with caplog.at_level(logging.WARNING, logger="detector.state"):
        budget.apply_budget(cfg)
    assert "explicit caps need about" in caplog.text


def test_apply_budget_is_idempotent():
    cfg = Config.model_validate({"state": {"memory_budget_mib": 512}})
    budget.apply_budget(cfg)
    before = cfg.model_dump()
    budget.apply_budget(cfg)
    assert cfg.model_dump() == before


def test_app_applies_the_plan_to_every_running_table():
    from prometheus_client import CollectorRegistry

    from detector.app import App

    cfg = Config.model_validate({"state": {"directory": None, "memory_budget_mib": 512}, "detectors": {"auth": {"max_tokens": 777}}})
    app = App(cfg, registry=CollectorRegistry(), serve=False, salt=b"s")
    p = app.memory_plan
    assert app.config.pipeline.queue_items == p.caps["pipeline.queue_items"] < 200_000
    assert app.pipeline.queue.max_items == p.caps["pipeline.queue_items"]
    auth = app.detectors["auth"].config
    assert auth.max_principals == p.caps["detectors.auth.max_principals"]
    assert auth.max_sources == p.caps["detectors.auth.max_sources"]
    assert auth.max_tokens == 777  # explicit: kept
    assert app.detectors["schema_drift"].config.max_populations == p.caps["detectors.schema_drift.max_populations"]
