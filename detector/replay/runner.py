"""``otel-anomaly replay``: captured telemetry through the same pipeline, in event time.

The same :class:`~detector.app.App` as ``serve`` (same config, detectors,
alert manager) with ``serve=False``: no threads, no sockets, no wall-clock
watermark — windows close only as the event time in the data advances, and
every open window is closed at the end. Each alert transition is printed to
stdout as one JSON line (the contract's alert object); a one-line summary goes
to stderr.

Exit codes: 0; 2 when a config or input file is unreadable (the readable
requests before the problem are still analysed and their alerts printed).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Iterable, TextIO

from detector.config.loader import ConfigError, load_config
from detector.config.root import Config
from detector.pipeline.batch import Batch

log = logging.getLogger("otel_anomaly.replay")


def run_replay(config: Config, paths: Iterable[str], out: TextIO, err: TextIO, registry: Any = None) -> int:
    """Replay ``paths`` in order; transitions to ``out``, summary/problems to ``err``.

    Returns the exit code (0, or 2 when an input could not be read).
    """
    from detector.app import App
    from detector.normalise import UndecodableRequest, normalise_logs, normalise_metrics, normalise_traces
    from detector.replay.reader import ReplayInputError, iter_requests

    normalisers = {"traces": normalise_traces, "logs": normalise_logs, "metrics": normalise_metrics}
    signal_of = {"traces": "spans", "logs": "log_records", "metrics": "data_points"}
    app = App(config, serve=False, registry=registry)
    app.alerts.listeners.clear()
    transitions = {"firing": 0, "resolved": 0}

    def emit(alert: dict[str, Any]) -> None:
        transitions[alert["state"]] = transitions.get(alert["state"], 0) + 1
        out.write(json.dumps(alert, ensure_ascii=False, default=str) + "\n")
        out.flush()

    app.alerts.listeners.append(emit)
    paths = list(paths)
    rc = 0
    for p in paths:
        if not Path(p).exists():
            print(f"otel-anomaly replay: {p}: no such file or directory", file=err)
            return 2
    started = time.perf_counter()
    files = requests = rejected = 0
    counts = {"spans": 0, "log_records": 0, "data_points": 0}
    received = {s: app.metrics.received.labels(signal=s) for s in counts}
    for p in paths:
        files += 1
        try:
            for signal, msg in iter_requests(p):
                requests += 1
                try:
                    res = normalisers[signal](msg)
                except UndecodableRequest as exc:
                    print(f"otel-anomaly replay: {p}: request {requests}: {exc}", file=err)
                    rc = 2
                    continue
                for reason, n in res.reasons.items():
                    app.metrics.rejected.labels(signal=signal_of[signal], reason=reason).inc(n)
                for reason, n in res.cut.items():  # as the receiver counts them
                    app.metrics.truncated_values.labels(signal=signal_of[signal], reason=reason).inc(n)
                rejected += res.rejected
                batch = Batch(res.spans, res.logs, res.data_points, time.time())
                counts["spans"] += len(res.spans)
                counts["log_records"] += len(res.logs)
                counts["data_points"] += res.data_points
                for s, n in (("spans", len(res.spans)), ("log_records", len(res.logs)), ("data_points", res.data_points)):
                    if n:
                        received[s].inc(n)
                app.pipeline.process(batch)
        except ReplayInputError as exc:
            print(f"otel-anomaly replay: {exc}", file=err)
            rc = 2
    app.pipeline.flush()
    elapsed = time.perf_counter() - started
    items = counts["spans"] + counts["log_records"]
    print(
        f"replayed {files} file(s), {requests} request(s): {counts['spans']} spans, {counts['log_records']} log records, "
        f"{counts['data_points']} data points, {rejected} rejected; {app.pipeline.windows_closed} windows closed; "
        f"alerts opened {transitions.get('firing', 0)} (incl. reopened), resolved {transitions.get('resolved', 0)}, "
        f"still firing {len(app.alerts.firing())}; {elapsed:.2f} s ({items / elapsed if elapsed > 0 else 0:.0f} items/s)",
        file=err,
    )
    return rc


def replay_main(config_path: str | None, paths: list[str]) -> int:
    """``otel-anomaly replay [--config FILE] PATH...`` (see :func:`run_replay`)."""
    from detector.app import configure_logging

    try:
        config = load_config(config_path) if config_path else Config()
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return 2
    level = "warning" if config.logging.level in ("debug", "info") else config.logging.level
    configure_logging(config.logging.model_copy(update={"level": level}))
    return run_replay(config, paths, sys.stdout, sys.stderr)
