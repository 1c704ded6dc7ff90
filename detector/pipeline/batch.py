"""What the receiver hands the pipeline: one normalised request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from detector.normalise.records import LogRecord, SpanRecord


@dataclass(slots=True)
class Batch:
    """The accepted items of one Export request, already normalised.

    Attributes:
        spans, logs: the records to analyse (rejected items are not here).
        data_points: metric data points accepted (counted only, not analysed).
        received_at: wall-clock seconds when the request arrived.
    """

    spans: list[SpanRecord] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    data_points: int = 0
    received_at: float = 0.0

    @property
    def items(self) -> int:
        """Queue cost of this batch: spans + log records (data points are not queued)."""
        return len(self.spans) + len(self.logs)


class Sink(Protocol):
    """Where the receiver puts batches (the pipeline's bounded queue).

    ``submit`` never blocks: it returns False when the queue has no room, and the
    receiver answers RESOURCE_EXHAUSTED with RetryInfo. ``accepting`` turns
    False on shutdown; the receiver then answers UNAVAILABLE.
    """

    accepting: bool

    def submit(self, batch: Batch) -> bool: ...
