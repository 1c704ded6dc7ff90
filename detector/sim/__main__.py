"""``python -m detector.sim``: generate scenario files, list scenarios, send live.

Examples::

    python -m detector.sim list
    python -m detector.sim generate --scenario error_edge_step --out /tmp/edge
    python -m detector.sim generate --scenario quiet_week --out /tmp/q --rate-scale 0.2 --no-gzip
    python -m detector.sim live --scenario auth_brute_force --endpoint localhost:4317 --speed 60
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from detector.config.types import parse_duration


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 2 bad arguments)."""
    ap = argparse.ArgumentParser(prog="python -m detector.sim", description="shop telemetry simulator")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list shipped scenarios")
    g = sub.add_parser("generate", help="write OTLP/JSON lines + labels.jsonl for a scenario")
    g.add_argument("--scenario", required=True, help="scenario name or YAML path")
    g.add_argument("--out", required=True, help="output directory")
    g.add_argument("--rate-scale", type=float, default=None, help="override the scenario's rate_scale")
    g.add_argument("--duration", default=None, help="override the duration, e.g. 2h")
    g.add_argument("--no-gzip", action="store_true", help="write otlp.jsonl instead of otlp.jsonl.gz")
    g.add_argument("--no-logs", action="store_true", help="spans only")
    lv = sub.add_parser("live", help="send a scenario over OTLP/gRPC at a time acceleration")
    lv.add_argument("--scenario", required=True)
    lv.add_argument("--endpoint", default="localhost:4317")
    lv.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second (0 = as fast as possible)")
    lv.add_argument("--sdk", action="store_true", help="send through the OpenTelemetry Python SDK's OTLPSpanExporter")
    lv.add_argument("--shift-to-now", action="store_true", help="shift event times so the scenario ends at the current time")
    lv.add_argument("--rate-scale", type=float, default=None)
    lv.add_argument("--duration", default=None, help="override the duration, e.g. 10m")
    args = ap.parse_args(argv)

    from detector.sim import scenario as sc

    if args.cmd == "list":
        for n in sc.names():
            s = sc.load(n)
            print(f"{n:32s} {s.family:13s} {s.description}")
        return 0
    try:
        scen = sc.load(args.scenario)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.cmd == "generate":
        from detector.sim.writers import write_files

        dur = parse_duration(args.duration) if args.duration else None
        sim = scen.simulator(rate_scale=args.rate_scale, duration=dur, logs=not args.no_logs)
        t0 = time.perf_counter()
        meta = write_files(sim, args.out, gz=not args.no_gzip)
        meta["seconds"] = round(time.perf_counter() - t0, 2)
        print(json.dumps(meta, indent=None))
        return 0
    if args.cmd == "live":
        from detector.sim.live import send_live

        if args.duration:
            scen.duration = parse_duration(args.duration)
        if args.shift_to_now:
            scen.start = float(int((time.time() - scen.duration) // 10 * 10))
        sim = scen.simulator(rate_scale=args.rate_scale)
        stats = send_live(sim, args.endpoint, speed=args.speed, use_sdk=args.sdk)
        print(json.dumps(stats))
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
