"""Config of the event-time pipeline (``pipeline:``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from detector.config.types import Duration, StrictModel


class PipelineConfig(StrictModel):
    """``pipeline:`` section."""

    window: Duration = Field("10s", description="length of one event-time window")
    allowed_lateness: Duration = Field("5s", description="how long after its end a window stays open for late items")
    queue_items: int = Field(200_000, gt=0, description="max items (spans + log records) waiting for analysis")
    max_future_skew: Duration = Field("5m", description="event times later than now + this are clamped to the current event time")
    dedup_ttl: Duration = Field("30s", description="a span (trace_id, span_id) seen again within this is not analysed twice")
    dedup_max_entries: int = Field(1_000_000, gt=0, description="cap on remembered span ids per TTL generation")
    tick: Duration = Field("1s", description="serve only: how often the wall clock advances the watermark of a quiet stream")
    max_catchup_windows: int = Field(360, gt=0, description="after a gap, at most this many empty windows are closed; the rest are skipped")

    @field_validator("window", "tick")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be longer than 0s")
        return value
