"""Struct-of-arrays store of every tracked error-rate series.

One row per series; each per-series number is one slot in a numpy array, so
a window close updates all series with a handful of vectorised operations.
Rows are addressed through ``index`` (series key -> row); freed rows are
reused. Capacity doubles on demand up to the configured ``max_series``.

Series keys are ``(kind_code, service, x)`` tuples: ``x`` is the peer (edge),
the operation, the error signature, or ``""``.
"""

from __future__ import annotations

import numpy as np

# kind codes (row "kind" column) -> contract kind names
K_SERVICE, K_EDGE, K_OPERATION, K_LOG, K_SIGNATURE = 0, 1, 2, 3, 4
KIND_NAMES = ("service_error_rate", "edge_error_rate", "operation_error_rate", "log_error_rate", "log_error_rate")

# float64 state columns
STATE_F = (
    "a",  # learned errors (decayed pseudo-count)
    "b",  # learned successes (decayed pseudo-count)
    "s",  # CUSUM statistic
    "run_n",  # requests in the CUSUM's current segment (since S left 0)
    "run_k",  # errors in that segment
    "cum_n",  # requests seen since birth (never decayed)
    "cum_k",  # errors seen since birth
    "clean",  # requests since the last window with an error
    "score",  # latest score (-log10 p units)
    "p0",  # latest baseline used
    "adwin_ref",  # baseline ratio when the series' ADWIN was created (scale of its input)
    "auth_r",  # edges: auth rejections (401/403, UNAUTHENTICATED/PERMISSION_DENIED), decayed by requests
    "auth_t",  # edges: requests, decayed the same way (the recent rejected share is auth_r / auth_t)
)
# int64 state columns
STATE_I = (
    "kind",
    "born",  # window index of birth
    "last_seen",  # window index of the last request
    "since",  # window index where the current anomalous episode started, -1 if none
    "hold",  # windows since the last anomalous window (large = none)
    "adwin_until",  # ADWIN saw an upward change; valid up to this window index
    "seg_start",  # window index where the CUSUM's current segment began (S left 0), -1 if S = 0
)
# per-row parameters (float64), rebuilt from config on load / reconfigure
PARAMS = (
    "budget",
    "alpha_fixed",  # nan = from budget
    "warmup_w",
    "warmup_req",
    "new_floor",
    "half_life",
    "prior_w",
    "prior_max",
    "floor",
    "min_err",
    "min_inc",
    "min_ratio",
    "agg_w",
    "c_ratio",
    "c_delta",
    "h_min",
    "adapt_w",
    "crit_ratio",
    "crit_inc",
    "adwin_on",
    "adwin_delta",
    "adwin_min",
    "auth_err",  # 1 = client auth rejections are edge errors (client_auth_failures_are_errors)
    "auth_share",  # client_auth_wholesale_share
)
NO_HOLD = 1 << 40


class SeriesTable:
    """Rows of per-series state in numpy columns plus Python side lists.

    Attributes:
        index: series key -> row. keys: row -> key (None when free).
        cols: column name -> numpy array of length ``capacity``.
        ring_n, ring_k: ``(capacity, ring)`` int32 per-window counts of the
            last ``ring`` windows (slot = window index mod ring).
        exemplars: row -> list of hex trace ids. adwins: row -> river ADWIN or None.
        hi: high-water mark (rows ``[0, hi)`` may be in use).
    """

    def __init__(self, ring: int, capacity: int = 1024) -> None:
        self.ring = ring
        self.capacity = capacity
        self.cols: dict[str, np.ndarray] = {}
        for name in STATE_F + PARAMS:
            self.cols[name] = np.zeros(capacity, dtype=np.float64)
        for name in STATE_I:
            self.cols[name] = np.zeros(capacity, dtype=np.int64)
        self.used = np.zeros(capacity, dtype=bool)
        self.ring_n = np.zeros((capacity, ring), dtype=np.int32)
        self.ring_k = np.zeros((capacity, ring), dtype=np.int32)
        self.index: dict[tuple, int] = {}
        self.keys: list[tuple | None] = [None] * capacity
        self.exemplars: list[list[str] | None] = [None] * capacity
        self.adwins: list[object | None] = [None] * capacity
        self.free: list[int] = []
        self.hi = 0

    def __len__(self) -> int:
        return len(self.index)

    def _grow(self, need: int) -> None:
        cap = self.capacity
        while cap < need:
            cap *= 2
        for name, arr in self.cols.items():
            new = np.zeros(cap, dtype=arr.dtype)
            new[: self.capacity] = arr
            self.cols[name] = new
        used = np.zeros(cap, dtype=bool)
        used[: self.capacity] = self.used
        self.used = used
        for attr in ("ring_n", "ring_k"):
            old = getattr(self, attr)
            new = np.zeros((cap, self.ring), dtype=np.int32)
            new[: self.capacity] = old
            setattr(self, attr, new)
        extra = cap - self.capacity
        self.keys.extend([None] * extra)
        self.exemplars.extend([None] * extra)
        self.adwins.extend([None] * extra)
        self.capacity = cap

    def resize_ring(self, ring: int) -> None:
        """Change the number of remembered windows (history is dropped)."""
        if ring != self.ring:
            self.ring = ring
            self.ring_n = np.zeros((self.capacity, ring), dtype=np.int32)
            self.ring_k = np.zeros((self.capacity, ring), dtype=np.int32)

    def add(self, key: tuple) -> int:
        """Allocate a zeroed row for ``key`` and return it (the caller sets birth and params)."""
        if self.free:
            row = self.free.pop()
        else:
            if self.hi >= self.capacity:
                self._grow(self.hi + 1)
            row = self.hi
            self.hi += 1
        for name, arr in self.cols.items():
            arr[row] = 0
        self.cols["since"][row] = -1
        self.cols["hold"][row] = NO_HOLD
        self.ring_n[row] = 0
        self.ring_k[row] = 0
        self.used[row] = True
        self.keys[row] = key
        self.exemplars[row] = None
        self.adwins[row] = None
        self.index[key] = row
        return row

    def remove(self, row: int) -> None:
        key = self.keys[row]
        if key is None:
            return
        del self.index[key]
        self.keys[row] = None
        self.exemplars[row] = None
        self.adwins[row] = None
        self.used[row] = False
        self.free.append(row)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        hi = self.hi
        return {
            "ring": self.ring,
            "hi": hi,
            "cols": {name: self.cols[name][:hi].copy() for name in STATE_F + STATE_I},
            "used": self.used[:hi].copy(),
            "ring_n": self.ring_n[:hi].copy(),
            "ring_k": self.ring_k[:hi].copy(),
            "keys": list(self.keys[:hi]),
            "exemplars": list(self.exemplars[:hi]),
            "adwins": list(self.adwins[:hi]),
            "free": list(self.free),
        }

    @classmethod
    def from_state(cls, state: dict, ring: int) -> "SeriesTable":
        hi = int(state["hi"])
        table = cls(ring=int(state["ring"]), capacity=max(1024, hi))
        for name, arr in state["cols"].items():
            if name in table.cols:
                table.cols[name][:hi] = arr
        table.used[:hi] = state["used"]
        table.ring_n[:hi] = state["ring_n"]
        table.ring_k[:hi] = state["ring_k"]
        table.keys[:hi] = [tuple(k) if k is not None else None for k in state["keys"]]
        table.exemplars[:hi] = state["exemplars"]
        table.adwins[:hi] = state["adwins"]
        table.free = list(state["free"])
        table.hi = hi
        table.index = {k: i for i, k in enumerate(table.keys[:hi]) if k is not None}
        table.resize_ring(ring)
        return table
