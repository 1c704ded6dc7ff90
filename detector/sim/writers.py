"""Write simulated telemetry to files the way an OpenTelemetry Collector would.

``write_files(sim, out_dir)`` writes:

* ``otlp.jsonl`` (or ``otlp.jsonl.gz``): one OTLP/JSON ``ExportTraceServiceRequest``
  or ``ExportLogsServiceRequest`` per line, in event-time order, as the
  Collector's ``file`` exporter writes them (traces and logs interleaved per batch);
* ``labels.jsonl``: one ground-truth label per line (:mod:`detector.sim.incidents`);
* ``meta.json``: scenario name, time range, counts, deploys.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import IO

from detector.sim.encode import to_logs_json, to_trace_json
from detector.sim.incidents import rfc3339


def _open(path: Path, gz: bool) -> IO[str]:
    if gz:
        return gzip.open(path, "wt", encoding="utf-8", compresslevel=3)
    return open(path, "w", encoding="utf-8")


def write_labels(labels: list[dict], path: str | os.PathLike) -> None:
    """One JSON object per line."""
    with open(path, "w", encoding="utf-8") as f:
        for lab in labels:
            f.write(json.dumps(lab, sort_keys=True) + "\n")


def write_files(sim, out_dir: str | os.PathLike, gz: bool = True) -> dict:
    """Run ``sim`` to the end, writing OTLP/JSON lines, labels and meta into ``out_dir``.

    Returns the meta dict (``spans``, ``log_records``, ``requests`` counts, file names).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = "otlp.jsonl.gz" if gz else "otlp.jsonl"
    n_spans = n_logs = n_req = 0
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    with _open(out / name, gz) as f:
        for batch in sim.batches():
            tj = to_trace_json(batch)
            if tj is not None:
                f.write(dumps(tj))
                f.write("\n")
                n_req += 1
                n_spans += len(batch.spans)
            lj = to_logs_json(batch)
            if lj is not None:
                f.write(dumps(lj))
                f.write("\n")
                n_req += 1
                n_logs += len(batch.logs)
    write_labels(sim.labels, out / "labels.jsonl")
    meta = {
        "scenario": sim.scenario,
        "seed": sim.seed,
        "start": rfc3339(sim.start),
        "end": rfc3339(sim.end),
        "spans": n_spans,
        "log_records": n_logs,
        "requests": n_req,
        "telemetry": name,
        "labels": "labels.jsonl",
        "deploys": [{"time": rfc3339(t), "service": s, "version": v} for t, s, v in sim.deploy_log],
    }
    with open(out / "meta.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    return meta
