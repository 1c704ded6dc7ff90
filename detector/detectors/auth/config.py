"""Config of the ``auth`` detector (``detectors.auth:``)."""

from __future__ import annotations

from pydantic import Field

from detector.config.types import OverridableMixin, StrictModel, override_model


class AuthTunables(StrictModel):
    """Per-service tunables of the auth detector (what ``overrides`` may change)."""


AuthOverride = override_model(AuthTunables)


class AuthConfig(AuthTunables, OverridableMixin):
    """``detectors.auth`` section."""

    enabled: bool = Field(True, description="run this detector")
    overrides: list[AuthOverride] = Field(default_factory=list, description="per-service changes, applied in order")
