"""The bounded queue between the receiver threads and the single analysis worker.

Cost is counted in items (spans + log records, :attr:`Batch.items`), not
batches, so one huge request cannot hide behind a small batch count. The
queue never blocks a producer: :meth:`BatchQueue.submit` returns False when
the batch does not fit and the receiver answers RESOURCE_EXHAUSTED with
RetryInfo (CONTRACT.md, "Network endpoints"). A batch larger than the whole
queue is still accepted when the queue is empty, so it can never be refused
forever.

Control messages (callables) share the queue so that config reloads and
checkpoints run on the worker thread between batches, in order.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable, Union

from detector.pipeline.batch import Batch

Item = Union[Batch, Callable[[], None]]


class BatchQueue:
    """Thread-safe FIFO of batches bounded by item count.

    Args:
        max_items: capacity in spans + log records (``pipeline.queue_items``).
        on_size: called with the new item count after every change (for the
            ``otel_anomaly_queue_items`` gauge); may be None.

    Attributes:
        accepting: False once shutdown began; :meth:`submit` then refuses
            everything and the receiver answers UNAVAILABLE.
    """

    def __init__(self, max_items: int, on_size: Callable[[int], None] | None = None) -> None:
        self.max_items = max_items
        self.accepting = True
        self._items = 0
        self._dq: collections.deque[Item] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._on_size = on_size
        self._busy = False

    def submit(self, batch: Batch) -> bool:
        """Enqueue ``batch`` without blocking; False when full or not accepting."""
        n = batch.items
        with self._cond:
            if not self.accepting:
                return False
            if self._items and self._items + n > self.max_items:
                return False
            self._items += n
            self._dq.append(batch)
            size = self._items
            self._cond.notify_all()
        if self._on_size is not None:
            self._on_size(size)
        return True

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the worker thread after the batches already queued (never refused)."""
        with self._cond:
            self._dq.append(fn)
            self._cond.notify_all()

    def get(self, timeout: float | None) -> Item | None:
        """Next item, waiting up to ``timeout`` seconds; None on timeout.

        The item stays counted in :attr:`items` until :meth:`done` is called,
        so :meth:`idle` is only true once the worker finished with it.
        """
        with self._cond:
            if not self._dq:
                self._cond.wait(timeout)
                if not self._dq:
                    return None
            item = self._dq.popleft()
            self._busy = True
            return item

    def done(self, item: Item) -> None:
        """Mark ``item`` (from :meth:`get`) processed; frees its capacity."""
        n = item.items if isinstance(item, Batch) else 0
        with self._cond:
            self._items -= n
            self._busy = False
            size = self._items
            self._cond.notify_all()
        if n and self._on_size is not None:
            self._on_size(size)

    @property
    def items(self) -> int:
        """Items queued or being processed."""
        return self._items

    def idle(self) -> bool:
        """True when nothing is queued and the worker is not processing an item."""
        with self._cond:
            return not self._dq and not self._busy

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until :meth:`idle` (True) or ``timeout`` seconds pass (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._dq and not self._busy, timeout)
