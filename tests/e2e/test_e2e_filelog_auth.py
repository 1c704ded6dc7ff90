"""E2E 3: real sshd log -> the Collector's filelog receiver (deploy/otelcol/filelog-auth.yaml,
unchanged) -> otel-anomaly -> an auth alert.

The log is the real loghub OpenSSH sample (2,000 lines of a lab server under brute force,
``loghub-openssh/OpenSSH_2k.log_structured.csv`` in the shared test data), turned back into
its raw syslog lines (``{Date} {Day} {Time} {Component} sshd[{Pid}]: {Content}``, as the
data's SOURCES.md describes). Syslog has no year, so the lines are shifted as a block to end
ten seconds ago, keeping every gap between them: the Collector parses each line's own
timestamp as the event time.
"""

from __future__ import annotations

import csv
import datetime as dt
import time

from tests.e2e.tools import Collector, OtelAnomaly, need_detector, need_otelcol, need_testdata, value, wait_until

AUTH_KINDS = {"brute_force", "password_spraying", "credential_stuffing", "success_after_failures", "auth_bypass",
              "token_reuse", "forbidden_spike"}


def _syslog_lines(csv_path, end: dt.datetime) -> list[str]:
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    year = end.year
    stamps = [dt.datetime.strptime(f"{year} {r['Date']} {r['Day']} {r['Time']}", "%Y %b %d %H:%M:%S") for r in rows]
    shift = end - stamps[-1]
    out = []
    for r, ts in zip(rows, stamps):
        t = ts + shift
        out.append(f"{t:%b} {t.day:>2} {t:%H:%M:%S} {r['Component']} sshd[{r['Pid']}]: {r['Content']}")
    return out


def test_real_sshd_log_through_filelog_raises_auth_alert(tmp_path):
    need_otelcol()
    need_detector("auth")
    data = need_testdata("loghub-openssh/OpenSSH_2k.log_structured.csv")
    end = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0) - dt.timedelta(seconds=10)
    lines = _syslog_lines(data, end)
    log = tmp_path / "auth.log"
    log.write_text("\n".join(lines) + "\n")

    oa = OtelAnomaly(tmp_path).start()
    col = Collector(tmp_path, "filelog-auth.yaml", env={"OTEL_ANOMALY_ENDPOINT": oa.grpc_endpoint, "AUTH_LOG_PATH": str(log),
                                                         "AUTH_LOG_START_AT": "beginning", "AUTH_LOG_TIMEZONE": "UTC"}).start()
    procs = [oa.proc, col.proc]
    try:
        t0 = time.monotonic()
        wait_until(lambda: value(oa.metrics(), "otel_anomaly_received_items_total", signal="log_records") == len(lines), 60,
                   f"{len(lines)} sshd lines at otel-anomaly", procs=procs)
        assert value(col.metrics(), "otelcol_receiver_accepted_log_records_total") == len(lines)

        def auth_alerts() -> list[dict]:
            return [a for a in oa.alerts() if a["detector"] == "auth"]

        alerts = wait_until(auth_alerts, 60, "an auth alert from the real sshd log", procs=procs)
        print(f"{len(lines)} lines read by the filelog receiver; auth alerts after {time.monotonic() - t0:.1f}s: "
              + ", ".join(sorted({f"{a['kind']}/{a['severity']}/{a['state']}" for a in alerts})))
        assert {a["kind"] for a in alerts} <= AUTH_KINDS
        assert {a["service"] for a in alerts} == {"sshd"}, "service.name comes from the syslog program name"
        assert value(oa.metrics(), "otel_anomaly_alerts_total", detector="auth", service="sshd") >= len({a["id"] for a in alerts}) > 0
        # Event time came from the lines, not from when the Collector read them.
        started = min(dt.datetime.fromisoformat(a["started_at"].replace("Z", "+00:00")) for a in alerts)
        assert started < dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5), started
        # The brute-forcing address (~580 lines) never appears raw in an alert: it is hashed.
        body = str(alerts)
        assert "183.62.140.253" not in body
    finally:
        col.stop()
        oa.stop()
