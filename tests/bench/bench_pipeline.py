"""Pipeline benchmark: the analysis worker's cost per span, and replay of a captured hour.

1. ``Pipeline.process`` on realistic decoded records (:mod:`tests.bench._otlp_payload`,
   1000 spans per batch, unique ids, event time advancing 1 s per batch so windows
   close): spans/s and p99 batch time, once with only the placeholder error_rate
   detector and once with every family of the registry (:data:`detector.app.DETECTOR_CLASSES`).
2. ``otel-anomaly replay`` (in process, :func:`detector.replay.runner.run_replay`) of one
   hour at 50 spans/s as Collector file-exporter OTLP/JSON lines (3600 lines x 50 spans):
   wall seconds (target: well under a minute).

Run: ``.venv/bin/python -m tests.bench.bench_pipeline [--batches 200] [--no-write]``
Writes its section of ``tests/bench/RESULTS.md`` (between the bench_pipeline markers).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from google.protobuf.json_format import MessageToDict
from prometheus_client import CollectorRegistry

from tests.bench._results import replace_section
from detector.app import App
from detector.config.root import Config
from detector.normalise import normalise_traces
from detector.pipeline.batch import Batch
from detector.replay.runner import run_replay
from tests.bench._otlp_payload import build_request

RESULTS = Path(__file__).with_name("RESULTS.md")
START, END = "<!-- bench_pipeline:start -->", "<!-- bench_pipeline:end -->"
COMMAND = ".venv/bin/python -m tests.bench.bench_pipeline"
PLACEHOLDER = "detector.detectors.placeholder:PlaceholderErrorRateDetector"
T0_NS = 1_700_000_000_000_000_000


def _requests(n: int, spans: int, step_ns: int, services: int = 10) -> list:
    """``n`` requests with distinct ids, the i-th shifted by ``i * step_ns``."""
    out = []
    for i in range(n):
        req = build_request(n_spans=spans, n_resources=services, seed=i + 1, t0_ns=T0_NS + i * step_ns)
        out.append(req)
    return out


def _worker_run(batches: int, placeholder_only: bool) -> dict:
    if placeholder_only:
        os.environ["OTEL_ANOMALY_DETECTOR_CLASSES"] = f"error_rate={PLACEHOLDER}"
    else:
        os.environ.pop("OTEL_ANOMALY_DETECTOR_CLASSES", None)
    config = Config.model_validate({"state": {"directory": None}})
    enabled = {}
    if placeholder_only:
        enabled = {"detectors": {"schema_drift": {"enabled": False}, "auth": {"enabled": False}}}
        config = Config.model_validate({"state": {"directory": None}, **enabled})
    app = App(config, serve=False, registry=CollectorRegistry())
    recs = [normalise_traces(r) for r in _requests(batches, 1000, 1_000_000_000)]
    times = []
    spans = 0
    started = time.perf_counter()
    for res in recs:
        t = time.perf_counter()
        app.pipeline.process(Batch(res.spans, [], 0, time.time()))
        times.append(time.perf_counter() - t)
        spans += len(res.spans)
    app.pipeline.flush()
    total = time.perf_counter() - started
    times.sort()
    return {
        "detectors": ", ".join(app.detectors),
        "spans": spans,
        "spans_per_s": spans / total,
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99) - 1] * 1000,
        "windows": app.pipeline.windows_closed,
    }


def _to_otlp_json(req) -> str:
    d = MessageToDict(req, use_integers_for_enums=True)
    for rs in d.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for sp in ss.get("spans", []):
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in sp:
                        sp[k] = base64.b64decode(sp[k]).hex()
    return json.dumps(d, separators=(",", ":"))


def _replay_hour(seconds: int = 3600, per_second: int = 50) -> dict:
    os.environ.pop("OTEL_ANOMALY_DETECTOR_CLASSES", None)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "hour.otlp.jsonl"
        with open(path, "w") as f:
            for i in range(seconds):
                req = build_request(n_spans=per_second, n_resources=5, seed=i + 1, t0_ns=T0_NS + i * 1_000_000_000)
                f.write(_to_otlp_json(req) + "\n")
        size = path.stat().st_size
        out, err = io.StringIO(), io.StringIO()
        started = time.perf_counter()
        rc = run_replay(Config.model_validate({"state": {"directory": None}}), [str(path)], out, err, registry=CollectorRegistry())
        wall = time.perf_counter() - started
    return {"rc": rc, "seconds": wall, "spans": seconds * per_second, "mib": size / 2**20, "summary": err.getvalue().strip(), "transitions": len(out.getvalue().splitlines())}


def render(rows: list[dict], replay: dict, rss_mib: float) -> str:
    lines = [
        START,
        "## Pipeline (analysis worker) and replay",
        "",
        f"Command: `{COMMAND}`  ",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Shared 2-vCPU VM: ±50 % run to run.",
        "",
        "`Pipeline.process` on decoded realistic spans (1000 per batch, 10 services, unique ids, event time +1 s per batch; windows close as it advances). Decode not included (see bench_ingest).",
        "",
        "| detectors | spans | spans/s | p50 batch ms | p99 batch ms | windows closed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['detectors']} | {r['spans']:,} | {r['spans_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['windows']} |")
    lines += [
        "",
        f"Replay of one captured hour at 50 spans/s ({replay['spans']:,} spans, {replay['mib']:.1f} MiB of OTLP/JSON lines, all registry detectors): "
        f"**{replay['seconds']:.1f} s** (target: well under a minute), exit {replay['rc']}, {replay['transitions']} alert transitions. Peak RSS of the benchmark process {rss_mib:.0f} MiB.",
        "",
        f"Replay summary: `{replay['summary']}`",
        END,
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace this benchmark's section of RESULTS.md."""
    replace_section(text, START, END, RESULTS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200, help="1000-span batches per worker run")
    ap.add_argument("--no-replay", action="store_true", help="skip the replay hour")
    ap.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = ap.parse_args(argv)
    saved = os.environ.get("OTEL_ANOMALY_DETECTOR_CLASSES")
    try:
        rows = [_worker_run(args.batches, True), _worker_run(args.batches, False)]
        replay = _replay_hour() if not args.no_replay else {"rc": "-", "seconds": float("nan"), "spans": 0, "mib": 0.0, "summary": "skipped", "transitions": 0}
    finally:
        if saved is None:
            os.environ.pop("OTEL_ANOMALY_DETECTOR_CLASSES", None)
        else:
            os.environ["OTEL_ANOMALY_DETECTOR_CLASSES"] = saved
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = render(rows, replay, rss)
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
