"""error_rate detector: exact decisions on constructed span/log sequences.

Every scenario is deterministic: error positions are fixed or drawn from a
seeded numpy generator, windows are closed in order by the test itself.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from detector.detectors.base import AUTH_OPERATION_PATTERNS, Deployments, DetectorContext, IdentityHasher, Window
from detector.detectors.error_rate.authops import AuthOperations, target_path
from detector.detectors.error_rate.config import ErrorRateConfig
from detector.detectors.error_rate.cusum import BinomialCUSUM
from detector.detectors.error_rate.detector import ErrorRateDetector
from detector.detectors.error_rate.stats import (
    alpha_for_budget,
    binom_tail,
    cusum_step,
    cusum_threshold,
    error_signature,
    fmt_ratio,
    wilson_bounds,
)
from detector.normalise.records import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_INTERNAL,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
    LogRecord,
    Resource,
    Scope,
    SpanRecord,
)

SCOPE = Scope("test")
_RES: dict[str, Resource] = {}
START = 170_000_000  # window index of the first window (10 s windows, ~2023)


def res(service: str) -> Resource:
    r = _RES.get(service)
    if r is None:
        r = _RES[service] = Resource(service, "1.0", {"service.name": service}, "")
    return r


def span(service: str, error: bool, kind: int = SPAN_KIND_SERVER, peer: str = "", op: str = "GET /pay", trace: int = 1) -> SpanRecord:
    return SpanRecord(
        res(service), SCOPE, trace.to_bytes(16, "big"), b"\x00" * 7 + b"\x01", b"", op, kind, 0.0, 0.0,
        STATUS_ERROR if error else STATUS_UNSET, "", 500 if error else 200, None, op, error, peer, {},
    )


def log(service: str, severity: int, body: str, trace: int = 0) -> LogRecord:
    return LogRecord(res(service), SCOPE, 0.0, severity, "", body, {}, trace.to_bytes(16, "big") if trace else b"")


def make(config: ErrorRateConfig | None = None, window: float = 10.0) -> ErrorRateDetector:
    return ErrorRateDetector(config or ErrorRateConfig(), DetectorContext(window, IdentityHasher(b"salt"), Deployments()))


class Driver:
    """Feeds windows in order and keeps the anomalous candidates per window offset."""

    def __init__(self, det: ErrorRateDetector, window: float = 10.0) -> None:
        self.det = det
        self.window = window
        self.index = START
        self.offset = 0

    def step(self, spans=(), logs=()):
        w = Window.of(self.index, self.window)
        if spans:
            self.det.observe_spans(w, list(spans))
        if logs:
            self.det.observe_logs(w, list(logs))
        out = self.det.close_window(w)
        self.index += 1
        self.offset += 1
        return out

    def service(self, schedule, service: str = "svc", kind: str = "service_error_rate") -> list[int]:
        """Run ``(requests, errors)`` per window for one service; return offsets (from the call) that fired."""
        fired = []
        for i, (n, k) in enumerate(schedule):
            cands = self.step([span(service, j < k, trace=j + 1) for j in range(n)])
            if any(c.anomalous and c.kind == kind and c.service == service for c in cands):
                fired.append(i)
        return fired


def binomial_schedule(rng, windows: int, n: int, p: float):
    return [(n, int(rng.binomial(n, p))) for _ in range(windows)]


# --- statistics -----------------------------------------------------------------------------------


def test_wilson_and_tail_values():
    lo, hi = wilson_bounds(np.array([3, 10, 7, 0]), np.array([10, 10, 7, 0]), 3.0)
    assert lo[:3].round(4).tolist() == [0.0654, 0.5263, 0.4375]
    assert (lo[3], hi[3]) == (0.0, 1.0)
    tail = binom_tail(np.array([0, 1, 10]), np.array([2, 2, 12]), np.array([0.01, 0.01, 0.01]))
    assert tail[0] == 1.0
    assert tail[1] == pytest.approx(1 - 0.99**2)
    assert tail[2] == pytest.approx(66 * 0.01**10 * 0.99**2 + 12 * 0.01**11 * 0.99 + 0.01**12)


def test_budget_sets_alpha_and_cusum_threshold():
    # 1 false alert/day, 1,000 series, 10 s windows, 3 tests per window
    assert alpha_for_budget(1.0, 1000, 10.0) == pytest.approx(1 / (1000 * 8640 * 3))
    assert float(cusum_threshold(1.0, 1000, 10.0, 10.0)) == pytest.approx(math.log(8640 * 1000))
    assert float(cusum_threshold(1.0, 10, 10.0, 20.0)) == 20.0  # h_min wins; series floored at 100


def test_signature_masks_identities_and_keeps_the_error():
    assert error_signature("user bob@x.com id 1234 from 10.0.0.1:443 req 3f2a9c0d1e2f3a4b 'abc' 2.5s") == (
        "user <email> id <n> from <ip> req <hex> <str> <n>s"
    )
    assert error_signature({"message": "timeout after 30s"}) == "timeout after <n>s"
    assert error_signature(42) == "<int>"
    assert [fmt_ratio(x) for x in (0.004, 0.23, 0.0005, 0.081)] == ["0.4%", "23%", "0.05%", "8.1%"]


def test_cusum_river_detector_matches_vectorised_update():
    cusum = BinomialCUSUM(p0=0.01, ratio=3.0, min_delta=0.01, h=10.0)
    assert cusum._get_params() == {"p0": 0.01, "ratio": 3.0, "min_delta": 0.01, "h": 10.0}
    assert pickle.loads(pickle.dumps(cusum)).p1 == cusum.p1 == pytest.approx(0.03)
    rng = np.random.default_rng(3)
    s = np.zeros(1)
    windows = [(50, int(rng.binomial(50, 0.01 if i < 30 else 0.08))) for i in range(40)]
    fired_class = fired_vec = None
    for i, (n, k) in enumerate(windows):
        cusum.update_counts(k, n)
        s = cusum_step(s, np.array([k]), np.array([n]), np.array([0.01]), np.array([0.03]))
        assert cusum.s == pytest.approx(float(s[0]))
        if cusum.drift_detected:
            fired_class = i
        if s[0] > 10.0:
            fired_vec = i
            break  # the river detector resets after a detection; the vectorised one keeps S
    assert fired_class == fired_vec == 33
    # per-event updates clip at 0 after every request, so their S is never below the per-window one
    ev = BinomialCUSUM(p0=0.01)
    win = BinomialCUSUM(p0=0.01)
    for n, k in windows[:25]:
        for j in range(n):
            ev.update(j < k)
        win.update_counts(k, n)
        assert ev.s >= win.s - 1e-9


def test_cusum_validates_arguments():
    with pytest.raises(ValueError):
        BinomialCUSUM(p0=0.0)
    with pytest.raises(ValueError):
        BinomialCUSUM(p0=0.01, ratio=1.0)


# --- low counts ---------------------------------------------------------------------------------


def _one_per_minute(drv: Driver, outcomes) -> list[int]:
    """One request per minute (every 6th 10 s window); returns request numbers (1-based) that fired."""
    fired = []
    for r, err in enumerate(outcomes):
        for w in range(6):
            cands = drv.step([span("slow", err, trace=r + 1)] if w == 0 else [])
            if any(c.anomalous and c.kind == "service_error_rate" for c in cands) and (r + 1) not in fired:
                fired.append(r + 1)
    return fired


def test_one_error_in_two_requests_never_alerts():
    drv = Driver(make())
    assert _one_per_minute(drv, [False] * 60) == []
    assert _one_per_minute(drv, [True, False] + [False] * 10) == []
    # a fresh series: its first two requests, one failing
    fresh = Driver(make())
    assert _one_per_minute(fresh, [True, False]) == []


def test_one_request_per_minute_alerts_when_10_of_next_12_fail():
    drv = Driver(make())
    assert _one_per_minute(drv, [False] * 60) == []
    fired = _one_per_minute(drv, [True, True, True, False, True, True, True, True, True, False, True, True])
    assert fired[0] == 6  # the 5th error in 6 requests (min_errors = 5); exact under the default budget
    cands = [c for c in drv.step() if c.kind == "service_error_rate"]
    assert cands and cands[0].severity == "critical"


def test_a_sparse_incident_does_not_teach_itself_before_it_is_confirmed():
    # 0.5 request/min at ~1 %, then the eval's error_low_traffic realisation: 3 failures, 7 successes, failures.
    # Each failing window enters the baseline 5 min later (the learning delay); the CUSUM segment they belong to
    # (3 of 3 at 1 %: p = 1e-6) is already significant then, so they are not learned and the baseline stays at 1 %
    # (learning them lifted it to 4 % and delayed the alert from the 12th request to the 15th)
    drv = Driver(make())

    def every_two_minutes(outcomes):
        fired, p0 = [], []
        for r, err in enumerate(outcomes):
            for w in range(12):
                cands = drv.step([span("slow", err, trace=r + 1)] if w == 0 else [])
                if any(c.anomalous and c.kind == "service_error_rate" for c in cands) and r + 1 not in fired:
                    fired.append(r + 1)
            p0.append(drv.det.baseline_of("service_error_rate", "slow")["p0"])
        return fired, p0

    assert every_two_minutes([i == 20 for i in range(90)])[0] == []
    fired, p0 = every_two_minutes([True] * 3 + [False] * 7 + [True] * 6)
    assert fired[0] == 12  # the 5th failure (min_errors), 5 of 12 against 1.1 %
    assert max(p0) == pytest.approx(0.0112, abs=2e-4)


# --- high and very low baselines ------------------------------------------------------------------


def test_service_at_8_percent_is_normal_and_a_rise_to_25_percent_alerts():
    rng = np.random.default_rng(7)
    drv = Driver(make())
    assert drv.service(binomial_schedule(rng, 600, 100, 0.08)) == []
    base = drv.det.baseline_of("service_error_rate", "svc")
    assert 0.07 < base["p0"] < 0.09
    fired = drv.service(binomial_schedule(rng, 10, 100, 0.25))
    assert fired == list(range(10))  # the first window of the step (27/100) and every one after
    cands = [c for c in drv.step([span("svc", j < 25) for j in range(100)]) if c.kind == "service_error_rate"]
    assert cands[0].severity == "critical"
    assert cands[0].baseline["ratio"] == pytest.approx(base["p0"], rel=0.05)


def test_service_at_005_percent_is_normal_and_a_rise_to_2_percent_alerts_at_once():
    rng = np.random.default_rng(11)
    drv = Driver(make())
    assert drv.service(binomial_schedule(rng, 300, 1000, 0.0005)) == []
    assert drv.det.baseline_of("service_error_rate", "svc")["p0"] == pytest.approx(0.001)  # rate_floor
    cands = drv.step([span("svc", j < 20) for j in range(1000)])
    c = next(c for c in cands if c.kind == "service_error_rate")
    assert c.anomalous and c.severity == "critical"
    assert c.observed["errors"] == 20 and c.observed["requests"] == 1000 and c.observed["test"] == "window"
    assert c.summary == "errors of svc rose 0.1% → 2% (n=1,000)"
    assert c.score >= c.threshold > 0


# --- shapes of change ---------------------------------------------------------------------------


def test_ramp_is_caught_and_does_not_drag_the_baseline_up():
    rng = np.random.default_rng(5)
    drv = Driver(make())
    assert drv.service(binomial_schedule(rng, 200, 50, 0.01)) == []
    ramp = [(50, int(rng.binomial(50, 0.01 + 0.09 * i / 100))) for i in range(100)]
    fired = drv.service(ramp)
    assert fired[0] == 26  # true ratio 3.3 % at that point (1 % -> 10 % over 100 windows)
    assert drv.det.baseline_of("service_error_rate", "svc")["p0"] < 0.0105


def test_drops_never_alert():
    rng = np.random.default_rng(9)
    drv = Driver(make())
    assert drv.service(binomial_schedule(rng, 200, 100, 0.10)) == []
    assert drv.service([(100, 0)] * 100) == []
    assert drv.service([(0, 0)] * 50) == []


def test_step_alerts_at_once_and_recovers_within_three_windows():
    rng = np.random.default_rng(13)
    drv = Driver(make())
    drv.service(binomial_schedule(rng, 200, 100, 0.01))
    fired = drv.service(binomial_schedule(rng, 30, 100, 0.20) + binomial_schedule(rng, 30, 100, 0.01))
    assert fired[0] == 0
    assert fired[-1] <= 32 and len(fired) <= 33


def test_daily_volume_cycle_does_not_alert():
    rng = np.random.default_rng(17)
    drv = Driver(make(window=120.0), window=120.0)
    schedule = []
    for day in range(2):
        for m in range(720):
            n = int(5 + 295 * (0.5 + 0.5 * math.sin(2 * math.pi * m / 720)))
            schedule.append((n, int(rng.binomial(n, 0.02))))
    assert drv.service(schedule) == []
    assert drv.det.baseline_of("service_error_rate", "svc")["p0"] == pytest.approx(0.02, rel=0.1)


# --- warm-up --------------------------------------------------------------------------------------


def test_no_alert_before_a_baseline_exists():
    drv = Driver(make())
    # 5 % errors from birth at 100/window: unusual for no one yet, and not "clearly high"
    rng = np.random.default_rng(19)
    assert drv.service(binomial_schedule(rng, 40, 100, 0.05)) == []


def test_a_young_series_at_3_percent_among_quieter_services_is_normal_and_a_step_still_alerts_at_once():
    # the cold start of the demo: a series learns ~1-10 windows before it is tested (learn_delay = warmup), and
    # that little is shrunk towards a fleet at ~0.2 %, so its baseline is ~0.2-1 %. Tested against that, a service
    # that normally fails 3 % went anomalous at once and, not learning while anomalous, stayed so for the hour.
    # While young (< adapt_after) and thinly learned it is tested against the upper Wilson bound of its own ratio.
    rng = np.random.default_rng(41)
    drv = Driver(make(ErrorRateConfig(operations=False)))
    fleet = [(f"svc{i}", 0.002) for i in range(6)] + [("steady", 0.01)]

    def window(young_p=None, steady_p=0.01):
        spans = []
        for name, p in fleet:
            p = steady_p if name == "steady" else p
            spans += [span(name, e) for e in rng.random(50) < p]
        if young_p is not None:
            spans += [span("young", e) for e in rng.random(int(rng.integers(20, 51))) < young_p]
        cands = drv.step(spans)
        return {c.service for c in cands if c.anomalous and c.kind == "service_error_rate"}

    for _ in range(400):  # the fleet is established (older than adapt_after)
        assert window() == set()
    fired = [i for i in range(360) if "young" in window(young_p=0.03)]
    assert fired == []  # its first hour: never anomalous
    base = drv.det.baseline_of("service_error_rate", "young")
    assert base["p0"] == pytest.approx(0.03, abs=0.006) and base["learned"] > 8_000  # it learned its own level
    # an established 1 % service stepping to 20 % alerts in the step's first window, the young one at 3 % stays quiet
    fired = [i for i in range(5) if window(young_p=0.03, steady_p=0.20) == {"steady"}]
    assert fired == [0, 1, 2, 3, 4]


def test_a_lasting_rise_whose_episode_keeps_ending_is_learned_after_adapt_after():
    # 0.2 % -> 3 % for good at 20 requests/window: windows without an error are common (54 %), so the alert
    # episode keeps ending after 3 calm windows and never lasts adapt_after, while the CUSUM stays at its cap.
    # A CUSUM held at or above h for adapt_after is a lasting change too: it is learned (slowly: only while the
    # CUSUM is held) and the alerts stop.
    rng = np.random.default_rng(43)
    drv = Driver(make(ErrorRateConfig(operations=False)))
    assert drv.service(binomial_schedule(rng, 400, 20, 0.002)) == []
    fired = drv.service(binomial_schedule(rng, 1080, 20, 0.03))
    assert fired[0] == 4
    # learning resumes an hour into the held CUSUM (window 360: 0.16 % -> 0.94 % by 480, 1.34 % by 900), and the
    # alerts end 2 h 42 min in; before the escape the baseline stayed 0.16 % and every hour had ~150 anomalous windows
    assert fired[-1] == 971
    assert drv.det.baseline_of("service_error_rate", "svc")["p0"] > 0.013


def test_new_series_failing_from_birth_is_a_warning_once_clearly_high():
    drv = Driver(make())
    fired = []
    for i in range(12):
        cands = drv.step([span("newborn", True)])  # one failing request per window
        hits = [c for c in cands if c.anomalous and c.kind == "service_error_rate"]
        if hits:
            fired.append(i)
            assert hits[0].severity == "warning"
            assert hits[0].observed["test"] == "new_series"
    assert fired[0] == 8  # 9 of 9: lower Wilson bound (z=3) 0.50 >= new_series_floor 0.5
    lower = Driver(make(ErrorRateConfig(new_series_floor=0.3)))
    first = next(i for i in range(12) if any(c.anomalous for c in lower.step([span("newborn", True)])))
    assert first == 4  # 5 of 5 (min_errors) with lower bound 0.36


# --- edges, operations, logs ----------------------------------------------------------------------


def test_edge_operation_and_log_series_carry_labels_subject_and_exemplars():
    drv = Driver(make())
    rng = np.random.default_rng(23)
    for _ in range(60):
        k = int(rng.binomial(200, 0.004))
        spans = [span("checkout", j < k, SPAN_KIND_CLIENT, peer="payment", trace=j + 1) for j in range(200)]
        spans += [span("checkout", False, op="POST /cart", trace=1) for _ in range(50)]
        spans += [span("checkout", False, SPAN_KIND_INTERNAL) for _ in range(20)]
        logs = [log("checkout", 9, "ok")] * 100
        drv.step(spans, logs)
    bad = [span("checkout", j < 46, SPAN_KIND_CLIENT, peer="payment", trace=0xABC0 + j) for j in range(200)]
    bad += [span("checkout", j < 20, op="POST /cart", trace=0xDEF0 + j) for j in range(50)]
    logs = [log("checkout", 9, "ok")] * 80 + [log("checkout", 17, f"payment declined for order {j}", trace=0x77) for j in range(20)]
    cands = {(c.kind, c.peer, tuple(sorted(c.subject.items()))): c for c in drv.step(bad, logs) if c.anomalous}
    edge = cands[("edge_error_rate", "payment", ())]
    assert edge.service == "checkout" and edge.severity == "critical"
    assert edge.summary.startswith("errors checkout→payment rose ") and edge.summary.endswith("→ 23% (n=200)")
    assert edge.exemplar_trace_ids == [(0xABC0 + j).to_bytes(16, "big").hex() for j in range(3)]
    op = cands[("operation_error_rate", "", (("operation", "POST /cart"),))]
    assert op.observed["errors"] == 20 and op.observed["requests"] == 50
    assert ("service_error_rate", "", ()) in cands  # the same 20 server errors
    logc = cands[("log_error_rate", "", ())]
    assert logc.observed == {**logc.observed, "errors": 20, "requests": 100}
    sig = cands[("log_error_rate", "", (("signature", "payment declined for order <n>"),))]
    assert sig.summary.startswith('error "payment declined for order <n>" in checkout logs rose ')
    assert sig.exemplar_trace_ids == [(0x77).to_bytes(16, "big").hex()]
    assert all(c.alert_id for c in cands.values())
    assert len({c.alert_id for c in cands.values()}) == len(cands)
    # scores: one row per (kind, service, peer), bounded
    rows = list(drv.det.scores())
    labels = {(k, s, p) for k, s, p, _ in rows}
    assert len(rows) == len(labels) == 4
    assert ("edge_error_rate", "checkout", "payment") in labels


def test_a_new_error_signature_alerts_while_the_total_error_share_is_flat():
    drv = Driver(make())
    old = "db timeout after 30s"
    for i in range(60):
        drv.step(logs=[log("api", 9, "ok")] * 90 + [log("api", 17, old)] * 10)
    logs = [log("api", 9, "ok")] * 90 + [log("api", 17, old)] * 4 + [log("api", 17, "No instances available for ts-basic-service")] * 6
    cands = [c for c in drv.step(logs=logs) if c.anomalous]
    assert [(c.kind, c.subject) for c in cands] == [("log_error_rate", {"signature": "No instances available for ts-basic-service"})]


def test_several_open_windows_are_counted_apart():
    det = make()
    w1, w2 = Window.of(START, 10.0), Window.of(START + 1, 10.0)
    det.observe_spans(w1, [span("a", False)] * 5)
    det.observe_spans(w2, [span("a", True)] * 3)
    det.observe_spans(w1, [span("a", True)])
    det.close_window(w1)
    assert det.baseline_of("service_error_rate", "a")["seen"] == 6
    det.close_window(w2)
    assert det.baseline_of("service_error_rate", "a")["seen"] == 9


# --- bounded state, reload, reconfigure -----------------------------------------------------------


def test_eviction_caps_series_and_counts_evictions():
    det = make(ErrorRateConfig(max_series=10, operations=False))
    drv = Driver(det)
    for i in range(30):
        drv.step([span(f"svc-{i}", False)])
    assert det.tracked_series() == 10
    assert det.evicted_total == 20
    assert det.baseline_of("service_error_rate", "svc-29") is not None
    assert det.baseline_of("service_error_rate", "svc-0") is None


def test_ttl_forgets_idle_series():
    det = make(ErrorRateConfig(series_ttl="10m", operations=False))
    drv = Driver(det)
    drv.step([span("gone", False)])
    for _ in range(130):
        drv.step([span("stays", False)])
    assert det.baseline_of("service_error_rate", "gone") is None
    assert det.evicted_total == 1


def test_operation_cap_per_service():
    det = make(ErrorRateConfig(max_operations_per_service=3))
    Driver(det).step([span("svc", False, op=f"GET /item/{i}") for i in range(10)])
    assert det.tracked_series() == 1 + 3
    assert det.dropped_total == 7


def test_checkpoint_reload_keeps_baseline_and_decisions():
    rng = np.random.default_rng(29)
    drv = Driver(make())
    drv.service(binomial_schedule(rng, 100, 100, 0.03))
    blob = pickle.dumps(drv.det.state_dict())
    restored = make()
    restored.load_state(pickle.loads(blob))
    assert restored.baseline_of("service_error_rate", "svc") == drv.det.baseline_of("service_error_rate", "svc")
    twin = Driver(restored)
    twin.index = drv.index
    tail = binomial_schedule(rng, 5, 100, 0.03) + binomial_schedule(rng, 5, 100, 0.2)
    assert twin.service(tail) == drv.service(tail) == [5, 6, 7, 8, 9]


def test_reconfigure_keeps_baselines_and_overrides_apply_per_service():
    rng = np.random.default_rng(31)
    det = make()
    drv = Driver(det)
    for _ in range(100):
        spans = []
        for svc in ("batch-nightly", "web"):
            spans += [span(svc, j < int(rng.binomial(100, 0.01))) for j in range(100)]
        drv.step(spans)
    before = det.baseline_of("service_error_rate", "web")
    quiet = ErrorRateConfig.model_validate({"overrides": [{"match": {"service": "batch-*"}, "min_errors": 1000}]})
    det.reconfigure(quiet)
    assert det.baseline_of("service_error_rate", "web") == before
    cands = drv.step([span(svc, j < 30) for svc in ("batch-nightly", "web") for j in range(100)])
    fired = {c.service for c in cands if c.anomalous and c.kind == "service_error_rate"}
    assert fired == {"web"}


def test_adwin_confirms_a_long_episode_on_a_busy_series():
    # ADWIN sees min(ratio / baseline, 10) / 10 once per window; it needs a long history and many windows
    rng = np.random.default_rng(37)
    drv = Driver(make(ErrorRateConfig(operations=False)))
    drv.service(binomial_schedule(rng, 300, 400, 0.01))
    flagged = None
    for i in range(150):
        k = int(rng.binomial(400, 0.03))
        c = next((c for c in drv.step([span("svc", j < k) for j in range(400)]) if c.kind == "service_error_rate"), None)
        if c is not None and c.observed["adwin_drift"]:
            flagged = i
            assert c.anomalous
            break
    assert flagged == 69  # the CUSUM fired in the first window; ADWIN agrees 69 windows later


def test_a_flood_of_new_services_does_not_evict_an_established_one():
    det = make(ErrorRateConfig(max_series=50, operations=False))
    drv = Driver(det)
    rng = np.random.default_rng(41)
    for _ in range(60):
        drv.step([span("checkout", j < int(rng.binomial(100, 0.01))) for j in range(100)])
    fired = []
    for i in range(10):  # 40 never-seen-again services per window, and checkout fails 30 % from window 5
        flood = [span(f"bot-{i}-{j}", False) for j in range(40)]
        cands = drv.step(flood + [span("checkout", i >= 5 and j < 30) for j in range(100)])
        fired += [i for c in cands if c.anomalous and c.service == "checkout" and c.kind == "service_error_rate"]
    assert det.tracked_series() <= 50 and det.evicted_total >= 350
    assert det.baseline_of("service_error_rate", "checkout")["seen"] == 7000
    assert fired[0] == 5


def test_a_common_signature_rising_is_left_to_the_total_log_series():
    drv = Driver(make())
    for _ in range(60):
        drv.step(logs=[log("api", 9, "ok")] * 90 + [log("api", 17, "db timeout after 30s")] * 10)
    cands = [c for c in drv.step(logs=[log("api", 9, "ok")] * 60 + [log("api", 17, "db timeout after 30s")] * 40) if c.anomalous]
    assert [(c.kind, c.subject) for c in cands] == [("log_error_rate", {})]


def test_a_flood_larger_than_the_cap_per_window_does_not_displace_an_established_series():
    # issue #8's services attack in small: more never-seen-again services arrive in one window than the whole
    # cap; without admission control they evicted checkout every window, so it never armed and never alerted
    det = make(ErrorRateConfig(max_series=50, operations=False))
    drv = Driver(det)
    rng = np.random.default_rng(41)
    for _ in range(60):
        drv.step([span("checkout", j < int(rng.binomial(100, 0.01))) for j in range(100)])
    learned = det.baseline_of("service_error_rate", "checkout")["learned"]
    fired = []
    for i in range(10):  # 80 one-shot services per window (cap 50), 20 % of them failing; checkout fails 30 % from window 5
        flood = [span(f"bot-{i}-{j}", j % 5 == 0) for j in range(80)]
        cands = drv.step(flood + [span("checkout", i >= 5 and j < 30) for j in range(100)])
        fired += [i for c in cands if c.anomalous and c.service == "checkout" and c.kind == "service_error_rate"]
        assert det.tracked_series() <= 50
    # every bot series was evicted or refused admission, except those still tracked (checkout is the +1)
    assert det.evicted_total == 10 * 80 - (det.tracked_series() - 1)
    base = det.baseline_of("service_error_rate", "checkout")
    assert base["seen"] == 7000 and base["learned"] >= learned
    assert fired and fired[0] == 5


# --- client auth rejections (401/403, UNAUTHENTICATED/PERMISSION_DENIED) -----------------------------


LOGIN_URL = {"http.request.method": "POST", "url.full": "http://auth:8080/login"}  # stable HTTP client attributes
VERIFY = "shop.auth.v1.TokenService/Verify"  # the simulator's gateway -> auth session check (gRPC)


def call(caller: str, peer: str, http: int | None = 200, grpc: int | None = None, trace: int = 1,
         op: str | None = None, name: str | None = None, attrs: dict | None = None) -> SpanRecord:
    """A client span ``caller`` -> ``peer`` with its HTTP status or gRPC code; error per the semantic conventions.

    Defaults to what an HTTP client span of ``caller -> auth`` looks like in the stable conventions (name ``POST``,
    ``url.full`` .../login) and, for other peers or gRPC, to a call to a non-authentication operation.
    """
    error = (http is not None and http >= 400) or (grpc is not None and grpc != 0)
    if op is None:
        if grpc is not None:
            op = VERIFY if peer == "auth" else "shop.payment.v1.PaymentService/Charge"
        else:
            op = "POST"
            if attrs is None:
                attrs = LOGIN_URL if peer == "auth" else {"url.full": f"http://{peer}:8080/charge"}
    return SpanRecord(
        res(caller), SCOPE, trace.to_bytes(16, "big"), b"\x00" * 7 + b"\x02", b"", name or op, SPAN_KIND_CLIENT, 0.0,
        0.0, STATUS_ERROR if error else STATUS_UNSET, "", http, grpc, op, error, peer, attrs or {},
    )


def _edge_run(det, schedule, caller="gateway", peer="auth"):
    """``schedule``: per window a list of client spans; returns window offsets where the edge alert fired."""
    drv = Driver(det)
    fired = []
    for i, spans in enumerate(schedule):
        cands = drv.step(spans)
        if any(c.anomalous and c.kind == "edge_error_rate" and c.service == caller and c.peer == peer for c in cands):
            fired.append(i)
    return fired


def _logins(ok: int, rejected: int, code: int = 401, grpc: bool = False):
    bad = call("gateway", "auth", grpc=16 if code == 401 else 7, http=None) if grpc else call("gateway", "auth", http=code)
    return [call("gateway", "auth", http=None, grpc=0) if grpc else call("gateway", "auth")] * ok + [bad] * rejected


def test_a_wave_of_login_failures_on_a_client_edge_is_not_an_edge_error():
    # gateway -> auth: 100 calls per window, 1 % refused logins; then 30 % refused for 10 windows (a login attack or
    # many mistyped passwords): the callee's auth check worked, the auth detector's business, not an edge error
    base = [_logins(99, 1)] * 60
    wave = [_logins(70, 30)] * 5 + [_logins(70, 30, code=403)] * 3 + [_logins(70, 30, grpc=True)] * 2
    det = make()
    assert _edge_run(det, base + wave) == []
    b = det.baseline_of("edge_error_rate", "gateway", "auth")
    assert b["seen"] == 7000 and b["errors_learned"] == 0.0  # rejected calls are requests, not errors
    # opted in for the gateway (semconv: client 4xx is an error): the same wave alerts in its first window
    cfg = ErrorRateConfig(overrides=[{"match": {"service": "gate*"}, "client_auth_failures_are_errors": True}])
    assert _edge_run(make(cfg), base + wave)[0] == 60


def _counted_per_window(det, caller, peer, ok_span, bad_span, windows=16):
    """1 call per window: 60 fine, then ``windows`` refused; the errors counted in each refused window."""
    drv = Driver(det)
    for _ in range(60):
        drv.step([ok_span])
    counted = []
    for _ in range(windows):
        drv.step([bad_span])
        row = det._table.index[(1, caller, peer)]
        counted.append(int(det._table.ring_k[row, (drv.index - 1) % det._table.ring]))
    return counted


def test_a_caller_whose_own_credentials_are_refused_alerts_on_the_edge():
    # checkout's service token expires: every call to payment gets UNAUTHENTICATED -> an outage of that edge
    base = [[call("checkout", "payment", http=None, grpc=0)] * 20] * 60
    expired = [[call("checkout", "payment", http=None, grpc=16)] * 20] * 5
    fired = _edge_run(make(), base + expired, caller="checkout", peer="payment")
    assert fired[0] == 60  # a busy edge: counted in the first window
    # payment's Charge is not an authentication operation: each refusal is an error at once, even at 1 call/window
    counted = _counted_per_window(make(), "checkout", "payment", call("checkout", "payment", http=None, grpc=0),
                                  call("checkout", "payment", http=None, grpc=16))
    assert counted == [1] * 16
    # the gateway's own credentials refused by auth's TokenService/Verify (an authentication operation): at 1 call
    # per window the refusals count as errors from the 15th in a row: the lower Wilson bound (z=2) of the refused
    # share, on counts decayed with a half-life of 5 requests, reaches 0.5 (at most ~7 requests of evidence)
    counted = _counted_per_window(make(), "gateway", "auth", call("gateway", "auth", http=None, grpc=0),
                                  call("gateway", "auth", http=None, grpc=16))
    assert counted == [0] * 14 + [1, 1]


def test_a_callee_rejecting_the_payload_is_still_an_edge_error():
    # the rename-then-callee-rejects case: 400 / INVALID_ARGUMENT are not auth rejections
    base = [[call("checkout", "payment", http=None, grpc=0)] * 100] * 60
    reject = [[call("checkout", "payment", http=None, grpc=0)] * 40 + [call("checkout", "payment", http=None, grpc=3)] * 60] * 3
    assert _edge_run(make(), base + reject, caller="checkout", peer="payment")[0] == 60
    http_base = [_logins(99, 1)] * 60
    http_reject = [[call("gateway", "auth")] * 80 + [call("gateway", "auth", http=422)] * 20] * 3
    assert _edge_run(make(), http_base + http_reject)[0] == 60


@pytest.mark.parametrize("bots,bot_volume,new_volume", [(80, 3, 2), (80, 1, 1), (400, 1, 1)])
def test_a_new_service_arriving_during_a_persistent_flood_is_admitted(bots, bot_volume, new_volume):
    # admission by this window's volume alone starved a genuinely new service for as long as the flood lasted when
    # the one-shot names were at least as busy as it (ties: it arrived after them): never tracked, its incident never
    # alerted. A series refused in earlier windows that keeps coming back is admitted before one-shot names.
    det = make(ErrorRateConfig(max_series=50, operations=False))
    drv = Driver(det)
    for _ in range(60):
        drv.step([span("checkout", j == 0) for j in range(100)])
    tracked_at = fired_at = None
    for i in range(60):  # 80 or 400 one-shot services per window (cap 50) for 10 minutes; newsvc fails 50 %+ from window 40
        flood = [span(f"bot-{i}-{j}", False) for j in range(bots) for _ in range(bot_volume)]
        newsvc = [span("newsvc", i >= 40 and j <= new_volume // 2) for j in range(new_volume)]
        cands = drv.step(flood + newsvc)
        if tracked_at is None and det.baseline_of("service_error_rate", "newsvc"):
            tracked_at = i
        if fired_at is None and any(c.anomalous and c.service == "newsvc" for c in cands):
            fired_at = i
        assert det.tracked_series() <= 50
    assert tracked_at is not None and tracked_at <= 2
    # one request per window needs several windows of evidence (min_errors), as without any flood
    assert fired_at is not None and 40 <= fired_at <= (45 if new_volume > 1 else 55)
    assert det.baseline_of("service_error_rate", "checkout")["seen"] == 6000  # the established series kept its place
    assert len(det._refused) <= bots  # the doorkeeper remembers at most one admission's refused keys


# --- refusals: authentication operations vs every other call ------------------------------------------------


def test_auth_operation_patterns_are_the_auth_detectors_defaults():
    from detector.detectors.auth.config import DEFAULT_SPAN_PATTERNS

    assert list(AUTH_OPERATION_PATTERNS) == DEFAULT_SPAN_PATTERNS
    assert ErrorRateConfig().client_auth_operation_patterns == list(AUTH_OPERATION_PATTERNS)
    with pytest.raises(ValueError, match="invalid regex"):
        ErrorRateConfig(overrides=[{"match": {"service": "g*"}, "client_auth_operation_patterns": ["("]}])


def test_target_path_of_client_spans_in_both_semconv_generations():
    assert target_path({"url.full": "https://auth.internal:8443/oauth2/token?grant_type=password#x"}) == "/oauth2/token"
    assert target_path({"http.url": "http://auth:8080/login"}) == "/login"  # old generation
    assert target_path({"url.full": "//localhost"}) == "/"  # semconv example of a scheme-relative URL
    assert target_path({"url.full": "http://auth-service"}) == "/"  # the host never decides
    assert target_path({"url.template": "/users/{id}/sessions", "url.full": "http://a/users/7/sessions"}) == "/users/{id}/sessions"
    assert target_path({"http.target": "/signin?next=/cart"}) == "/signin"
    assert target_path({"url.path": "/api/v1/cart"}) == "/api/v1/cart"
    assert target_path({}) is None and target_path({"url.full": 3}) is None


@pytest.mark.parametrize(
    "op,name,attrs,expected",
    [
        ("POST", "POST", {"url.full": "http://auth:8080/login"}, True),  # stable HTTP client span (the simulator's)
        ("HTTP POST", "HTTP POST", {"http.url": "http://auth:8080/login"}, True),  # old generation
        ("POST /v1/sessions", "POST /v1/sessions", {}, True),  # span name with url.template
        ("shop.auth.v1.TokenService/Verify", "shop.auth.v1.TokenService/Verify", {}, True),  # gRPC
        ("POST", "POST", {"url.full": "https://idp/oauth2/authorize?client_id=1"}, True),
        ("POST", "POST", {"url.full": "http://auth-service:8080/charge"}, False),  # only the path, not the host
        ("shop.payment.v1.PaymentService/Charge", "shop.payment.v1.PaymentService/Charge", {}, False),
        ("GET", "GET", {"url.full": "http://cart:8080/cart?session=abc"}, False),  # not the query string
        ("GET", "GET", {}, False),
    ],
)
def test_which_calls_target_an_authentication_operation(op, name, attrs, expected):
    m = AuthOperations(AUTH_OPERATION_PATTERNS)
    s = call("gateway", "x", http=401, op=op, name=name, attrs=attrs)
    assert m.targets_auth(s) is expected
    assert m.targets_auth(s) is expected  # cached
    assert AuthOperations([]).targets_auth(s) is False


def test_forty_percent_403_on_a_non_auth_operation_alerts_at_once():
    # one replica in three holds a stale service token: checkout -> payment gets 40 % PERMISSION_DENIED / 403 at
    # 100 calls per window; a semconv client error on a business operation, counted like 5xx (before: never alerted)
    rng = np.random.default_rng(4)

    def base_window():
        return [call("checkout", "payment", http=None, grpc=14 if rng.random() < 0.005 else 0) for _ in range(100)]

    base = [base_window() for _ in range(60)]
    grpc = [[call("checkout", "payment", http=None, grpc=0)] * 60 + [call("checkout", "payment", http=None, grpc=7)] * 40] * 5
    assert _edge_run(make(), base + grpc, caller="checkout", peer="payment") == [60, 61, 62, 63, 64]
    http = [[call("checkout", "payment")] * 60 + [call("checkout", "payment", http=403)] * 40] * 5
    assert _edge_run(make(), base + http, caller="checkout", peer="payment") == [60, 61, 62, 63, 64]
    # a deploy stops forwarding credentials on some of the gateway's paths: 401 from cart (old-generation span)
    cart_ok = call("gateway", "cart", op="HTTP GET", attrs={"http.url": "http://cart:8080/cart"})
    cart_401 = call("gateway", "cart", http=401, op="HTTP GET", attrs={"http.url": "http://cart:8080/cart"})
    fired = _edge_run(make(), [[cart_ok] * 100] * 60 + [[cart_ok] * 70 + [cart_401] * 30] * 3, caller="gateway", peer="cart")
    assert fired == [60, 61, 62]
    # the same 40 % on an authentication operation is below the wholesale share: not this detector's alert
    verify = [[call("gateway", "auth", http=None, grpc=0)] * 60 + [call("gateway", "auth", http=None, grpc=16)] * 40] * 5
    assert _edge_run(make(), [[call("gateway", "auth", http=None, grpc=0)] * 100] * 60 + verify) == []


@pytest.mark.parametrize("attrs,name", [(LOGIN_URL, "POST"), ({"http.method": "POST", "http.url": "http://auth:8080/login"}, "HTTP POST")])
def test_typo_level_login_failures_do_not_alert(attrs, name):
    # the quiet week's false alert: gateway -> auth POST /login at 25 calls per window, 0.5 % mistyped passwords,
    # then a window with 20 % (5 of 25): ordinary users, the auth detector's business
    def login(code):
        return call("gateway", "auth", http=code, op=name, attrs=attrs)

    base = [[login(200)] * 25 if i % 8 else [login(200)] * 24 + [login(401)] for i in range(120)]
    burst = [[login(200)] * 20 + [login(401)] * 5] * 3 + [[login(200)] * 24 + [login(401)]] * 5
    det = make()
    assert _edge_run(det, base + burst) == []
    assert det.baseline_of("edge_error_rate", "gateway", "auth")["errors_learned"] == 0.0
    # the same calls without any sign of the login operation are ordinary client errors: the burst alerts
    def bare(code):
        return call("gateway", "auth", http=code, op=name, attrs={"http.method": "POST"})

    base = [[bare(200)] * 25 if i % 8 else [bare(200)] * 24 + [bare(401)] for i in range(120)]
    assert _edge_run(make(), base + [[bare(200)] * 20 + [bare(401)] * 5] * 3)[:1] == [120]


def test_all_logins_refused_is_the_callers_credentials_and_alerts():
    # every call of gateway -> auth refused (its client credentials to the auth service rotated): wholesale
    ok, bad = call("gateway", "auth"), call("gateway", "auth", http=401)
    fired = _edge_run(make(), [[ok] * 24 + [bad] if i % 8 == 0 else [ok] * 25 for i in range(120)] + [[bad] * 25] * 3)
    assert fired == [120, 121, 122]
    fired = _edge_run(make(), [[call("gateway", "auth", http=None, grpc=0)] * 25] * 60 + [[call("gateway", "auth", http=None, grpc=16)] * 25] * 3)
    assert fired == [60, 61, 62]


def test_patterns_per_caller_and_the_always_switch():
    # a caller that forwards end users' tokens to every backend: its refusals are user outcomes on all its edges
    cart_ok = call("gateway", "cart", op="GET", attrs={"url.full": "http://cart:8080/cart"})
    cart_401 = call("gateway", "cart", http=401, op="GET", attrs={"url.full": "http://cart:8080/cart"})
    sched = [[cart_ok] * 100] * 60 + [[cart_ok] * 70 + [cart_401] * 30] * 3
    every = ErrorRateConfig(overrides=[{"match": {"service": "gateway"}, "client_auth_operation_patterns": ["."]}])
    assert _edge_run(make(every), sched, caller="gateway", peer="cart") == []
    assert _edge_run(make(), sched, caller="gateway", peer="cart") == [60, 61, 62]
    # no authentication operations at all, or the always switch: a login wave is an edge error
    wave = [_logins(99, 1)] * 60 + [_logins(70, 30)] * 3
    none = ErrorRateConfig(client_auth_operation_patterns=[])
    assert _edge_run(make(none), wave) == [60, 61, 62]
    assert _edge_run(make(ErrorRateConfig(client_auth_failures_are_errors=True)), wave) == [60, 61, 62]
    # reload: the patterns change without losing the baseline
    det = make()
    drv = Driver(det)

    def fired(cands):
        return any(c.anomalous and c.kind == "edge_error_rate" and c.peer == "auth" for c in cands)

    assert not any(fired(drv.step(w)) for w in wave)
    learned = det.baseline_of("edge_error_rate", "gateway", "auth")["seen"]
    det.reconfigure(none)
    assert det.baseline_of("edge_error_rate", "gateway", "auth")["seen"] == learned == 6300
    assert [fired(drv.step(_logins(70, 30))) for _ in range(2)] == [True, True]
