"""Scenario files: traffic options plus incidents with ground truth.

A scenario is a YAML file in ``detector/sim/scenarios/`` (or any path)::

    name: error_edge_step
    family: error_rate            # which detector family it judges (quiet: none)
    description: one sentence
    seed: 11
    start: 2026-11-03T05:00:00Z   # RFC 3339, UTC
    duration: 5h                  # warm-up + incident + recovery
    rate_scale: 1.0
    deploys_per_day: 1            # harmless version bumps per service per day
    new_service_at: 2d            # offset: the recommendations service appears
    doubling_at: 4d               # offset: traffic doubles (over doubling_ramp)
    incidents:
      - {type: error_rate, at: 4h, duration: 30m, service: cart, caller: checkout, rate: 0.25}

Incident types and their parameters: :mod:`detector.sim.incidents`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from detector.config.types import parse_duration
from detector.sim import incidents as inc
from detector.sim.generator import Simulator

SCENARIO_DIR = Path(__file__).parent / "scenarios"


@dataclass
class Scenario:
    """A parsed scenario. Times are seconds since the epoch; durations seconds."""

    name: str
    start: float
    duration: float
    family: str = ""
    description: str = ""
    seed: int = 1
    rate_scale: float = 1.0
    deploys_per_day: float = 1.0
    new_service_at: float | None = None
    doubling_at: float | None = None
    batch_seconds: float = 2.0
    incidents: list[dict] = field(default_factory=list)
    quick: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any], name: str | None = None) -> "Scenario":
        """Build from a parsed YAML mapping. Raises ValueError on missing/bad keys."""
        known = {"name", "family", "description", "seed", "start", "duration", "rate_scale", "deploys_per_day",
                 "new_service_at", "doubling_at", "batch_seconds", "incidents", "quick"}
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown scenario keys: {sorted(extra)}")
        start = inc.parse_time(str(d.get("start", "2026-11-03T05:00:00Z")))
        return cls(
            name=d.get("name") or name or "scenario",
            family=d.get("family", ""),
            description=d.get("description", ""),
            seed=int(d.get("seed", 1)),
            start=start,
            duration=parse_duration(d.get("duration", "5h")),
            rate_scale=float(d.get("rate_scale", 1.0)),
            deploys_per_day=float(d.get("deploys_per_day", 1.0)),
            new_service_at=start + parse_duration(d["new_service_at"]) if d.get("new_service_at") else None,
            doubling_at=start + parse_duration(d["doubling_at"]) if d.get("doubling_at") else None,
            batch_seconds=parse_duration(d.get("batch_seconds", "2s")),
            incidents=list(d.get("incidents") or []),
            quick=bool(d.get("quick", False)),
        )

    def first_onset(self) -> float | None:
        """Event time (s) of the earliest incident, or None for a quiet scenario."""
        starts = [inc.build(s, self.start).start for s in self.incidents if s.get("type") != "deploy"]
        return min(starts) if starts else None

    def simulator(self, rate_scale: float | None = None, duration: float | None = None, logs: bool = True,
                  warmup: float | None = None, with_incidents: bool = True) -> Simulator:
        """A fresh simulator for this scenario (its labels in ``sim.labels``).

        ``warmup`` (seconds) shortens the normal traffic before the first incident
        (the simulation then starts at ``onset - warmup``; incident times are unchanged).
        ``duration`` overrides the length counted from the scenario's start.
        """
        incs = [inc.build(s, self.start) for s in self.incidents] if with_incidents else []
        begin = self.start
        onset = self.first_onset()
        if warmup is not None and onset is not None and onset - warmup > self.start:
            begin = onset - warmup
        end = self.start + (self.duration if duration is None else duration)
        sim = Simulator(
            begin,
            max(0.0, end - begin),
            seed=self.seed,
            rate_scale=self.rate_scale if rate_scale is None else rate_scale,
            batch_seconds=self.batch_seconds,
            incidents=incs,
            deploys_per_day=self.deploys_per_day,
            new_service_at=self.new_service_at,
            doubling_at=self.doubling_at,
            logs=logs,
            scenario=self.name,
        )
        for i in incs:
            sim.labels.extend(i.labels())
        return sim

    def build_incidents(self) -> list:
        """Fresh incident objects for this scenario (for :meth:`Simulator.add_incidents`)."""
        return [inc.build(s, self.start) for s in self.incidents]

    def traffic_key(self) -> tuple:
        """Scenarios with equal keys produce identical normal traffic until their first incident."""
        return (self.start, self.duration, self.seed, self.rate_scale, self.deploys_per_day, self.new_service_at,
                self.doubling_at, self.batch_seconds)


def load(name_or_path: str) -> Scenario:
    """Load a scenario by name (from :data:`SCENARIO_DIR`) or by file path.

    Raises FileNotFoundError when neither exists, ValueError on bad content.
    """
    p = Path(name_or_path)
    if not p.exists():
        p = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        raise FileNotFoundError(f"no scenario {name_or_path!r} (known: {', '.join(names())})")
    with open(p, encoding="utf-8") as f:
        d = yaml.safe_load(f) or {}
    return Scenario.from_dict(d, name=p.stem)


def names() -> list[str]:
    """Names of the shipped scenarios, sorted."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
