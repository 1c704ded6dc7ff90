"""Config of the HTTP endpoint (``http:``): /metrics, /healthz, /readyz, /api/v1/alerts."""

from __future__ import annotations

from pydantic import Field

from detector.config.types import Endpoint, StrictModel


class HttpConfig(StrictModel):
    """``http:`` section."""

    endpoint: Endpoint = Field("0.0.0.0:9464", description="host:port of /metrics and the JSON API")
