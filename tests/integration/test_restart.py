"""State survives restarts: ``kill -9`` under load, corrupt checkpoints, SIGTERM.

Real ``otel-anomaly serve`` subprocesses fed by the real OpenTelemetry SDK
exporter (gzip, plaintext gRPC). Windows are 1 s so baselines form within
seconds; ``detectors.error_rate.warmup`` is 20 s so the *restored* process can
be shown to detect an incident earlier than a cold one could: a series younger
than ``warmup`` (event time) never alerts, and the restarted process has seen
the service for far less than 20 s when the incident starts.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from detector.state import checkpoint as ck
from tests.support.otlp import export_spans, make_spans, span_exporter

SERVICES = ("checkout", "search", "cart")
WARMUP_S = 20
CONFIG = {
    "pipeline": {"window": "1s", "allowed_lateness": "0s"},
    "state": {"checkpoint_interval": "1s"},
    "alerts": {"open_after": 1, "resolve_after": 5},
    "detectors": {"error_rate": {"warmup": f"{WARMUP_S}s"}},
}
ENV = {"OTEL_ANOMALY_DETECTOR_CLASSES": "error_rate=detector.detectors.error_rate.detector:ErrorRateDetector"}


class Traffic:
    """Healthy traffic from the OTel SDK: every 0.25 s, 10 spans per service, 1 % errors.

    ``incident`` (a service name) switches that service to 40 % errors.
    Failed exports (the server being killed) are counted, not raised.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.incident: str | None = None
        self.sent: dict[str, int] = {s: 0 for s in SERVICES}
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._n = 0

    def start(self) -> "Traffic":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        exp = span_exporter(self.target, timeout=2)
        try:
            while not self._stop.is_set():
                spans = []
                for svc in SERVICES:
                    self._n += 1
                    if svc == self.incident:
                        spans += make_spans(svc, 10, error_every=2)  # 50 %
                    else:
                        # one error per 100 spans of the service
                        spans += make_spans(svc, 10, error_every=10 if self._n % 10 == 0 else 0)[:10]
                ok = export_spans(self.target, spans, batch=len(spans), exporter=exp)[0]
                if ok:
                    for s in spans:
                        self.sent[s.resource.attributes["service.name"]] += 1
                else:
                    self.failed += 1
                self._stop.wait(0.25)
        finally:
            exp.shutdown()


def _alerting(transitions: list[dict], severities=("warning", "critical")) -> list[dict]:
    return [t for t in transitions if t["state"] == "firing" and t["severity"] in severities]


@pytest.mark.slow
def test_kill_9_under_load_restores_last_checkpoint_without_false_alerts_and_keeps_baselines(serve, tmp_path):
    rng = random.Random()
    a = serve(CONFIG, env=ENV, name="a")
    traffic = Traffic(a.grpc_target).start()
    try:
        # learn for longer than the warm-up, then kill -9 at a random point
        learn = WARMUP_S + 4 + rng.uniform(0, 4)
        time.sleep(learn)
        a.wait_until(lambda: (a.sample("otel_anomaly_tracked_series", detector="error_rate") or 0) >= 3, what="series tracked")
        before_kill = a.sample("otel_anomaly_processed_items_total", signal="spans")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
    finally:
        traffic.stop()
    assert _alerting(a.transitions()) == [], "learning phase itself must be quiet"
    state_dir = tmp_path / "state"
    assert (state_dir / ck.FILENAME).is_file(), os.listdir(state_dir)
    header_age = time.time() - ck.decode((state_dir / ck.FILENAME).read_bytes())[1]["created_at"]
    assert header_age < 5, f"last checkpoint is {header_age:.1f} s old (interval 1 s)"

    # restart on the same state directory
    b = serve(CONFIG, env=ENV, name="b")
    restored = [ln for ln in b.logs() if str(ln.get("msg", "")).startswith("restored checkpoint")]
    assert restored, b.log_text()[-2000:]
    assert b.get("/readyz")[0] == 200
    assert b.sample("otel_anomaly_checkpoint_restore_failures_total") == 0
    # learned series are back before any new data arrives
    assert (b.sample("otel_anomaly_tracked_series", detector="error_rate") or 0) >= 3
    assert before_kill and before_kill > 1000

    traffic = Traffic(b.grpc_target).start()
    started = time.monotonic()
    try:
        time.sleep(8)  # quiet: same healthy traffic, 8 windows, across the gap
        quiet = b.transitions()
        assert _alerting(quiet) == [], [t["summary"] for t in quiet]
        checkout_seen_by_b = traffic.sent["checkout"]
        traffic.incident = "checkout"

        def fired():
            return [
                t for t in _alerting(b.transitions())
                if t["detector"] == "error_rate" and t["service"] == "checkout"
            ]  # fmt: skip

        alerts = b.wait_until(fired, timeout=WARMUP_S - 12, what="checkout error-rate alert after restart")
    finally:
        traffic.stop()
    age_in_b = time.monotonic() - started
    assert age_in_b < WARMUP_S - 4, f"incident detected {age_in_b:.0f} s after restart: a cold start would still be warming up"
    alert = alerts[0]
    # the baseline is the one learned before the kill, not rebuilt from what b saw
    assert alert["baseline"]["requests_learned"] > checkout_seen_by_b, (alert["baseline"], checkout_seen_by_b)
    assert alert["baseline"]["ratio"] < 0.05
    others = [t for t in _alerting(b.transitions()) if t["service"] != "checkout"]
    assert others == [], [t["summary"] for t in others]
    assert b.stop() == 0


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "garbage", "version"])
def test_damaged_checkpoint_starts_cold_with_one_log_line_and_the_metric(serve, tmp_path, damage):
    state_dir = tmp_path / "state"
    if damage == "version":
        old = ck.CheckpointMeta("0.0.0-old", ck.river_version(), ck.python_version(), "")
        ck.save(state_dir, {"format": 1, "detectors": {}}, old)
    else:
        ck.save(state_dir, {"format": 1, "detectors": {}, "pad": os.urandom(5000)})
        path = state_dir / ck.FILENAME
        data = bytearray(path.read_bytes())
        if damage == "truncate":
            data = data[: len(data) // 2]
        elif damage == "bitflip":
            data[len(data) - 100] ^= 0x10
        else:
            data = bytearray(b"\x00garbage" * 50)
        path.write_bytes(bytes(data))
    sp = serve(name=f"cold-{damage}")
    assert sp.get("/readyz")[0] == 200
    assert sp.sample("otel_anomaly_checkpoint_restore_failures_total") == 1
    lines = [ln for ln in sp.logs() if "not restored, starting cold" in str(ln.get("msg", ""))]
    assert len(lines) == 1, sp.log_text()[-2000:]
    expected = {"truncate": "truncated", "bitflip": "checksum mismatch", "garbage": "bad magic", "version": "incompatible checkpoint"}[damage]
    assert expected in lines[0]["msg"]
    # and it serves
    assert all(export_spans(sp.grpc_target, make_spans("after", 20)))
    sp.wait_until(lambda: sp.sample("otel_anomaly_processed_items_total", signal="spans") == 20, what="processing after cold start")
    assert sp.stop() == 0
    # the SIGTERM checkpoint replaced the damaged file with a good one
    assert ck.load(state_dir) is not None


def test_sigterm_writes_a_checkpoint_that_the_next_start_restores(serve, tmp_path):
    cfg = {"pipeline": {"window": "1s", "allowed_lateness": "0s"}, "state": {"checkpoint_interval": "1h"}}
    a = serve(cfg, env=ENV, name="a")
    assert all(export_spans(a.grpc_target, make_spans("checkout", 200, error_every=50)))
    a.wait_until(lambda: a.sample("otel_anomaly_processed_items_total", signal="spans") == 200, what="processed")
    assert not (tmp_path / "state" / ck.FILENAME).exists()  # interval is 1 h: only SIGTERM writes
    assert a.stop() == 0
    state = ck.load(tmp_path / "state")
    assert state is not None and "error_rate" in state["detectors"]
    salt = (tmp_path / "state" / "salt").read_bytes()
    b = serve(cfg, env=ENV, name="b")
    assert (b.sample("otel_anomaly_tracked_series", detector="error_rate") or 0) >= 1
    assert (tmp_path / "state" / "salt").read_bytes() == salt
    assert b.stop() == 0


def test_state_directory_null_keeps_nothing(serve, tmp_path):
    sp = serve({"state": {"directory": None}}, name="nostate")
    assert sp.get("/readyz")[0] == 200
    assert sp.stop() == 0
    assert not (tmp_path / "state").exists()
    assert not any(Path(tmp_path).glob("**/checkpoint.bin"))
