"""Config of state checkpointing (``state:``)."""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from detector.config.types import Duration, StrictModel


class StateConfig(StrictModel):
    """``state:`` section."""

    directory: Optional[str] = Field("./state", description="where checkpoints live; null keeps nothing across restarts")
    checkpoint_interval: Duration = Field("60s", description="how often learned state is saved")
