"""Config of the ``schema_drift`` detector (``detectors.schema_drift:``)."""

from __future__ import annotations

from pydantic import Field

from detector.config.types import OverridableMixin, StrictModel, override_model


class SchemaDriftTunables(StrictModel):
    """Per-service tunables of the schema_drift detector (what ``overrides`` may change)."""


SchemaDriftOverride = override_model(SchemaDriftTunables)


class SchemaDriftConfig(SchemaDriftTunables, OverridableMixin):
    """``detectors.schema_drift`` section."""

    enabled: bool = Field(True, description="run this detector")
    overrides: list[SchemaDriftOverride] = Field(default_factory=list, description="per-service changes, applied in order")
