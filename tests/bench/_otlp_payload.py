"""Realistic pre-serialised OTLP trace requests for the ingest benchmark (deterministic)."""

from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SERVICES = ["frontend", "checkout", "payment", "cart", "shipping", "currency", "email", "ad", "recommendation", "quote"]
ROUTES = ["/api/cart", "/api/checkout", "/api/products/{id}", "/api/users/{id}", "/login", "/healthz"]


def build_request(n_spans: int = 1000, n_resources: int = 10, seed: int = 1, t0_ns: int = 1_700_000_000_000_000_000) -> ExportTraceServiceRequest:
    """An ExportTraceServiceRequest of ``n_spans`` spans spread over ``n_resources`` resources.

    Spans look like instrumented HTTP/gRPC/DB traffic: 16/8-byte ids, server and
    client kinds, 11 attributes each (strings, ints of low and high cardinality, a bool), ~5 % errors.
    """
    rnd = random.Random(seed)
    req = ExportTraceServiceRequest()
    per = n_spans // n_resources
    t0 = t0_ns
    for r in range(n_resources):
        svc = SERVICES[r % len(SERVICES)]
        rs = req.resource_spans.add()
        for k, v in (("service.name", svc), ("service.version", "1.4.2"), ("host.name", f"host-{r}"),
                     ("telemetry.sdk.language", "python"), ("telemetry.sdk.name", "opentelemetry"),
                     ("deployment.environment", "prod")):  # fmt: skip
            kv = rs.resource.attributes.add()
            kv.key = k
            kv.value.string_value = v
        ss = rs.scope_spans.add()
        ss.scope.name = "opentelemetry.instrumentation.flask"
        ss.scope.version = "0.45b0"
        for i in range(per):
            sp = ss.spans.add()
            sp.trace_id = rnd.randbytes(16)
            sp.span_id = rnd.randbytes(8)
            if i % 2:
                sp.parent_span_id = rnd.randbytes(8)
            start = t0 + i * 1_000_000
            sp.start_time_unix_nano = start
            sp.end_time_unix_nano = start + rnd.randint(100_000, 50_000_000)
            kind = 2 if i % 3 == 0 else 3
            sp.kind = kind
            route = rnd.choice(ROUTES)
            status = 500 if rnd.random() < 0.05 else 200
            sp.name = f"GET {route}"
            attrs = [
                ("http.request.method", "GET"),
                ("http.route", route),
                ("url.scheme", "https"),
                ("server.address", rnd.choice(SERVICES)),
                ("network.protocol.version", "1.1"),
                ("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
                ("client.address", f"10.0.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}"),
            ]
            for k, v in attrs:
                kv = sp.attributes.add()
                kv.key = k
                kv.value.string_value = v
            kv = sp.attributes.add()
            kv.key = "http.response.status_code"
            kv.value.int_value = status
            kv = sp.attributes.add()
            kv.key = "server.port"
            kv.value.int_value = 8080
            kv = sp.attributes.add()
            kv.key = "http.request.resend"
            kv.value.bool_value = False
            kv = sp.attributes.add()
            kv.key = "http.response.body.size"  # a high-cardinality number: nothing to gain from repeats
            kv.value.int_value = rnd.randint(0, 2_000_000)
            if status >= 500:
                sp.status.code = 2
                sp.status.message = "Internal Server Error"
    return req
