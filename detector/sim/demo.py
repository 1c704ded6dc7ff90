"""``otel-anomaly demo``: the product working, end to end, in under two minutes.

1. Starts the real service in-process (:class:`detector.app.App`: OTLP/gRPC
   receiver, analysis worker, alert manager, HTTP ``/metrics`` and
   ``/api/v1/alerts``) on free local ports, state kept in memory.
2. Sends one simulated hour of the shop's normal traffic as fast as the
   receiver takes it (the detectors learn their baselines), then 20 simulated
   minutes live at 60× with three incidents, one per detector family:
   an edge error rise frontend→catalog, a type change of ``app.product.id`` in
   catalog's spans after a deploy, and a brute-force login attack (still going
   on when the demo ends, so ``/metrics`` shows a firing alert).
3. Prints every alert transition as it happens, a progress line every few
   seconds, and at the end the firing alerts as ``/api/v1/alerts`` returns
   them and the ``otel_anomaly_alert_active`` lines of ``/metrics``.

All traffic goes over real OTLP/gRPC (the simulator's protobuf requests,
gzip). Event times end near the current time, so what you see in ``/metrics``
is consistent with the wall clock.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from typing import Any

from detector.sim.incidents import rfc3339
from detector.sim.scenario import Scenario

WARMUP = 3600.0
SHOW = 20 * 60.0  # ends during the third incident, so /metrics still shows a firing alert

DEMO_INCIDENTS = [
    {"type": "error_rate", "at": "1h3m", "duration": "7m", "service": "catalog", "caller": "frontend", "rate": 0.3, "code": 503,
     "note": "catalog answers 503 to a third of frontend's calls"},
    {"type": "type_change", "at": "1h9m", "duration": "10m", "service": "catalog", "span_kind": "server",
     "span_name": "GET /products/{id}", "key": "app.product.id", "to": "string", "permanent": False,
     "note": "a catalog deploy sends app.product.id as a string"},
    {"type": "brute_force", "at": "1h16m", "duration": "5m", "rate": 1.0, "note": "one source guesses one account's password"},
]

_COLORS = {"critical": "\033[1;31m", "warning": "\033[33m", "info": "\033[36m", "resolved": "\033[32m", "dim": "\033[2m", "": "\033[0m"}


class _View:
    """The terminal view: one line per transition, a progress line every ``every`` seconds."""

    def __init__(self, out, color: bool, sim_start: float) -> None:
        self.out = out
        self.color = color
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.sim_start = sim_start
        self.fired = 0
        self.resolved = 0
        self.seen: set[str] = set()
        self.open_ids: set[str] = set()
        self.pending_resolved: list = []

    def c(self, key: str, text: str) -> str:
        return f"{_COLORS[key]}{text}{_COLORS['']}" if self.color else text

    def line(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def transition(self, a: dict[str, Any]) -> None:
        el = time.monotonic() - self.t0
        edge = f"{a['service']}→{a['peer']}" if a.get("peer") else a["service"]
        if a["state"] == "firing":
            again = a["id"] in self.seen
            self.seen.add(a["id"])
            self.open_ids.add(a["id"])
            self.fired += not again
            tag = self.c(a["severity"], f"FIRING   {a['severity']:8s}")
            more = "  again, same episode" if again else ""
            self.line(f"[{el:5.1f}s] {tag} {a['detector']}/{a['kind']} {edge}  (since {a['started_at'][11:19]} event time){more}")
            if a.get("summary") and not again:
                self.line(f"         {self.c('dim', a['summary'][:150])}")
        else:
            self.resolved += 1
            self.open_ids.discard(a["id"])
            with self.lock:
                self.pending_resolved.append((el, f"{a['detector']}/{a['kind']} {edge}", str(a.get("resolved_at"))[11:19]))

    def flush_resolved(self) -> None:
        """Print the resolutions collected since the last call, one line per event-time instant."""
        with self.lock:
            items, self.pending_resolved = self.pending_resolved, []
        by_time: dict[str, list] = {}
        for el, what, at in items:
            by_time.setdefault(at, []).append((el, what))
        for at, lst in by_time.items():
            tag = self.c("resolved", "RESOLVED         ")
            names = ", ".join(w for _, w in lst)
            if len(names) > 150:
                names = names[:147] + "..."
            self.line(f"[{lst[0][0]:5.1f}s] {tag} {len(lst)} alert(s) at {at}: {names}")


def _get(url: str, accept: str | None = None) -> str:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read().decode("utf-8")


def build_app(config_path: str | None = None):
    """The in-process service on free local ports; returns the started App."""
    from detector.app import App
    from detector.config.root import Config

    if config_path:
        from detector.config.loader import load_config

        cfg = load_config(config_path)
    else:
        cfg = Config()
    data = cfg.model_dump(mode="json")
    data["receiver"]["grpc"]["endpoint"] = "127.0.0.1:0"
    data["http"]["endpoint"] = "127.0.0.1:0"
    data["state"]["directory"] = None
    cfg = Config.model_validate(data)
    app = App(cfg, serve=True)
    app.start()
    return app


def main(argv: list[str] | None = None) -> int:
    """``otel-anomaly demo [--speed 60] [--no-color] [--config FILE]``; returns 0."""
    ap = argparse.ArgumentParser(prog="otel-anomaly demo", description="serve + simulated shop traffic with three incidents")
    ap.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second during the show (default 60)")
    ap.add_argument("--config", default=None, help="config file (ports and state are overridden)")
    ap.add_argument("--no-color", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    out = sys.stdout
    color = not args.no_color and out.isatty()

    now = time.time()
    start = float(int((now - WARMUP - SHOW) // 10 * 10))
    # daytime volume whatever the hour: undo the daily curve at the current time of day
    from detector.sim.traffic import daily

    scale = min(4.0, 1.0 / daily(now))
    scen = Scenario(name="demo", start=start, duration=WARMUP + SHOW, seed=args.seed, incidents=DEMO_INCIDENTS, rate_scale=scale)
    sim = scen.simulator()
    view = _View(out, color, start)

    app = build_app(args.config)
    try:
        from detector.app import configure_logging
        from detector.config.root import LoggingConfig

        configure_logging(LoggingConfig(level="error", format="text"))
    except Exception:
        pass
    grpc_ep = f"127.0.0.1:{app.receiver.port}"
    base = f"http://127.0.0.1:{app.http.port}"
    app.alerts.listeners.append(view.transition)
    view.line(view.c("", "otel-anomaly demo — a simulated 13-service shop sending OTLP to a live otel-anomaly"))
    view.line(f"  OTLP/gRPC receiver   {grpc_ep}")
    view.line(f"  Prometheus metrics   {base}/metrics")
    view.line(f"  alerts (JSON)        {base}/api/v1/alerts")
    view.line(f"  detectors running    {', '.join(app.detectors) or 'none'}")
    view.line("")
    view.line(f"1) warm-up: {WARMUP / 60:g} min of normal traffic as fast as it is accepted (baselines are learned) ...")
    show_start = start + WARMUP
    sched = []
    for spec, inc in zip(DEMO_INCIDENTS, sim.incidents):
        sched.append((inc.start, inc.end, spec["note"]))
    announced: set[int] = set()
    state = {"phase": "warm-up", "last": 0.0, "show_wall": None}

    def on_batch(batch, stats) -> None:
        view.flush_resolved()
        if batch.start >= show_start and state["phase"] == "warm-up":
            state["phase"] = "show"
            state["show_wall"] = time.monotonic()
            view.line(f"   done: {stats['spans']:,} spans and {stats['log_records']:,} log records in {time.monotonic() - view.t0:.0f} s")
            view.line(f"2) live at {args.speed:g}x: three incidents are injected (event time {rfc3339(show_start)[11:19]} → {rfc3339(start + WARMUP + SHOW)[11:19]} UTC)")
        for i, (s, e, note) in enumerate(sched):
            if i not in announced and batch.start >= s:
                announced.add(i)
                view.line(view.c("dim", f"[{time.monotonic() - view.t0:5.1f}s] >>> incident {i + 1} starts: {note} ({(e - s) / 60:g} min)"))
        if state["phase"] == "show" and time.monotonic() - state["last"] > 8:
            state["last"] = time.monotonic()
            firing = len(app.alerts.firing())
            view.line(view.c("dim", f"[{time.monotonic() - view.t0:5.1f}s] event time {rfc3339(batch.end)[11:19]}  "
                                    f"sent {stats['spans']:,} spans  firing alerts {firing}"))

    from detector.sim.live import send_live

    try:
        stats = send_live(sim, grpc_ep, speed=args.speed, on_batch=on_batch,
                          speed_fn=lambda t: 0.0 if t < show_start else args.speed)
        # let the last windows close (wall-clock watermark), then show the API's view
        time.sleep(2.0 + float(app.config.pipeline.allowed_lateness) / max(args.speed, 1.0))
        view.flush_resolved()
        view.line("")
        view.line(f"3) done in {time.monotonic() - view.t0:.0f} s: {stats['spans']:,} spans, {stats['log_records']:,} log records sent; "
                  f"{view.fired} alerts opened, {len(view.open_ids)} still firing")
        try:
            alerts = json.loads(_get(base + "/api/v1/alerts")).get("alerts", [])
            view.line(f"   GET {base}/api/v1/alerts -> {len(alerts)} alerts (firing + resolved in the last hour):")
            for a in alerts[:12]:
                edge = f"{a['service']}→{a['peer']}" if a.get("peer") else a["service"]
                view.line(f"     {a['state']:8s} {a['severity']:8s} {a['detector']}/{a['kind']} {edge}")
            metrics = _get(base + "/metrics")
            active = [ln for ln in metrics.splitlines() if ln.startswith("otel_anomaly_alert_active")]
            view.line(f"   GET {base}/metrics | grep otel_anomaly_alert_active -> {len(active)} series")
            for ln in active[:10]:
                view.line(f"     {ln}")
        except Exception as exc:  # the show must end cleanly
            view.line(f"   (could not query the HTTP endpoints: {exc})")
    except KeyboardInterrupt:
        view.line("interrupted")
    finally:
        app.stop(grace=2.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
