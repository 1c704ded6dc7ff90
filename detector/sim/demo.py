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
   One incident opens many alerts along the call path (an edge's 503s are
   errors of the caller, of its operations and logs, and of the gateway in
   front): alerts that start within :data:`GROUP_SPAN` of each other are shown
   as one group — the most severe one in full, the others on one line.

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

from detector.detectors.base import SEVERITY_RANK
from detector.sim.incidents import parse_time, rfc3339
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

GROUP_SPAN = 120.0
"""Event-time seconds: alerts starting within this of a group's first alert are shown in that group."""

_KIND_ORDER = {"edge_error_rate": 0, "service_error_rate": 1, "operation_error_rate": 2, "log_error_rate": 3}

_COLORS = {"critical": "\033[1;31m", "warning": "\033[33m", "info": "\033[36m", "resolved": "\033[32m", "dim": "\033[2m", "": "\033[0m"}


class _View:
    """The terminal view: alert transitions, grouped, flushed by :meth:`flush` (once per batch sent).

    Counts for the final line and for tests: ``fired`` (distinct alert ids
    opened), ``groups`` (groups of alerts starting within :data:`GROUP_SPAN`),
    ``firing_lines`` (FIRING transitions, re-fires of an episode included),
    ``per_id`` (FIRING transitions per alert id), ``open_ids`` (firing now).
    """

    def __init__(self, out, color: bool, sim_start: float) -> None:
        self.out = out
        self.color = color
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.sim_start = sim_start
        self.fired = 0
        self.resolved = 0
        self.groups = 0
        self.firing_lines = 0
        self.per_id: dict[str, int] = {}
        self.seen: set[str] = set()
        self.open_ids: set[str] = set()
        self.opened: list[dict[str, Any]] = []
        self.pending_fired: list = []
        self.pending_resolved: list = []
        self._group_start: float | None = None
        self._rest: list = []

    def c(self, key: str, text: str) -> str:
        return f"{_COLORS[key]}{text}{_COLORS['']}" if self.color else text

    def line(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def transition(self, a: dict[str, Any]) -> None:
        """Alert-manager listener (worker thread): collect; :meth:`flush` prints."""
        el = time.monotonic() - self.t0
        with self.lock:
            if a["state"] == "firing":
                self.firing_lines += 1
                self.per_id[a["id"]] = self.per_id.get(a["id"], 0) + 1
                self.open_ids.add(a["id"])
                again = a["id"] in self.seen
                self.seen.add(a["id"])
                if not again:
                    self.fired += 1
                    self.opened.append(a)
                self.pending_fired.append((el, a, again))
            else:
                self.resolved += 1
                self.open_ids.discard(a["id"])
                self.pending_resolved.append((el, _what(a), str(a.get("resolved_at"))[11:19]))

    def flush(self, event_time: float | None = None, final: bool = False) -> None:
        """Print what arrived since the last call: new alerts grouped, re-fires, resolutions per instant.

        The rest of a group is printed on one line once the group is :data:`GROUP_SPAN` old at
        ``event_time`` (seconds, the traffic's clock), when the next group starts, or when ``final``.
        """
        with self.lock:
            fired, self.pending_fired = self.pending_fired, []
            items, self.pending_resolved = self.pending_resolved, []
        new = sorted((x for x in fired if not x[2]), key=lambda x: (parse_time(x[1]["started_at"]), x[1]["id"]))
        while new:  # sorted by start: new[0] always joins the batch, so the loop ends
            st0 = parse_time(new[0][1]["started_at"])
            if self._group_start is None or st0 - self._group_start > GROUP_SPAN:
                self._print_rest()
                self._group_start = st0
                self.groups += 1
                batch = [x for x in new if parse_time(x[1]["started_at"]) - st0 <= GROUP_SPAN]
                el, a, _ = head = min(batch, key=_head_order)
                tag = self.c(a["severity"], f"FIRING   {a['severity']:8s}")
                self.line(f"[{el:5.1f}s] {tag} {_what(a)}  (since {a['started_at'][11:19]} event time)")
                if a.get("summary"):
                    self.line(f"         {self.c('dim', a['summary'][:150])}")
                self._rest.extend(x for x in batch if x is not head)
            else:
                batch = [x for x in new if parse_time(x[1]["started_at"]) - self._group_start <= GROUP_SPAN]
                self._rest.extend(batch)
            new = [x for x in new if not any(x is y for y in batch)]
        if final or (event_time is not None and self._group_start is not None and event_time - self._group_start > GROUP_SPAN):
            self._print_rest()
        again = [x for x in fired if x[2]]
        if again:
            names = _join([_what(x[1], short=True) for x in again])
            self.line(self.c("dim", f"[{again[0][0]:5.1f}s]   {len(again)} alert(s) firing again, same episode: {names}"))
        by_time: dict[str, list] = {}
        for el, what, at in items:
            by_time.setdefault(at, []).append((el, what))
        for at, lst in by_time.items():
            tag = self.c("resolved", "RESOLVED         ")
            self.line(f"[{lst[0][0]:5.1f}s] {tag} {len(lst)} alert(s) at {at}: {_join([w for _, w in lst])}")

    def _print_rest(self) -> None:
        rest, self._rest = self._rest, []
        if rest:
            names = _join([_what(x[1], short=True) for x in rest])
            self.line(self.c("dim", f"[{time.monotonic() - self.t0:5.1f}s]   + {len(rest)} more alert(s) of the same group: {names}"))

    def outcome(self) -> dict[str, Any]:
        """Counts for the final line and tests: opened, groups, firing_lines, max_firing_per_id, still_firing."""
        with self.lock:
            return {"opened": self.fired, "groups": self.groups, "firing_lines": self.firing_lines,
                    "max_firing_per_id": max(self.per_id.values(), default=0), "still_firing": len(self.open_ids)}


def _head_order(x) -> tuple:
    """Which alert of a group is shown in full: most severe, error_rate first, edge before service before the rest."""
    a = x[1]
    return (-SEVERITY_RANK.get(a["severity"], 0), a["detector"] != "error_rate", _KIND_ORDER.get(a["kind"], 9), a["started_at"], a["id"])


def _what(a: dict[str, Any], short: bool = False) -> str:
    edge = f"{a['service']}→{a['peer']}" if a.get("peer") else a["service"]
    return f"{a['kind']} {edge}" if short else f"{a['detector']}/{a['kind']} {edge}"


def _join(names: list[str], width: int = 150) -> str:
    text = ", ".join(names)
    return text if len(text) <= width else text[: width - 3] + "..."


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


def demo_scenario(now: float, seed: int = 7) -> tuple[Scenario, float]:
    """The demo's traffic for a run at wall time ``now`` (s): ``(scenario, show_start)``.

    Event times end at ``now`` (rounded down to 10 s); ``show_start`` is the
    event time where the live part with the incidents begins. The rate is
    scaled to daytime volume whatever the hour (the daily curve at ``now``
    undone, at most 4×), so the traffic differs a little from run to run.
    """
    from detector.sim.traffic import daily

    start = float(int((now - WARMUP - SHOW) // 10 * 10))
    scale = min(4.0, 1.0 / daily(now))
    scen = Scenario(name="demo", start=start, duration=WARMUP + SHOW, seed=seed, incidents=DEMO_INCIDENTS, rate_scale=scale)
    return scen, start + WARMUP


def replay_demo(now: float, seed: int = 7, out=None, config=None) -> tuple[_View, list[dict[str, Any]]]:
    """The demo's core loop without sockets or pacing: the traffic of a demo run at ``now``
    through a replay-mode App (event time only), the alert transitions into the demo's view.

    Live and replay give the same transitions for the same traffic (measured on
    a full demo run), so this is what tests and tuning use. ``out``: where the
    view prints (default: discarded). Returns ``(view, transitions)``; each
    transition is the alert JSON plus ``_phase`` (``warm-up`` or ``show``, by
    the event time of the window that produced it).
    """
    import io

    from detector.eval.run import feed_pipeline, load_eval_config

    scen, show_start = demo_scenario(now, seed)
    sim = scen.simulator()
    view = _View(out if out is not None else io.StringIO(), False, scen.start)
    cfg = config if config is not None else load_eval_config(None)
    transitions: list[dict[str, Any]] = []

    def keep(doc: dict[str, Any]) -> None:
        # the manager's clock is the end of the previous window: + one window = the window that closed
        closed = doc.get("_closed_at", 0.0)
        doc = dict(doc)
        doc["_phase"] = "show" if closed > show_start else "warm-up"
        transitions.append(doc)
        view.transition(doc)

    from detector.eval.run import new_app

    app = new_app(cfg)
    app.alerts.listeners.append(lambda d: keep(dict(d, _closed_at=(app.alerts.now or 0.0) + cfg.pipeline.window)))
    feed_pipeline(sim.batches(), cfg, observe=lambda b: view.flush(b.start), app=app)
    app.pipeline.flush()
    view.flush(final=True)
    return view, transitions


def _outcome_text(view: _View) -> str:
    o = view.outcome()
    return (f"{o['opened']} alerts opened in {o['groups']} group(s), {o['firing_lines']} FIRING lines, "
            f"{o['still_firing']} still firing")


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

    scen, show_start = demo_scenario(time.time(), args.seed)
    start = scen.start
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
    sched = []
    for spec, inc in zip(DEMO_INCIDENTS, sim.incidents):
        sched.append((inc.start, inc.end, spec["note"]))
    announced: set[int] = set()
    state = {"phase": "warm-up", "last": 0.0, "show_wall": None}

    def on_batch(batch, stats) -> None:
        view.flush(batch.end)
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
        view.flush(final=True)
        view.line("")
        view.line(f"3) done in {time.monotonic() - view.t0:.0f} s: {stats['spans']:,} spans, {stats['log_records']:,} log records sent; "
                  f"{_outcome_text(view)}")
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
