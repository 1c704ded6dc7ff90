"""Event-level matching of alert episodes to ground-truth incidents (no point-adjust).

Method (``../shared/research/algorithms.md`` §3; Kim et al., AAAI 2022 on why
point-adjust inflates scores):

* An **episode** is one alert series (its id) from the first time it fires;
  re-fires of the same id inside the alert manager's cooldown are the same
  episode. Its time is ``started_at`` (event time of the first anomalous window);
  its detection time ``fired`` is the end of the window in which it opened
  (``_closed_at`` recorded by the harness, at least ``started_at + open_after`` windows).
* An episode **matches** a label when the detector is the same, the service/peer
  agree (same service, or the label's peer, for an edge label either side; an
  alert with a peer must name the label's other side), and ``started_at`` lies in
  ``[label.start - tolerance, label.end + grace]``.
* A required label matched by ≥ 1 episode is a detected incident (several alerts
  on one incident count once); its delay is ``min(fired) - label.start``.
* An episode matching no label at all (required or optional) is a false
  positive. ``info`` episodes are reported apart and are not counted as false
  positives (they do not page anyone).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from detector.sim.incidents import parse_time

TOLERANCE = 60.0
GRACE = 300.0


def episodes_from_transitions(transitions: list[dict], window: float, open_after: int = 1) -> list[dict]:
    """Alert JSON transitions (``replay`` lines) -> episodes.

    Episode keys: detector, kind, service, peer, severity (highest seen), start
    (``started_at`` s), fired (s), id.
    """
    eps: dict[tuple, dict] = {}
    for a in transitions:
        if a.get("state") != "firing":
            continue
        start = parse_time(a["started_at"])
        key = (a["id"], a["started_at"])
        ep = eps.get(key)
        fired = max(start + window * open_after, float(a.get("_closed_at") or 0.0))
        if ep is None:
            eps[key] = {"id": a["id"], "detector": a["detector"], "kind": a["kind"], "service": a["service"],
                        "peer": a.get("peer", ""), "severity": a["severity"], "start": start, "fired": fired,
                        "summary": a.get("summary", "")}
        else:
            order = {"info": 0, "warning": 1, "critical": 2}
            if order.get(a["severity"], 0) > order.get(ep["severity"], 0):
                ep["severity"] = a["severity"]
    return sorted(eps.values(), key=lambda e: e["start"])


def _side_match(ep: dict, lab: dict) -> bool:
    s, p = ep["service"], ep.get("peer", "")
    ls, lp = lab["service"], lab.get("peer", "")
    if s == ls:
        return not p or not lp or p == lp
    if lp and s == lp:
        return not p or p == ls
    return False


def matches(ep: dict, lab: dict, tolerance: float = TOLERANCE, grace: float = GRACE) -> bool:
    """True when episode ``ep`` counts for label ``lab`` (see module docstring)."""
    if ep["detector"] != lab["detector"] or not _side_match(ep, lab):
        return False
    return lab["_start"] - tolerance <= ep["start"] <= lab["_end"] + grace


@dataclass
class Outcome:
    """Matching result for one scenario and one alert source (the detectors or a rule)."""

    detected: list[tuple[dict, float, bool]] = field(default_factory=list)  # (label, delay s, exact kind)
    missed: list[dict] = field(default_factory=list)
    false_pos: list[dict] = field(default_factory=list)
    info_unmatched: list[dict] = field(default_factory=list)
    over_severe: list[dict] = field(default_factory=list)  # info-labelled incidents alerted above info


def match(episodes: list[dict], labels: list[dict], families: set[str] | None = None) -> Outcome:
    """Match ``episodes`` against ``labels``; only labels of ``families`` (detector names) are scored."""
    out = Outcome()
    labs = []
    for lab in labels:
        lab = dict(lab)
        lab["_start"] = parse_time(lab["start"])
        lab["_end"] = parse_time(lab["end"])
        labs.append(lab)
    for lab in labs:
        if lab["optional"] or (families is not None and lab["detector"] not in families):
            continue
        hits = [e for e in episodes if matches(e, lab)]
        if hits:
            delay = min(e["fired"] for e in hits) - lab["_start"]
            exact = any(e["kind"] == lab["kind"] for e in hits)
            out.detected.append((lab, delay, exact))
            if lab.get("severity") == "info" and any(e["severity"] != "info" for e in hits):
                out.over_severe.append(lab)
        else:
            out.missed.append(lab)
    for e in episodes:
        if families is not None and e["detector"] not in families:
            continue
        if not any(matches(e, lab) for lab in labs):
            (out.info_unmatched if e["severity"] == "info" else out.false_pos).append(e)
    return out


def summarize(delays: list[float]) -> tuple[float | None, float | None]:
    """(median, p95) of a list of seconds; (None, None) when empty. p95 by nearest rank."""
    if not delays:
        return None, None
    d = sorted(delays)
    p95 = d[min(len(d) - 1, max(0, int(round(0.95 * len(d) + 0.5)) - 1))]
    return statistics.median(d), p95
