"""Scrape-time alert and score series (a custom prometheus-client collector).

Built on every scrape from the pipeline's latest immutable
:class:`~detector.pipeline.worker.Snapshot`, so a resolved alert leaves no
stale series and the HTTP thread never touches detector state
(client_python docs, "Custom Collectors"):

* ``otel_anomaly_alert_active{detector,kind,service,peer,severity}`` gauge, 1 while at least
  one alert with these labels fires (alerts that differ only in subject, e.g. two operations
  of one service, share the series: the value stays 1 as the contract says; the alert JSON
  lists each one);
* ``otel_anomaly_alerts_total{detector,kind,service,severity}`` counter of alerts opened,
  with the first exemplar trace id of the latest one as an OpenMetrics exemplar;
* ``otel_anomaly_score{detector,kind,service,peer}`` gauge, latest score per tracked series.

Label values pass through :func:`detector.expose.labels.label_value`.
"""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.samples import Exemplar

from detector.expose.labels import label_value

_ACTIVE_LABELS = ["detector", "kind", "service", "peer", "severity"]
_TOTAL_LABELS = ["detector", "kind", "service", "severity"]
_SCORE_LABELS = ["detector", "kind", "service", "peer"]


class AlertCollector:
    """Yields the alert/score families from ``snapshot()`` on each scrape.

    Args:
        snapshot: returns the current :class:`~detector.pipeline.worker.Snapshot`.
    """

    def __init__(self, snapshot: Callable[[], object]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        view = snap.alerts  # type: ignore[attr-defined]
        active = GaugeMetricFamily("otel_anomaly_alert_active", "1 while an alert is firing; the series disappears when it resolves.", labels=_ACTIVE_LABELS)
        firing = dict.fromkeys(tuple(label_value(v) for v in row) for row in view.active)
        for key in firing:
            active.add_metric(list(key), 1)
        yield active

        total = CounterMetricFamily("otel_anomaly_alerts", "Alerts opened.", labels=_TOTAL_LABELS)
        exemplars = {k: (t, ts) for k, t, ts in view.exemplars}
        merged: dict[tuple[str, ...], float] = {}
        ex_for: dict[tuple[str, ...], tuple[str, float]] = {}
        for key, n in view.totals:
            lk = tuple(label_value(v) for v in key)
            merged[lk] = merged.get(lk, 0) + n
            if key in exemplars:
                ex_for[lk] = exemplars[key]
        for lk, n in merged.items():
            ex = ex_for.get(lk)
            exemplar = Exemplar({"trace_id": ex[0]}, 1.0, ex[1]) if ex else None
            total.add_metric(list(lk), n, exemplar=exemplar)
        yield total

        score = GaugeMetricFamily("otel_anomaly_score", "Latest anomaly score of a tracked series; the alert threshold is in the config.", labels=_SCORE_LABELS)
        seen: set[tuple[str, ...]] = set()
        for det, kind, service, peer, value in snap.scores:  # type: ignore[attr-defined]
            key = (label_value(det), label_value(kind), label_value(service), label_value(peer))
            if key in seen:
                continue
            seen.add(key)
            score.add_metric(list(key), value)
        yield score
