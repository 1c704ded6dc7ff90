"""Memory under cardinality attacks: RSS curve, evictions, and a real incident still detected.

Three attacks, each in a fresh subprocess (so RSS is comparable), through the
whole in-process pipeline of an :class:`~detector.app.App` (bounded queue
interface → dedup → event-time windows → the three real detectors → alert
manager) with ``state.memory_budget_mib`` applied (:mod:`detector.state.budget`):

``services``    1,000,000 distinct ``service.name`` values (1 span each, 20 % errors)
``keys``        1,000,000 distinct attribute keys (100,000 spans of ``catalog``, 10 new keys each)
``principals``  1,000,000 distinct principals failing ``POST /login`` once each from 20,000 sources

Timeline (10 s windows, event time ending now): 70 warm-up windows of normal
traffic (5 services × 100 spans, 1 % errors; 60 logins from 200 users, 3 %
failures; stable attributes), then the attack spread over 100 windows on top
of the same normal traffic, then 10 quiet windows. Incidents injected in
attack windows 40–45: ``checkout`` error ratio 1 % → 30 % (error_rate), and
per attack the detector-specific one — ``checkout``'s
``http.response.status_code`` turns from int to string (schema_drift,
``keys``), 40 failed logins of ``alice`` from one address (auth,
``principals``).

Records are built as normalised :class:`SpanRecord` s (what the receiver
hands the pipeline); OTLP decode cost is covered by ``bench_ingest``.

Also measures the RSS per tracked item of every capped table (fresh process
each), which :mod:`detector.state.budget` uses to turn the budget into caps.

Run: ``.venv/bin/python -m tests.bench.bench_memory [--attack services|keys|principals] [--n N] [--budget MIB] [--skip-per-item] [--no-write]``
Writes its section of ``tests/bench/RESULTS.md`` (between the bench_memory markers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.bench._results import replace_section

RESULTS = Path(__file__).with_name("RESULTS.md")
START, END = "<!-- bench_memory:start -->", "<!-- bench_memory:end -->"
COMMAND = ".venv/bin/python -m tests.bench.bench_memory"
WIN = 10.0
WARM, ATTACK, TAIL = 70, 100, 10
INCIDENT = range(40, 46)
SERVICES = ("checkout", "cart", "search", "payment", "frontend")
ATTACKS = ("services", "keys", "principals")
REAL_DETECTORS = "error_rate=detector.detectors.error_rate.detector:ErrorRateDetector"
"""Until app.DETECTOR_CLASSES names the real error_rate detector, select it explicitly."""


def rss_mib() -> float:
    """Current RSS, MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mib() -> float:
    """Peak RSS (VmHWM), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Gen:
    """Builds the records of one window."""

    def __init__(self, attack: str, n: int) -> None:
        from detector.normalise.records import SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET, Resource, Scope, SpanRecord

        self.SpanRecord, self.Resource = SpanRecord, Resource
        self.kind, self.err, self.ok = SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET
        self.scope = Scope("bench")
        self.res = {s: Resource(s, "1.0", {"service.name": s, "service.version": "1.0"}, "") for s in SERVICES + ("login", "catalog")}
        self.attack, self.n = attack, n
        self.per_window = n // ATTACK if attack != "keys" else n // 10 // ATTACK
        self.seq = 0
        self.atk_i = 0

    def _span(self, res, name, t, error, http, attrs, principal=None, source=None):
        self.seq += 1
        sid = self.seq.to_bytes(8, "big")
        return self.SpanRecord(
            res, self.scope, sid + b"\x01" * 8, sid, b"", name, self.kind, t - 0.05, t,
            self.err if error else self.ok, "", http, None, name, error, "", attrs, principal, source, None,
        )  # fmt: skip

    def window(self, w: int, t0: float) -> list:
        """Records of window ``w`` (0-based over the whole timeline), times in ``[t0, t0 + WIN)``."""
        out = []
        a = w - WARM  # attack window index, <0 before
        incident = a in INCIDENT
        for s in SERVICES:
            res = self.res[s]
            for i in range(100):
                t = t0 + (i + 0.5) * WIN / 100
                if s == "checkout" and incident:
                    error = i % 10 < 3
                else:
                    error = (w * 100 + i) % 100 == 7
                code: object = 500 if error else 200
                if s == "checkout" and incident and self.attack == "keys":
                    code = "500" if error else "200"
                attrs = {"http.request.method": "GET", "http.route": f"/{s}", "http.response.status_code": code, "url.scheme": "https"}
                out.append(self._span(res, f"GET /{s}", t, error, 500 if error else 200, attrs))
        res = self.res["login"]
        for i in range(60):
            t = t0 + (i + 0.5) * WIN / 60
            user = f"user{(w * 60 + i) % 200}"
            fail = (w * 60 + i) % 33 == 0
            src = f"10.1.{(w + i) % 100}.{i % 50 + 1}"
            out.append(self._span(res, "POST /login", t, False, 401 if fail else 200,
                                  {"http.request.method": "POST", "http.route": "/login", "user.id": user, "client.address": src},
                                  user, src))  # fmt: skip
        if self.attack == "principals" and incident:
            for i in range(8):
                t = t0 + (i + 0.5) * WIN / 8
                out.append(self._span(res, "POST /login", t, False, 401,
                                      {"http.request.method": "POST", "http.route": "/login", "user.id": "alice", "client.address": "203.0.113.9"},
                                      "alice", "203.0.113.9"))  # fmt: skip
        if 0 <= a < ATTACK:
            out.extend(self._attack(t0))
        out.sort(key=lambda r: r.end)
        return out

    def _attack(self, t0: float) -> list:
        out = []
        k = self.per_window
        for j in range(k):
            i = self.atk_i
            self.atk_i += 1
            t = t0 + (j + 0.5) * WIN / k
            if self.attack == "services":
                name = f"atk-{i:07d}"
                res = self.Resource(name, "", {"service.name": name}, "")
                error = i % 5 == 0
                out.append(self._span(res, "GET /x", t, error, 500 if error else 200, {"http.request.method": "GET", "http.route": "/x", "http.response.status_code": 500 if error else 200}))
            elif self.attack == "keys":
                attrs = {f"attack.key.{i * 10 + q:07d}": q for q in range(10)}
                attrs["http.request.method"] = "GET"
                out.append(self._span(self.res["catalog"], "GET /catalog", t, False, 200, attrs))
            else:
                user = f"victim{i:07d}"
                src = f"198.{18 + (i % 2)}.{(i // 2) % 100}.{(i // 200) % 100 + 1}"
                out.append(self._span(self.res["login"], "POST /login", t, False, 401,
                                      {"http.request.method": "POST", "http.route": "/login", "user.id": user, "client.address": src},
                                      user, src))  # fmt: skip
        return out


def child(attack: str, n: int, budget: float) -> dict:
    """Run one attack in this process; returns the result dict."""
    import gc

    from prometheus_client import CollectorRegistry

    from detector.app import App
    from detector.config.root import Config
    from detector.pipeline.batch import Batch

    cfg = Config.model_validate({"state": {"directory": None, "memory_budget_mib": budget}})
    reg = CollectorRegistry()
    app = App(cfg, registry=reg, serve=False, salt=b"bench")
    caps = {k: v for k, v in app.memory_plan.caps.items()}
    transitions: list[dict] = []
    app.alerts.listeners.append(lambda al: transitions.append(dict(al)))
    gen = Gen(attack, n)
    total_w = WARM + ATTACK + TAIL
    t_start = (time.time() // WIN) * WIN - total_w * WIN - 3600
    curve = []
    base_rss = rss_mib()
    t0 = time.perf_counter()
    records = 0

    def sample(w: int) -> None:
        app.pipeline._publish()
        row = {"window": w, "records": records, "rss_mib": round(rss_mib(), 1), "seconds": round(time.perf_counter() - t0, 1)}
        for d in ("error_rate", "schema_drift", "auth"):
            row[f"tracked_{d}"] = int(reg.get_sample_value("otel_anomaly_tracked_series", {"detector": d}) or 0)
            row[f"evicted_{d}"] = int(reg.get_sample_value("otel_anomaly_evicted_series_total", {"detector": d}) or 0)
        curve.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    for w in range(total_w):
        recs = gen.window(w, t_start + w * WIN)
        for i in range(0, len(recs), 5000):
            app.pipeline.process(Batch(recs[i : i + 5000], [], 0, time.time()))
        records += len(recs)
        del recs
        if w % 10 == 9 or w == total_w - 1:
            sample(w)
    app.pipeline.flush()
    gc.collect()
    sample(total_w)
    firing = [t for t in transitions if t["state"] == "firing"]
    found = {
        "error_rate checkout": any(t["detector"] == "error_rate" and t["service"] == "checkout" for t in firing),
    }
    if attack == "keys":
        found["schema_drift checkout type change"] = any(
            t["detector"] == "schema_drift" and t["service"] == "checkout" and t["kind"] == "attribute_type_changed" for t in firing
        )
    if attack == "principals":
        alice = app.hasher("alice")
        found["auth brute_force alice"] = any(
            t["detector"] == "auth" and t["kind"] == "brute_force" and alice in json.dumps(t.get("subject", {})) for t in firing
        )
    ckpt = checkpoint_cost(app)
    kinds: dict[str, int] = {}
    for t in firing:
        key = f"{t['detector']}/{t['kind']}"
        kinds[key] = kinds.get(key, 0) + 1
    return {
        "attack": attack,
        "n": n,
        "budget_mib": budget,
        "caps": caps,
        "base_rss_mib": round(base_rss, 1),
        "final_rss_mib": round(rss_mib(), 1),
        "peak_rss_mib": round(peak_mib(), 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "records": records,
        "curve": curve,
        "found": found,
        "firing_by_kind": kinds,
        "checkpoint": ckpt,
    }


def checkpoint_cost(app) -> dict:
    """Size and cost of checkpointing the App's whole state now: bytes, seconds, RSS peak above current."""
    import gc

    from detector.state import checkpoint as ck

    gc.collect()
    before = rss_mib()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM so the peak below is the checkpoint's own
    except OSError:
        pass
    t = time.perf_counter()
    data = ck.encode(app.state_dict(), ck.CheckpointMeta.current())
    seconds = time.perf_counter() - t
    peak = peak_mib()
    size = len(data)
    del data
    return {"bytes": size, "seconds": round(seconds, 2), "peak_above_mib": round(peak - before, 1)}


PER_ITEM = ("queue", "dedup", "error_rate", "schema_drift", "auth_principals", "auth_sources")


def per_item(table: str, n: int) -> dict:
    """RSS growth per tracked item of one table: ``n`` distinct entities, caps out of the way.

    Returns ``{"table", "n", "items", "rss_delta_mib", "bytes_per_item"}`` where
    ``items`` is what the table reports holding (tracked series / entries).
    """
    import gc

    from detector.config.root import Config
    from detector.detectors.base import Deployments, DetectorContext, IdentityHasher, Window
    from detector.pipeline.batch import Batch

    cfg = Config.model_validate({
        "detectors": {
            "error_rate": {"max_series": 10 * n},
            "schema_drift": {"max_populations": 10 * n},
            "auth": {"max_principals": 10 * n, "max_sources": 10 * n},
        },
    })  # fmt: skip
    ctx = DetectorContext(WIN, IdentityHasher(b"bench"), Deployments())
    gen = Gen("services", n)
    t0 = (time.time() // WIN) * WIN - 7200
    keep: list = []
    gc.collect()
    before = rss_mib()

    def spans_for(i: int, t: float) -> list:
        if table in ("auth_principals", "auth_sources"):
            user = f"victim{i:07d}" if table == "auth_principals" else f"user{i % 50}"
            src = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" if table == "auth_sources" else f"10.9.9.{i % 50}"
            attrs = {"http.request.method": "POST", "http.route": "/login", "user.id": user, "client.address": src}
            return [gen._span(gen.res["login"], "POST /login", t, False, 401, attrs, user, src)]
        name = f"svc-{i:07d}"
        res = gen.Resource(name, "1", {"service.name": name, "service.version": "1"}, "")
        attrs = {"http.request.method": "GET", "http.route": "/x", "http.response.status_code": 200, "url.scheme": "https"}
        return [gen._span(res, "GET /x", t, i % 50 == 0, 200, attrs)]

    if table == "queue":
        from detector.pipeline.queue import BatchQueue

        q = BatchQueue(10 * n)
        for i in range(0, n, 1000):
            q.submit(Batch([s for j in range(i, min(n, i + 1000)) for s in spans_for(j, t0 + j * 1e-3)], [], 0, 0.0))
        items = q.items
        keep.append(q)
    elif table == "dedup":
        from detector.pipeline.dedup import RecentSpans

        r = RecentSpans(3600.0, 10 * n)
        for i in range(n):
            r.current.add(i.to_bytes(16, "big") + (i * 7).to_bytes(8, "big"))
        items = len(r)
        keep.append(r)
    else:
        family = table.split("_")[0] if table.startswith("auth") else table
        from detector.app import build_detectors, detector_classes  # noqa: F401

        det = build_detectors(cfg, ctx)[family if family != "auth" else "auth"]
        per_window = 5000
        w = 0
        for i in range(0, n, per_window):
            win = Window.of(int(t0 // WIN) + w, WIN)
            recs = [s for j in range(i, min(n, i + per_window)) for s in spans_for(j, win.start + 1 + (j - i) * (WIN - 2) / per_window)]
            det.observe_spans(win, recs)
            det.close_window(win)
            w += 1
        items = det.tracked_series()
        keep.append(det)
    gc.collect()
    delta = rss_mib() - before
    return {"table": table, "n": n, "items": items, "rss_delta_mib": round(delta, 1), "bytes_per_item": round(delta * 1024 * 1024 / max(items, 1))}


def run_attack(attack: str, n: int, budget: float) -> dict:
    """Run :func:`child` in a fresh interpreter; returns its result."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_memory", "--child", attack, "--n", str(n), "--budget", str(budget)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONHASHSEED="0", OTEL_ANOMALY_DETECTOR_CLASSES=REAL_DETECTORS),
    )
    if out.returncode != 0:
        raise RuntimeError(f"{attack} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_per_item(table: str, n: int) -> dict:
    """Run :func:`per_item` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_memory", "--per-item", table, "--n", str(n)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONHASHSEED="0", OTEL_ANOMALY_DETECTOR_CLASSES=REAL_DETECTORS),
    )
    if out.returncode != 0:
        raise RuntimeError(f"per-item {table} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


PER_ITEM_WHAT = {
    "queue": ("pipeline.queue_items", "queued span (4 attributes, shared resource)"),
    "dedup": ("pipeline.dedup_max_entries", "remembered span id (one generation)"),
    "error_rate": ("detectors.error_rate.max_series", "series row (service + operation rows per new service)"),
    "schema_drift": ("detectors.schema_drift.max_populations", "tracked entry (span population, resource population, schema_url entry per new service; 4 keys)"),
    "auth_principals": ("detectors.auth.max_principals", "principal (failed login, 50 shared sources)"),
    "auth_sources": ("detectors.auth.max_sources", "source address (failed login, 50 shared principals)"),
}


def render(results: list[dict], command: str, items: list[dict] | None = None) -> str:
    import platform

    lines = [
        START,
        "## Memory under cardinality attacks (bench_memory)",
        "",
        f"Command: `{command}` — Python {platform.python_version()}, {os.cpu_count()} vCPU shared; "
        "in-process App (dedup → windows → error_rate, schema_drift, auth → alerts), 10 s windows, "
        f"{WARM} warm-up + {ATTACK} attack + {TAIL} quiet windows; normal traffic 560 records/window throughout.",
        "",
        "| attack | distinct values | budget MiB | RSS start → end (peak) MiB | tracked at end (er / sd / auth) | evicted (er / sd / auth) | incident(s) detected | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        last = r["curve"][-1]
        found = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in r["found"].items())
        lines.append(
            f"| {r['attack']} | {r['n']:,} | {r['budget_mib']:g} | {r['base_rss_mib']:.0f} → {r['final_rss_mib']:.0f} ({r['peak_rss_mib']:.0f}) | "
            f"{last['tracked_error_rate']:,} / {last['tracked_schema_drift']:,} / {last['tracked_auth']:,} | "
            f"{last['evicted_error_rate']:,} / {last['evicted_schema_drift']:,} / {last['evicted_auth']:,} | {found} | {r['seconds']:.0f} |"
        )
    lines += ["", "Checkpoint of the whole learned state at the end (pickle + header, `detector/state/checkpoint.py`):", ""]
    for r in results:
        c = r.get("checkpoint")
        if c:
            lines.append(f"- {r['attack']} @ {r['budget_mib']:g} MiB: {c['bytes'] / 1048576:.1f} MiB written in {c['seconds']} s, RSS peak {c['peak_above_mib']} MiB above the steady state while pickling")
    lines += ["", "RSS curve (MiB) every 10 windows, attack from window 70 to 170:", ""]
    for r in results:
        pts = " ".join(f"{p['rss_mib']:.0f}" for p in r["curve"])
        lines.append(f"- {r['attack']} @ {r['budget_mib']:g} MiB: {pts}")
    lines += ["", "Planned caps (from `state.memory_budget_mib`, `detector/state/budget.py`):", ""]
    seen_budgets = {}
    for r in results:
        seen_budgets.setdefault(r["budget_mib"], r["caps"])
    for b, caps in seen_budgets.items():
        lines.append(f"- {b:g} MiB: " + ", ".join(f"`{k}` {v:,}" for k, v in caps.items()))
    lines += ["", "Alerts that fired (detector/kind: count) — the attacks themselves are visible too:", ""]
    for r in results:
        lines.append(f"- {r['attack']} @ {r['budget_mib']:g} MiB: " + ", ".join(f"{k} {v}" for k, v in sorted(r["firing_by_kind"].items())))
    if items:
        from detector.state.budget import TABLES

        budgeted = {t.path: t.bytes_per_item for t in TABLES}
        lines += ["", "RSS per tracked item (fresh process per table, caps out of the way, RSS delta / items held):", "",
                  "| table | item | items | RSS delta MiB | bytes per item | budgeted in `state/budget.py` |", "|---|---|---|---|---|---|"]
        for it in items:
            path, what = PER_ITEM_WHAT[it["table"]]
            lines.append(f"| `{path}` | {what} | {it['items']:,} | {it['rss_delta_mib']} | {it['bytes_per_item']:,} | {budgeted.get(path, 0):,} |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    """Replace this benchmark's section of RESULTS.md."""
    replace_section(text, START, END, RESULTS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.bench_memory", description=__doc__.splitlines()[0])
    ap.add_argument("--attack", action="append", choices=ATTACKS)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--budget", type=float, action="append", help="MiB; repeatable (default: 512 and 1024)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--skip-per-item", action="store_true", help="skip the RSS-per-item measurements")
    ap.add_argument("--child", choices=ATTACKS, help=argparse.SUPPRESS)
    ap.add_argument("--per-item", choices=PER_ITEM, help="measure one table's RSS per tracked item and print it")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.n, (args.budget or [512.0])[0])))
        return 0
    if args.per_item:
        print(json.dumps(per_item(args.per_item, min(args.n, 100_000))))
        return 0
    items = [] if args.skip_per_item else [run_per_item(t, 50_000) for t in PER_ITEM]
    for it in items:
        print(json.dumps(it), file=sys.stderr)
    budgets = args.budget or [512.0, 1024.0]
    results = []
    for attack, budget in [(a, b) for b in budgets for a in (args.attack or ATTACKS)]:
        r = run_attack(attack, args.n, budget)
        print(f"{attack} @ {budget:g}: RSS {r['base_rss_mib']} -> {r['final_rss_mib']} MiB (peak {r['peak_rss_mib']}), found {r['found']}, {r['seconds']} s", file=sys.stderr)
        results.append(r)
    command = COMMAND + ("" if args.n == 1_000_000 else f" --n {args.n}") + "".join(f" --budget {b:g}" for b in (args.budget or []))
    if args.attack:
        command += "".join(f" --attack {a}" for a in args.attack)
    text = render(results, command, items)
    print(text)
    if not args.no_write:
        write_section(text)
    bad = [r["attack"] for r in results if not all(r["found"].values()) or r["peak_rss_mib"] > r["budget_mib"]]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
