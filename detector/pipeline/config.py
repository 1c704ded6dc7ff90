"""Config of the event-time pipeline (``pipeline:``)."""

from __future__ import annotations

from pydantic import Field

from detector.config.types import Duration, StrictModel


class PipelineConfig(StrictModel):
    """``pipeline:`` section."""

    window: Duration = Field("10s", description="length of one event-time window")
    allowed_lateness: Duration = Field("5s", description="how long after its end a window stays open for late items")
    queue_items: int = Field(200_000, gt=0, description="max items (spans + log records) waiting for analysis")
