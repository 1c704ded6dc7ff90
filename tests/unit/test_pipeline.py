"""Pipeline: queue bounds, event-time windows, watermark, lateness, dedup, deployments, worker."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry

from detector.alerts.config import AlertsConfig
from detector.alerts.manager import AlertManager
from detector.detectors.base import Candidate, Deployments
from detector.expose.metrics import SelfMetrics
from detector.pipeline.batch import Batch
from detector.pipeline.config import PipelineConfig
from detector.pipeline.queue import BatchQueue
from detector.pipeline.windows import EventClock
from detector.pipeline.worker import Pipeline
from tests.support.detectors import Recorder
from tests.support.records import log_record, span

T0 = 1_700_000_000.0  # a multiple of 10 s


class Wall:
    """Injectable wall clock."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(serve: bool = False, wall: Wall | None = None, **cfg):
    reg = CollectorRegistry()
    metrics = SelfMetrics(reg)
    deployments = Deployments()
    rec = Recorder()
    config = PipelineConfig(**cfg)
    alerts = AlertManager(AlertsConfig(), deployments, config.window)
    p = Pipeline(config, {"recorder": rec}, alerts, metrics, deployments, serve=serve, wall=wall or Wall(T0 + 3600))
    return p, rec, reg


def value(reg, name, **labels):
    return reg.get_sample_value(name, labels) or 0.0


# ---------------------------------------------------------------- queue


def test_queue_bounds_by_items_and_refuses_when_full():
    q = BatchQueue(10)
    assert q.submit(Batch([span()] * 6))
    assert not q.submit(Batch([span()] * 5))  # 6 + 5 > 10
    assert q.submit(Batch([span()] * 4))
    assert q.items == 10
    item = q.get(0)
    q.done(item)
    assert q.items == 4
    q.accepting = False
    assert not q.submit(Batch([span()]))


def test_queue_accepts_oversized_batch_when_empty():
    q = BatchQueue(3)
    assert q.submit(Batch([span()] * 50))
    assert not q.submit(Batch([span()]))


def test_queue_counts_metric_only_batches_without_cost():
    q = BatchQueue(1)
    assert q.submit(Batch([span()]))
    assert q.submit(Batch(data_points=100))


# ---------------------------------------------------------------- windows


def test_windows_group_by_event_time_and_close_in_order():
    p, rec, reg = make(allowed_lateness="5s")
    p.process(Batch([span(end=T0 + 1), span(end=T0 + 12), span(end=T0 + 3)]))
    base = int(T0 // 10)
    assert sorted(rec.observed) == [("spans", base, 2), ("spans", base + 1, 1)]
    assert rec.closed == []  # watermark = T0+12-5 = T0+7 < end of window `base`
    p.process(Batch([span(end=T0 + 15)]))  # watermark T0+10 -> closes base
    assert rec.closed == [base]
    p.process(Batch([span(end=T0 + 41)]))  # watermark T0+36 -> closes base+1, base+2 (empty)
    assert rec.closed == [base, base + 1, base + 2]
    p.flush()
    assert rec.closed == [base, base + 1, base + 2, base + 3, base + 4]
    assert value(reg, "otel_anomaly_windows_closed_total") == 5
    assert value(reg, "otel_anomaly_processed_items_total", signal="spans") == 5


def test_allowed_lateness_keeps_window_open_and_late_items_are_folded_and_counted():
    p, rec, reg = make(allowed_lateness="5s")
    base = int(T0 // 10)
    p.process(Batch([span(end=T0 + 14)]))  # watermark T0+9: window base still open
    p.process(Batch([span(end=T0 + 2)]))  # within lateness -> own window
    assert ("spans", base, 1) in rec.observed
    p.process(Batch([span(end=T0 + 26)]))  # watermark T0+21: closes base, base+1
    assert rec.closed == [base, base + 1]
    p.process(Batch([span(end=T0 + 3), span(end=T0 + 11)], [log_record(time=T0 + 1)]))  # both windows closed
    assert rec.observed[-2:] == [("spans", base + 2, 2), ("logs", base + 2, 1)]
    assert value(reg, "otel_anomaly_late_items_total", signal="spans") == 2
    assert value(reg, "otel_anomaly_late_items_total", signal="log_records") == 1
    assert value(reg, "otel_anomaly_processed_items_total", signal="spans") == 5


def test_late_and_on_time_spans_interleaved_in_one_batch():
    p, rec, reg = make(allowed_lateness="5s")
    base = int(T0 // 10)
    p.process(Batch([span(end=T0 + 26)]))  # watermark T0+21: windows up to base+1 count as closed
    assert p.clock.last_closed == base + 1
    batch = [span(end=T0 + 3), span(end=T0 + 25), span(end=T0 + 4), span(end=T0 + 33), span(end=T0 + 27), span(end=T0 + 12)]
    p.process(Batch(batch))
    # late ones (T0+3, T0+4, T0+12) fold into base+2, the oldest open window, with T0+25 and T0+27
    assert rec.observed[-2:] == [("spans", base + 2, 5), ("spans", base + 3, 1)]
    assert value(reg, "otel_anomaly_late_items_total", signal="spans") == 3


def test_invalid_and_future_timestamps_take_the_current_event_time():
    wall = Wall(T0 + 100)
    p, rec, reg = make(wall=wall, max_future_skew="5m")
    base = int((T0 + 50) // 10)
    p.process(Batch([span(end=T0 + 50)]))
    p.process(Batch([span(end=0.0), span(end=86400.0 * 365)], [log_record(time=-5.0)]))  # 0, 1971, negative
    p.process(Batch([span(end=T0 + 100 + 86400 * 365 * 70)]))  # year ~2093: beyond wall + 5m
    assert [o for o in rec.observed if o[1] != base] == []
    assert value(reg, "otel_anomaly_adjusted_timestamps_total", signal="spans", reason="invalid") == 2
    assert value(reg, "otel_anomaly_adjusted_timestamps_total", signal="log_records", reason="invalid") == 1
    assert value(reg, "otel_anomaly_adjusted_timestamps_total", signal="spans", reason="future") == 1
    assert p.clock.max_event == T0 + 50  # clamped items did not move the clock


def test_first_batch_with_only_bad_times_in_replay_uses_wall_time():
    p, rec, _ = make()
    p.process(Batch([span(end=0.0)]))
    assert rec.observed == [("spans", int((T0 + 3600) // 10), 1)]


def test_dedup_resent_batch_is_processed_but_not_analysed_twice():
    p, rec, reg = make()
    batch = [span(end=T0 + 1), span(end=T0 + 2)]
    p.process(Batch(list(batch)))
    p.process(Batch(list(batch)))
    assert rec.span_count() == 2
    assert value(reg, "otel_anomaly_processed_items_total", signal="spans") == 4
    assert value(reg, "otel_anomaly_duplicate_items_total", signal="spans") == 2


def test_dedup_forgets_after_two_ttls():
    wall = Wall(T0)
    p, rec, _ = make(serve=True, wall=wall, dedup_ttl="10s")
    s = span(end=T0 - 1)
    p.process(Batch([s]))
    wall.t += 11
    p.process(Batch([span(end=T0 + 10)]))  # rotates: s now in `previous`
    p.process(Batch([s]))
    assert rec.span_count() == 2
    wall.t += 11
    p.process(Batch([span(end=T0 + 21)]))  # rotates again: s forgotten
    p.process(Batch([s]))
    assert rec.span_count() == 4


def test_deployments_are_tracked_and_counted():
    p, _, reg = make()
    p.process(Batch([span("checkout", T0 + 1, version="1.0")]))
    p.process(Batch([span("checkout", T0 + 2, version="1.0")]))
    p.process(Batch([span("checkout", T0 + 3, version="1.1")]))
    assert value(reg, "otel_anomaly_deployments_total", service="checkout") == 1
    assert p.deployments.last("checkout") == (T0 + 3, "1.0", "1.1")


def test_catch_up_after_a_gap_is_capped():
    p, rec, _ = make(allowed_lateness="0s", max_catchup_windows=5, wall=Wall(T0 + 20_000))
    p.process(Batch([span(end=T0 + 1)]))
    p.process(Batch([span(end=T0 + 10_000)]))
    base = int(T0 // 10)
    last = int((T0 + 10_000) // 10) - 1
    assert rec.closed == [base] + list(range(last - 4, last + 1))


def test_wall_clock_closes_windows_of_a_quiet_stream():
    wall = Wall(T0 + 0.5)
    p, rec, _ = make(serve=True, wall=wall, allowed_lateness="5s")
    p.process(Batch([span(end=T0 + 0.4)]))
    p.tick()
    assert rec.closed == []
    wall.t = T0 + 16  # estimate T0+15.9, watermark T0+10.9
    p.tick()
    assert rec.closed == [int(T0 // 10) - 1, int(T0 // 10)]  # the window before was open for late data too


def test_event_clock_rejects_zero_window():
    with pytest.raises(ValueError):
        EventClock(0, 0, 0, 1, False)


def test_detector_exception_is_counted_and_the_pipeline_goes_on():
    p, rec, reg = make()
    rec.fail = True
    p.process(Batch([span(end=T0 + 1)]))
    rec.fail = False
    p.process(Batch([span(end=T0 + 2)]))
    assert value(reg, "otel_anomaly_detector_errors_total", detector="recorder") == 1
    assert value(reg, "otel_anomaly_processed_items_total", signal="spans") == 2


# ---------------------------------------------------------------- worker thread


def test_worker_invariant_accepted_equals_processed_and_snapshot_published():
    p, rec, reg = make(serve=True, wall=Wall(T0 + 30), queue_items=500)
    base = int(T0 // 10)
    rec.candidates[base] = [Candidate("error_rate", "service_error_rate", "checkout", score=0.6, threshold=0.2, summary="x")]
    p.start()
    accepted = 0
    lock = threading.Lock()

    def producer(k: int) -> None:
        nonlocal accepted
        for i in range(200):
            b = Batch([span(end=T0 + (i % 20)) for _ in range(3)], [log_record(time=T0 + 1)])
            if p.submit(b):
                with lock:
                    accepted += b.items
    threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert p.stop(timeout=30)
    processed = value(reg, "otel_anomaly_processed_items_total", signal="spans") + value(reg, "otel_anomaly_processed_items_total", signal="log_records")
    assert accepted > 0
    assert processed == accepted
    assert value(reg, "otel_anomaly_queue_items") == 0
    snap = p.snapshot
    assert [a["service"] for a in snap.alerts.alerts] == ["checkout"]
    assert snap.alerts.active == (("error_rate", "service_error_rate", "checkout", "", "warning"),)
    assert not p.submit(Batch([span()]))  # stopped: refuses


def test_run_on_worker_executes_on_the_worker_thread():
    p, _, _ = make(serve=True)
    p.start()
    try:
        name = p.run_on_worker(lambda: threading.current_thread().name)
        assert name == "analysis-worker"
    finally:
        p.stop()


def test_serve_estimate_never_runs_ahead_of_the_wall_clock():
    wall = Wall(T0 + 100)
    p, rec, reg = make(serve=True, wall=wall, allowed_lateness="5s")
    p.process(Batch([span("fast-clock", end=T0 + 100 + 120)]))  # 2 min ahead, within max_future_skew
    p.process(Batch([span("normal", end=T0 + 99)]))
    assert value(reg, "otel_anomaly_late_items_total", signal="spans") == 0
    assert ("spans", int((T0 + 99) // 10), 1) in rec.observed
