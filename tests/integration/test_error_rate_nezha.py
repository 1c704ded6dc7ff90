"""error_rate on real TrainTicket traces and logs (Nezha, MIT): a fault-free window then a fault window.

Data: ``nezha-trainticket/`` (see its SOURCES.md). The trace CSV has no span
kind, status or attributes, so the conversion below reconstructs what an
OpenTelemetry Java agent would have reported:

- service = pod name without its two generated suffixes;
- a span whose parent is in another service (or that is a root) is a SERVER
  span; an ``HTTP <METHOD>`` span with a child in another service is a CLIENT
  span whose ``peer`` is that child's service; everything else is INTERNAL;
- a SERVER span is an error when the service logged an ERROR with its span id,
  or when Spring routed the request to ``BasicErrorController.error`` (the
  HTTP 500 path); a CLIENT span is an error when its callee's SERVER span is;
- log records keep their ``TimeUnixNano``, trace/span ids, a severity number
  from the level in the message (INFO 9, WARN 13, ERROR 17) and, as body, the
  message after the ``TraceID: … SpanID: …`` prefix (what a logback OTel
  appender sends).

The fault window (10:03:10–10:04:09) is shifted to start 10 s after the last
normal span, then everything is replayed in event time through the detector,
closing each 10 s window in order, as the pipeline would.

What 3 minutes of baseline (17 windows) can and cannot teach:

- It can teach which series exist, that ``ts-travel2-service`` already fails
  ~53 % of its requests ("No instances available for ts-seat-service") and
  ``ts-preserve-service`` 7 of 7, and that ``ts-travel-service`` served 36
  requests (and wrote 444 log records) without one error.
- It cannot pin a low ratio: 0 errors in 36 requests only says the ratio is
  below ~8 % (95 %); the baseline is the population prior (~1 %) shrunk with
  those 36 requests. It cannot see daily cycles or rare-but-normal errors.
- The default warm-up (5 min) is longer than this baseline, so the test uses
  ``warmup: 2m`` and ``learn_delay: 1m`` (a window is learned a minute after it
  closed); with the defaults nothing in the fault window would be armed
  (only the "failing from birth" rule could fire, and none of these series
  was failing from birth).
- ``ts-travel2-service``'s error *ratio* falls in the fault window (8/15 ->
  7/20), so no ratio test on its requests can fire; what changes is the *kind*
  of error, which the per-signature ``log_error_rate`` series sees: the
  signature "... No instances available for ts-basic-service ..." was absent
  from all 87 learned records of the service.
- Chronic errors: travel2's and preserve's "... for ts-seat-service" errors
  are in the baseline and must not alert. ``ts-travel-service`` also logs
  "... for ts-seat-service" in the fault window, but never did before (0 of
  444 records): for that service it is a new error, and it is reported.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import defaultdict
from pathlib import Path

import pytest

from detector.detectors.base import Deployments, DetectorContext, IdentityHasher, Window
from detector.detectors.error_rate.config import ErrorRateConfig
from detector.detectors.error_rate.detector import ErrorRateDetector
from detector.normalise.records import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_INTERNAL,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
    LogRecord,
    Resource,
    Scope,
    SpanRecord,
)

WINDOW = 10.0
NORMAL = "normal_2023-01-29_08_50"
FAULT = "fault_2023-01-29_10_04"


def _data_dir() -> Path | None:
    env = os.environ.get("OTEL_ANOMALY_TESTDATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    d = base / "nezha-trainticket"
    return d if (d / f"{NORMAL}_trace.csv").exists() else None


@pytest.fixture(scope="module")
def data_dir() -> Path:
    d = _data_dir()
    if d is None:
        reason = "nezha-trainticket test data not found (set OTEL_ANOMALY_TESTDATA or place ../shared/data)"
        if os.environ.get("OTEL_ANOMALY_REQUIRE_TESTDATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return d


_RESOURCES: dict[str, Resource] = {}
_SCOPE = Scope("io.opentelemetry.spring-webmvc")
_LEVELS = {"DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17}
_LOG_RE = re.compile(r"^\S+\s+(DEBUG|INFO|WARN|ERROR)\s+\S+\s+(?:TraceID: \S+ SpanID: \S+ )?(.*)$", re.S)


def _service(pod: str) -> str:
    return pod.rsplit("-", 2)[0]


def _resource(service: str) -> Resource:
    r = _RESOURCES.get(service)
    if r is None:
        r = _RESOURCES[service] = Resource(service, "", {"service.name": service}, "")
    return r


def load(d: Path, tag: str, shift: float) -> tuple[list[SpanRecord], list[LogRecord]]:
    """Convert one Nezha trace + log CSV pair to records, shifting event times by ``shift`` seconds."""
    rows = {}
    children: dict[str, list[str]] = defaultdict(list)
    with open(d / f"{tag}_trace.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows[r["SpanID"]] = r
            children[r["ParentID"]].append(r["SpanID"])
    logs: list[LogRecord] = []
    error_spans: set[str] = set()
    with open(d / f"{tag}_log.csv", newline="") as f:
        for r in csv.DictReader(f):
            text = json.loads(r["Log"])["log"].strip()
            m = _LOG_RE.match(text)
            level, body = (m.group(1), m.group(2)) if m else ("INFO", text)
            if level == "ERROR":
                error_spans.add(r["SpanID"])
            logs.append(
                LogRecord(
                    _resource(_service(r["PodName"])), _SCOPE, int(r["TimeUnixNano"]) / 1e9 + shift,
                    _LEVELS[level], level, body, {},
                    bytes.fromhex(r["TraceID"]) if len(r["TraceID"]) == 32 else b"",
                    bytes.fromhex(r["SpanID"]) if len(r["SpanID"]) == 16 else b"",
                )
            )

    def server_error(sid: str) -> bool:
        return sid in error_spans or any(rows[c]["OperationName"] == "BasicErrorController.error" for c in children[sid])

    spans: list[SpanRecord] = []
    for sid, r in rows.items():
        svc = _service(r["PodName"])
        parent = rows.get(r["ParentID"])
        remote_children = [c for c in children[sid] if _service(rows[c]["PodName"]) != svc]
        peer = ""
        if parent is None or _service(parent["PodName"]) != svc:
            kind, err = SPAN_KIND_SERVER, server_error(sid)
        elif r["OperationName"].startswith("HTTP ") and remote_children:
            kind = SPAN_KIND_CLIENT
            peer = _service(rows[remote_children[0]]["PodName"])
            err = server_error(remote_children[0])
        else:
            kind, err = SPAN_KIND_INTERNAL, False
        end = int(r["EndTimeUnixNano"]) / 1e9 + shift
        spans.append(
            SpanRecord(
                _resource(svc), _SCOPE, bytes.fromhex(r["TraceID"]), bytes.fromhex(sid),
                b"" if r["ParentID"] == "root" else bytes.fromhex(r["ParentID"]),
                r["OperationName"], kind, int(r["StartTimeUnixNano"]) / 1e9 + shift, end,
                STATUS_ERROR if err else STATUS_UNSET, "", 500 if err else 200, None,
                r["OperationName"], err, peer, {},
            )
        )
    return spans, logs


def replay(det: ErrorRateDetector, spans, logs) -> dict[int, list]:
    """Feed records window by window in event-time order; return anomalous candidates per window index."""
    by_window: dict[int, tuple[list, list]] = defaultdict(lambda: ([], []))
    for s in spans:
        by_window[int(s.end // WINDOW)][0].append(s)
    for r in logs:
        by_window[int(r.time // WINDOW)][1].append(r)
    out: dict[int, list] = {}
    for index in range(min(by_window), max(by_window) + 1):
        w = Window.of(index, WINDOW)
        s, lg = by_window.get(index, ([], []))
        if s:
            det.observe_spans(w, s)
        if lg:
            det.observe_logs(w, lg)
        out[index] = [c for c in det.close_window(w) if c.anomalous]
    return out


@pytest.fixture(scope="module")
def replayed(data_dir):
    normal_spans, normal_logs = load(data_dir, NORMAL, 0.0)
    fault_spans, _ = load(data_dir, FAULT, 0.0)
    shift = (max(s.end for s in normal_spans) + WINDOW) - min(s.start for s in fault_spans)
    fault_spans, fault_logs = load(data_dir, FAULT, shift)
    first_fault = int(min(min(s.end for s in fault_spans), min(r.time for r in fault_logs)) // WINDOW)
    det = ErrorRateDetector(ErrorRateConfig(warmup="2m", learn_delay="1m"), DetectorContext(WINDOW, IdentityHasher(b"nezha"), Deployments()))
    out = replay(det, normal_spans + fault_spans, normal_logs + fault_logs)
    failing = {s.trace_id.hex() for s in fault_spans if s.is_error}
    return det, out, first_fault, failing


def _label(c) -> tuple:
    sig = c.subject.get("signature", "")
    m = re.search(r"No instances available for ([\w-]+)", sig)
    return (c.kind, c.service, c.peer, c.subject.get("operation", ""), ("sig:" + m.group(1)) if m else ("sig:?" if sig else ""))


def test_fault_free_baseline_raises_nothing(replayed):
    _, out, first_fault, _ = replayed
    early = [c.summary for i, cs in out.items() if i < first_fault for c in cs]
    assert early == []


def test_travel_services_new_errors_alert_and_chronic_seat_errors_do_not(replayed):
    det, out, first_fault, failing = replayed
    fault = [c for i, cs in out.items() if i >= first_fault for c in cs]
    labels = {_label(c) for c in fault}
    assert labels == {
        ("service_error_rate", "ts-travel-service", "", "", ""),
        ("operation_error_rate", "ts-travel-service", "", "/api/v1/travelservice/trips/left", ""),
        ("edge_error_rate", "ts-gateway-service", "ts-travel-service", "", ""),
        ("log_error_rate", "ts-travel-service", "", "", ""),
        ("log_error_rate", "ts-travel-service", "", "", "sig:ts-basic-service"),
        ("log_error_rate", "ts-travel2-service", "", "", "sig:ts-basic-service"),
        # new for ts-travel-service (0 of 444 learned records), see the module docstring
        ("log_error_rate", "ts-travel-service", "", "", "sig:ts-seat-service"),
    }
    # travel2 and preserve's chronic "for ts-seat-service" errors never alert, nor do their totals
    assert not any(c.service in ("ts-travel2-service", "ts-preserve-service") and "ts-basic-service" not in c.subject.get("signature", "") for c in fault)
    # detection delay in windows after the fault window starts
    first = {}
    for i, cs in sorted(out.items()):
        for c in cs:
            first.setdefault(_label(c), i - first_fault)
    assert first[("service_error_rate", "ts-travel-service", "", "", "")] == 2
    assert first[("log_error_rate", "ts-travel2-service", "", "", "sig:ts-basic-service")] == 1
    svc = next(c for c in fault if c.kind == "service_error_rate")
    assert svc.severity == "critical"
    assert svc.summary == "errors of ts-travel-service rose 0.39% → 100% (n=6)"
    assert svc.baseline["requests_learned"] == 35
    assert svc.exemplar_trace_ids and set(svc.exemplar_trace_ids) <= failing
    # travel2's own request error ratio fell (8/15 -> 7/20): its baseline is its chronic level
    assert det.baseline_of("service_error_rate", "ts-travel2-service")["p0"] > 0.3
