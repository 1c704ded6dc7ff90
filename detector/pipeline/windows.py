"""Event-time windows and the watermark.

Time model (documented in README "Event time"):

* A record's event time is the span's end (``SpanRecord.end``) or the log's
  ``time``; it falls in window ``index = floor(t / window)``.
* The *event-time estimate* is the largest event time seen (``max_event``). In
  ``serve`` it is extrapolated by the wall-clock time elapsed since that
  maximum was seen, so a quiet stream still moves forward (the wall-clock
  timer), and capped at wall-clock now, so a sender whose clock runs ahead
  does not make everyone else's items late. In ``replay`` it is exactly
  ``max_event``.
* The watermark is ``estimate - allowed_lateness`` and never goes back. A
  window ``[start, end)`` closes once ``watermark >= end``; windows close in
  increasing order, empty ones too (after a gap longer than
  ``max_catchup_windows`` windows, only that many empty windows are closed).
* A record whose window already closed is *late*: it is folded into the oldest
  open window (``last_closed + 1``) and counted in
  ``otel_anomaly_late_items_total``. Nothing is dropped.
* Timestamps ``<= 0`` or before 2000-01-01 are treated as "now": the current
  event-time estimate (or, before any data, the arrival time). Timestamps later
  than wall-clock now + ``max_future_skew`` are clamped the same way. Both are
  counted in ``otel_anomaly_adjusted_timestamps_total{signal,reason}``.

Method: tumbling event-time windows with a heuristic watermark and allowed
lateness as in Akidau et al., "The Dataflow Model" (VLDB 2015), and Flink's
``allowedLateness``; unlike them, late data is never dropped but re-assigned.
"""

from __future__ import annotations

import math

from detector.detectors.base import Window

MIN_VALID_TIME = 946_684_800.0  # 2000-01-01T00:00:00Z


class EventClock:
    """Watermark bookkeeping for one pipeline (used only by the worker thread).

    Args:
        length: window length, seconds (> 0).
        lateness: allowed lateness, seconds (>= 0).
        max_future_skew: seconds beyond wall-clock now still accepted as-is.
        max_catchup: cap on empty windows closed after a gap.
        extrapolate: True in ``serve`` (wall clock advances a quiet stream).
    """

    def __init__(self, length: float, lateness: float, max_future_skew: float, max_catchup: int, extrapolate: bool) -> None:
        if length <= 0:
            raise ValueError("window length must be > 0 seconds")
        self.length = float(length)
        self.lateness = float(lateness)
        self.max_future_skew = float(max_future_skew)
        self.max_catchup = int(max_catchup)
        self.extrapolate = extrapolate
        self.max_event: float | None = None
        self.seen_wall = 0.0
        self.watermark = -math.inf
        self.last_closed: int | None = None
        self.open_indices: set[int] = set()

    def estimate(self, now_wall: float) -> float | None:
        """Current event-time estimate in seconds, or None before any data."""
        if self.max_event is None:
            return None
        if self.extrapolate:
            # never ahead of the wall clock: one client whose clock runs fast must not
            # make everyone else's items late
            return min(self.max_event + max(0.0, now_wall - self.seen_wall), now_wall)
        return self.max_event

    def window(self, index: int) -> Window:
        return Window.of(index, self.length)

    def note_data(self, max_time: float, min_index: int, indices, now_wall: float) -> None:
        """Record a processed batch: its largest (adjusted) event time, smallest
        window index and the set of window indices that received records."""
        if self.last_closed is None:
            # windows the first data's watermark already passed count as closed
            first_wm = (min(max_time, now_wall) if self.extrapolate else max_time) - self.lateness
            self.last_closed = min(min_index, int(math.floor(first_wm / self.length))) - 1
        if self.max_event is None or max_time > self.max_event:
            self.max_event = max_time
            self.seen_wall = now_wall
        self.open_indices.update(indices)

    def due(self, now_wall: float) -> list[int]:
        """Indices of windows the watermark has passed, in increasing order; marks them closed."""
        est = self.estimate(now_wall)
        if est is None or self.last_closed is None:
            return []
        wm = est - self.lateness
        if wm > self.watermark:
            self.watermark = wm
        target = int(math.floor(self.watermark / self.length)) - 1  # last index whose end <= watermark
        return self._close_through(target)

    def flush(self) -> list[int]:
        """Close every window that received data (shutdown / end of replay)."""
        if not self.open_indices or self.last_closed is None:
            return []
        target = max(self.open_indices)
        out = self._close_through(target)
        self.watermark = max(self.watermark, (target + 1) * self.length)
        return out

    def _close_through(self, target: int) -> list[int]:
        last = self.last_closed
        if last is None or target <= last:
            return []
        count = target - last
        if count <= self.max_catchup:
            out = list(range(last + 1, target + 1))
        else:
            tail_start = target - self.max_catchup + 1
            with_data = sorted(i for i in self.open_indices if last < i < tail_start)
            out = with_data + list(range(tail_start, target + 1))
        self.last_closed = target
        self.open_indices = {i for i in self.open_indices if i > target}
        return out

    def state_dict(self) -> dict:
        return {"max_event": self.max_event, "watermark": self.watermark, "last_closed": self.last_closed}

    def load_state(self, state: dict, now_wall: float) -> None:
        """Restore :meth:`state_dict` output.

        Raises:
            ValueError: a field has the wrong type (a damaged or foreign
                checkpoint); nothing is changed then.
        """
        if not isinstance(state, dict):
            raise ValueError(f"pipeline clock state must be a mapping, got {type(state).__name__}")
        max_event = _number_or_none(state, "max_event")
        watermark = _number_or_none(state, "watermark")
        last_closed = state.get("last_closed")
        if last_closed is not None and (type(last_closed) is not int):
            raise ValueError(f"pipeline clock state: last_closed must be a window index, got {type(last_closed).__name__}")
        self.max_event = max_event
        self.watermark = -math.inf if watermark is None else watermark
        self.last_closed = last_closed
        self.seen_wall = now_wall


def _number_or_none(state: dict, key: str) -> float | None:
    value = state.get(key)
    if value is None:
        return None
    if type(value) not in (int, float) or math.isnan(value):
        raise ValueError(f"pipeline clock state: {key} must be a number, got {type(value).__name__}")
    return float(value)
