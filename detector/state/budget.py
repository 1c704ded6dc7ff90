"""One memory budget (``state.memory_budget_mib``) divided into per-table caps.

Every per-entity table in the process (queued records, remembered span ids,
error-rate series, schema populations, auth principals / sources / tokens)
has a cap key in its own config section; the owners enforce the cap with
LRU/TTL eviction and count evictions. This module only decides the *numbers*:

    available = budget - BASE_MIB            (interpreter + numpy/scipy/river/grpc)
    share     = available * SHARES[table]    (fraction of what is left)
    cap       = share / BYTES_PER_ITEM[table]

:func:`apply_budget` lowers every cap key the user did **not** set explicitly
to ``min(default, planned cap)``; caps the user set are kept as given, and
:func:`apply_budget` logs a warning when those alone overrun the budget.

Bytes per item are worst-case-ish RSS costs measured with the real detectors
under the attack benchmarks (``tests/bench/bench_memory.py``; see
``tests/bench/RESULTS.md``) — the RSS a table grows by per tracked item when
an attacker fills it, rounded up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("detector.state")

MIB = 1024 * 1024

BASE_MIB = 192.0
"""RSS of an idle serving process (Python 3.11, numpy, scipy, river, grpcio, pydantic), MiB, rounded up."""


@dataclass(frozen=True)
class Table:
    """One capped table: where its cap lives, its RSS per item, its share of the budget.

    Attributes:
        path: dotted config path of the cap key, e.g. ``detectors.auth.max_principals``.
        bytes_per_item: RSS per tracked item at the cap, bytes.
        share: fraction in [0, 1] of ``budget - BASE_MIB`` given to this table.
        floor: the planned cap never goes below this (the key's own minimum).
    """

    path: str
    bytes_per_item: int
    share: float
    floor: int = 100


TABLES: tuple[Table, ...] = (
    # pipeline (core): queued records waiting for the worker (a decoded span with ~8 attributes:
    # 1.6 KiB), remembered span ids (two generations of ~106 B each)
    Table("pipeline.queue_items", 1_800, 0.16, 1_000),
    Table("pipeline.dedup_max_entries", 260, 0.06, 10_000),
    # error_rate: one row per service / edge / operation / log signature series (2.2 KiB measured)
    Table("detectors.error_rate.max_series", 2_400, 0.14, 100),
    # schema_drift: one population per (service, kind, operation, peer) / log source / resource;
    # 4.5 KiB measured with 4 keys (two populations + a schema entry per new service: 9.1 KiB),
    # far more with hundreds of keys: budgeted at 24 KiB
    Table("detectors.schema_drift.max_populations", 24_000, 0.22, 100),
    # auth: principals 3.3 KiB (fresh process); sources 3.4 KiB with few principals each, but
    # ~10.6 KiB under a principal flood (each source keeps up to 64 principals): budgeted at 11 KiB
    Table("detectors.auth.max_principals", 3_500, 0.12, 100),
    Table("detectors.auth.max_sources", 11_000, 0.18, 100),
    Table("detectors.auth.max_tokens", 3_600, 0.04, 100),
)
"""The capped tables. The rest of the budget (8 %) is slack for alerts, scores and pickling a checkpoint."""


@dataclass(frozen=True)
class Plan:
    """Planned caps for one budget: ``caps[path] = items`` and the MiB each table may use."""

    budget_mib: float
    caps: dict[str, int]
    mib: dict[str, float]

    def describe(self) -> str:
        """One line per table: ``path: cap items (≈ MiB)``."""
        lines = [f"memory budget {self.budget_mib:g} MiB (base {BASE_MIB:g} MiB):"]
        for path, cap in self.caps.items():
            lines.append(f"  {path}: {cap} items (~{self.mib[path]:.0f} MiB)")
        return "\n".join(lines)


def plan(budget_mib: float) -> Plan:
    """Divide ``budget_mib`` (MiB) into per-table caps (item counts).

    Raises:
        ValueError: budget not larger than :data:`BASE_MIB`.
    """
    available = float(budget_mib) - BASE_MIB
    if available <= 0:
        raise ValueError(f"state.memory_budget_mib {budget_mib:g} is below the base RSS of {BASE_MIB:g} MiB")
    caps: dict[str, int] = {}
    mib: dict[str, float] = {}
    for t in TABLES:
        share = available * t.share
        caps[t.path] = max(t.floor, int(share * MIB // t.bytes_per_item))
        mib[t.path] = caps[t.path] * t.bytes_per_item / MIB
    return Plan(float(budget_mib), caps, mib)


def _walk(config: Any, path: str) -> tuple[Any, str] | None:
    parts = path.split(".")
    node = config
    for p in parts[:-1]:
        node = getattr(node, p, None)
        if node is None:
            return None
    if parts[-1] not in type(node).model_fields:
        return None
    return node, parts[-1]


def apply_budget(config: Any, logger: logging.Logger | None = None) -> Plan:
    """Lower the unset cap keys of a root ``Config`` to the planned caps, in place.

    A cap key the user wrote in the YAML (``model_fields_set``) is left alone;
    one that keeps its default becomes ``min(default, planned)``. Keys that do
    not exist (a detector not built yet) are skipped. Logs a warning when the
    explicit caps alone exceed the budget. Returns the :class:`Plan`.
    """
    logger = logger or log
    p = plan(config.state.memory_budget_mib)
    explicit_mib = 0.0
    for t in TABLES:
        found = _walk(config, t.path)
        if found is None:
            continue
        node, key = found
        current = getattr(node, key)
        if key in node.model_fields_set:
            explicit_mib += current * t.bytes_per_item / MIB
            continue
        planned = p.caps[t.path]
        if planned < current:
            setattr(node, key, planned)
            node.model_fields_set.discard(key)  # still "not set by the user" for a later re-plan
    if explicit_mib > config.state.memory_budget_mib - BASE_MIB:
        logger.warning(
            "explicit caps need about %.0f MiB, more than state.memory_budget_mib %g MiB minus the %g MiB base",
            explicit_mib, config.state.memory_budget_mib, BASE_MIB,
        )
    return p
