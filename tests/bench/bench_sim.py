"""Simulator speed: one simulated weekday of the full topology, generated and encoded.

Run: ``.venv/bin/python -m tests.bench.bench_sim`` (or ``make bench``). Target (issue 3):
one simulated day of the full topology at its normal rates generates in ≤ 60 s.

Measures, for 2026-11-03 (a Tuesday) 00:00–24:00 UTC at ``rate_scale = 1``:

* generation + protobuf encoding (``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest``
  per 2 s batch) — the path ``eval``, ``demo`` and ``live`` use;
* generation alone;
* generation + OTLP/JSON lines + gzip (the file writer), on the 12:00–14:00 slice.

Writes its section of ``tests/bench/RESULTS.md`` (between the bench_sim markers).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from tests.bench._results import replace_section
from detector.sim.encode import to_logs_request, to_trace_request
from detector.sim.generator import Simulator
from detector.sim.incidents import parse_time
from detector.sim.writers import write_files

RESULTS = Path(__file__).with_name("RESULTS.md")
START, END = "<!-- bench_sim:start -->", "<!-- bench_sim:end -->"
DAY0 = parse_time("2026-11-03T00:00:00Z")


def run_day(encode: bool) -> dict:
    sim = Simulator(DAY0, 86400, seed=1)
    t0 = time.perf_counter()
    n_s = n_l = 0
    peak = 0
    per_min: dict[int, int] = {}
    for b in sim.batches():
        n_s += len(b.spans)
        n_l += len(b.logs)
        m = int(b.start // 60)
        per_min[m] = per_min.get(m, 0) + len(b.spans)
        if encode:
            to_trace_request(b)
            to_logs_request(b)
    dt = time.perf_counter() - t0
    peak = max(per_min.values()) / 60.0
    return {"spans": n_s, "logs": n_l, "seconds": dt, "peak_spans_s": peak, "mean_spans_s": n_s / 86400.0}


def run_files() -> dict:
    sim = Simulator(DAY0 + 12 * 3600, 7200, seed=1)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        meta = write_files(sim, d, gz=True)
        dt = time.perf_counter() - t0
        size = os.path.getsize(os.path.join(d, meta["telemetry"]))
    return {"spans": meta["spans"], "logs": meta["log_records"], "seconds": dt, "bytes": size}


def report(enc: dict, gen: dict, files: dict) -> str:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return "\n".join([
        START,
        "## Simulator (`tests/bench/bench_sim.py`)",
        "",
        "Command: `.venv/bin/python -m tests.bench.bench_sim` — one simulated weekday (2026-11-03, UTC) of the 13-service "
        "shop at `rate_scale = 1`, seed 1, on the shared 2-vCPU VM (other jobs running: treat as ±50 %).",
        "",
        "| what | spans | log records | seconds | spans/s generated | target |",
        "|---|---|---|---|---|---|",
        f"| one day: generate + encode OTLP protobuf (eval/demo/live path) | {enc['spans']:,} | {enc['logs']:,} | {enc['seconds']:.1f} | "
        f"{enc['spans'] / enc['seconds']:,.0f} | ≤ 60 s: {'met' if enc['seconds'] <= 60 else 'NOT met'} |",
        f"| one day: generate only | {gen['spans']:,} | {gen['logs']:,} | {gen['seconds']:.1f} | {gen['spans'] / gen['seconds']:,.0f} | |",
        f"| 2 h (12:00–14:00): generate + OTLP/JSON lines + gzip | {files['spans']:,} | {files['logs']:,} | {files['seconds']:.1f} | "
        f"{files['spans'] / files['seconds']:,.0f} | ({files['bytes'] / files['spans']:.0f} B/span gzipped) |",
        "",
        f"Traffic shape of that day: mean {enc['mean_spans_s']:.1f} spans/s, busiest minute {enc['peak_spans_s']:.1f} spans/s "
        f"(≈ 4.3 gateway requests/s at the daily peak before bursts; a flash-sale burst multiplies by 1.8–3). "
        f"`rate_scale` multiplies every rate; the eval runs the incident scenarios at 1 and the quiet week at 0.1. "
        f"Peak RSS {rss:.0f} MiB.",
        END,
    ])


def write_section(text: str) -> None:
    """Replace this benchmark's section of RESULTS.md."""
    replace_section(text, START, END, RESULTS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = ap.parse_args(argv)
    enc = run_day(encode=True)
    print(enc, flush=True)
    gen = run_day(encode=False)
    print(gen, flush=True)
    files = run_files()
    print(files, flush=True)
    text = report(enc, gen, files)
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
