"""``otel-anomaly replay``: same pipeline in event time; same transitions as sending the data live."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import grpc

from detector.replay.reader import iter_requests
from tests.data.make_replay_small import OUT as SMALL
from tests.data.make_replay_small import lines
from tests.support.otlp import raw_export
from tests.support.serve import REPO

STABLE = ("id", "state", "detector", "kind", "severity", "service", "peer", "subject", "started_at", "resolved_at", "observed", "summary", "related", "exemplar_trace_ids")


# The spine is tested with the static-threshold placeholder (no warm-up), whatever the registry says.
PLACEHOLDER = {"OTEL_ANOMALY_DETECTOR_CLASSES": "error_rate=detector.detectors.placeholder:PlaceholderErrorRateDetector"}


def replay(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **PLACEHOLDER}
    return subprocess.run([sys.executable, "-m", "detector", "replay", *args], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)


def test_committed_file_matches_its_generator():
    assert SMALL.read_text() == "\n".join(lines()) + "\n"


def test_replay_prints_each_transition_as_json_and_a_summary():
    r = replay(str(SMALL))
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(a["state"], a["service"], a["started_at"], a["resolved_at"]) for a in got] == [
        ("firing", "checkout", "2024-01-01T00:00:30.000Z", None),
        ("resolved", "checkout", "2024-01-01T00:00:30.000Z", "2024-01-01T00:01:20.000Z"),
    ]
    assert got[0]["observed"] == {"requests": 30, "errors": 15, "error_ratio": 0.5}
    assert "600 spans, 36 log records" in r.stderr and "resolved 1" in r.stderr


def test_replay_of_gzip_copy_is_identical(tmp_path):
    gz = tmp_path / "small.otlp.jsonl.gz"
    gz.write_bytes(gzip.compress(SMALL.read_bytes()))
    assert replay(str(gz)).stdout == replay(str(SMALL)).stdout


def test_replay_exit_2_on_unreadable_input(tmp_path):
    r = replay(str(tmp_path / "missing.jsonl"))
    assert r.returncode == 2 and "missing.jsonl" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(SMALL.read_text().splitlines()[0] + "\n{not json\n")
    r = replay(str(bad))
    assert r.returncode == 2 and f"{bad}:2" in r.stderr


def test_replay_exit_2_on_invalid_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("pipeline:\n  window: ten\n")
    r = replay("--config", str(cfg), str(SMALL))
    assert r.returncode == 2 and r.stderr.startswith(f"{cfg}:2: pipeline.window")


def test_live_serve_gives_the_same_transitions_as_replay(serve):
    sp = serve({"state": {"directory": None}}, env=PLACEHOLDER)
    channel = grpc.insecure_channel(sp.grpc_target)
    try:
        for signal, msg in iter_requests(SMALL):
            raw_export(sp.grpc_target, signal, msg.SerializeToString(), channel=channel)
    finally:
        channel.close()
    sp.wait_until(lambda: sp.sample("otel_anomaly_processed_items_total", signal="spans") == 600, what="all spans processed")
    assert sp.stop() == 0
    live = [{k: a[k] for k in STABLE} for a in sp.transitions()]
    replayed = [{k: a[k] for k in STABLE} for a in map(json.loads, replay(str(SMALL)).stdout.splitlines())]
    assert len(replayed) == 2
    assert live == replayed


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_replay_of_length_delimited_protobuf_is_identical(tmp_path):
    traces = tmp_path / "traces.pb"
    logs = tmp_path / "logs.pb"
    with open(traces, "wb") as ft, open(logs, "wb") as fl:
        for signal, msg in iter_requests(SMALL):
            data = msg.SerializeToString()
            (ft if signal == "traces" else fl).write(_varint(len(data)) + data)
    r = replay(str(traces), str(logs))
    assert r.returncode == 0, r.stderr
    assert r.stdout == replay(str(SMALL)).stdout
    assert "600 spans, 36 log records" in r.stderr


def test_replay_counts_truncated_values_like_the_receiver(tmp_path):
    """An array attribute past the 1000-value cap is cut in replay too, and counted in the same metric."""
    import io

    from prometheus_client import CollectorRegistry

    from detector.config.root import Config
    from detector.replay.runner import run_replay
    from tests.unit._otlp_build import trace_request

    req = trace_request({"attrs": {"big": list(range(1500))}}, {"attrs": {"ok": "x"}}, resource={"service.name": "checkout"})
    data = req.SerializeToString()
    path = tmp_path / "traces.pb"
    path.write_bytes(_varint(len(data)) + data)
    registry = CollectorRegistry()
    out, err = io.StringIO(), io.StringIO()
    assert run_replay(Config(), [str(path)], out, err, registry=registry) == 0, err.getvalue()
    assert "2 spans" in err.getvalue()
    assert registry.get_sample_value("otel_anomaly_truncated_values_total", {"signal": "spans", "reason": "array"}) == 1  # one value cut
