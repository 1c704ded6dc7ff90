"""Ingest benchmark: bare FromString+walk vs ``decode_traces`` vs the full OTLP/gRPC receiver path.

All three in the same run on the same pre-serialised ``ExportTraceServiceRequest``
of ~1000 realistic spans (:mod:`tests.bench._otlp_payload`). The gRPC client runs
in another process (``multiprocessing`` spawn) and keeps several calls in flight
(like a Collector's sending queue consumers), sending the same pre-serialised bytes
with a raw-bytes stub so it is not the bottleneck. The sink counts batches and
drops them (receiver + decode + normalise only; the analysis worker is measured
by the pipeline's own benchmark).

Run: ``.venv/bin/python -m tests.bench.bench_ingest [--seconds 10] [--inflight 8] [--no-write]``
Writes its section of ``tests/bench/RESULTS.md`` (between the bench_ingest markers).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

from tests.bench._results import replace_section

RESULTS = Path(__file__).with_name("RESULTS.md")
START, END = "<!-- bench_ingest:start -->", "<!-- bench_ingest:end -->"
COMMAND = ".venv/bin/python -m tests.bench.bench_ingest"


def _bare_walk(cls, data: bytes) -> int:
    """FromString + one walk as in algorithms.md §4: service.name, name, kind, status, attr key + type."""
    msg = cls.FromString(data)
    n = 0
    for rs in msg.resource_spans:
        for kv in rs.resource.attributes:
            if kv.key == "service.name":
                kv.value.string_value
        for ss in rs.scope_spans:
            for sp in ss.spans:
                sp.name
                sp.kind
                sp.status.code
                for kv in sp.attributes:
                    kv.key
                    kv.value.WhichOneof("value")
                n += 1
    return n


class _CountingSink:
    def __init__(self) -> None:
        self.accepting = True
        self.items = 0
        self.batches = 0
        self.lock = threading.Lock()

    def submit(self, batch) -> bool:
        with self.lock:
            self.items += batch.items
            self.batches += 1
        return True


def _client(port: int, data: bytes, inflight: int, commands, results, unique_ids: bool = False) -> None:
    """Client process: on each ``seconds`` command, keep ``inflight`` Export calls going that long.

    ``unique_ids``: write a per-call counter into the first 4 bytes of every span id
    (in place in a copy of the serialised bytes) so the pipeline's dedup of resent
    spans does not drop the repeats.
    """
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from detector.receive.server import TRACE_METHOD

    offsets: list[int] = []
    if unique_ids:
        msg = ExportTraceServiceRequest.FromString(data)
        for rs in msg.resource_spans:
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    offsets.append(data.index(sp.span_id))
    counter = iter(range(1, 1 << 31))

    ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)])
    call = ch.unary_unary(TRACE_METHOD, request_serializer=None, response_deserializer=None)
    call(data, timeout=30)  # warm-up
    while True:
        seconds = commands.get()
        if seconds is None:
            break
        lat: list[float] = []
        errors = 0
        lock = threading.Lock()
        stop_at = time.perf_counter() + seconds

        def worker():
            nonlocal errors
            local = []
            buf = bytearray(data)
            while time.perf_counter() < stop_at:
                payload = data
                if offsets:
                    stamp = next(counter).to_bytes(4, "big")
                    for o in offsets:
                        buf[o : o + 4] = stamp
                    payload = bytes(buf)
                t = time.perf_counter()
                try:
                    call(payload, timeout=30)
                except grpc.RpcError:
                    with lock:
                        errors += 1
                    continue
                local.append(time.perf_counter() - t)
            with lock:
                lat.extend(local)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(inflight)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        results.put({"calls": len(lat), "errors": errors, "wall": time.perf_counter() - t0, "lat": lat})
    ch.close()


def run(seconds: float, inflight: int, n_spans: int, workers: int = 16, rounds: int = 5) -> dict:
    """Interleave ``rounds`` of (bare, decode, gRPC for ``seconds``/rounds): the shared VM's load
    drifts, so each path is measured under the same conditions; median and best per path."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from prometheus_client import CollectorRegistry

    from detector.expose.metrics import SelfMetrics
    from detector.normalise import check_protobuf_backend, decode_traces
    from detector.receive.config import ReceiverConfig
    from detector.receive.server import Receiver
    from tests.bench._otlp_payload import build_request

    data = build_request(n_spans).SerializeToString()
    res: dict = {"backend": check_protobuf_backend(), "bytes": len(data), "spans": n_spans, "rounds": rounds,
                 "load_before": os.getloadavg()[0]}  # fmt: skip
    sink = _CountingSink()
    receiver = Receiver(
        ReceiverConfig.model_validate({"grpc": {"endpoint": "127.0.0.1:0", "workers": workers}}),
        sink,
        SelfMetrics(CollectorRegistry()),
    )
    port = receiver.start()
    ctx = mp.get_context("spawn")
    commands, results = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_client, args=(port, data, inflight, commands, results))
    proc.start()
    bare, decode, grpc_rates, lat = [], [], [], []
    bare_cpu, decode_cpu, grpc_cpu = [], [], []
    calls = errors = 0
    cpu = wall = 0.0
    try:
        for _ in range(rounds):
            bare.extend(_rates(lambda: _bare_walk(ExportTraceServiceRequest, data), n_spans, 5, 3, bare_cpu))
            decode.extend(_rates(lambda: decode_traces(data), n_spans, 5, 3, decode_cpu))
            cpu0, t0 = time.process_time(), time.perf_counter()
            commands.put(seconds / rounds)
            r = results.get(timeout=seconds + 120)
            round_cpu = time.process_time() - cpu0
            cpu += round_cpu
            grpc_cpu.append(r["calls"] * n_spans / max(1e-9, round_cpu))
            wall += time.perf_counter() - t0
            grpc_rates.append(r["calls"] * n_spans / r["wall"])
            lat.extend(r["lat"])
            calls += r["calls"]
            errors += r["errors"]
    finally:
        commands.put(None)
        proc.join(30)
        receiver.stop(1)
    lat.sort()
    res["bare"] = (statistics.median(bare), max(bare))
    res["decode"] = (statistics.median(decode), max(decode))
    res["grpc"] = (statistics.median(grpc_rates), max(grpc_rates))
    res["cpu"] = {
        "bare": statistics.median(bare_cpu), "decode": statistics.median(decode_cpu),
        "grpc": statistics.median(grpc_cpu),
    }  # fmt: skip
    res["client"] = {
        "calls": calls, "errors": errors, "wall": wall,
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else 0.0,
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0,
    }  # fmt: skip
    res["server_cpu_s"] = cpu
    res["accepted_items"] = sink.items
    res["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["load_after"] = os.getloadavg()[0]
    return res


def run_app(seconds: float, inflight: int, n_spans: int, workers: int) -> dict:
    """The whole ``serve`` App (default config: every enabled detector) behind the receiver:
    spans/s = processed spans / (time until the queue is idle again)."""
    from prometheus_client import CollectorRegistry

    from detector.app import App
    from detector.config.root import Config
    from tests.bench._otlp_payload import build_request

    config = Config.model_validate({
        "receiver": {"grpc": {"endpoint": "127.0.0.1:0", "workers": workers}},
        "http": {"endpoint": "127.0.0.1:0"},
        "state": {"directory": None},
    })  # fmt: skip
    registry = CollectorRegistry()
    app = App(config, registry=registry)
    app.start()
    data = build_request(n_spans, t0_ns=time.time_ns()).SerializeToString()
    ctx = mp.get_context("spawn")
    commands, results = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_client, args=(app.receiver.port, data, inflight, commands, results, True))
    proc.start()
    try:
        commands.put(0.5)  # warm-up
        results.get(timeout=120)
        app.pipeline.queue.wait_idle(60)
        p0 = registry.get_sample_value("otel_anomaly_processed_items_total", {"signal": "spans"}) or 0.0
        cpu0, t0 = time.process_time(), time.perf_counter()
        commands.put(seconds)
        r = results.get(timeout=seconds + 120)
        app.pipeline.queue.wait_idle(120)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        commands.put(None)
        proc.join(30)
        app.stop(grace=1.0)
    processed = (registry.get_sample_value("otel_anomaly_processed_items_total", {"signal": "spans"}) or 0.0) - p0
    hist = {}
    for metric in registry.collect():
        if metric.name == "otel_anomaly_batch_processing_seconds":
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    hist[float(sample.labels["le"])] = sample.value
    total = hist.get(float("inf"), 0.0)
    p99 = next((le for le, c in sorted(hist.items()) if total and c >= 0.99 * total), float("nan"))
    lat = sorted(r["lat"])
    return {
        "rate": processed / wall, "cpu_rate": processed / max(1e-9, cpu), "processed": processed, "wall": wall, "cpu": cpu, "calls": r["calls"],
        "refused": r["errors"], "p99_batch_le": p99, "detectors": sorted(app.detectors),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0,
    }  # fmt: skip


def _rates(fn, spans_per_call: int, reps: int, inner: int, cpu_out: list[float] | None = None) -> list[float]:
    """Wall-clock spans/s per repetition; CPU-time spans/s (this thread) appended to ``cpu_out``."""
    out = []
    for _ in range(reps):
        t, c = time.perf_counter(), time.thread_time()
        for _ in range(inner):
            fn()
        out.append(spans_per_call * inner / (time.perf_counter() - t))
        if cpu_out is not None:
            cpu_out.append(spans_per_call * inner / max(1e-9, time.thread_time() - c))
    return out


def report(res: dict, seconds: float, inflight: int, workers: int) -> str:
    bare_med, bare_best = res["bare"]
    c = res["client"]
    cpu = res["cpu"]
    app = res.get("app")

    def row(label, key):
        med, best = res[key]
        return f"| {label} | {med:,.0f} | {best:,.0f} | {med / bare_med:.2f} | {best / bare_best:.2f} |"

    lines = [
        START,
        "## Ingest (receiver + decode/normalise) — `bench_ingest.py`",
        "",
        f"Command: `{COMMAND} --seconds {seconds:g} --inflight {inflight} --workers {workers}` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python {platform.python_version()}, protobuf "
        f"backend `{res['backend']}`, {os.cpu_count()} vCPUs shared with other work: 1-min load average "
        f"{res['load_before']:.1f} → {res['load_after']:.1f} during the run; the gRPC client is a separate "
        f"process keeping {inflight} Export calls in flight; receiver.grpc.workers={workers}).",
        f"Payload: one pre-serialised ExportTraceServiceRequest, {res['spans']} spans / 10 resources, "
        f"{res['bytes']:,} B ({res['bytes'] / res['spans']:.0f} B/span), 10 attributes per span. The paths are "
        f"measured in {res['rounds']} interleaved rounds in one run.",
        "",
        "**Spans per CPU-second** (CPU time of the measuring thread for bare/decode; of the whole server process — "
        "handler threads plus grpc core threads — for the gRPC and App rows): what one process reaches with a core "
        "to itself. Much less sensitive to the other load on this shared VM than the wall-clock rates below.",
        "",
        "| path | spans per CPU-second (median) | vs bare |",
        "|---|---|---|",
        f"| bare `FromString` + walk (span fields, attribute keys + value types) | {cpu['bare']:,.0f} | 1.00 |",
        f"| `decode_traces` (decode + normalise into SpanRecords with attrs dicts) | {cpu['decode']:,.0f} | "
        f"{cpu['decode'] / cpu['bare']:.2f} |",
        f"| full OTLP/gRPC Export → Receiver → counting sink | {cpu['grpc']:,.0f} | {cpu['grpc'] / cpu['bare']:.2f} |",
    ]
    if app is not None:
        lines.append(
            f"| whole `serve` App (receiver + queue + worker + detectors {', '.join(app['detectors'])}) | "
            f"{app['cpu_rate']:,.0f} | {app['cpu_rate'] / cpu['bare']:.2f} |"
        )
    lines += [
        "",
        "Wall-clock spans/s (median and best of the rounds; depends on what else the VM runs):",
        "",
        "| path | spans/s median | spans/s best | median / bare median | best / bare best |",
        "|---|---|---|---|---|",
        row("bare `FromString` + walk", "bare"),
        row("`decode_traces`", "decode"),
        row("full OTLP/gRPC Export → Receiver → sink", "grpc"),
    ]
    if app is not None:
        lines.append(
            f"| whole `serve` App (processed spans until the queue is idle) | {app['rate']:,.0f} | – | "
            f"{app['rate'] / bare_med:.2f} | {app['rate'] / bare_best:.2f} |"
        )
    lines += [
        "",
        f"gRPC phase: {c['calls']} calls in {c['wall']:.1f} s, {c['errors']} errors; Export latency p50 "
        f"{c['p50_ms']:.1f} ms / p99 {c['p99_ms']:.1f} ms (client side, {inflight} in flight); accepted "
        f"{res['accepted_items']:,} spans; server-process CPU {res['server_cpu_s']:.1f} s; peak RSS of the server "
        f"process {res['rss_mib']:.0f} MiB.",
    ]
    if app is not None:
        lines.append(
            f"App run: {app['calls']} accepted calls ({app['refused']} refused with RESOURCE_EXHAUSTED), "
            f"{app['processed']:,.0f} spans processed in {app['wall']:.1f} s (until the queue was idle), server CPU "
            f"{app['cpu']:.1f} s; batch processing time p99 ≤ {app['p99_batch_le']:g} s (histogram bucket); Export "
            f"p99 {app['p99_ms']:.0f} ms. The client makes span ids unique per call so dedup keeps the repeats."
        )
    elif "app_error" in res:
        lines.append(f"App run skipped: {res['app_error']}")
    lines += [
        "",
        "Reading (issue 2 targets: ≥ 60,000 spans/s for one process, ≥ 0.5 × bare): the bare walk only touches "
        "each attribute's key and value type; `decode_traces` must also create every value and its dict "
        "(≈ +25 %), the span fields, semantic-convention lookups and the SpanRecord (measured split: bare 6.6, "
        "+ values/dicts 1.7, + fields/semconv 1.2, + record and retention 1.9 µs CPU per span, separate "
        "measurement). grpcio itself, with a no-op handler, costs ≈ 0.85 ms CPU per 400 kB call (≈ 0.85 µs/span); "
        "with decoding, the gRPC row costs ≈ 2 µs/span more than decode alone (grpc core threads and the handler "
        "thread sharing one GIL/cache; the handler-thread count 1/2/16 made no difference). One core therefore carries ≈ 70 k spans/s through the receiver; the GIL caps a process "
        "at about one core of Python, so more needs more processes (SO_REUSEPORT / sharding).",
        END,
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace this benchmark's section of RESULTS.md."""
    replace_section(text, START, END, RESULTS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="total duration of the gRPC phases")
    ap.add_argument("--inflight", type=int, default=8, help="concurrent Export calls from the client")
    ap.add_argument("--workers", type=int, default=16, help="receiver handler threads (receiver.grpc.workers)")
    ap.add_argument("--spans", type=int, default=1000, help="spans per request")
    ap.add_argument("--no-app", action="store_true", help="skip the whole-App run")
    ap.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = ap.parse_args(argv)
    res = run(args.seconds, args.inflight, args.spans, args.workers)
    if not args.no_app:
        try:
            res["app"] = run_app(args.seconds / 2, args.inflight, args.spans, args.workers)
        except ImportError as exc:
            res["app_error"] = f"the App is not importable ({exc})"
    text = report(res, args.seconds, args.inflight, args.workers)
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
