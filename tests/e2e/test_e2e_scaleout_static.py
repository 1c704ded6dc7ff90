"""E2E 2b: deploy/otelcol/loadbalancing-static.yaml (the fixed-list variant for VMs and
compose): each service on exactly one of two instances; while one is stopped, its services'
spans wait in the Collector's queue (the static list does not re-route) and reach it, once,
when it is back on the same address.

The only override is the list of instances (``resolver::static::hostnames``): the shipped
file names compose hosts.
"""

from __future__ import annotations

import time

from tests.e2e.tools import Collector, OtelAnomaly, SpanSender, need_otelcol, value, wait_until

SERVICES = [f"svc-{i}" for i in range(8)]


def test_static_list_holds_data_for_a_stopped_instance(tmp_path):
    need_otelcol()
    a = OtelAnomaly(tmp_path, "otel-anomaly-a").start()
    b = OtelAnomaly(tmp_path, "otel-anomaly-b").start()
    hosts = f"[{a.grpc_endpoint}, {b.grpc_endpoint}]"
    col = Collector(tmp_path, "loadbalancing-static.yaml",
                    overrides=[f"yaml:exporters::load_balancing::resolver::static::hostnames: {hosts}"]).start()
    sender = SpanSender(col.grpc_endpoint, SERVICES)
    try:
        now = time.time()
        for i, svc in enumerate(SERVICES):
            sender.emit(svc, 10 * 2 ** i, 0, now - 1, now)  # distinct powers of two: a total names its services
        sender.flush()
        total = sender.total

        def received(oa: OtelAnomaly) -> int:
            return int(value(oa.metrics(), "otel_anomaly_received_items_total", signal="spans"))

        wait_until(lambda: received(a) + received(b) == total, 30, f"{total} spans on the two instances",
                   procs=[col.proc, a.proc, b.proc])
        owned = {}
        for oa in (a, b):
            n = received(oa)
            assert n % 10 == 0
            owned[oa.name] = {svc for i, svc in enumerate(SERVICES) if (n // 10) >> i & 1}
        assert owned[a.name] | owned[b.name] == set(SERVICES) and not owned[a.name] & owned[b.name], owned
        victim = a if len(owned[a.name]) >= len(owned[b.name]) else b
        other = b if victim is a else a
        other_before = received(other)
        print(f"static routing: {owned}; stopping {victim.name}")

        assert victim.stop() == 0
        now = time.time()
        for svc in sorted(owned[victim.name]):
            sender.emit(svc, 100, 0, now - 1, now)
        sender.flush()
        n2 = 100 * len(owned[victim.name])
        time.sleep(3.0)
        assert received(other) == other_before, "the static list must not re-route"
        victim.start()  # same address, a fresh process
        wait_until(lambda: received(victim) >= n2, 40, f"{n2} queued spans delivered after the restart",
                   procs=[col.proc, victim.proc])
        time.sleep(1.0)
        assert received(victim) == n2 and received(other) == other_before
        assert value(col.metrics(), "otelcol_exporter_send_failed_spans_total") == 0
    finally:
        sender.shutdown()
        col.stop()
        a.stop()
        b.stop()
