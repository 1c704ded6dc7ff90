"""The single analysis worker: queue -> event-time windows -> detectors -> alerts.

One :class:`Pipeline` per app. The receiver threads only call
:meth:`Pipeline.submit` (the :class:`~detector.pipeline.batch.Sink`
protocol); everything else — dedup, window assignment, detector calls, window
closes, the alert manager, reloads and checkpoints — runs on one worker
thread, so detectors need no locks. In ``replay`` there is no thread: the
runner calls :meth:`Pipeline.process` and :meth:`Pipeline.flush` directly.

After every batch that closed windows the worker publishes an immutable
:class:`Snapshot` (alerts, scores, tracked series) in one attribute
assignment; the HTTP thread reads only that.

Invariant (tested): at quiescence, items accepted by :meth:`submit` ==
``otel_anomaly_processed_items_total``. Duplicates and late items are
processed (counted) — duplicates are just not shown to detectors twice.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from detector.alerts.manager import AlertManager, AlertView
from detector.detectors.base import Deployments, Detector
from detector.expose.labels import label_value as _label
from detector.expose.metrics import SelfMetrics
from detector.pipeline.batch import Batch
from detector.pipeline.config import PipelineConfig
from detector.pipeline.dedup import RecentSpans
from detector.pipeline.queue import BatchQueue
from detector.pipeline.windows import MIN_VALID_TIME, EventClock

MAX_SCORE_SERIES = 10_000
MAX_DEPLOYMENT_SERIES = 10_000  # otel_anomaly_deployments_total{service}: least recently deployed removed beyond this
"""``otel_anomaly_score`` rows kept per detector (highest scores first): bounds /metrics under a
service-name flood (measured: 60,000 rows from 2 windows of 30,000 new services = 6 MB, 2.5 s per scrape)."""

log = logging.getLogger("otel_anomaly.pipeline")


@dataclass(frozen=True)
class Snapshot:
    """What the HTTP thread may read; replaced as a whole, never mutated.

    Attributes:
        alerts: the alert manager's :class:`AlertView`.
        scores: ``(detector, kind, service, peer, score)`` rows.
        tracked: ``{detector: tracked series}``.
        watermark: event-time watermark, seconds (``-inf`` before data).
        windows_closed: windows closed so far.
    """

    alerts: AlertView = field(default_factory=AlertView)
    scores: tuple[tuple[str, str, str, str, float], ...] = ()
    tracked: dict[str, int] = field(default_factory=dict)
    watermark: float = -math.inf
    windows_closed: int = 0


class Pipeline:
    """Bounded queue + the single analysis worker; see the module docstring.

    Args:
        config: the ``pipeline:`` section.
        detectors: ``{family name: detector}`` in call order.
        alerts: the shared :class:`AlertManager`.
        metrics: the app's :class:`SelfMetrics`.
        deployments: the shared :class:`Deployments`.
        serve: True for the live service (wall clock extrapolates the
            watermark, a worker thread runs); False for replay.
        wall: wall clock, seconds (injectable for tests).
    """

    STATE_VERSION = 1
    """Bump when the layout of :meth:`state_dict` changes incompatibly (checkpoint feature schema)."""

    def __init__(
        self,
        config: PipelineConfig,
        detectors: dict[str, Detector],
        alerts: AlertManager,
        metrics: SelfMetrics,
        deployments: Deployments,
        *,
        serve: bool,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.detectors = detectors
        self.alerts = alerts
        self.metrics = metrics
        self.deployments = deployments
        self.serve = serve
        self.wall = wall
        self.queue = BatchQueue(config.queue_items, on_size=metrics.queue_items.set)
        self.clock = EventClock(config.window, config.allowed_lateness, config.max_future_skew, config.max_catchup_windows, extrapolate=serve)
        self.recent = RecentSpans(config.dedup_ttl, config.dedup_max_entries)
        self.snapshot = Snapshot()
        self.windows_closed = 0
        self._evicted_seen: dict[str, int] = {}
        self._deploy_labels: dict[str, None] = {}  # recency order of deployments_total children
        self._periodic: list[list[Any]] = []  # [interval, fn, last_run]
        self._thread: threading.Thread | None = None
        self._exit = False
        self._error_logged: dict[str, float] = {}
        m = metrics
        self._c_proc = {s: m.processed.labels(signal=s) for s in ("spans", "log_records", "data_points")}
        self._c_late = {s: m.late.labels(signal=s) for s in ("spans", "log_records")}
        self._c_dup = m.duplicates.labels(signal="spans")

    # ------------------------------------------------------------------ Sink protocol

    @property
    def accepting(self) -> bool:
        return self.queue.accepting

    @accepting.setter
    def accepting(self, value: bool) -> None:
        self.queue.accepting = value

    def submit(self, batch: Batch) -> bool:
        """Enqueue without blocking; False when the queue is full or shutting down."""
        return self.queue.submit(batch)

    # ------------------------------------------------------------------ worker thread

    def start(self) -> None:
        """Start the worker thread (serve mode)."""
        if self._thread is not None:
            return
        self._exit = False
        self._thread = threading.Thread(target=self._run, name="analysis-worker", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """True while the worker thread runs (serve)."""
        return self._thread is not None and self._thread.is_alive()

    def every(self, interval: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the worker thread every ``interval`` wall seconds (serve)."""
        self._periodic.append([float(interval), fn, self.wall()])

    def run_on_worker(self, fn: Callable[[], Any], timeout: float | None = 30.0) -> Any:
        """Run ``fn()`` on the worker thread and return its result (directly when no
        worker runs). Raises TimeoutError when the worker does not get to it in time,
        or whatever ``fn`` raised."""
        if self._thread is None or not self._thread.is_alive() or threading.current_thread() is self._thread:
            return fn()
        box: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                box["result"] = fn()
            except BaseException as exc:  # handed back to the caller
                box["error"] = exc
            finally:
                done.set()

        self.queue.call_soon(call)
        if not done.wait(timeout):
            raise TimeoutError("analysis worker busy")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop accepting, drain the queue, close every open window, stop the worker.

        Returns True when everything queued was processed within ``timeout`` seconds.
        """
        self.queue.accepting = False
        if self._thread is None:
            self.flush()
            return True
        deadline = time.monotonic() + timeout

        def finish() -> None:
            self.flush()
            self._exit = True

        self.queue.call_soon(finish)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        ok = not self._thread.is_alive()
        self._thread = None
        return ok

    def _run(self) -> None:
        next_tick = time.monotonic() + self.config.tick
        while not self._exit:
            item = self.queue.get(timeout=max(0.0, next_tick - time.monotonic()))
            if item is not None:
                try:
                    if isinstance(item, Batch):
                        self.process(item)
                    else:
                        item()
                except Exception:
                    log.exception("analysis worker: item failed")
                finally:
                    self.queue.done(item)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.config.tick
                try:
                    self.tick()
                except Exception:
                    log.exception("analysis worker: tick failed")

    def tick(self) -> None:
        """Wall-clock timer: close windows a quiet stream has passed; run periodic jobs."""
        now = self.wall()
        due = self.clock.due(now)
        if due:
            self._close(due)
        for job in self._periodic:
            if now - job[2] >= job[0]:
                job[2] = now
                try:
                    job[1]()
                except Exception:
                    log.exception("periodic job failed")

    # ------------------------------------------------------------------ processing

    def process(self, batch: Batch) -> None:
        """Analyse one batch: dedup, assign windows, feed detectors, close due windows."""
        t0 = time.perf_counter()
        now = self.wall()
        clock = self.clock
        length = clock.length
        est = clock.estimate(now)
        limit = now + self.config.max_future_skew
        fallback = est if est is not None else self._first_valid(batch, now, limit)
        lo = clock.last_closed
        recent = self.recent
        recent.rotate_if_due(now if self.serve else fallback)
        cur, prev = recent.current, recent.previous
        groups: dict[int, tuple[list, list]] = {}
        resources: dict[int, tuple[Any, float]] = {}
        maxt = -math.inf
        late_s = late_l = dup = bad_s = fut_s = bad_l = fut_l = 0
        prev_r = None
        min_valid = MIN_VALID_TIME
        add = cur.add
        # consecutive spans mostly fall in the same window: remember the last one's list
        run_idx = None
        run_list: list = []
        run_late = False
        for s in batch.spans:
            key = s.trace_id + s.span_id
            if key in cur or key in prev:
                dup += 1
                continue
            add(key)
            t = s.end
            if t < min_valid:
                t = fallback
                bad_s += 1
            elif t > limit:
                t = fallback
                fut_s += 1
            idx = int(t // length)
            if idx != run_idx:
                run_idx = idx
                run_late = lo is not None and idx <= lo
                if run_late:
                    idx = lo + 1
                g = groups.get(idx)
                if g is None:
                    g = groups[idx] = ([], [])
                run_list = g[0]
            if run_late:
                late_s += 1
            run_list.append(s)
            if t > maxt:
                maxt = t
            r = s.resource
            if r is not prev_r:
                prev_r = r
                if id(r) not in resources:
                    resources[id(r)] = (r, t)
        for rec in batch.logs:
            t = rec.time
            if t < MIN_VALID_TIME:
                t = fallback
                bad_l += 1
            elif t > limit:
                t = fallback
                fut_l += 1
            idx = int(t // length)
            if lo is not None and idx <= lo:
                idx = lo + 1
                late_l += 1
            g = groups.get(idx)
            if g is None:
                g = groups[idx] = ([], [])
            g[1].append(rec)
            if t > maxt:
                maxt = t
            r = rec.resource
            if r is not prev_r:
                prev_r = r
                if id(r) not in resources:
                    resources[id(r)] = (r, t)
        # deployments first, so detectors observing this batch already see them
        for r, t in resources.values():
            if self.deployments.observe(r.service, r.service_version, t):
                self._count_deployment(_label(r.service))
                last = self.deployments.last(r.service)
                log.info("deployment", extra={"service": r.service, "old_version": last[1] if last else "", "new_version": r.service_version})
        for idx in sorted(groups):
            spans, logs = groups[idx]
            w = clock.window(idx)
            for name, det in self.detectors.items():
                try:
                    if spans:
                        det.observe_spans(w, spans)
                    if logs:
                        det.observe_logs(w, logs)
                except Exception:
                    self._detector_failed(name)
        if groups:
            clock.note_data(maxt, min(groups), groups.keys(), now)
        m = self.metrics
        if batch.spans:
            self._c_proc["spans"].inc(len(batch.spans))
        if batch.logs:
            self._c_proc["log_records"].inc(len(batch.logs))
        if batch.data_points:
            self._c_proc["data_points"].inc(batch.data_points)
        if late_s:
            self._c_late["spans"].inc(late_s)
        if late_l:
            self._c_late["log_records"].inc(late_l)
        if dup:
            self._c_dup.inc(dup)
        for sig, reason, n in (("spans", "invalid", bad_s), ("spans", "future", fut_s), ("log_records", "invalid", bad_l), ("log_records", "future", fut_l)):
            if n:
                m.adjusted_timestamps.labels(signal=sig, reason=reason).inc(n)
        due = clock.due(now)
        if due:
            self._close(due)
        m.batch_seconds.observe(time.perf_counter() - t0)

    def flush(self) -> None:
        """Close every window that holds data (shutdown, end of replay)."""
        due = self.clock.flush()
        if due:
            self._close(due)
        else:
            self._publish()

    def _first_valid(self, batch: Batch, now: float, limit: float) -> float:
        """Before any data: the fallback time is the first plausible event time of
        the batch in replay, the arrival (wall) time in serve."""
        if self.serve:
            return batch.received_at or now
        for s in batch.spans:
            if MIN_VALID_TIME <= s.end <= limit:
                return s.end
        for rec in batch.logs:
            if MIN_VALID_TIME <= rec.time <= limit:
                return rec.time
        return now

    def _close(self, indices: list[int]) -> None:
        for idx in indices:
            w = self.clock.window(idx)
            candidates = []
            for name, det in self.detectors.items():
                try:
                    candidates.extend(det.close_window(w))
                except Exception:
                    self._detector_failed(name)
            try:
                self.alerts.process(w, candidates)
            except Exception:
                log.exception("alert manager failed on window %s", idx)
            self.windows_closed += 1
            self.metrics.windows_closed.inc()
        self._publish()

    def _count_deployment(self, label: str) -> None:
        # A flood of service names with changing versions must not grow /metrics without bound.
        self._deploy_labels.pop(label, None)
        self._deploy_labels[label] = None
        if len(self._deploy_labels) > MAX_DEPLOYMENT_SERIES:
            oldest = next(iter(self._deploy_labels))
            del self._deploy_labels[oldest]
            try:
                self.metrics.deployments.remove(oldest)
            except KeyError:
                pass
        self.metrics.deployments.labels(service=label).inc()

    def _publish(self) -> None:
        scores: list[tuple[str, str, str, str, float]] = []
        tracked: dict[str, int] = {}
        for name, det in self.detectors.items():
            try:
                rows = [(name, kind, service, peer, float(score)) for kind, service, peer, score in det.scores()]
                if len(rows) > MAX_SCORE_SERIES:  # a service-name flood must not flood /metrics too
                    rows = heapq.nlargest(MAX_SCORE_SERIES, rows, key=lambda r: r[4])
                scores.extend(rows)
                tracked[name] = int(det.tracked_series())
                ev = int(det.evicted_total)
            except Exception:
                self._detector_failed(name)
                continue
            self.metrics.tracked_series.labels(detector=name).set(tracked[name])
            delta = ev - self._evicted_seen.get(name, 0)
            evicted = self.metrics.evicted_series.labels(detector=name)  # exported at 0 before the first eviction
            if delta > 0:
                evicted.inc(delta)
            self.metrics.detector_errors.labels(detector=name)  # likewise, so rate()/increase() see the first one
            self._evicted_seen[name] = ev
        if self.clock.watermark > -math.inf:
            self.metrics.watermark.set(self.clock.watermark)
        self.snapshot = Snapshot(self.alerts.view(), tuple(scores), tracked, self.clock.watermark, self.windows_closed)

    def _detector_failed(self, name: str) -> None:
        self.metrics.detector_errors.labels(detector=name).inc()
        now = time.monotonic()
        if now - self._error_logged.get(name, -1e9) > 60:
            self._error_logged[name] = now
            log.exception("detector %s raised (logged at most once a minute; counted in otel_anomaly_detector_errors_total)", name)

    def reconfigure(self, config: PipelineConfig) -> None:
        """SIGHUP: apply lateness, skew, dedup, tick and catch-up settings (worker thread).
        ``window`` and ``queue_items`` need a restart and keep their running values."""
        self.config = config.model_copy(update={"window": self.config.window, "queue_items": self.config.queue_items})
        self.clock.lateness = config.allowed_lateness
        self.clock.max_future_skew = config.max_future_skew
        self.clock.max_catchup = config.max_catchup_windows
        self.recent.ttl = config.dedup_ttl
        self.recent.max_entries = config.dedup_max_entries

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Event clock position (call on the worker thread or when stopped)."""
        return {"clock": self.clock.state_dict(), "windows_closed": self.windows_closed}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; ValueError on a damaged/foreign state (nothing changed)."""
        closed = state.get("windows_closed", 0)
        if type(closed) is not int or closed < 0:
            raise ValueError(f"pipeline state: windows_closed must be a count, got {closed!r:.40}")
        self.clock.load_state(state.get("clock", {}), self.wall())
        self.windows_closed = closed

