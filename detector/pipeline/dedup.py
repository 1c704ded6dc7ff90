"""Recently seen span identities, so a batch re-sent after a client timeout is
not counted twice by the detectors.

Two generations of ``trace_id + span_id`` keys (24 bytes each): a key found in
either is a duplicate. The current generation is retired after ``ttl``
seconds of the pipeline's clock (wall clock in ``serve``, event time in
``replay``) or when it holds ``max_entries`` keys, so memory is bounded by
``2 * max_entries`` keys (~100 bytes each, i.e. ~200 MB at the 1 M default
only under a sustained ~33 k spans/s for 30 s) and a key is remembered for
between ``ttl`` and ``2 * ttl``.
"""

from __future__ import annotations


class RecentSpans:
    """Two-generation set of span keys; see module docstring.

    Args:
        ttl: seconds a generation lives.
        max_entries: keys per generation before early rotation.
    """

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.current: set[bytes] = set()
        self.previous: set[bytes] = set()
        self.started = None  # clock value when `current` began

    def rotate_if_due(self, clock: float) -> None:
        """Retire the old generation when ``ttl`` passed or the cap was reached."""
        if self.started is None:
            self.started = clock
            return
        if clock - self.started >= self.ttl or len(self.current) >= self.max_entries:
            self.previous = self.current
            self.current = set()
            self.started = clock

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)
