"""Config of the ``schema_drift`` detector (``detectors.schema_drift:``).

Counts are records (spans, log records, or resource blocks for resource
attributes); shares are ratios in [0, 1]; durations are seconds (written
``10s``/``5m``/``1h`` in YAML). Defaults follow ``research/algorithms.md`` §2.2
and §5, scaled to 10 s windows.
"""

from __future__ import annotations

from pydantic import Field

from detector.config.types import Duration, OverridableMixin, StrictModel, override_model

DEFAULT_IGNORE_KEYS = [
    "*request_id*",
    "*request.id",
    "*requestid*",
    "*correlation_id*",
    "*correlation.id",
    "trace_id",
    "span_id",
    "thread.id",
    "thread.name",
    "process.pid",
    "code.lineno",
    "code.line.number",
    "http.request.header.x-request-id",
    "http.request.header.x-amzn-trace-id",
]

DEFAULT_VALUE_IGNORE_KEYS = [
    "*.id",
    "*_id",
    "*Id",
    "*session*",
    "*token*",
    "*uuid*",
    "*email*",
    "user.*",
    "enduser.*",
    "client.address",
    "client.port",
    "source.address",
    "network.peer.address",
    "network.peer.port",
    "net.sock.peer.addr",
    "net.peer.ip",
    "http.client_ip",
    "user_agent.original",
    "http.user_agent",
]

DEFAULT_PLAIN_VALUE_KEYS = [
    "http.response.status_code",
    "http.status_code",
    "http.request.method",
    "http.method",
    "rpc.grpc.status_code",
    "rpc.response.status_code",
    "rpc.system",
    "rpc.system.name",
    "db.system",
    "db.system.name",
    "db.operation",
    "db.operation.name",
    "messaging.system",
    "messaging.operation",
    "messaging.operation.type",
    "network.protocol.name",
    "network.protocol.version",
    "network.transport",
    "url.scheme",
    "http.scheme",
    "error.type",
    "otel.status_code",
]


class SchemaDriftTunables(StrictModel):
    """Per-service tunables of the schema_drift detector (what ``overrides`` may change)."""

    warmup_records: int = Field(200, ge=1, description="records a population must have seen before it may alert")
    warmup: Duration = Field("10m", description="event time a population must have been seen before it may alert")
    min_records: int = Field(10, ge=1, description="records needed to test; fewer merge with the next windows")
    max_merged_windows: int = Field(60, ge=1, description="windows merged at most while waiting for min_records (low-traffic populations)")
    half_life_records: float = Field(1000.0, gt=0, description="records after which the learned baseline weighs half")
    added_min_share: float = Field(0.05, ge=0, le=1, description="share of records an unseen key must reach to count as added")
    optional_presence: float = Field(0.5, ge=0, le=1, description="a required key whose window presence falls (significantly) to this or below is partly removed")
    removed_baseline_presence: float = Field(0.9, ge=0, le=1, description="baseline presence a key needs to count as removed")
    removed_max_share: float = Field(0.1, ge=0, le=1, description="window presence at or below which a required key counts as removed")
    rename_presence_tolerance: float = Field(0.2, ge=0, le=1, description="|presence(old, baseline) - presence(new, window)| for a rename")
    type_min_records: int = Field(10, ge=1, description="values of a never-seen type needed for attribute_type_changed")
    type_min_share: float = Field(0.05, ge=0, le=1, description="share of a key's values of a never-seen type for attribute_type_changed")
    enum_max_distinct: int = Field(50, ge=1, description="keys with at most this many distinct values are enums (value tests)")
    value_min_records: int = Field(100, ge=1, description="values a window needs for the G-test")
    value_p_value: float = Field(1e-6, gt=0, lt=1, description="G-test p-value below which the value distribution shifted")
    value_js_distance: float = Field(0.1, ge=0, le=1, description="Jensen-Shannon distance (base 2) also required for a shift")
    new_value_min_share: float = Field(0.1, ge=0, le=1, description="share a never-seen value must reach to alert")
    new_value_min_records: int = Field(5, ge=1, description="records a never-seen value must reach to alert")
    cardinality_new_values: int = Field(20, ge=1, description="never-seen values of an enum key in one test (or new span operations of a service in one window) that mean a cardinality explosion")
    log_new_template_share: float = Field(0.05, ge=0, le=1, description="share of log records with a new template/body key set to alert")
    log_min_records: int = Field(10, ge=1, description="log records needed for log_structure_changed")
    log_vanished_share: float = Field(0.3, ge=0, le=1, description="baseline share of a template whose disappearance alerts")
    schema_url_min_share: float = Field(0.5, ge=0, le=1, description="share of records with a never-seen schema_url to alert")
    deploy_grace: Duration = Field("15m", description="additive change within this time after a deploy of the service is info")
    accept_after: Duration = Field("1h", description="a change still present after this long becomes the new normal (alert resolves)")
    ignore_keys: list[str] = Field(
        default_factory=lambda: list(DEFAULT_IGNORE_KEYS),
        description="glob patterns of attribute keys never analysed (request ids and the like)",
    )
    value_ignore_keys: list[str] = Field(
        default_factory=lambda: list(DEFAULT_VALUE_IGNORE_KEYS),
        description="glob patterns of keys whose values are never tested (identities: ids, sessions, users, addresses); presence and type still are",
    )
    plain_value_keys: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PLAIN_VALUE_KEYS),
        description="keys whose values are shown in alerts unhashed (bounded, non-personal enums)",
    )


SchemaDriftOverride = override_model(SchemaDriftTunables)


class SchemaDriftConfig(SchemaDriftTunables, OverridableMixin):
    """``detectors.schema_drift`` section."""

    enabled: bool = Field(True, description="run this detector")
    overrides: list[SchemaDriftOverride] = Field(default_factory=list, description="per-service changes, applied in order")
    max_operations_per_service: int = Field(500, ge=1, description="span populations (kind, operation, peer) per service; more overflow")
    max_populations: int = Field(50_000, ge=1, description="populations in total (spans, logs, resources); least recently seen evicted")
    max_keys_per_population: int = Field(256, ge=1, description="attribute keys learned per population; more overflow")
    max_signatures_per_window: int = Field(256, ge=1, description="distinct key-type signatures per population per window before the per-key fallback")
    value_sample_per_window: int = Field(16, ge=0, description="records per population and window whose values feed the cardinality estimate")
    exact_distinct_cap: int = Field(64, ge=1, description="distinct values kept exactly per key before a NUnique sketch takes over")
    max_log_templates: int = Field(200, ge=1, description="Drain clusters per log population")
    population_ttl: Duration = Field("24h", description="populations unseen this long are forgotten")
    key_ttl: Duration = Field("6h", description="keys unseen this long are dropped from a population")
