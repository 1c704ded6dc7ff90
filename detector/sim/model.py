"""The simulator's own compact records, before they become OTLP.

The generator appends plain tuples (cheap to build in Python); the encoders in
:mod:`detector.sim.encode` turn a batch of them into OTLP protobuf requests or
OTLP/JSON objects. Times are float seconds since the Unix epoch (event time);
ids are raw bytes (16-byte trace ids, 8-byte span ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_OLD = "https://opentelemetry.io/schemas/1.17.0"
SCHEMA_NEW = "https://opentelemetry.io/schemas/1.26.0"


@dataclass(frozen=True, slots=True)
class Res:
    """One emitting process: an OTLP Resource plus the schema_url its SDK stamps.

    ``gen`` is the semantic-convention generation the process emits:
    ``"old"`` (``http.status_code``, ``net.peer.name``; schema 1.17.0) or
    ``"new"`` (``http.response.status_code``, ``server.address``; schema 1.26.0).
    """

    service: str
    version: str
    instance: str
    gen: str
    language: str
    scope: str

    @property
    def schema_url(self) -> str:
        return SCHEMA_NEW if self.gen == "new" else SCHEMA_OLD

    def attributes(self) -> list[tuple[str, Any]]:
        """Resource attributes as ``(key, value)`` pairs (OTel resource semconv)."""
        env_key = "deployment.environment.name" if self.gen == "new" else "deployment.environment"
        return [
            ("service.name", self.service),
            ("service.version", self.version),
            ("service.namespace", "shop"),
            ("service.instance.id", self.instance),
            ("host.name", self.instance),
            (env_key, "prod"),
            ("telemetry.sdk.name", "opentelemetry"),
            ("telemetry.sdk.language", self.language),
            ("telemetry.sdk.version", "1.26.0" if self.gen == "new" else "1.17.0"),
        ]


# A span: (res, trace_id, span_id, parent_span_id, name, kind, start_s, end_s,
#          attrs [(key, value)], status_code, status_message)
SpanT = tuple
# A log: (res, time_s, severity_number, body, attrs, trace_id, span_id)
LogT = tuple


@dataclass(slots=True)
class SimBatch:
    """Everything generated for event time ``[start, end)`` seconds."""

    start: float
    end: float
    spans: list = field(default_factory=list)
    logs: list = field(default_factory=list)
