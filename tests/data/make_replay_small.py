"""Generate ``tests/data/replay/small.otlp.jsonl`` (committed; regenerate with
``python tests/data/make_replay_small.py``).

Two minutes of OTLP/JSON lines as the Collector's file exporter writes them,
starting 2024-01-01T00:00:00Z: every 2 s one ExportTraceServiceRequest
(``checkout`` 6 server spans, ``search`` 4 server spans) and every 10 s one
ExportLogsServiceRequest. ``checkout`` fails 50 % of its spans from 30 s to
50 s (windows 3 and 4 of 10 s), else never. Deterministic ids and times, so
``replay`` and a live ``serve`` must produce the same alert transitions:
error_rate fires for ``checkout`` at 00:00:30 and resolves at 00:01:20.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
OUT = Path(__file__).parent / "replay" / "small.otlp.jsonl"


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[: 2 * n]


def _attr(key: str, value) -> dict:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _resource(service: str) -> dict:
    return {"attributes": [_attr("service.name", service), _attr("service.version", "1.0.0")]}


def _span(service: str, i: int, end_ns: int, error: bool) -> dict:
    code = 500 if error else 200
    return {
        "traceId": _hex(f"t{service}{i}", 16),
        "spanId": _hex(f"s{service}{i}", 8),
        "name": f"GET /{service}",
        "kind": 2,
        "startTimeUnixNano": str(end_ns - 25_000_000),
        "endTimeUnixNano": str(end_ns),
        "attributes": [_attr("http.request.method", "GET"), _attr("http.route", f"/{service}"), _attr("http.response.status_code", code)],
        "status": {"code": 2, "message": "Internal Server Error"} if error else {},
    }


def lines() -> list[str]:
    out = []
    n = 0
    for step in range(60):  # 2 s each
        t = T0 + 2 * step
        rs = []
        for service, count in (("checkout", 6), ("search", 4)):
            spans = []
            for k in range(count):
                n += 1
                end_ns = t * 1_000_000_000 + (k * 300 + 100) * 1_000_000
                error = service == "checkout" and 30 <= t - T0 < 50 and k % 2 == 0
                spans.append(_span(service, n, end_ns, error))
            rs.append({"resource": _resource(service), "scopeSpans": [{"scope": {"name": "gen", "version": "1"}, "spans": spans}]})
        out.append(json.dumps({"resourceSpans": rs}, separators=(",", ":")))
        if step % 5 == 4:
            records = [
                {
                    "timeUnixNano": str((t + 1) * 1_000_000_000 + j),
                    "severityNumber": 9,
                    "severityText": "INFO",
                    "body": {"stringValue": f"request handled {j}"},
                    "attributes": [_attr("route", "/checkout")],
                }
                for j in range(3)
            ]
            out.append(json.dumps({"resourceLogs": [{"resource": _resource("checkout"), "scopeLogs": [{"scope": {"name": "gen"}, "logRecords": records}]}]}, separators=(",", ":")))
    return out


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines()) + "\n")
    print(f"wrote {OUT}")
