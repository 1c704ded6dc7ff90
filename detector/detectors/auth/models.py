"""State of the auth detector: bounded entity tables, per-service baselines, population models.

Everything here is plain Python (``__slots__`` objects, dicts, lists) plus
river objects that pickle (``HalfSpaceTrees``, ``stats.Quantile``), so
``state_dict()`` is a picklable snapshot. Entity keys are already hashed
(:class:`~detector.detectors.base.IdentityHasher` output): no raw principal,
source or token is ever stored.

Sizes (CPython 3.11, measured with ``tests/bench/bench_auth.py``): a principal
or source entity with one recent bucket ≈ 0.5–0.8 KB; the caps in the config
bound the tables (LRU) and ``entity_ttl`` drops idle entries.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, Iterator

from river import anomaly, stats

SET_CAP = 64  # distinct members kept per entity set (a set at the cap is over every threshold)
SMALL_CAP = 16


def squash(x: float, cap: float) -> float:
    """Fixed log transform of a count into [0, 1]: ``min(1, log1p(x) / log1p(cap))``."""
    if x <= 0:
        return 0.0
    v = math.log1p(x) / math.log1p(cap)
    return 1.0 if v > 1.0 else v


def wilson_lower(k: int, n: int, z: float) -> float:
    """Wilson score interval lower bound of a proportion k/n at ``z`` (Wilson 1927). 0 when n = 0."""
    if n <= 0:
        return 0.0
    p = k / n
    z2 = z * z
    den = 1 + z2 / n
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - margin) / den)


def touch_capped(d: dict, key: Any, idx: int, add: int = 0, cap: int = SET_CAP) -> None:
    """``d[key] = [last_idx, count]``; new keys beyond ``cap`` are dropped (the set is already saturated)."""
    e = d.get(key)
    if e is None:
        if len(d) >= cap:
            return
        d[key] = [idx, add]
    else:
        e[0] = idx
        e[1] += add


def prune_members(d: dict, oldest: int) -> None:
    """Drop members whose last window index is below ``oldest``."""
    stale = [k for k, e in d.items() if e[0] < oldest]
    for k in stale:
        del d[k]


class Buckets:
    """Per-window counts of one entity over a sliding horizon of whole windows.

    ``rows`` is a list of ``[window_index, c0, c1, …]``; ``add`` merges one
    window, ``sums(oldest)`` prunes rows older than ``oldest`` and returns the
    column sums.
    """

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: list[list[int]] = []

    def add(self, idx: int, counts: list[int]) -> None:
        if self.rows and self.rows[-1][0] == idx:
            row = self.rows[-1]
            for i, c in enumerate(counts, 1):
                row[i] += c
        else:
            self.rows.append([idx, *counts])

    def sums(self, oldest: int, width: int) -> list[int]:
        rows = self.rows
        cut = 0
        while cut < len(rows) and rows[cut][0] < oldest:
            cut += 1
        if cut:
            del rows[:cut]
        out = [0] * width
        for r in rows:
            for i in range(width):
                out[i] += r[i + 1]
        return out


class PrincipalState:
    """One principal (hashed) of one service.

    Attributes:
        last: last window index seen. buckets: ``[idx, fail, succ, forb]`` rows.
        sources: hashed source → ``[last_idx, failures]`` (capped).
        known: hashed sources that authenticated this principal successfully (capped).
        run, run_last, run_sources: current consecutive-failure run (count, last
            failure time in seconds, hashed sources seen in it).
        ew_forb: exponentially weighted horizon count of 403s when not alerting.
        alerting: window index until which the principal counts as alerting.
    """

    __slots__ = ("last", "buckets", "sources", "known", "run", "run_last", "run_sources", "ew_forb", "alerting")

    def __init__(self) -> None:
        self.last = 0
        self.buckets = Buckets()
        self.sources: dict[str, list[int]] = {}
        self.known: tuple[str, ...] | None = None
        self.run = 0
        self.run_last = 0.0
        self.run_sources: tuple[str | None, ...] | None = None
        self.ew_forb = 0.0
        self.alerting = -1


class SourceState:
    """One source address (hashed) of one service.

    Attributes:
        buckets: ``[idx, fail, succ, unknown_fail]`` rows. principals: hashed
        principal → ``[last_idx, failures]`` (capped at 64). uas: hashed user agents.
        run, run_last, run_principals: consecutive-failure run from this source.
    """

    __slots__ = ("last", "buckets", "principals", "uas", "run", "run_last", "run_principals", "alerting")

    def __init__(self) -> None:
        self.last = 0
        self.buckets = Buckets()
        self.principals: dict[str, list[int]] = {}
        self.uas: dict[str, list[int]] = {}
        self.run = 0
        self.run_last = 0.0
        self.run_principals: set[str] | None = None
        self.alerting = -1


class TokenState:
    """One token/session id (hashed): source networks and user agents it was used from.

    ``nets`` / ``uas``: ``((hashed network (/24, /48) or user agent, last window index), …)``,
    at most 16 pairs; tuples, because nearly every token has exactly one of each.
    """

    __slots__ = ("last", "nets", "uas", "alerting")

    def __init__(self) -> None:
        self.last = 0
        self.nets: tuple = ()
        self.uas: tuple = ()
        self.alerting = -1


class OpState:
    """Baseline of one protected operation for ``auth_bypass``.

    Decayed counts (learned only while not alerting): ``anon`` anonymous
    requests, ``anon_deny`` of them answered 401/403, ``total`` requests,
    ``total_anon`` (for the anonymous share), ``deny`` all denials.
    """

    __slots__ = ("last", "anon", "anon_deny", "total", "total_anon", "deny", "alerting", "recent")

    def __init__(self) -> None:
        self.last = 0
        self.recent = Buckets()  # [idx, anonymous, anonymous_2xx, anonymous_denied] over bypass_horizon
        self.anon = 0.0
        self.anon_deny = 0.0
        self.total = 0.0
        self.total_anon = 0.0
        self.deny = 0.0
        self.alerting = -1


class LRUTable:
    """Bounded map key → state with LRU eviction and idle TTL (in window indices).

    ``get_or_create`` moves the key to the young end; ``expire(oldest_idx)``
    drops entries whose ``last`` is older; both count ``evicted``.
    """

    def __init__(self, cap: int, factory: Callable[[], Any]) -> None:
        self.cap = cap
        self.factory = factory
        self.data: OrderedDict[Any, Any] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: Any) -> Any:
        return self.data.get(key)

    def get_or_create(self, key: Any, idx: int) -> Any:
        d = self.data
        s = d.get(key)
        if s is None:
            if len(d) >= self.cap:
                d.popitem(last=False)
                self.evicted += 1
            s = self.factory()
            d[key] = s
        else:
            d.move_to_end(key)
        s.last = idx
        return s

    def expire(self, oldest_idx: int) -> int:
        """Drop entries idle since before ``oldest_idx``; returns how many."""
        d = self.data
        n = 0
        while d:
            k, s = next(iter(d.items()))
            if s.last >= oldest_idx:
                break
            d.popitem(last=False)
            n += 1
        self.evicted += n
        return n

    def items(self) -> Iterator[tuple[Any, Any]]:
        return iter(self.data.items())


class PopulationModel:
    """``HalfSpaceTrees`` over a fixed, ordered feature vector in [0, 1] for one population.

    Why this shape (research/algorithms.md §1.3/§1.4): HST assumes features in
    [0, 1] (each feature is a fixed log transform of a count, or a ratio), builds
    its trees on the features of the first sample (the vector is fixed and
    ordered), scores 0 until its first reference window is full (reported as
    ``warming_up``, never as ``typical``), and its scores are uncalibrated, so
    "odd" means above a running quantile (P², ``stats.Quantile``) of the scores
    of learned vectors. Vectors of alerting entities are not learned.

    Args:
        features: ordered feature names. caps: count at which each feature saturates
            (``None`` for a ratio already in [0, 1]).
        quantile: score quantile above which a vector is odd.
        window_size: HST reference window (vectors). seed: tree seed (reproducible).

    Cost: learn ≈ 14 µs, score ≈ 13 µs per vector; ≈ 45 KB pickled at
    ``n_trees=10, height=6``.
    """

    def __init__(self, features: tuple[str, ...], caps: tuple[float | None, ...], quantile: float,
                 window_size: int = 100, seed: int = 7) -> None:
        self.features = features
        self.caps = caps
        self.window_size = window_size
        self.hst = anomaly.HalfSpaceTrees(n_trees=10, height=6, window_size=window_size, seed=seed)
        self.q = stats.Quantile(quantile)
        self.learned = 0

    def vector(self, values: list[float]) -> dict[str, float]:
        out = {}
        for name, cap, v in zip(self.features, self.caps, values):
            out[name] = squash(v, cap) if cap is not None else (0.0 if v < 0 else 1.0 if v > 1 else float(v))
        return out

    @property
    def warming_up(self) -> bool:
        return self.learned < 2 * self.window_size

    def learn(self, values: list[float]) -> None:
        x = self.vector(values)
        if self.learned >= self.window_size:
            self.q.update(self.hst.score_one(x))
        self.hst.learn_one(x)
        self.learned += 1

    def judge(self, values: list[float]) -> dict[str, Any]:
        """``{"state": "warming_up"|"odd"|"typical", "score": s, "threshold": q}`` for one vector."""
        if self.warming_up:
            return {"state": "warming_up", "score": None, "threshold": None, "learned": self.learned}
        s = self.hst.score_one(self.vector(values))
        t = self.q.get()
        state = "odd" if t is None or s > t else "typical"
        return {"state": state, "score": round(s, 4), "threshold": None if t is None else round(t, 4), "learned": self.learned}


SOURCE_FEATURES = ("failures", "successes", "failed_principals", "failure_ratio", "failures_per_principal",
                   "unknown_share", "user_agents")
SOURCE_CAPS: tuple[float | None, ...] = (1000.0, 1000.0, 100.0, None, 20.0, None, 20.0)
PRINCIPAL_FEATURES = ("failures", "successes", "forbidden", "sources", "new_source", "failure_ratio")
PRINCIPAL_CAPS: tuple[float | None, ...] = (1000.0, 1000.0, 1000.0, 64.0, None, None)


class Baseline:
    """Running population quantile (P², ``river.stats.Quantile``) with a sample count."""

    __slots__ = ("q", "n")

    def __init__(self, quantile: float) -> None:
        self.q = stats.Quantile(quantile)
        self.n = 0

    def update(self, x: float) -> None:
        self.q.update(x)
        self.n += 1

    def update_many(self, xs: list[float]) -> None:
        """``update`` for each of ``xs`` in order (same result; one call per window, not per entity)."""
        if xs:
            u = self.q.update
            for x in xs:
                u(x)
            self.n += len(xs)

    def get(self, min_samples: int) -> float | None:
        if self.n < min_samples:
            return None
        v = self.q.get()
        return None if v is None else float(v)


class ServiceState:
    """Per-service learned state: first/last seen, baselines, population models, service-level history.

    Attributes:
        first_seen: event time (s) of the first closed window with auth events.
        b_*: :class:`Baseline` per adaptive guard. models: population models.
        att, fail: decayed login attempts/failures (baseline failure ratio, learned
            when not alerting). history: last windows' ``(idx, attempts, failures,
            failing principals set, failing sources dict, unknown failures)`` rows.
        ops: protected operation → :class:`OpState`.
    """

    def __init__(self, quantile: float, model_quantile: float, first_seen: float) -> None:
        self.first_seen = first_seen
        self.last = 0
        self.b_pr_fail = Baseline(quantile)
        self.b_src_principals = Baseline(quantile)
        self.b_tok_nets = Baseline(quantile)
        self.b_pr_forb = Baseline(quantile)
        self.m_source = PopulationModel(SOURCE_FEATURES, SOURCE_CAPS, model_quantile)
        self.m_principal = PopulationModel(PRINCIPAL_FEATURES, PRINCIPAL_CAPS, model_quantile)
        self.att = 0.0
        self.fail = 0.0
        self.learned_att = 0
        self.history: list[tuple] = []
        self.ops: dict[str, OpState] = {}
        self.stuffing_alerting = -1
