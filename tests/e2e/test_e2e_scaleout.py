"""E2E 2: scale-out. The Collector's load_balancing exporter (routing_key: service, DNS
resolver: deploy/otelcol/loadbalancing-dns.yaml unchanged) in front of 3 otel-anomaly
processes.

* each service's spans land on exactly one instance (its /metrics: score series by service,
  and received counts that add up exactly to what the SDK sent for those services);
* an error-rate incident on one service is detected by the instance that owns it;
* stopping one instance: the Collector's retry holds the data of that instance's services,
  the name stops resolving to it (as a headless Service drops a stopped pod), the ring
  changes, and the retried data lands on the remaining instances: nothing lost, nothing
  doubled (received counts before/after).

The three instances listen on different loopback addresses (127.x.y.1-3) with the same OTLP
port, all named by one host name. The Collector runs in a private mount namespace
(``unshare -m``) whose /etc/hosts is a file of this test, so the name can be re-pointed
without touching the machine's /etc/hosts. Go's resolver re-reads that file within ~5s.
"""

from __future__ import annotations

import random
import time

from tests.e2e.tools import (Collector, OtelAnomaly, SpanSender, free_port, label_values, need, need_otelcol,
                             send_baseline, unshare_works, value, wait_until)

SERVICES = ["frontend", "checkout", "cart", "payment", "shipping", "email"]
INCIDENT = "payment"
NAME = "otel-anomaly-headless.e2e.test"


def _owners(instances: list[OtelAnomaly]) -> dict[str, set[str]]:
    """service -> names of instances holding a score series for it."""
    owners: dict[str, set[str]] = {}
    for oa in instances:
        for svc in label_values(oa.metrics(), "otel_anomaly_score", "service", detector="error_rate"):
            owners.setdefault(svc, set()).add(oa.name)
    return owners


def _received(oa: OtelAnomaly) -> float:
    return value(oa.metrics(), "otel_anomaly_received_items_total", signal="spans")


def test_load_balancing_by_service_reroutes_without_loss(tmp_path):
    need_otelcol()
    need(unshare_works(), "`unshare -m` with a bind mount is not permitted here (needed to give the Collector its own /etc/hosts)")
    net = f"127.{random.randint(20, 250)}.{random.randint(1, 250)}"
    grpc_port = free_port()
    http_port = free_port()
    instances = [OtelAnomaly(tmp_path, f"otel-anomaly-{i}", host=f"{net}.{i + 1}", grpc_port=grpc_port, http_port=http_port)
                 for i in range(3)]
    hosts = tmp_path / "hosts"

    def point_name_at(live: list[OtelAnomaly]) -> None:
        with open(hosts, "w") as f:  # in place: the bind mount follows the inode
            f.write("127.0.0.1 localhost\n" + "".join(f"{oa.host} {NAME}\n" for oa in live))

    point_name_at(instances)
    for oa in instances:
        oa.start(wait=False)
    for oa in instances:
        oa.wait_ready()
    col = Collector(tmp_path, "loadbalancing-dns.yaml", hosts=hosts, env={
        "OTEL_ANOMALY_DNS_NAME": NAME, "OTEL_ANOMALY_PORT": str(grpc_port), "OTEL_ANOMALY_DNS_INTERVAL": "1s"}).start()
    procs = [col.proc] + [oa.proc for oa in instances]
    wait_until(lambda: value(col.metrics(), "otelcol_loadbalancer_num_backends") == 3, 20, "the Collector resolves 3 backends",
               procs=procs)
    sender = SpanSender(col.grpc_endpoint, SERVICES)
    try:
        # Phase 1: 6 minutes of history for 6 services, then an incident on payment in real time.
        t = send_baseline(sender, SERVICES, minutes=6, window_s=5, per_window=20)
        by_name = {oa.name: oa for oa in instances}
        incident_owner = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and incident_owner is None:
            time.sleep(1.0)
            now = time.time()
            for svc in SERVICES:
                sender.emit(svc, 20, 10 if svc == INCIDENT else 0, t, now)
            t = now
            sender.flush()
            for oa in instances:
                if any(a["detector"] == "error_rate" and a["service"] == INCIDENT and a["state"] == "firing" for a in oa.alerts()):
                    incident_owner = oa
        assert incident_owner is not None, {oa.name: oa.alerts() for oa in instances}
        sender.flush()
        phase1 = sender.total
        wait_until(lambda: sum(_received(oa) for oa in instances) == phase1, 30, f"{phase1} spans across the instances",
                   procs=procs)

        # Each service on exactly one instance, and counts add up per instance.
        owners = _owners(instances)
        assert set(owners) == set(SERVICES), owners
        assert all(len(o) == 1 for o in owners.values()), f"a service is split over instances: {owners}"
        owned = {oa.name: {s for s, o in owners.items() if oa.name in o} for oa in instances}
        for oa in instances:
            assert _received(oa) == sum(sender.sent[s] for s in owned[oa.name]), (oa.name, owned[oa.name])
        assert owners[INCIDENT] == {incident_owner.name}
        for oa in instances:
            if oa is not incident_owner:
                assert not [a for a in oa.alerts() if a["service"] == INCIDENT], oa.alerts()
        print(f"routing: {owned}; incident on {INCIDENT} detected by {incident_owner.name}")

        # Phase 2: stop the instance owning most services; send only its services' spans.
        victim = max(instances, key=lambda oa: (len(owned[oa.name]), oa is not incident_owner))
        moved = sorted(owned[victim.name])
        survivors = [oa for oa in instances if oa is not victim]
        before = {oa.name: _received(oa) for oa in survivors}
        assert victim.stop() == 0, victim.proc.tail()
        sent_before = dict(sender.sent)
        now = time.time()
        for svc in moved:
            sender.emit(svc, 150, 0, now - 1, now)
        sender.flush()  # the Collector has accepted them; it cannot deliver them yet
        n2 = sum(sender.sent[s] - sent_before[s] for s in moved)
        time.sleep(2.0)
        assert sum(_received(oa) for oa in survivors) == sum(before.values()), "data re-routed before the topology changed"
        point_name_at(survivors)  # the headless Service drops the stopped pod
        wait_until(lambda: sum(_received(oa) for oa in survivors) - sum(before.values()) >= n2, 45,
                   f"{n2} retried spans of {moved} on the remaining instances", procs=[col.proc] + [oa.proc for oa in survivors])
        time.sleep(1.5)  # nothing more may arrive: no duplicates
        gained = sum(_received(oa) for oa in survivors) - sum(before.values())
        assert gained == n2, f"expected exactly {n2} re-routed spans, got {gained}"
        def moved_owners() -> dict[str, set[str]] | None:
            got = {s: o for s, o in _owners(survivors).items() if s in moved}
            return got if set(got) == set(moved) else None

        after = wait_until(moved_owners, 20, f"score series of {moved} on the remaining instances",
                           procs=[oa.proc for oa in survivors])
        assert all(len(o) == 1 for o in after.values()), after
        col_m = col.metrics()
        assert value(col_m, "otelcol_loadbalancer_num_backends") == 2
        assert value(col_m, "otelcol_loadbalancer_backend_outcome_total", success="false") > 0, "no failed attempt: nothing was retried"
        assert value(col_m, "otelcol_exporter_send_failed_spans_total") == 0
        print(f"stopped {victim.name}: {n2} spans of {moved} retried and re-routed to "
              f"{ {s: sorted(o) for s, o in after.items()} }, none lost or doubled")
    finally:
        sender.shutdown()
        col.stop()
        for oa in instances:
            oa.stop()
