"""Config of the alert lifecycle (``alerts:``)."""

from __future__ import annotations

from pydantic import Field

from detector.config.types import Duration, StrictModel


class AlertsConfig(StrictModel):
    """``alerts:`` section."""

    open_after: int = Field(1, ge=1, description="anomalous windows in a row before an alert opens")
    resolve_after: int = Field(3, ge=1, description="windows without evidence before a firing alert resolves")
    cooldown: Duration = Field("5m", description="a re-fire within this after resolving reopens the same episode")
    max_active: int = Field(1000, ge=1, description="cap on firing alerts; more are counted, not opened")
    keep_resolved: Duration = Field("1h", description="how long resolved alerts stay in /api/v1/alerts")
    correlation_window: Duration = Field("10m", description="an error_rate alert opening this long after a deploy or schema_drift alert of either side of its edge is linked to it")
    max_exemplars: int = Field(5, ge=0, le=100, description="example trace ids kept per alert")
