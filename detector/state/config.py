"""Config of state checkpointing and the memory budget (``state:``)."""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from detector.config.types import Duration, StrictModel


class StateConfig(StrictModel):
    """``state:`` section."""

    directory: Optional[str] = Field("./state", description="where checkpoints live; null keeps nothing across restarts")
    checkpoint_interval: Duration = Field("60s", description="how often learned state is saved")
    memory_budget_mib: float = Field(
        1024,
        ge=256,
        description="RSS the process should stay under, MiB; divided into per-detector caps on tracked series/entities",
    )
    hash_salt: Optional[str] = Field(
        None,
        description="secret salt of hashed identities in alerts; null = 32 random bytes generated once and kept in <directory>/salt",
    )
