"""``otel-anomaly eval``: every scenario through the pipeline, matched to ground truth.

For each scenario of :mod:`detector.sim.scenarios` the simulator's batches are
encoded as OTLP protobuf requests, normalised and fed to the same
:class:`~detector.app.App` that ``replay`` uses (``serve=False``: event time
only), while :class:`~detector.eval.reference.ReferenceRules` count the same
spans for the three reference rules. Alert transitions become episodes and are
matched to the labels (:mod:`detector.eval.match`). The report goes to
``tests/bench/EVAL.md`` (``--out``).

Usage::

    otel-anomaly eval [--out FILE] [--quick] [--scenarios a,b] [--rate-scale X] [--warmup 3h]
                      [--config FILE] [--jobs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from typing import Any, Callable

from detector.config.types import format_duration, parse_duration
from detector.eval.match import episodes_from_transitions, match, summarize
from detector.eval.reference import ReferenceRules
from detector.sim import scenario as sc
from detector.sim.encode import to_logs_request, to_trace_request

FAMILIES = ("error_rate", "schema_drift", "auth")
RULES = {"static_5pct": "error_rate", "burn_rate": "error_rate", "fail2ban": "auth"}
RULE_TITLES = {
    "static_5pct": "static spanmetrics rule: error ratio > 5 % for 5 min",
    "burn_rate": "SRE multiwindow multi-burn-rate, 99.9 % (14.4× 1h&5m, 6× 6h&30m)",
    "fail2ban": "fail2ban-style: 5 failures in 10 min per source",
}


def load_eval_config(path: str | None):
    """The config used for evaluation: ``path`` or the defaults, with state kept in memory only."""
    from detector.config.root import Config

    if path:
        from detector.config.loader import load_config

        cfg = load_config(path)
    else:
        cfg = Config()
    try:
        cfg = cfg.model_copy(update={"state": cfg.state.model_copy(update={"directory": None})})
    except Exception:
        pass
    return cfg


def registered_families(config=None) -> dict[str, str]:
    """Detector families the app would run, ``family -> "module:Class"`` (placeholders excluded).

    A family counts as registered when its class imports and is not the spine's
    placeholder detector.
    """
    from detector.app import detector_classes, load_detector_class

    out = {}
    for fam, target in detector_classes().items():
        if "placeholder" in target:
            continue
        try:
            cls = load_detector_class(fam, target)
        except Exception:
            cls = None
        if cls is not None:
            out[fam] = target
    return out


def new_app(config):
    """A replay-mode App (event time only, no sockets) with a fixed identity-hash salt."""
    from prometheus_client import CollectorRegistry

    from detector.app import App

    app = App(config, serve=False, registry=CollectorRegistry(), salt=b"otel-anomaly-eval")
    app.alerts.listeners.clear()
    return app


def feed_pipeline(batches, config, observe: Callable | None = None, app=None) -> tuple[list[dict], dict]:
    """Run simulator ``batches`` through an in-process App (replay mode).

    This is the one place that talks to the core pipeline (the same calls as
    :func:`detector.replay.runner.run_replay`, without the file round trip).
    ``app``: continue an existing App (default: a new one). The pipeline is not
    flushed here.

    Returns ``(transitions, stats)``: every alert transition as alert JSON, and
    counts ``{"spans", "log_records", "seconds", "app"}``.
    """
    from detector.normalise import normalise_logs, normalise_traces
    from detector.pipeline.batch import Batch

    app = app if app is not None else new_app(config)
    transitions: list[dict] = []
    alerts = app.alerts

    def listen(doc: dict) -> None:
        # event time of the window being closed: the manager's clock is the previous window's end
        doc = dict(doc)
        doc["_closed_at"] = (alerts.now or 0.0) + config.pipeline.window
        transitions.append(doc)

    app.alerts.listeners.append(listen)
    n_spans = n_logs = 0
    t0 = time.perf_counter()
    for batch in batches:
        if observe is not None:
            observe(batch)
        tr = to_trace_request(batch)
        if tr is not None:
            res = normalise_traces(tr)
            n_spans += len(res.spans)
            app.pipeline.process(Batch(res.spans, res.logs, res.data_points, time.time()))
        lr = to_logs_request(batch)
        if lr is not None:
            res = normalise_logs(lr)
            n_logs += len(res.logs)
            app.pipeline.process(Batch(res.spans, res.logs, res.data_points, time.time()))
    app.alerts.listeners.remove(listen)
    return transitions, {"spans": n_spans, "log_records": n_logs, "seconds": time.perf_counter() - t0, "app": app}


def _result(name, family, description, sim, labels, transitions, rules, stats, t_from, t_to, config, seconds) -> dict:
    eps = episodes_from_transitions(transitions, config.pipeline.window, config.alerts.open_after)
    return {
        "name": name,
        "family": family,
        "description": description,
        "labels": labels,
        "episodes": eps,
        "rules": {k: [e for e in v if t_from <= e["fired"] < t_to + 1e-6] for k, v in rules.items()},
        "spans": stats["spans"],
        "log_records": stats["log_records"],
        "seconds": seconds,
        "start": t_from,
        "end": t_to,
        "services": sum(1 for s in sim.services.values() if s.active) or 1,
        "window": config.pipeline.window,
        "snap": None,
    }


def run_scenario(name: str, config_path: str | None = None, rate_scale: float | None = None,
                 warmup: float | None = None) -> dict[str, Any]:
    """Simulate one scenario on its own, run it through the detectors and the reference rules.

    Returns a JSON-able dict: name, family, labels, episodes, rules (episodes per
    reference rule), spans, log_records, seconds, services, start, end, window.
    """
    config = load_eval_config(config_path)
    scen = sc.load(name)
    sim = scen.simulator(rate_scale=rate_scale, warmup=warmup)
    refs = ReferenceRules(step=config.pipeline.window)
    t0 = time.perf_counter()
    transitions, stats = feed_pipeline(sim.batches(), config, refs.observe)
    stats["app"].pipeline.flush()
    return _result(scen.name, scen.family, scen.description, sim, sim.labels, transitions, refs.episodes(), stats,
                   sim.start, sim.end, config, time.perf_counter() - t0)


def run_group(names: list[str], config_path: str | None = None, rate_scale: float | None = None,
              warmup: float | None = None, include_warmup: bool = True, verbose: bool = False) -> list[dict[str, Any]]:
    """Scenarios sharing their normal traffic (:meth:`Scenario.traffic_key`): the warm-up runs once.

    The simulator and the App run to 10 min before the earliest incident; the
    App's learned state (:meth:`detector.app.App.state_dict`, the checkpoint seam)
    and a deep copy of the simulator then start each scenario, which adds its
    incidents and continues. Alerts and rule firings of the shared warm-up are
    reported once, as the pseudo-scenario ``warm-up`` (family ``warmup``).
    """
    import copy
    import pickle

    config = load_eval_config(config_path)
    scens = [sc.load(n) for n in names]
    keys = {s.traffic_key()[2:] + (s.start,) for s in scens}
    if len(keys) != 1 or any(s.first_onset() is None for s in scens):
        raise ValueError(f"scenarios {names} do not share their normal traffic")
    base = max(scens, key=lambda s: s.duration)
    onset = min(s.first_onset() for s in scens)
    w = config.pipeline.window
    snap = (onset - 600.0) // w * w
    t0 = time.perf_counter()
    sim = base.simulator(rate_scale=rate_scale, warmup=warmup, with_incidents=False)
    refs = ReferenceRules(step=w)
    trans_w, stats_w = feed_pipeline(sim.batches(until=snap), config, refs.observe)
    app_w = stats_w.pop("app")
    app_w.pipeline.flush()
    state = pickle.dumps(app_w.state_dict())
    out = []
    if include_warmup:
        out.append(_result("warm-up", "warmup", f"shared normal traffic before the incidents of {len(scens)} scenarios",
                           sim, [], trans_w, refs.episodes(), stats_w, sim.start, snap, config, time.perf_counter() - t0))
        if verbose:
            _progress(out[-1])
    for scen in scens:
        t1 = time.perf_counter()
        s2 = copy.deepcopy(sim)
        s2.end = scen.start + scen.duration
        s2.scenario = scen.name
        s2.add_incidents(scen.build_incidents())
        r2 = copy.deepcopy(refs)
        app = new_app(config)
        app.load_state(pickle.loads(state))
        trans, stats = feed_pipeline(s2.batches(), config, r2.observe, app=app)
        app.pipeline.flush()
        out.append(_result(scen.name, scen.family, scen.description, s2, s2.labels, trans, r2.episodes(), stats,
                           snap, s2.end, config, time.perf_counter() - t1))
        out[-1]["snap"] = snap
        if verbose:
            _progress(out[-1])
    return out


def attribute_warmup(results: list[dict]) -> None:
    """Move episodes that started before a group scenario's snapshot to the ``warm-up`` row.

    They come from the shared normal traffic (e.g. an alert of the warm-up that
    re-fires inside its cooldown after the snapshot) and would otherwise be
    counted once per scenario. Deduplicated by (alert id, start); in place.
    """
    warm = next((r for r in results if r["name"] == "warm-up"), None)
    seen = {(e["id"], e["start"]) for e in (warm["episodes"] if warm else [])}
    order = {"info": 0, "warning": 1, "critical": 2}
    for r in results:
        snap = r.get("snap")
        if snap is None:
            continue
        keep = []
        for e in r["episodes"]:
            if e["start"] >= snap:
                keep.append(e)
                continue
            if warm is None:
                continue
            key = (e["id"], e["start"])
            if key not in seen:
                seen.add(key)
                warm["episodes"].append(dict(e))
            else:
                for w in warm["episodes"]:
                    if (w["id"], w["start"]) == key and order.get(e["severity"], 0) > order.get(w["severity"], 0):
                        w["severity"] = e["severity"]
        r["episodes"] = keep


def plan(names: list[str], jobs: int, shared: bool = True) -> list[tuple[str, list[str], bool]]:
    """Tasks ``(kind, names, include_warmup)``: ``kind`` is ``group`` or ``single``.

    Scenarios sharing their traffic form groups, split into ``jobs`` chunks (each
    chunk repeats the warm-up; only the first reports it). Longest tasks first.
    """
    groups: dict[tuple, list[str]] = {}
    singles = []
    for n in names:
        s = sc.load(n)
        if not shared or s.first_onset() is None:
            singles.append(n)
        else:
            groups.setdefault(s.traffic_key()[2:] + (s.start,), []).append(n)
    tasks: list[tuple[str, list[str], bool]] = [("single", [n], False) for n in singles]
    for members in groups.values():
        if len(members) == 1:
            tasks.append(("single", members, False))
            continue
        k = max(1, min(jobs, len(members)))
        for i in range(k):
            chunk = members[i::k]
            tasks.append(("group", chunk, i == 0))
    return tasks


def _run_task(task, config_path, rate_scale, warmup) -> list[dict]:
    kind, names, with_warm = task
    if kind == "single":
        r = run_scenario(names[0], config_path, rate_scale, warmup)
        _progress(r)
        return [r]
    return run_group(names, config_path, rate_scale, warmup, include_warmup=with_warm, verbose=True)


# ---------------------------------------------------------------- scoring


def score(results: list[dict], families=FAMILIES) -> dict[str, Any]:
    """Aggregate per source (``detectors`` and each rule) and per label kind."""
    sources = ["detectors"] + list(RULES)
    agg: dict[str, dict] = {}
    for src in sources:
        fams = set(families) if src == "detectors" else {RULES[src]}
        per_fam = {f: {"n": 0, "tp": 0, "fp": 0, "info": 0, "delays": [], "exact": 0, "over": 0} for f in fams}
        per_kind: dict[tuple, dict] = {}
        quiet_fp = {f: 0 for f in fams}
        quiet_sd = 0.0
        total_sd = 0.0
        fp_list = []
        for r in results:
            eps = r["episodes"] if src == "detectors" else r["rules"][src]
            out = match(eps, r["labels"], fams)
            sd = r["services"] * (r["end"] - r["start"]) / 86400.0
            total_sd += sd
            if r["family"] == "quiet":
                quiet_sd += sd
            for lab, delay, exact in out.detected:
                f = per_fam[lab["detector"]]
                f["n"] += 1
                f["tp"] += 1
                f["delays"].append(delay)
                f["exact"] += exact
                k = per_kind.setdefault((lab["detector"], lab["kind"]), {"n": 0, "tp": 0, "delays": [], "exact": 0, "fp": 0})
                k["n"] += 1
                k["tp"] += 1
                k["delays"].append(delay)
                k["exact"] += exact
            for lab in out.missed:
                per_fam[lab["detector"]]["n"] += 1
                k = per_kind.setdefault((lab["detector"], lab["kind"]), {"n": 0, "tp": 0, "delays": [], "exact": 0, "fp": 0})
                k["n"] += 1
            for lab in out.over_severe:
                per_fam[lab["detector"]]["over"] += 1
            for e in out.false_pos:
                per_fam[e["detector"]]["fp"] += 1
                k = per_kind.setdefault((e["detector"], e["kind"]), {"n": 0, "tp": 0, "delays": [], "exact": 0, "fp": 0})
                k["fp"] += 1
                if r["family"] == "quiet":
                    quiet_fp[e["detector"]] += 1
                fp_list.append((r["name"], e))
            for e in out.info_unmatched:
                per_fam[e["detector"]]["info"] += 1
        for f, d in per_fam.items():
            d["quiet_fp"] = quiet_fp[f]
            d["quiet_service_days"] = quiet_sd
            d["service_days"] = total_sd
        agg[src] = {"families": per_fam, "kinds": per_kind, "fp_list": fp_list}
    return agg


def _prf(tp: int, n: int, fp: int) -> tuple[float | None, float | None, float | None]:
    rec = tp / n if n else None
    prec = tp / (tp + fp) if (tp + fp) else None
    f1 = 2 * prec * rec / (prec + rec) if prec is not None and rec is not None and (prec + rec) else (0.0 if n else None)
    return prec, rec, f1


def _f(x, fmt="{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def _delay(d: list[float], window: float) -> tuple[str, str]:
    med, p95 = summarize(d)
    if med is None:
        return "–", "–"
    return f"{med:.0f} s ({med / window:.1f} w)", f"{p95:.0f} s ({p95 / window:.1f} w)"


def render(results: list[dict], agg: dict, meta: dict) -> str:
    """The Markdown report."""
    w = results[0]["window"] if results else 10.0
    lines = [
        "# Evaluation on the simulator's incident catalogue",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} in {meta['seconds']:.0f} s "
        f"({meta['spans']:,} spans, {meta['log_records']:,} log records, {len(results)} scenarios; "
        f"rate scale {meta['rate_scale']}, warm-up before the first incident {meta['warmup']}).",
        f"Detector families running: {', '.join(meta['registered']) or 'none'}.",
        "",
        "Method: event-level matching, no point-adjust (`detector/eval/match.py`). An incident is detected when an alert "
        "of the same detector family on the same service (or either side of the labelled edge) starts within "
        "[onset − 60 s, end + 5 min]; several alerts on one incident count once; delay = end of the window in which the "
        "first matching alert opened − onset. An alert matching no label (required or expected side effect) is a false "
        "positive; `info` alerts are listed apart, not counted as false positives. Precision = detected / (detected + false "
        "positives). Windows are the pipeline's event-time windows "
        f"({w:g} s). Reference rules run on the same spans (`detector/eval/reference.py`). The incident scenarios share "
        "their normal traffic: it is simulated and learned once (row `warm-up`: alerts there are false alerts too), the "
        "learned state is restored (`App.state_dict`/`load_state`) and each scenario continues from 10 min before its "
        "incident (its *simulated* column). Rule firings that started during the warm-up are counted there only.",
        "",
        "## Per detector family",
        "",
        "| family | alert source | incidents | detected | recall | precision | F1 | false alerts (warn/crit) | FA per service-day, quiet week | FA per service-day, all simulated time | info alerts unmatched | benign (info) incidents alerted above info | median delay | p95 delay | exact kind |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fam in FAMILIES:
        for src in ["detectors"] + [r for r, f in RULES.items() if f == fam]:
            d = agg[src]["families"].get(fam)
            if d is None:
                continue
            name = "otel-anomaly" if src == "detectors" else RULE_TITLES[src]
            if src == "detectors" and fam not in meta["registered"]:
                name += " (not registered)"
            p, r, f1 = _prf(d["tp"], d["n"], d["fp"])
            med, p95 = _delay(d["delays"], w)
            qsd = d["quiet_service_days"]
            lines.append(
                f"| {fam} | {name} | {d['n']} | {d['tp']} | {_f(r)} | {_f(p)} | {_f(f1)} | {d['fp']} | "
                f"{_f(d['quiet_fp'] / qsd if qsd else None, '{:.3f}')} | {_f(d['fp'] / d['service_days'] if d['service_days'] else None, '{:.3f}')} | "
                f"{d['info']} | {d['over']} | {med} | {p95} | {d['exact']}/{d['tp']} |"
            )
    lines += ["", "## Per incident kind", "",
              "| detector | kind | incidents | otel-anomaly recall | median delay | p95 delay | exact kind | false alerts of this kind | static 5 % | burn rate | fail2ban |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    kinds = sorted({k for src in agg for k in agg[src]["kinds"]})
    for key in kinds:
        d = agg["detectors"]["kinds"].get(key, {"n": 0, "tp": 0, "delays": [], "exact": 0, "fp": 0})
        med, p95 = _delay(d["delays"], w)
        refs = []
        for rule in RULES:
            rk = agg[rule]["kinds"].get(key)
            if rk is None or RULES[rule] != key[0]:
                refs.append("–")
            else:
                rmed, _ = _delay(rk["delays"], w)
                refs.append(f"{rk['tp']}/{rk['n']}, {rmed}" if rk["n"] else f"{rk['fp']} FA")
        rec = f"{d['tp']}/{d['n']}" if d["n"] else "–"
        lines.append(f"| {key[0]} | {key[1]} | {d['n']} | {rec} | {med} | {p95} | {d['exact']}/{d['tp']} | {d['fp']} | " + " | ".join(refs) + " |")
    lines += ["", "## Per scenario", "",
              "| scenario | family | simulated | spans | run time | incidents detected (delay) | false alerts (warn/crit) | static 5 % | burn rate | fail2ban |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        fams = set(FAMILIES)
        out = match(r["episodes"], r["labels"], fams)
        det = ", ".join(f"{lab['kind']} {lab['service']}{'→' + lab['peer'] if lab['peer'] else ''} ({dl:.0f} s)" for lab, dl, _ in out.detected)
        miss = ", ".join(f"**missed** {lab['kind']} {lab['service']}{'→' + lab['peer'] if lab['peer'] else ''}" for lab in out.missed)
        fp = ", ".join(sorted({f"{e['kind']} {e['service']}{'→' + e['peer'] if e['peer'] else ''}" for e in out.false_pos}))
        refs = []
        for rule, fam in RULES.items():
            ro = match(r["rules"][rule], r["labels"], {fam})
            refs.append(f"{len(ro.detected)}/{len(ro.detected) + len(ro.missed)} det, {len(ro.false_pos)} FA")
        lines.append(
            f"| {r['name']} | {r['family']} | {format_duration(round(r['end'] - r['start']))} | {r['spans']:,} | {r['seconds']:.0f} s | "
            f"{'; '.join(x for x in (det, miss) if x) or '–'} | {len(out.false_pos)}{': ' + fp if fp else ''} | " + " | ".join(refs) + " |"
        )
    fps = agg["detectors"]["fp_list"]
    if fps:
        lines += ["", f"## False alerts of otel-anomaly ({len(fps)}, first 40)", "", "| scenario | detector | kind | service | peer | severity | started | summary |", "|---|---|---|---|---|---|---|---|"]
        for name, e in fps[:40]:
            st = _dt.datetime.fromtimestamp(e["start"], _dt.timezone.utc).strftime("%m-%d %H:%M:%S")
            summ = (e.get("summary") or "").replace("|", "/")[:140]
            lines.append(f"| {name} | {e['detector']} | {e['kind']} | {e['service']} | {e['peer']} | {e['severity']} | {st} | {summ} |")
    lines += ["", "## Scenarios", ""]
    for r in results:
        lines.append(f"- `{r['name']}` ({r['family']}): {r['description']}")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``otel-anomaly eval``; returns 0 (2 on bad arguments)."""
    ap = argparse.ArgumentParser(prog="otel-anomaly eval", description="run the incident catalogue through the detectors")
    ap.add_argument("--out", default="tests/bench/EVAL.md", help="Markdown report path ('-' = stdout)")
    ap.add_argument("--scenarios", default="", help="comma-separated scenario names (default: all)")
    ap.add_argument("--quick", action="store_true", help="only the scenarios marked quick: true")
    ap.add_argument("--config", default=None, help="config file (default: built-in defaults)")
    ap.add_argument("--rate-scale", type=float, default=None, help="override every scenario's rate_scale")
    ap.add_argument("--warmup", default="3h", help="normal traffic before the first incident (default 3h; 'full' = as in the scenario)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="scenarios run in parallel processes (default: 2 or the CPU count)")
    ap.add_argument("--json", default=None, help="also dump raw results (labels, episodes) as JSON")
    ap.add_argument("--no-shared-warmup", action="store_true",
                    help="run every scenario from its own start instead of sharing the common warm-up")
    ap.add_argument("--rescore", default=None, metavar="JSON",
                    help="no simulation: re-match the episodes saved by --json against the current labels and rewrite the report")
    args = ap.parse_args(argv)
    if args.rescore:
        return rescore(args.rescore, args.out)
    names = [n for n in args.scenarios.split(",") if n] or sc.names()
    unknown = [n for n in names if n not in sc.names()]
    if unknown:
        print(f"otel-anomaly eval: unknown scenarios: {', '.join(unknown)}", file=sys.stderr)
        return 2
    if args.quick:
        names = [n for n in names if sc.load(n).quick]
    warmup = None if args.warmup == "full" else parse_duration(args.warmup)
    t0 = time.perf_counter()
    results: list[dict] = []
    tasks = plan(names, args.jobs, shared=not args.no_shared_warmup)
    if args.jobs > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=args.jobs) as ex:
            futs = [ex.submit(_run_task, t, args.config, args.rate_scale, warmup) for t in tasks]
            for f in as_completed(futs):
                results.extend(f.result())
    else:
        for t in tasks:
            results.extend(_run_task(t, args.config, args.rate_scale, warmup))
    order = {n: i for i, n in enumerate(["warm-up"] + names)}
    results.sort(key=lambda r: order.get(r["name"], 0))
    attribute_warmup(results)
    meta = {
        "command": "otel-anomaly eval " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.perf_counter() - t0,
        "spans": sum(r["spans"] for r in results),
        "log_records": sum(r["log_records"] for r in results),
        "rate_scale": args.rate_scale if args.rate_scale is not None else "as in each scenario",
        "warmup": args.warmup,
        "registered": list(registered_families()),
    }
    write_report(results, meta, args.out)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "results": results}, f, default=str)
    return 0


def write_report(results: list[dict], meta: dict, out_path: str) -> None:
    """Score, render and write the Markdown report (``-`` = stdout)."""
    agg = score(results)
    text = render(results, agg, meta)
    if out_path == "-":
        sys.stdout.write(text)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        with open(out_path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {out_path} ({len(results)} scenarios, {meta['seconds']:.0f} s)", file=sys.stderr)


def rescore(path: str, out_path: str) -> int:
    """Re-match saved episodes against freshly built labels (label definitions may have changed)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    results, meta = (data["results"], data["meta"]) if isinstance(data, dict) else (data, None)
    known = set(sc.names())
    for r in results:
        if r["name"] in known:
            r["labels"] = sc.load(r["name"]).simulator(duration=0).labels
    if meta is None:
        meta = {"command": "otel-anomaly eval (rescored)", "date": "?", "seconds": sum(r["seconds"] for r in results),
                "spans": sum(r["spans"] for r in results), "log_records": sum(r["log_records"] for r in results),
                "rate_scale": "as in each scenario", "warmup": "3h", "registered": list(registered_families())}
    meta["command"] += f" (labels rescored with --rescore on {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')})"
    write_report(results, meta, out_path)
    return 0


def _progress(r: dict) -> None:
    out = match(r["episodes"], r["labels"], set(FAMILIES))
    print(
        f"{r['name']:30s} {r['spans']:>9,} spans {r['seconds']:6.1f} s  detected {len(out.detected)}/"
        f"{len(out.detected) + len(out.missed)}  false alerts {len(out.false_pos)}",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
