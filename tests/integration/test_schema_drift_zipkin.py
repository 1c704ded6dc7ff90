"""schema_drift on real production traces: openzipkin/zipkin's SmartThings and Yelp test traces.

The Zipkin v2 JSON spans are converted to SpanRecords here (the detector reads
only normalised records): kind from ``kind``, service from
``localEndpoint.serviceName``, tags as string attributes, peer from the
``remoteEndpoint`` or the other half of a shared client/server span id, else
the parent/child span of the other kind. The SmartThings traces are replayed
round after round (one 10 s window per round) to learn; then one service's
client spans switch their tags to Yelp's non-OTel names (``client_status_code``,
``http.uri.client``, ...) taken from ``yelp.json``.
"""

from __future__ import annotations

import json
from collections import Counter

from detector.detectors.base import Window
from detector.normalise.records import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_INTERNAL,
    SPAN_KIND_PRODUCER,
    SPAN_KIND_SERVER,
    Resource,
    Scope,
    SpanRecord,
)
from tests.unit._schema_drift_build import T0, WIN, make

KINDS = {"CLIENT": SPAN_KIND_CLIENT, "SERVER": SPAN_KIND_SERVER, "PRODUCER": SPAN_KIND_PRODUCER, "CONSUMER": SPAN_KIND_CONSUMER}
TARGET = "stLogin"  # 58 client spans with http.path per replay of the mobile-web-install trace


def zipkin_to_records(spans: list[dict]) -> list[SpanRecord]:
    """Zipkin v2 spans -> SpanRecords (times are not used: the replay assigns windows)."""
    by_id: dict[str, list[dict]] = {}
    children: dict[str, list[dict]] = {}
    for s in spans:
        by_id.setdefault(s["id"], []).append(s)
        if s.get("parentId"):
            children.setdefault(s["parentId"], []).append(s)
    resources: dict[str, Resource] = {}
    scope = Scope("zipkin")
    out = []
    for s in spans:
        service = (s.get("localEndpoint") or {}).get("serviceName") or "unknown_service"
        kind = KINDS.get(s.get("kind") or "", SPAN_KIND_INTERNAL)
        peer = ""
        if kind == SPAN_KIND_CLIENT:
            peer = (s.get("remoteEndpoint") or {}).get("serviceName") or ""
            if not peer:
                other = [o for o in by_id[s["id"]] + children.get(s["id"], []) if o.get("kind") == "SERVER"]
                peer = (other[0].get("localEndpoint") or {}).get("serviceName", "") if other else ""
        elif kind == SPAN_KIND_SERVER:
            other = [o for o in by_id[s["id"]] if o.get("kind") == "CLIENT"]
            if not other and s.get("parentId"):
                other = by_id.get(s["parentId"], [])
            peer = (other[0].get("localEndpoint") or {}).get("serviceName", "") if other else ""
        if peer == service:
            peer = ""
        res = resources.get(service)
        if res is None:
            res = resources[service] = Resource(service, "", {"service.name": service}, "")
        tid = bytes.fromhex(s["traceId"].rjust(32, "0"))
        name = s.get("name") or ""
        out.append(SpanRecord(res, scope, tid, bytes.fromhex(s["id"]), bytes.fromhex(s.get("parentId", "") or ""), name,
                              kind, 0.0, 0.0, 0, "", None, None, name, False, peer, dict(s.get("tags") or {})))
    return out


def load(testdata) -> tuple[list[SpanRecord], dict]:
    folder = testdata("zipkin-real-traces")
    spans = []
    for f in ("smartthings-mobile-web-install.json", "smartthings-oauth-authorization.json"):
        spans += json.loads((folder / f).read_text())
    yelp = json.loads((folder / "yelp.json").read_text())
    yelp_client = [s["tags"] for s in yelp if s.get("kind") == "CLIENT" and "client_status_code" in s.get("tags", {})]
    return zipkin_to_records(spans), yelp_client[0]


def replay(det, records, rounds: int, start: int) -> list:
    got = []
    for r in range(rounds):
        w = Window.of(start + r, WIN)
        det.observe_spans(w, records)
        got += det.close_window(w)
    return got


def test_unchanged_replay_never_alerts(testdata):
    records, _ = load(testdata)
    det = make()
    start = int(T0 // WIN)
    assert replay(det, records, 62, start) == []  # learning (10 min warm-up)
    assert replay(det, records, 30, start + 62) == []
    assert det.tracked_series() > 40


def test_switch_to_yelp_tag_names_alerts_on_that_service_only(testdata):
    records, yelp_tags = load(testdata)
    assert set(yelp_tags) == {"client_status_code", "http.uri.client", "request_budget", "tracer"}
    det = make()
    start = int(T0 // WIN)
    assert replay(det, records, 62, start) == []
    targets = [r for r in records if r.service == TARGET and r.kind == SPAN_KIND_CLIENT and "http.path" in r.attrs]
    assert len(targets) == 58
    peers = Counter(r.peer for r in targets)
    drifted = []
    for r in records:
        if r in targets:
            tags = {**yelp_tags, "http.uri.client": r.attrs["http.path"]}
            r = SpanRecord(r.resource, r.scope, r.trace_id, r.span_id, r.parent_span_id, r.name, r.kind, 0.0, 0.0, 0, "",
                           None, None, r.operation, False, r.peer, tags)
        drifted.append(r)
    got = replay(det, drifted, 2, start + 62)
    assert got, "no alert on the switch to Yelp's tag names"
    assert {c.service for c in got} == {TARGET}
    assert all(c.severity == "warning" for c in got)
    renamed = {(c.subject["attribute"], c.subject["new_attribute"], c.peer) for c in got if c.kind == "attribute_renamed"}
    assert ("http.path", "http.uri.client", peers.most_common(1)[0][0]) in renamed
    removed = {c.subject["attribute"] for c in got if c.kind == "attribute_removed"}
    assert removed == {"http.method"}
    added = {c.subject["attribute"] for c in got if c.kind == "attribute_added"}
    assert added == {"client_status_code", "request_budget", "tracer"}
    assert all(c.peer for c in got) and all(c.subject["side"] == "client" for c in got)
