"""Overload: twice the sustainable rate for 60 s against a real ``otel-anomaly serve``.

1. **Calibrate** (20 s): 16 client threads send 500-span OTLP trace requests
   as fast as the server takes them (retrying RESOURCE_EXHAUSTED after its
   RetryInfo delay, like the Collector's exporter helper); the *sustainable
   rate* is the server's ``processed_items_total`` rate over the last 15 s.
2. **Overload** (60 s): the same clients paced at 2 × that rate. Every refused
   request is retried with the server's RetryInfo delay until accepted or the
   client's 60 s deadline passes (then it counts as dropped by the client).
3. **Drain**, SIGTERM, and compare: requests the clients saw accepted (OK)
   == ``received_items_total`` == ``processed_items_total`` (the ``stopped``
   log line of the graceful stop), and the server's RSS (sampled every 0.5 s
   from ``/proc/<pid>/status``) against ``state.memory_budget_mib``.

Requests are built once per second per client (fresh timestamps), with one
trace id per request patched into the serialised bytes so no two requests
share (trace_id, span_id) and deduplication never hides a resend.

Run: ``.venv/bin/python -m tests.bench.bench_overload [--seconds 60] [--budget 512] [--no-write]``
Writes its section of ``tests/bench/RESULTS.md`` (between the bench_overload markers).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2

from tests.bench._results import replace_section
from tests.bench._otlp_payload import build_request
from tests.support.serve import start_serve

RESULTS = Path(__file__).with_name("RESULTS.md")
START, END = "<!-- bench_overload:start -->", "<!-- bench_overload:end -->"
COMMAND = ".venv/bin/python -m tests.bench.bench_overload"
METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS = 500
CLIENTS = 16
PLACEHOLDER = b"\xa5\x5a" * 8
REAL_DETECTORS = "error_rate=detector.detectors.error_rate.detector:ErrorRateDetector"


def _template() -> bytes:
    req = build_request(SPANS, 5, seed=int(time.time() * 1000) % 100_000, t0_ns=time.time_ns() - 2_000_000_000)
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for sp in ss.spans:
                sp.trace_id = PLACEHOLDER
    data = req.SerializeToString()
    assert data.count(PLACEHOLDER) == SPANS
    return data


def _retry_delay(err: grpc.RpcError) -> float | None:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(value)
            for d in st.details:
                if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    ri = error_details_pb2.RetryInfo()
                    d.Unpack(ri)
                    return ri.retry_delay.seconds + ri.retry_delay.nanos / 1e9
    return None


class Client(threading.Thread):
    """Sends requests at ``rate`` spans/s (None = as fast as accepted), honouring RetryInfo."""

    def __init__(self, target: str, cid: int) -> None:
        super().__init__(daemon=True)
        self.channel = grpc.insecure_channel(target)
        self.call = self.channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        self.cid = cid
        self.rate: float | None = None
        self.stop_at = 0.0
        self.go = threading.Event()
        self.done = threading.Event()
        self.accepted = self.refused = self.dropped = self.errors = self.offered = 0
        self.delays: list[float] = []
        self._seq = 0
        self._tpl = b""
        self._tpl_at = 0.0

    def _next(self) -> bytes:
        now = time.monotonic()
        if now - self._tpl_at > 1.0:
            self._tpl, self._tpl_at = _template(), now
        self._seq += 1
        tid = self.cid.to_bytes(4, "big") + self._seq.to_bytes(8, "big") + b"\x01\x02\x03\x04"
        return self._tpl.replace(PLACEHOLDER, tid)

    def run(self) -> None:
        while self.go.wait():
            next_send = time.monotonic()
            while time.monotonic() < self.stop_at:
                if self.rate:
                    delay = next_send - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    next_send += SPANS / self.rate
                self.offered += SPANS
                self._send(self._next(), deadline=time.monotonic() + 60)
            self.go.clear()
            self.done.set()

    def _send(self, data: bytes, deadline: float) -> None:
        while True:
            try:
                self.call(data, timeout=10)
                self.accepted += SPANS
                return
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    self.errors += 1
                    return
                self.refused += 1
                delay = _retry_delay(err)
                if delay is None or time.monotonic() + delay > deadline:
                    self.dropped += SPANS
                    return
                self.delays.append(delay)
                time.sleep(delay)

    def phase(self, seconds: float, rate: float | None) -> None:
        self.rate = rate
        self.stop_at = time.monotonic() + seconds
        self.done.clear()
        self.go.set()


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            self.samples.append((time.monotonic() - self.t0, int(line.split()[1]) / 1024))
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()


def run(seconds: float, budget: float, calibrate: float = 20.0) -> dict:
    work = Path(tempfile.mkdtemp(prefix="otelanom-overload-"))
    sp = start_serve(
        work,
        {"state": {"memory_budget_mib": budget}},
        env={"OTEL_ANOMALY_DETECTOR_CLASSES": REAL_DETECTORS},
    )
    rss = RssSampler(sp.proc.pid)
    rss.start()
    clients = [Client(sp.grpc_target, i) for i in range(CLIENTS)]
    for c in clients:
        c.start()

    def processed() -> float:
        return sp.sample("otel_anomaly_processed_items_total", signal="spans") or 0.0

    # 1. calibrate
    for c in clients:
        c.phase(calibrate, None)
    time.sleep(calibrate - 15)
    p0, t0 = processed(), time.monotonic()
    for c in clients:
        c.done.wait()
    p1, t1 = processed(), time.monotonic()
    sustainable = (p1 - p0) / (t1 - t0)
    sp.wait_until(lambda: (sp.sample("otel_anomaly_queue_items") or 0) == 0, timeout=120, what="queue drained after calibration")
    base = {k: sum(getattr(c, k) for c in clients) for k in ("accepted", "refused", "dropped", "errors", "offered")}
    calib_refused = base["refused"]
    for c in clients:
        c.delays.clear()
    # 2. overload at 2x
    target_rate = 2 * sustainable
    o_start = time.monotonic() - rss.t0
    for c in clients:
        c.phase(seconds, target_rate / CLIENTS)
    for c in clients:
        c.done.wait()
    o_end = time.monotonic() - rss.t0
    over = {k: sum(getattr(c, k) for c in clients) - base[k] for k in base}
    delays = [d for c in clients for d in c.delays]
    # 3. drain and stop
    sp.wait_until(lambda: (sp.sample("otel_anomaly_queue_items") or 0) == 0, timeout=300, what="queue drained")
    received = sp.sample("otel_anomaly_received_items_total", signal="spans") or 0
    processed_n = processed()
    refused_server = sp.sample("otel_anomaly_rejected_items_total", signal="spans", reason="queue_full") or 0
    rc = sp.stop(signal.SIGTERM, timeout=120)
    rss.stop()
    stopped = [ln for ln in sp.logs() if ln.get("msg") == "stopped"]
    accepted_total = sum(c.accepted for c in clients)
    in_overload = [v for t, v in rss.samples if o_start <= t <= o_end]
    return {
        "sustainable": sustainable,
        "calibration_refused": calib_refused,
        "target_rate": target_rate,
        "seconds": seconds,
        "offered": over["offered"],
        "accepted": over["accepted"],
        "refused_requests": over["refused"],
        "dropped_by_client": over["dropped"],
        "errors": over["errors"],
        "retry_delay_s": sorted(set(round(d, 3) for d in delays))[:3],
        "accepted_total": accepted_total,
        "received": received,
        "processed": processed_n,
        "refused_items_server": refused_server,
        "stopped_line": stopped[-1] if stopped else None,
        "exit_code": rc,
        "rss_max_overload": max(in_overload) if in_overload else 0.0,
        "rss_max": max(v for _, v in rss.samples) if rss.samples else 0.0,
        "budget": budget,
        "rss_curve": [round(v) for t, v in rss.samples if o_start <= t <= o_end][::4],
        "queue_items": None,
    }


def render(r: dict, command: str) -> str:
    ok = r["accepted_total"] == r["received"] == r["processed"]
    stopped = r["stopped_line"] or {}
    lines = [
        START,
        "## Overload at 2 × the sustainable rate (bench_overload)",
        "",
        f"Command: `{command}` — Python {platform.python_version()}, {os.cpu_count()} vCPU shared by server and clients; "
        f"real `otel-anomaly serve` (real detectors, `state.memory_budget_mib: {r['budget']:g}`), {CLIENTS} gRPC clients sending "
        f"{SPANS}-span requests and retrying RESOURCE_EXHAUSTED after the server's RetryInfo delay.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| sustainable rate (calibration: clients flat out, processed spans/s) | {r['sustainable']:,.0f} ({r['calibration_refused']:,} RESOURCE_EXHAUSTED answers while calibrating) |",
        f"| intended during overload ({r['seconds']:g} s at 2 × = {r['target_rate']:,.0f} spans/s) | {r['target_rate'] * r['seconds']:,.0f} spans |",
        f"| attempted (clients pace at 2 ×, but wait out each RetryInfo delay before going on) | {r['offered']:,} spans |",
        f"| accepted (OK) during overload | {r['accepted']:,} spans |",
        f"| RESOURCE_EXHAUSTED answers (requests, all retried) | {r['refused_requests']:,} |",
        f"| RetryInfo delays seen (s) | {r['retry_delay_s']} |",
        f"| given up by clients after their 60 s deadline (the rest of the intended load stays in the clients' backlog, as in a Collector's sending queue) | {r['dropped_by_client']:,} spans |",
        f"| other errors | {r['errors']} |",
        f"| accepted by clients (whole run) / received_items_total / processed_items_total | {r['accepted_total']:,} / {r['received']:,.0f} / {r['processed']:,.0f} ({'equal' if ok else 'NOT EQUAL'}) |",
        f"| graceful stop: exit code, `stopped` line received / processed | {r['exit_code']}, {stopped.get('received', {}).get('spans')} / {stopped.get('processed', {}).get('spans')} |",
        f"| server RSS max during overload / whole run vs budget | {r['rss_max_overload']:.0f} / {r['rss_max']:.0f} MiB vs {r['budget']:g} MiB |",
        "",
        f"RSS during overload (MiB, every 2 s): {' '.join(str(v) for v in r['rss_curve'])}",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    """Replace this benchmark's section of RESULTS.md."""
    replace_section(text, START, END, RESULTS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.bench_overload", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--budget", type=float, default=512)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    r = run(args.seconds, args.budget)
    command = COMMAND + ("" if args.seconds == 60 else f" --seconds {args.seconds:g}") + ("" if args.budget == 512 else f" --budget {args.budget:g}")
    text = render(r, command)
    print(text)
    if not args.no_write:
        write_section(text)
    ok = r["accepted_total"] == r["received"] == r["processed"] and r["rss_max"] < r["budget"] and r["refused_requests"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
