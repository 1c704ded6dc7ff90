"""The root config model: one field per top-level YAML key."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from detector.alerts.config import AlertsConfig
from detector.config.types import StrictModel
from detector.detectors.auth.config import AuthConfig
from detector.detectors.error_rate.config import ErrorRateConfig
from detector.detectors.schema_drift.config import SchemaDriftConfig
from detector.expose.config import HttpConfig
from detector.pipeline.config import PipelineConfig
from detector.receive.config import ReceiverConfig
from detector.state.config import StateConfig


class DetectorsConfig(StrictModel):
    """``detectors:`` section: one entry per detector family."""

    error_rate: ErrorRateConfig = Field(default_factory=ErrorRateConfig)
    schema_drift: SchemaDriftConfig = Field(default_factory=SchemaDriftConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)


class LoggingConfig(StrictModel):
    """``logging:`` section."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    format: Literal["json", "text"] = Field("json", description="json: one JSON object per line")


class Config(StrictModel):
    """The whole config file. Every key is optional; missing keys take defaults."""

    receiver: ReceiverConfig = Field(default_factory=ReceiverConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    detectors: DetectorsConfig = Field(default_factory=DetectorsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
