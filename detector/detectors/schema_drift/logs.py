"""Drain template mining of text log bodies (drain3, in-memory, picklable).

One ``drain3.TemplateMiner`` per log population (service, scope), with no
persistence handler (the detector's checkpoint pickles the miner: verified to
round-trip with drain3 0.9.11) and ``drain_max_clusters`` as the bound (drain3
then keeps clusters in an LRU cache). Cost measured here: ~4 µs per line for
``add_log_message`` on short lines (research/algorithms.md §2.2: 5.0 µs add,
2.8 µs match). Drain: He, Zhu, Zheng, Lyu, "Drain: An Online Log Parsing
Approach with Fixed Depth Tree", ICWS 2017.
"""

from __future__ import annotations

from typing import Any

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

MAX_LINE = 2000  # characters of a body given to Drain


def new_miner(max_clusters: int) -> TemplateMiner:
    """A fresh in-memory miner keeping at most ``max_clusters`` templates (LRU)."""
    cfg = TemplateMinerConfig()
    cfg.drain_max_clusters = max_clusters
    cfg.profiling_enabled = False
    cfg.snapshot_interval_minutes = 10**9
    return TemplateMiner(persistence_handler=None, config=cfg)


def template_id(miner: TemplateMiner, body: str) -> int:
    """Cluster id of ``body`` (learning it: a new line may create or widen a template)."""
    return miner.add_log_message(body[:MAX_LINE])["cluster_id"]


def template_text(miner: Any, cid: int) -> str:
    """Current template text of cluster ``cid`` (``<*>`` for parameters), ``""`` once evicted."""
    cluster = miner.drain.id_to_cluster.get(cid)
    return cluster.get_template() if cluster is not None else ""
