"""Config of the ``error_rate`` detector (``detectors.error_rate:``)."""

from __future__ import annotations

from pydantic import Field

from detector.config.types import OverridableMixin, StrictModel, override_model


class ErrorRateTunables(StrictModel):
    """Per-service tunables of the error_rate detector (what ``overrides`` may change)."""


ErrorRateOverride = override_model(ErrorRateTunables)


class ErrorRateConfig(ErrorRateTunables, OverridableMixin):
    """``detectors.error_rate`` section."""

    enabled: bool = Field(True, description="run this detector")
    overrides: list[ErrorRateOverride] = Field(default_factory=list, description="per-service changes, applied in order")
