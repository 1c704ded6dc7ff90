"""Seed inputs for the fuzzers: valid OTLP requests, OTLP/JSON lines and config YAML.

Built in code (seeded ``random.Random``) so nothing third-party is committed.
The OTLP seeds exercise every AnyValue type, nested kvlists/arrays, HTTP/RPC
semantic-convention attributes (old and new names), auth attributes, events,
links, span kinds, statuses, log severities and bodies, and all metric types.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.unit._otlp_build import add_attrs, set_value

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns


def trace_request(rng: random.Random, services: int = 3, spans: int = 12) -> ExportTraceServiceRequest:
    """A realistic ExportTraceServiceRequest with parent/child edges and odd attributes."""
    req = ExportTraceServiceRequest()
    trace_id = rng.randbytes(16)
    parents: list[bytes] = []
    for s in range(services):
        rs = req.resource_spans.add(schema_url="https://opentelemetry.io/schemas/1.21.0")
        add_attrs(
            rs.resource.attributes,
            {"service.name": f"svc-{s}", "service.version": f"1.{s}.0", "host.name": "h", "k8s.pod.uid": "p"},
        )
        ss = rs.scope_spans.add()
        ss.scope.name = "io.opentelemetry.test"
        ss.scope.version = "1.0"
        for i in range(spans):
            sp = ss.spans.add()
            sp.trace_id = trace_id
            sp.span_id = rng.randbytes(8)
            if parents:
                sp.parent_span_id = rng.choice(parents)
            parents.append(sp.span_id)
            sp.name = rng.choice(["GET /api/cart/{id}", "POST /login", "grpc.Payment/Charge", "SELECT", "send"])
            sp.kind = rng.randrange(0, 6)
            sp.start_time_unix_nano = T0 + i * 1_000_000
            sp.end_time_unix_nano = sp.start_time_unix_nano + rng.randrange(1, 10**9)
            sp.status.code = rng.randrange(0, 3)
            sp.status.message = rng.choice(["", "boom", "timeout"])
            attrs = rng.choice(
                [
                    {"http.request.method": "GET", "http.route": "/api/cart/{id}", "http.response.status_code": rng.choice([200, 401, 403, 500, 503])},
                    {"http.method": "POST", "http.status_code": 401, "user.id": f"user{i}", "client.address": f"10.0.0.{i}", "user_agent.original": "curl/8"},
                    {"rpc.system": "grpc", "rpc.service": "Payment", "rpc.method": "Charge", "rpc.grpc.status_code": rng.randrange(0, 17), "peer.service": "payment"},
                    {"db.system": "postgresql", "db.statement": "SELECT 1", "server.address": "db"},
                    {"messaging.system": "kafka", "messaging.destination.name": "orders", "session.id": "tok-1", "enduser.id": "alice"},
                    {"arr": [1, 2, 3], "kv": {"a": {"b": [1.5, True, b"\x00\xff", None]}}, "empty": None, "bytes": b"\x01\x02", "f": 1e308, "neg": -(2**63)},
                ]
            )
            add_attrs(sp.attributes, attrs)
            if rng.random() < 0.3:
                ev = sp.events.add(name="exception", time_unix_nano=sp.end_time_unix_nano)
                add_attrs(ev.attributes, {"exception.type": "ValueError", "exception.message": "bad"})
            if rng.random() < 0.2:
                ln = sp.links.add(trace_id=rng.randbytes(16), span_id=rng.randbytes(8))
                add_attrs(ln.attributes, {"link.kind": "follows"})
    return req


def logs_request(rng: random.Random, records: int = 10) -> ExportLogsServiceRequest:
    """A realistic ExportLogsServiceRequest: sshd lines, structured auth events, errors."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add(schema_url="https://opentelemetry.io/schemas/1.21.0")
    add_attrs(rl.resource.attributes, {"service.name": "sshd", "service.version": "9.6"})
    sl = rl.scope_logs.add()
    sl.scope.name = "filelog"
    bodies = [
        "Failed password for invalid user admin from 203.0.113.7 port 52144 ssh2",
        "Accepted password for root from 198.51.100.2 port 4711 ssh2",
        '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /login HTTP/1.0" 401 2326',
        {"event": "login", "outcome": "failure", "user": "bob"},
        ["a", 1, None],
        None,
        "ERROR java.lang.NullPointerException at Foo.bar(Foo.java:42)",
    ]
    for i in range(records):
        lr = sl.log_records.add()
        lr.time_unix_nano = T0 + i * 1_000_000
        lr.observed_time_unix_nano = lr.time_unix_nano + 5
        lr.severity_number = rng.randrange(0, 25)
        lr.severity_text = rng.choice(["INFO", "ERROR", "WARN", ""])
        set_value(lr.body, rng.choice(bodies))
        if rng.random() < 0.5:
            lr.trace_id = rng.randbytes(16)
            lr.span_id = rng.randbytes(8)
        add_attrs(lr.attributes, rng.choice([{}, {"user.name": "carol", "source.address": "192.0.2.1"}, {"event.outcome": "success"}]))
    return req


def metrics_request(rng: random.Random) -> ExportMetricsServiceRequest:
    """An ExportMetricsServiceRequest with gauge, sum, histogram, exp. histogram and summary points."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    add_attrs(rm.resource.attributes, {"service.name": "metrics-svc"})
    sm = rm.scope_metrics.add()
    g = sm.metrics.add(name="g")
    g.gauge.data_points.add(time_unix_nano=T0, as_double=1.5)
    s = sm.metrics.add(name="s")
    s.sum.data_points.add(time_unix_nano=T0, as_int=3)
    h = sm.metrics.add(name="h")
    h.histogram.data_points.add(time_unix_nano=T0, count=2, bucket_counts=[1, 1], explicit_bounds=[1.0])
    e = sm.metrics.add(name="e")
    e.exponential_histogram.data_points.add(time_unix_nano=T0, count=1, scale=2)
    q = sm.metrics.add(name="q")
    q.summary.data_points.add(time_unix_nano=T0, count=rng.randrange(1, 10), sum=1.0)
    return req


def binary_seeds(signal: str, n: int = 6) -> list[bytes]:
    """Serialised valid requests of ``signal`` (``traces``/``logs``/``metrics``)."""
    rng = random.Random(f"seed-{signal}")
    make = {"traces": lambda: trace_request(rng), "logs": lambda: logs_request(rng), "metrics": lambda: metrics_request(rng)}[signal]
    out = [make().SerializeToString() for _ in range(n)]
    out.append(b"")
    return out


def json_line_seeds() -> list[str]:
    """One OTLP/JSON line per request (as the Collector's file exporter writes them).

    Also includes the official opentelemetry-proto examples when the shared
    test data folder is present (read at run time, never committed).
    """
    rng = random.Random("seed-json")
    msgs = [trace_request(rng), logs_request(rng), metrics_request(rng), trace_request(rng, 1, 3)]
    lines = [json_format.MessageToJson(m, indent=None) for m in msgs]
    data = Path(os.environ.get("OTEL_ANOMALY_TESTDATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    examples = data / "otlp-proto-examples"
    if examples.is_dir():
        import json

        for f in sorted(examples.glob("*.json")):
            try:
                lines.append(json.dumps(json.loads(f.read_text())))
            except ValueError:
                pass
    return lines


CONFIG_SEEDS = [
    "",
    "receiver:\n  grpc:\n    endpoint: 0.0.0.0:4317\nhttp:\n  endpoint: 0.0.0.0:9464\npipeline:\n  window: 10s\nstate:\n  directory: ./state\n",
    "detectors:\n  error_rate: {enabled: true}\n  schema_drift: {enabled: false}\n  auth: {enabled: true}\n",
    "detectors:\n  error_rate:\n    overrides:\n      - match: {service: 'batch-*'}\n        enabled: false\n",
    "alerts:\n  open_after: 2\n  resolve_after: 3\n  cooldown: 5m\nlogging:\n  level: debug\n  format: text\n",
    "state:\n  directory: null\n  checkpoint_interval: 1h30m\n  memory_budget_mib: 512\n",
    "pipeline:\n  window: 250ms\n  allowed_lateness: 1d\n  queue_items: 10\n",
]


def config_seeds() -> list[str]:
    """Config YAML seeds: :data:`CONFIG_SEEDS` plus the repository's ``config/*.yaml``."""
    out = list(CONFIG_SEEDS)
    root = Path(__file__).resolve().parents[2] / "config"
    for f in sorted(root.glob("*.yaml")):
        try:
            out.append(f.read_text(encoding="utf-8"))
        except OSError:
            pass
    return out
