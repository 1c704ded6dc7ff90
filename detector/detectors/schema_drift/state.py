"""Learned schema state and per-window accumulators of the schema_drift detector.

A *population* is what one schema is learned for:

- spans: ``("span", service, kind, operation, peer)``
- resource attributes: ``("resource", service, 0, "", "")`` (one record per
  resource block of an Export request)
- logs: ``("log", service, 0, scope_name, "")`` (body keys of kvlist/JSON
  bodies and Drain templates of text bodies)

Per window and population a :class:`PopWin` counts key-type *signatures*
(``(tuple(keys), tuple(types))`` of one record — most populations have a
handful), the values of keys classified as enums, and the values of the first
``value_sample_per_window`` records (for the cardinality estimate). At window
close the signatures are decoded into per-key counts (:class:`Stat`), merged
with following windows until ``min_records`` are there, tested, and learned
into the population's :class:`PopState`.

Baselines forget by volume, not time: after a test over ``n`` records every
decayed count is multiplied by ``0.5 ** (n / half_life_records)`` before the
new counts are added, so presence = decayed count with key / decayed records.
Distinct values per key are kept exactly up to ``exact_distinct_cap`` and then
in a :class:`river.sketch.NUnique` (HyperLogLog-style; hashes with blake2s and a
salt stored in the object, so it survives pickling into another process —
unlike ``sketch.Counter``/``sketch.Set``, see research/algorithms.md §1.4).
"""

from __future__ import annotations

from hashlib import blake2b
from operator import itemgetter
from typing import Any

from river import sketch

TYPE_NAMES: dict[type, str] = {
    str: "string",
    bool: "bool",
    int: "int",
    float: "double",
    bytes: "bytes",
    list: "array",
    dict: "kvlist",
}
SCALARS = frozenset((str, bool, int, float, bytes))
_VALUE_CAP = 256  # distinct values counted per enum key per window; more go to OVERFLOW
NUNIQUE_ERROR = 0.1  # relative error of the distinct-count sketch: 128 registers, ~1 KiB
VSIG_CAP = 1024  # distinct enum-value tuples per population per window before per-key counting
OVERFLOW = "\x00other"


MAX_VALUE_CHARS = 64


def shorten(v: Any) -> Any:
    """A bounded stand-in for long string/bytes values kept in state (first 40 characters + blake2b digest).

    Keeps memory per remembered value bounded (attackers choose value sizes)
    and stays stable across processes (unlike ``hash()``).
    """
    if type(v) is str and len(v) > MAX_VALUE_CHARS:
        return v[:40] + "…" + blake2b(v.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    if type(v) is bytes and len(v) > MAX_VALUE_CHARS:
        return v[:40] + blake2b(v, digest_size=8).digest()
    return v


def tname(t: type) -> str:
    """OTLP AnyValue type name of a Python value type (see ``records.value_type``)."""
    return TYPE_NAMES.get(t, "empty")


class PopWin:
    """Counts of one population in one open window (hot path: dict increments only).

    ``sigs`` is keyed by ``hash((keys, types))`` of a record (an int key: no
    tuple comparison on a hit; a 64-bit collision would merge two signatures'
    counts), ``sigdef`` keeps the signature itself the first time it is seen.
    ``getters[h]`` picks the enum keys' values out of ``tuple(attrs.values())``
    by position (``operator.itemgetter``), so counting enum values costs one
    C call and one dict increment per record: ``vsig[(h, values)]``.
    """

    __slots__ = (
        "st", "n", "sigs", "sigdef", "getters", "ex", "kc", "ovf", "enum", "vsig", "values", "samples", "nsamp", "tpl",
        "start",
    )

    def __init__(self, st: "PopState", start: float) -> None:
        self.st = st
        self.n = 0
        self.sigs: dict[int, int] = {}
        self.sigdef: dict[int, tuple] = {}
        self.getters: dict[int, tuple] = {}
        self.ex: dict[int, bytes] = {}
        self.kc: dict[tuple, int] | None = None
        self.ovf = 0
        self.enum: tuple = st.enum
        self.vsig: dict[tuple, int] = {}
        self.values: dict[str, dict] = {k: {} for k in st.enum}
        self.samples: dict[str, dict] = {}
        self.nsamp = 0
        self.tpl: dict[int, int] = {}
        self.start = start

    def new_sig(self, h: int, keys: tuple, types: tuple, tid: bytes) -> None:
        """Register signature ``h`` the first time it is seen in this window."""
        self.sigs[h] = 1
        self.sigdef[h] = (keys, types)
        if tid:
            self.ex[h] = tid
        if self.enum:
            en = set(self.enum)
            idx = [i for i, k in enumerate(keys) if k in en]
            if idx:
                ek = tuple(keys[i] for i in idx)
                getter = itemgetter(*idx) if len(idx) > 1 else (lambda vals, i=idx[0]: (vals[i],))
                self.getters[h] = (getter, ek)

    def add_record(self, attrs: dict, tid: bytes, sig_cap: int, kc_cap: int) -> None:
        """Count one record's signature (the non-inlined path used for logs and resources)."""
        keys = tuple(attrs)
        types = tuple(map(type, attrs.values()))
        h = hash((keys, types))
        c = self.sigs.get(h)
        if c is not None:
            self.sigs[h] = c + 1
        elif len(self.sigs) < sig_cap:
            self.new_sig(h, keys, types, tid)
        else:
            self.fallback(attrs, kc_cap)

    def fallback(self, attrs: dict, cap: int) -> None:
        """Per-key counting once the signature cap of the window is reached (key floods)."""
        kc = self.kc
        if kc is None:
            kc = self.kc = {}
        known = self.st.keys  # always counted, whatever their place in the record (see Stat.add)
        for k, v in attrs.items():
            kt = (k, type(v))
            c = kc.get(kt)
            if c is not None:
                kc[kt] = c + 1
            elif len(kc) < cap or k in known:
                kc[kt] = 1
            else:
                self.ovf += 1

    def sample(self, attrs: dict) -> None:
        """Keep the values of one record for the cardinality estimate."""
        self.nsamp += 1
        samples = self.samples
        for k, v in attrs.items():
            tv = type(v)
            if tv in SCALARS:
                if (tv is str or tv is bytes) and len(v) > MAX_VALUE_CHARS:
                    v = shorten(v)
                d = samples.get(k)
                if d is None:
                    if len(samples) >= 1024 and k not in self.st.keys:
                        continue
                    d = samples[k] = {}
                d[v] = d.get(v, 0) + 1

    def count_value_sig(self, h: int, vals: tuple, attrs: dict) -> None:
        """Count the enum-key values of a record with signature ``h`` and ``vals = tuple(attrs.values())``.

        Falls back to :meth:`count_values` for unhashable values or beyond
        ``VSIG_CAP`` distinct value tuples per window.
        """
        g = self.getters.get(h)
        if g is None:
            return
        try:
            vk = (h, g[0](vals))
            c = self.vsig.get(vk)
            if c is not None:
                self.vsig[vk] = c + 1
                return
            if len(self.vsig) < VSIG_CAP:
                self.vsig[vk] = 1
                return
        except TypeError:
            pass
        self.count_values(attrs)

    def count_values(self, attrs: dict) -> None:
        """Count values of enum keys one by one (the slow path of :meth:`count_value_sig`)."""
        values = self.values
        for k in self.enum:
            v = attrs.get(k, values)
            if v is values or type(v) not in SCALARS:
                continue
            v = shorten(v)
            d = values[k]
            c = d.get(v)
            if c is not None:
                d[v] = c + 1
            elif len(d) < _VALUE_CAP:
                d[v] = 1
            else:
                d[OVERFLOW] = d.get(OVERFLOW, 0) + 1


class Stat:
    """Decoded counts of one population over one or more closed windows (the test input)."""

    __slots__ = (
        "n", "key_count", "key_types", "values", "samples", "ovf", "ex_sigs", "tpl", "windows", "start", "end",
    )

    def __init__(self, start: float) -> None:
        self.n = 0
        self.key_count: dict[str, int] = {}
        self.key_types: dict[str, dict[str, int]] = {}
        self.values: dict[str, dict] = {}
        self.samples: dict[str, dict] = {}
        self.ovf = 0
        self.ex_sigs: list[tuple[frozenset, dict, bytes]] = []
        self.tpl: dict[int, int] = {}
        self.windows = 0
        self.start = start
        self.end = start

    def add(self, pw: PopWin, end: float, key_cap: int) -> None:
        """Merge one window's :class:`PopWin`; keys beyond ``key_cap`` distinct count as overflow."""
        self.n += pw.n
        self.windows += 1
        self.end = end
        self.ovf += pw.ovf
        kcount, ktypes = self.key_count, self.key_types
        known = pw.st.keys  # learned keys are always counted (at most key_cap more): a flood of new keys
        # ahead of them in a record's key order must not make them look removed

        def put(k: str, t: type, c: int) -> None:
            cur = kcount.get(k)
            if cur is None:
                if len(kcount) >= key_cap and k not in known:
                    self.ovf += c
                    return
                kcount[k] = c
                ktypes[k] = {tname(t): c}
            else:
                kcount[k] = cur + c
                tt = ktypes[k]
                name = tname(t)
                tt[name] = tt.get(name, 0) + c

        for h, c in pw.sigs.items():
            keys, types = pw.sigdef[h]
            for k, t in zip(keys, types):
                put(k, t, c)
            ex = pw.ex.get(h)
            if ex and len(self.ex_sigs) < 64:
                self.ex_sigs.append((frozenset(keys), {k: tname(t) for k, t in zip(keys, types)}, ex))
        if pw.kc:
            for (k, t), c in pw.kc.items():
                put(k, t, c)
        if pw.vsig:
            values = self.values
            dicts: dict[int, list] = {}
            for (h, vk), c in pw.vsig.items():
                ds = dicts.get(h)
                if ds is None:
                    ds = dicts[h] = [values.setdefault(k, {}) for k in pw.getters[h][1]]
                for d, v in zip(ds, vk):
                    tv = type(v)
                    if tv not in SCALARS:
                        continue
                    if (tv is str or tv is bytes) and len(v) > MAX_VALUE_CHARS:
                        v = shorten(v)
                    cur = d.get(v)
                    if cur is not None:
                        d[v] = cur + c
                    elif len(d) < _VALUE_CAP:
                        d[v] = c
                    else:
                        d[OVERFLOW] = d.get(OVERFLOW, 0) + c
        for src, dst in ((pw.values, self.values), (pw.samples, self.samples)):
            for k, d in src.items():
                if not d:
                    continue
                cur = dst.get(k)
                if cur is None:
                    dst[k] = dict(d)
                else:
                    for v, c in d.items():
                        cur[v] = cur.get(v, 0) + c
        for cid, c in pw.tpl.items():
            self.tpl[cid] = self.tpl.get(cid, 0) + c

    def exemplars(self, pred, limit: int = 5) -> list[str]:
        """Hex trace ids of example records whose (key set, key->type) satisfies ``pred``."""
        out: list[str] = []
        for keys, types, tid in self.ex_sigs:
            if pred(keys, types):
                h = tid.hex()
                if h not in out:
                    out.append(h)
                    if len(out) >= limit:
                        break
        return out


class KeyStat:
    """What is learned about one attribute key of one population.

    Attributes:
        s: decayed count of records carrying the key (presence = s / PopState.N).
        types: type name -> decayed count of values of that type.
        distinct: sampled value -> count, exact while at most ``exact_distinct_cap``
            values; None once the key is high-cardinality (then ``nu`` estimates).
        nu: ``river.sketch.NUnique`` for high-cardinality keys, else None.
        nsamp: sampled values seen. enum: True when the value distribution is tested.
        vals, vn: decayed value counts and their sum (enum keys only).
        nov, nov_n: never-seen values counted since the oldest of them appeared, and
            the key's values counted over the same span (see ``evaluate._track_novel``).
        last_seen: event time (seconds) the key was last seen.
    """

    __slots__ = ("s", "types", "distinct", "nu", "nsamp", "enum", "vals", "vn", "last_seen", "nov", "nov_n")

    def __init__(self, s: float, now: float) -> None:
        self.s = s
        self.types: dict[str, float] = {}
        self.distinct: dict | None = {}
        self.nu: Any = None
        self.nsamp = 0
        self.enum = False
        self.vals: dict | None = None
        self.vn = 0.0
        self.last_seen = now
        self.nov: dict | None = None
        self.nov_n = 0

    def cardinality(self) -> int:
        """Distinct values seen (exact while small, NUnique estimate after)."""
        if self.distinct is not None:
            return len(self.distinct)
        return int(self.nu.get()) if self.nu is not None else 0

    def add_distinct(self, d: dict, cap: int) -> None:
        """Feed sampled values ``{value: count}`` into the cardinality estimate."""
        self.nsamp += sum(d.values())
        if self.distinct is not None:
            dist = self.distinct
            for v, c in d.items():
                if v == OVERFLOW:
                    continue
                dist[v] = dist.get(v, 0) + c
            if len(dist) > cap:
                self.nu = sketch.NUnique(error_rate=NUNIQUE_ERROR)
                for v in dist:
                    self.nu.update(repr(v))
                self.distinct = None
                self.enum = False
                self.vals = None
        else:
            for v in d:
                self.nu.update(repr(v))

    def state(self) -> tuple:
        return (self.s, self.types, self.distinct, self.nu, self.nsamp, self.enum, self.vals, self.vn, self.last_seen,
                self.nov, self.nov_n)

    @classmethod
    def from_state(cls, t: tuple) -> "KeyStat":
        ks = cls(t[0], t[8])
        ks.types, ks.distinct, ks.nu, ks.nsamp, ks.enum, ks.vals, ks.vn = t[1], t[2], t[3], t[4], t[5], t[6], t[7]
        if len(t) > 10:
            ks.nov, ks.nov_n = t[9], t[10]
        return ks


class PopState:
    """The learned schema of one population.

    Attributes:
        key: the population key (see module docstring).
        N: decayed number of records; n_total: records ever learned.
        first_seen, last_seen: event times in seconds.
        keys: attribute key -> :class:`KeyStat` (at most ``max_keys_per_population``).
        enum: keys whose values are counted per record (hot path).
        pending: finding item -> event time it was first seen; these items are
            kept out of learning until accepted (``accept_after``).
        pend: the :class:`Stat` waiting for ``min_records``.
        miner: drain3 ``TemplateMiner`` (log populations), tpl/tn: decayed
            template counts and their sum.
        hist_ovf: overflow reported in the current test (for the explosion alert).
    """

    __slots__ = (
        "key", "N", "n_total", "first_seen", "last_seen", "keys", "enum", "pending", "pend", "miner", "tpl", "tn",
        "texts",
    )

    def __init__(self, key: tuple, now: float) -> None:
        self.key = key
        self.N = 0.0
        self.n_total = 0
        self.first_seen = now
        self.last_seen = now
        self.keys: dict[str, KeyStat] = {}
        self.enum: tuple = ()
        self.pending: dict[tuple, float] = {}
        self.pend: Stat | None = None
        self.miner: Any = None
        self.tpl: dict[int, float] = {}
        self.tn = 0.0
        self.texts: dict[int, str] = {}

    def presence(self, k: str) -> float:
        ks = self.keys.get(k)
        if ks is None or self.N <= 0:
            return 0.0
        return min(1.0, ks.s / self.N)

    def base_types(self, k: str) -> dict[str, float]:
        ks = self.keys.get(k)
        return ks.types if ks is not None else {}

    def state(self) -> dict:
        return {
            "key": self.key,
            "N": self.N,
            "n_total": self.n_total,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "keys": {k: ks.state() for k, ks in self.keys.items()},
            "pending": dict(self.pending),
            "miner": self.miner,
            "tpl": dict(self.tpl),
            "tn": self.tn,
            "texts": dict(self.texts),
        }

    @classmethod
    def from_state(cls, d: dict) -> "PopState":
        st = cls(tuple(d["key"]), d["first_seen"])
        st.N = d["N"]
        st.n_total = d["n_total"]
        st.last_seen = d["last_seen"]
        st.keys = {k: KeyStat.from_state(t) for k, t in d["keys"].items()}
        st.enum = tuple(k for k, ks in st.keys.items() if ks.enum)
        st.pending = dict(d.get("pending", {}))
        st.miner = d.get("miner")
        st.tpl = dict(d.get("tpl", {}))
        st.tn = d.get("tn", 0.0)
        st.texts = dict(d.get("texts", {}))
        return st


class SchemaState:
    """``schema_url`` pairs ``(resource_url, scope_url)`` learned per (service, scope name)."""

    __slots__ = ("urls", "N", "n_total", "first_seen", "last_seen", "pending", "pend")

    def __init__(self, now: float) -> None:
        self.pend: dict | None = None
        self.urls: dict[tuple[str, str], float] = {}
        self.N = 0.0
        self.n_total = 0
        self.first_seen = now
        self.last_seen = now
        self.pending: dict[tuple, float] = {}

    def state(self) -> tuple:
        return (self.urls, self.N, self.n_total, self.first_seen, self.last_seen, self.pending)

    @classmethod
    def from_state(cls, t: tuple) -> "SchemaState":
        s = cls(t[3])
        s.urls, s.N, s.n_total, s.last_seen, s.pending = dict(t[0]), t[1], t[2], t[4], dict(t[5])
        return s
