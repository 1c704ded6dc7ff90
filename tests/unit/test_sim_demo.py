"""``otel-anomaly demo``: what a user sees, on its core loop (:func:`detector.sim.demo.replay_demo`).

The demo's traffic depends on the hour it runs (start = now - 80 min, rate scaled
to daytime volume), so each test pins ``now`` to one realisation. The live path
(serve, wall-clock watermark) gives the same alert transitions as this replay
for the same traffic; ``tests/unit/test_sim_live.py`` covers the live sender.

Two realisations:

* ``CLEAN_NOW``: the error_rate detector learns every baseline in the warm-up —
  the show a user should always get: quiet warm-up, each incident one group of
  alerts headed by the right detector, the edge incident resolved after it ends.
* ``LOCK_NOW``: a cold start the error_rate detector used to get wrong. Some
  series armed with a baseline learned from a few dozen requests (e.g. 0.1 %
  for an edge that really runs at ~2 %), went anomalous and never learned
  again, so their evidence came and went for the whole hour (~40 FIRING lines
  per alert, 340 in all). The detector now tests a young series against the
  upper Wilson bound of its own learned ratio, so this warm-up is quiet; the
  alert manager's flap damping must still keep such an alert to a few
  transitions.
"""

from __future__ import annotations

import io

import pytest

from detector.sim.demo import DEMO_INCIDENTS, demo_scenario, replay_demo
from detector.sim.incidents import callers_of, parse_time

CLEAN_NOW = parse_time("2026-11-29T09:00:00Z")
LOCK_NOW = parse_time("2026-11-29T16:00:00Z")
# (family, services an alert of that incident may be on): the edge's 503s are errors of every caller upstream
EXPECTED = [
    ("error_rate", {"catalog", "frontend"} | callers_of("frontend")),
    ("schema_drift", {"catalog"}),
    ("auth", {"auth"}),
]
MAX_FIRING_PER_ID = 4


@pytest.fixture(scope="module")
def clean():
    out = io.StringIO()
    view, transitions = replay_demo(CLEAN_NOW, out=out)
    return view, transitions, out.getvalue()


@pytest.fixture(scope="module")
def locking():
    view, transitions = replay_demo(LOCK_NOW)
    return view, transitions


def test_demo_shows_each_incident_once_after_a_quiet_warm_up(clean):
    view, transitions, text = clean
    print(text)
    scen, show_start = demo_scenario(CLEAN_NOW)
    incidents = scen.simulator().incidents
    assert len(incidents) == len(DEMO_INCIDENTS) == len(EXPECTED) == 3
    assert [d for d in transitions if d["_phase"] == "warm-up"] == []
    o = view.outcome()
    assert o["groups"] == 3, text
    assert o["max_firing_per_id"] <= 2, o
    # the cascade of the edge incident (caller, gateway, operations, log signatures, new status code) is one group
    assert o["opened"] <= 30, o
    firing = [d for d in transitions if d["state"] == "firing"]
    for inc, (family, services) in zip(incidents, EXPECTED):
        mine = [d for d in firing if d["detector"] == family and d["service"] in services
                and inc.start - 60 <= parse_time(d["started_at"]) <= inc.end + 300]
        assert mine, f"incident at {inc.start} ({family}) opened no alert"
    # every alert belongs to one of the incidents (no alert outside their time spans)
    spans = [(i.start - 60, i.end + 300) for i in incidents]
    stray = [d for d in firing if not any(lo <= parse_time(d["started_at"]) <= hi for lo, hi in spans)]
    assert stray == []
    # one headline per group, from the incident's own detector, with a summary naming the numbers
    heads = [ln for ln in text.splitlines() if " FIRING " in ln]
    assert len(heads) == 3, text
    assert "error_rate/edge_error_rate frontend→catalog" in heads[0] and "critical" in heads[0]
    assert "schema_drift/attribute_type_changed catalog" in heads[1]
    assert "auth/brute_force auth" in heads[2]
    assert "errors frontend→catalog rose" in text and "more alert(s) of the same group" in text
    # the edge incident (7 min) is over 10 min before the end: all its error alerts resolved
    resolved = {d["id"] for d in transitions if d["state"] == "resolved"}
    edge_ids = {d["id"] for d in firing if d["detector"] == "error_rate"}
    assert edge_ids and edge_ids <= resolved
    assert o["still_firing"] <= 3


def test_demo_flapping_stays_bounded_on_a_cold_start_the_detector_gets_wrong(locking):
    view, transitions = locking
    o = view.outcome()
    # undamped (error_rate as of 2026-11-30): 340 FIRING lines, one alert 41 times; damped: 69, at most 4.
    # Once error_rate arms on a better baseline this realisation is quiet and the bound holds trivially
    # (the damping itself is tested in test_alerts.py).
    assert o["max_firing_per_id"] <= MAX_FIRING_PER_ID, o
    assert o["firing_lines"] <= 2 * o["opened"] + 40, o
    # the incidents are still found
    firing = [d for d in transitions if d["state"] == "firing" and d["_phase"] == "show"]
    for family, _ in EXPECTED:
        assert any(d["detector"] == family for d in firing), family


def test_demo_warm_up_is_quiet_on_that_cold_start(locking):
    _, transitions = locking
    warm = [(d["kind"], d["service"], d["peer"]) for d in transitions if d["_phase"] == "warm-up" and d["state"] == "firing"]
    assert warm == []
