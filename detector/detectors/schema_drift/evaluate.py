"""Window tests and learning of one population (run at window close, never per record).

:func:`find` compares a :class:`~.state.Stat` (one or more closed windows) with
the population's learned :class:`~.state.PopState` and returns
:class:`Finding` s; :func:`learn` then folds the counts into the baseline,
leaving out what is *pending* (a change not yet accepted as the new normal —
the idea of river's ``protect_anomaly_detector``: anomalies must not become
normal by themselves), and adopting what was accepted.

Rules (thresholds from :class:`~.config.SchemaDriftTunables`; defaults from
research/algorithms.md §2.2):

- added: a key never learned reaches ``added_min_share`` of the records and
  ``min_records`` records. Known keys never count as added, whatever their
  presence (optional attributes are not alerted).
- removed: a key with baseline presence >= ``removed_baseline_presence`` drops to
  <= ``removed_max_share``; or, partly removed (a canary, one instance of
  several), to <= ``optional_presence`` with a binomial tail probability below
  ``value_p_value``.
- renamed: a removed key A and an added key B in the same test, B being A's
  semantic-convention successor, or — unknown pair — with
  |presence(A) - share(B)| < ``rename_presence_tolerance`` and a common value type
  or common sampled value. A semconv successor B appearing while A is still
  sent is the ``*/dup`` migration period: nothing is reported.
- type changed: a type never learned for the key reaches ``type_min_records``
  values and ``type_min_share`` of the key's values.
- values (enum keys only): a never-seen value reaching ``new_value_min_share`` and
  ``new_value_min_records``; or the G-test (likelihood-ratio chi-square, Sokal &
  Rohlf, *Biometry* §17) on the window's value counts against the learned
  distribution with p < ``value_p_value`` and Jensen-Shannon distance (base 2,
  Lin 1991) >= ``value_js_distance``; ``cardinality_new_values`` never-seen
  values at once are a cardinality explosion instead.
- log templates (Drain, He et al., ICWS 2017, via drain3): never-seen templates
  taking ``log_new_template_share`` of the text records (and ``log_min_records``
  lines), or a template with baseline share >= ``log_vanished_share`` vanishing
  from enough lines that chance is ruled out (``(1 - share) ** lines`` below
  ``value_p_value``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from scipy.stats import binom

from detector.detectors.schema_drift import semconv
from detector.detectors.schema_drift.state import NUNIQUE_ERROR, OVERFLOW, SCALARS, KeyStat, PopState, Stat

_SCALAR_NAMES = frozenset(("string", "bool", "int", "double", "bytes"))
ENUM_MIN_SAMPLES = 200  # sampled values before a key may be classified as an enum (each value seen ~10 times)


@dataclass(slots=True)
class Finding:
    """One detected change of one population (becomes a Candidate).

    ``item`` identifies the change for the pending/accept bookkeeping;
    ``attribute`` is the key the change is about (for the other-side check).
    """

    kind: str
    item: tuple
    subject: dict[str, Any]
    severity: str
    score: float
    threshold: float
    observed: dict[str, Any]
    baseline: dict[str, Any]
    summary: str
    exemplars: list[str] = field(default_factory=list)
    attribute: str = ""


@dataclass(slots=True)
class GTest:
    """A G-test prepared for vectorised p-values: statistic, degrees of freedom, and the finding if it fires."""

    g: float
    df: int
    js: float
    finding: Finding


@dataclass(slots=True)
class Env:
    """What a test needs besides the population: config, helpers and facts about the service.

    Attributes:
        cfg: effective per-service config. ignored: key -> True when ignored.
        value_ignored: key -> True when its values are not tested (identities).
        show: ``(key, value) -> str`` truncated and hashed value for alert bodies.
        after_deploy: True when the service deployed within ``deploy_grace``.
        schema_change: ``(old_version, new_version)`` tuples of recent schema_url
            changes of the service (versions may be None when not parsable).
        key_cap: max keys per population. now: event time of the window end (s).
        armed: the population finished its warm-up.
    """

    cfg: Any
    ignored: Callable[[str], bool]
    value_ignored: Callable[[str], bool]
    show: Callable[[str, Any], str]
    after_deploy: bool
    schema_change: list
    key_cap: int
    now: float
    armed: bool


def where(st: PopState) -> tuple[dict[str, Any], str]:
    """(subject prefix, human description) of a population."""
    signal, service, kind, op, peer = st.key
    if signal == "span":
        from detector.normalise.records import SPAN_KIND_NAMES

        kname = SPAN_KIND_NAMES.get(kind, str(kind))
        edge = ""
        if peer:
            edge = f" to {peer}" if kind in (3, 4) else f" from {peer}"
        return {"operation": op, "span_kind": kname}, f"{service} {kname} spans{edge} '{op}'"
    if signal == "resource":
        return {"target": "resource"}, f"{service} resource"
    return {"target": "log", "scope": op}, f"{service} logs (scope '{op}')"


def _dominant(d: dict) -> str:
    return max(d, key=d.get) if d else ""


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}%"


def _severity_additive(env: Env) -> str:
    return "info" if env.after_deploy else "warning"


def _schema_matches(env: Env, version: tuple | None) -> bool:
    for old_v, new_v in env.schema_change:
        if version is None or new_v is None:
            return True
        if new_v >= version and (old_v is None or old_v < version):
            return True
    return False


def find(st: PopState, stat: Stat, env: Env, gtests: list[GTest]) -> list[Finding]:
    """Compare ``stat`` with the baseline of ``st``; return findings, queue G-tests in ``gtests``."""
    cfg = env.cfg
    signal, service, kind, op, peer = st.key
    sem_kind = kind if signal == "span" else None
    prefix, desc = where(st)
    n = stat.n
    out: list[Finding] = []
    ign = env.ignored
    kcount = stat.key_count

    # --- key overflow (floods of random keys): one finding per population, no per-key noise
    # sorted, like every loop over keys below: key order is the sender's in replay but upb's map
    # order in live (detector.normalise.fastpath), and findings must not depend on it
    new_keys = sorted(k for k in kcount if k not in st.keys and not ign(k))
    room = env.key_cap - len(st.keys)
    admissible = sum(1 for k in new_keys if kcount[k] >= cfg.min_records)
    overflow = stat.ovf > 0 or len(new_keys) >= env.key_cap or admissible > room
    if overflow:
        out.append(
            Finding(
                "cardinality_explosion",
                ("overflow",),
                {"limit": "attribute_keys_per_operation"},
                "warning",
                float(len(new_keys) + stat.ovf),
                float(env.key_cap),
                {"operation": st.key[3], "new_keys": len(new_keys), "overflowed_key_occurrences": stat.ovf, "records": n,
                 "example_keys": [k[:64] for k in new_keys[:5]]},
                {"keys": len(st.keys), "max_keys": env.key_cap},
                f"{desc}: {len(new_keys)} never-seen attribute keys in {n} records (cap {env.key_cap} keys per "
                f"operation, {stat.ovf} key occurrences beyond the window cap); keys are being sprayed",
                stat.exemplars(lambda keys, types: True),
            )
        )

    # --- added / removed
    added: dict[str, int] = {}
    fresh: dict[str, int] = {}  # new keys with the share but not (yet) the records of an addition: rename partners only
    if not overflow:
        for k in new_keys:
            c = kcount[k]
            if c / n >= cfg.added_min_share:
                if c >= cfg.min_records:
                    added[k] = c
                else:
                    fresh[k] = c
    removed: dict[str, tuple[float, float]] = {}
    for k in sorted(st.keys):
        ks = st.keys[k]
        if ign(k) or st.N <= 0:
            continue
        p = min(1.0, ks.s / st.N)
        if p >= cfg.removed_baseline_presence:
            share = kcount.get(k, 0) / n
            if share <= cfg.removed_max_share:
                removed[k] = (p, share)

    # dup migration period: semconv successor sent next to the old name -> benign
    for b in list(added):
        for a in st.keys:
            # both names on (nearly) every record that had the old one: the dup period, not a rollout in progress
            if semconv.is_known_pair(a, b, sem_kind) and kcount.get(a, 0) / n >= st.presence(a) - cfg.rename_presence_tolerance:
                del added[b]
                break

    added.update(fresh)  # pairing may use fresh keys; unpaired fresh keys are dropped again below

    # a rename in the middle of the tested window: A dropped by about B's share, the two rarely together
    partial: set[str] = set()
    for b, cb in added.items():
        share_b = cb / n
        for a in sorted(st.keys):
            ks = st.keys[a]
            if a in removed or a in partial or ign(a) or st.N <= 0:
                continue
            pa = min(1.0, ks.s / st.N)
            if pa < cfg.removed_baseline_presence:
                continue
            share_a = kcount.get(a, 0) / n
            # A lost about what B gained (at least half of B's share; the two shares add up to A's
            # presence): also when the deploy lands late in the window and B is still a small share
            if pa - share_a >= 0.5 * share_b and abs(share_a + share_b - pa) < cfg.rename_presence_tolerance:
                removed[a] = (pa, share_a)
                partial.add(a)

    # renames: semconv pairs first, then unknown pairs matched best-first over all (removed, added)
    pairs: list[tuple[str, str, tuple | None, bool]] = []
    for a in list(removed):
        pa = removed[a][0]
        succ = semconv.successors(a, sem_kind)
        hit = next(((b, v) for b, v in succ if b in added), None)
        if hit is not None:
            pairs.append((a, hit[0], hit[1], False))
            added.pop(hit[0])
            del removed[a]
            continue
        hit = next(((b, v) for b, v in succ if b in st.keys and kcount.get(b, 0) / n >= cfg.removed_baseline_presence * pa), None)
        if hit is not None:
            pairs.append((a, hit[0], hit[1], True))
            del removed[a]
    ranked = []
    for a, (pa, share_a) in removed.items():
        base_t = {t for t, w in st.keys[a].types.items() if w > 0}
        dist = st.keys[a].distinct or {}
        for cand, c in added.items():
            diff = abs(pa - c / n - (share_a if a in partial else 0.0))
            if diff >= cfg.rename_presence_tolerance or not base_t & set(stat.key_types.get(cand, {})):
                continue
            same_values = any(v in dist for v in stat.samples.get(cand, {}))
            similar_name = name_similarity(a, cand)
            if same_values or similar_name >= 0.25:
                ranked.append(((same_values, similar_name, -diff), a, cand))
    # best first; ties (e.g. two boolean flags renamed at once) by name, never by arrival order
    ranked.sort(key=lambda r: (-r[0][0], -r[0][1], -r[0][2], r[1], r[2]))
    for _, a, cand in ranked:
        if a in removed and cand in added:
            pairs.append((a, cand, None, False))
            del removed[a]
            del added[cand]
    for a in partial:
        removed.pop(a, None)  # a partial drop alone is not a removal
    for b in fresh:
        added.pop(b, None)
    gone = {a: (st.presence(a), kcount.get(a, 0) / n) for a, _, _, _ in pairs}
    for a, b, version, dup_ended in pairs:
        pa, share_a = gone[a]
        share_b = kcount.get(b, 0) / n
        if version is not None and (dup_ended or _schema_matches(env, version) or env.after_deploy):
            sev = "info"
        else:
            sev = "warning"
        why = (
            "end of the semconv dup migration period" if dup_ended
            else (f"known semantic-convention rename (semconv {'.'.join(map(str, version))})" if version else "unknown rename")
        )
        base_types = sorted(t for t, w in st.keys[a].types.items() if w > 0)
        new_types = sorted(stat.key_types.get(b, {}))
        examples = [env.show(b, v) for v in list(stat.samples.get(b, {}))[:3]]
        out.append(
            Finding(
                "attribute_renamed",
                ("renamed", a, b),
                {**prefix, "attribute": a, "new_attribute": b},
                sev,
                1.0 - abs(pa - share_b),
                1.0 - cfg.rename_presence_tolerance,
                {"old_share": round(share_a, 4), "new_share": round(share_b, 4), "records": n, "new_types": new_types,
                 "examples": examples, "semconv": version is not None, "schema_url_changed": bool(env.schema_change),
                 "after_deploy": env.after_deploy},
                {"old_presence": round(pa, 4), "old_types": base_types},
                f"{desc}: attribute '{a}' renamed to '{b}' ({why}); '{a}' presence {_pct(pa)} -> {_pct(share_a)}, "
                f"'{b}' on {_pct(share_b)} of {n} records",
                stat.exemplars(lambda keys, types, b=b: b in keys),
                a,
            )
        )

    for b, c in added.items():
        share = c / n
        types = sorted(stat.key_types.get(b, {}))
        out.append(
            Finding(
                "attribute_added",
                ("added", b),
                {**prefix, "attribute": b},
                _severity_additive(env),
                share,
                cfg.added_min_share,
                {"share": round(share, 4), "records": c, "of_records": n, "types": types,
                 "examples": [env.show(b, v) for v in list(stat.samples.get(b, {}))[:3]], "after_deploy": env.after_deploy},
                {"presence": 0.0, "keys": len(st.keys)},
                f"{desc}: new attribute '{b}' on {_pct(share)} of {n} records"
                + (" (right after a deploy)" if env.after_deploy else ""),
                stat.exemplars(lambda keys, types, b=b: b in keys),
                b,
            )
        )
    # partly removed (a canary or one instance of several): a required key significantly below optional_presence
    paired = {a for a, _, _, _ in pairs}
    for a, ks in st.keys.items():
        if a in removed or a in paired or ign(a) or st.N <= 0:
            continue
        pa = min(1.0, ks.s / st.N)
        c = kcount.get(a, 0)
        if pa >= cfg.removed_baseline_presence and c / n <= cfg.optional_presence:
            if binom.cdf(c, n, min(pa, 0.999)) < cfg.value_p_value:
                removed[a] = (pa, c / n)

    for a, (pa, share) in removed.items():
        out.append(
            Finding(
                "attribute_removed",
                ("removed", a),
                {**prefix, "attribute": a},
                "warning",
                pa - share,
                cfg.removed_baseline_presence - cfg.removed_max_share,
                {"share": round(share, 4), "records": n, "after_deploy": env.after_deploy},
                {"presence": round(pa, 4), "types": sorted(t for t, w in st.keys[a].types.items() if w > 0)},
                f"{desc}: attribute '{a}' missing: presence {_pct(pa)} -> {_pct(share)} of {n} records"
                + (" (partly: some senders still send it)" if share > cfg.removed_max_share else ""),
                stat.exemplars(lambda keys, types, a=a: a not in keys),
                a,
            )
        )

    # --- type changes
    retyped: set[str] = set()
    for k, wt in stat.key_types.items():
        ks = st.keys.get(k)
        if ks is None or ign(k):
            continue
        total = kcount.get(k, 0)
        for t, c in wt.items():
            if ks.types.get(t, 0.0) > 0.0:
                continue
            if c >= cfg.type_min_records and c / total >= cfg.type_min_share:
                retyped.add(k)
                old = _dominant(ks.types)
                examples = [env.show(k, v) for v in stat.samples.get(k, {}) if _tn(v) == t][:3]
                out.append(
                    Finding(
                        "attribute_type_changed",
                        ("type", k, t),
                        {**prefix, "attribute": k, "old_type": old, "new_type": t},
                        "warning",
                        c / total,
                        cfg.type_min_share,
                        {"share": round(c / total, 4), "records": c, "of_records": total, "examples": examples,
                         "types": dict(wt)},
                        {"types": {tt: round(w, 1) for tt, w in ks.types.items()}},
                        f"{desc}: attribute '{k}' changed type {old} -> {t} on {_pct(c / total)} of {total} values",
                        stat.exemplars(lambda keys, types, k=k, t=t: types.get(k) == t),
                        k,
                    )
                )

    # --- values of enum keys
    if signal == "span":
        for k, w in stat.values.items():
            ks = st.keys.get(k)
            if (
                ks is None or not ks.enum or not ks.vals or ign(k) or env.value_ignored(k)
                or ks.vn < cfg.value_min_records or k in retyped
            ):
                continue
            wn = sum(w.values())
            if wn < cfg.min_records:
                continue
            if len(w) == 1 and len(ks.vals) == 1 and next(iter(w)) in ks.vals:
                continue  # a constant that stayed constant
            new = {v: c for v, c in w.items() if v not in ks.vals}
            n_new = len(new) + (cfg.cardinality_new_values if OVERFLOW in new else 0)
            if n_new >= cfg.cardinality_new_values:
                out.append(
                    Finding(
                        "cardinality_explosion",
                        ("card", k),
                        {**prefix, "attribute": k},
                        "warning",
                        float(n_new),
                        float(cfg.cardinality_new_values),
                        {"new_values": n_new, "values": wn,
                         "examples": [env.show(k, v) for v in list(new)[:3] if v != OVERFLOW]},
                        {"distinct": len(ks.vals)},
                        f"{desc}: attribute '{k}' went from {len(ks.vals)} distinct values to {n_new} never-seen "
                        f"values in {wn} records (ids leaking into a low-cardinality attribute?)",
                        stat.exemplars(lambda keys, types, k=k: k in keys),
                        k,
                    )
                )
                continue
            # never-seen values accumulate over tests (ks.nov) until they are adopted, so that a new value
            # at 20 % of a low-traffic operation is seen after a few windows, not learned away one by one
            nov_n = ks.nov_n + wn
            acc = dict(ks.nov) if ks.nov else {}
            for v, c in new.items():
                if v != OVERFLOW:
                    acc[v] = acc.get(v, 0) + c
            top = max(acc.items(), key=lambda kv: kv[1]) if acc else None
            if top is not None and top[1] >= cfg.new_value_min_records and top[1] / nov_n >= cfg.new_value_min_share:
                shares = {v: c / nov_n for v, c in acc.items()}
                out.append(_value_finding(st, k, ks, w, wn, shares, env, desc, prefix, stat, top[1] / nov_n,
                                          cfg.new_value_min_share))
                continue
            if wn >= cfg.value_min_records:
                g, df, js = _gtest(ks, w, wn)
                if df > 0 and js >= cfg.value_js_distance:
                    shares = {v: c / wn for v, c in new.items() if v != OVERFLOW}
                    gtests.append(GTest(g, df, js, _value_finding(st, k, ks, w, wn, shares, env, desc, prefix, stat, js,
                                                                  cfg.value_js_distance)))

    # --- log templates
    if signal == "log" and stat.tpl:
        n_text = sum(stat.tpl.values())
        if n_text >= cfg.log_min_records and st.tn > 0:
            new = {cid: c for cid, c in stat.tpl.items() if cid not in st.tpl}
            n_new = sum(new.values())
            if n_new >= cfg.log_min_records and n_new >= cfg.log_new_template_share * n_text:
                tops = sorted(new.items(), key=lambda kv: -kv[1])[:3]
                out.append(
                    Finding(
                        "log_structure_changed",
                        ("tpl_new",),
                        {**prefix, "aspect": "template"},
                        _severity_additive(env),
                        n_new / n_text,
                        cfg.log_new_template_share,
                        {"new_template_share": round(n_new / n_text, 4), "records": n_text,
                         "new_templates": [st.texts.get(cid, "")[:120] for cid, _ in tops]},
                        {"templates": len(st.tpl),
                         "top_templates": [st.texts.get(cid, "")[:120] for cid in sorted(st.tpl, key=st.tpl.get, reverse=True)[:3]]},
                        f"{desc}: {_pct(n_new / n_text)} of {n_text} log lines have a never-seen template, "
                        f"e.g. '{st.texts.get(tops[0][0], '')[:80]}'",
                    )
                )
            for cid, wgt in st.tpl.items():
                share = wgt / st.tn
                # absent by chance with probability (1 - share) ** n_text: demand that to be below value_p_value
                if (
                    share >= cfg.log_vanished_share
                    and stat.tpl.get(cid, 0) == 0
                    and (1.0 - min(share, 0.999)) ** n_text < cfg.value_p_value
                ):
                    out.append(
                        Finding(
                            "log_structure_changed",
                            ("tpl_gone", cid),
                            {**prefix, "aspect": "template"},
                            _severity_additive(env),
                            share,
                            cfg.log_vanished_share,
                            {"vanished_template": st.texts.get(cid, "")[:120], "records": n_text},
                            {"share": round(share, 4)},
                            f"{desc}: the template '{st.texts.get(cid, '')[:80]}' ({_pct(share)} of lines before) "
                            f"vanished from {n_text} log lines",
                        )
                    )
    if signal == "log":
        for f in out:
            if f.kind in ("attribute_added", "attribute_removed", "attribute_renamed", "attribute_type_changed"):
                f.observed["change"] = f.kind
                f.observed["body_key"] = f.subject.get("attribute", "")
                f.kind = "log_structure_changed"
                f.subject = {**prefix, "aspect": "body_keys"}
                f.summary = f.summary.replace("attribute", "body key")
    return out


_SPLIT = re.compile(r"[._\-/\s]+|(?<=[a-z0-9])(?=[A-Z])")


def name_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the lower-cased name tokens (split on ``._-/`` and camelCase), in [0, 1].

    ``order_id``/``orderId`` -> 1.0, ``http.status_code``/``client_status_code`` -> 0.5,
    ``http.path``/``http.uri.client`` -> 0.25 (plus the common values).
    """
    ta = {t.lower() for t in _SPLIT.split(a) if t}
    tb = {t.lower() for t in _SPLIT.split(b) if t}
    if not ta or not tb:
        return 0.0
    return len(ta & tb) / len(ta | tb)


def _tn(v: Any) -> str:
    from detector.detectors.schema_drift.state import tname

    return tname(type(v))


def _gtest(ks: KeyStat, w: dict, wn: int) -> tuple[float, int, float]:
    """G statistic, degrees of freedom and Jensen-Shannon distance of window counts ``w`` vs ``ks.vals``.

    Cells: every learned value plus one cell for never-seen values; learned
    probabilities are smoothed with 0.5 pseudo-counts (Jeffreys prior) so that
    no expected count is zero. Plain Python: at <= ~100 cells it is faster than
    numpy's per-call overhead; the p-values of all tests of a window are then
    computed in one vectorised ``scipy.stats.chi2.sf`` call.
    """
    vals = ks.vals or {}
    k = len(vals)
    denom = ks.vn + 0.5 * (k + 1)
    g = 0.0
    js = 0.0
    seen = 0
    log = math.log
    for v, bw in vals.items():
        p = (bw + 0.5) / denom
        o = w.get(v, 0)
        seen += o
        q = o / wn
        m = 0.5 * (p + q)
        js += p * log(p / m)
        if o:
            g += o * log(o / (wn * p))
            js += q * log(q / m)
    o = wn - seen
    p = 0.5 / denom
    q = o / wn
    m = 0.5 * (p + q)
    js += p * log(p / m)
    if o > 0:
        g += o * log(o / (wn * p))
        js += q * log(q / m)
    js = math.sqrt(max(0.0, 0.5 * js / math.log(2)))
    return 2.0 * g, k, js


def _value_finding(st, k, ks, w, wn, new_shares, env, desc, prefix, stat, score, threshold) -> Finding:
    vn = ks.vn or 1.0
    top_base = sorted(ks.vals.items(), key=lambda kv: -kv[1])[:5]
    top_win = sorted(((v, c) for v, c in w.items() if v != OVERFLOW), key=lambda kv: -kv[1])[:5]
    new_top = sorted(new_shares.items(), key=lambda kv: -kv[1])[:3]
    new_txt = ", ".join(f"{env.show(k, v)} ({_pct(sh)})" for v, sh in new_top)
    return Finding(
        "value_distribution_shift",
        ("values", k),
        {**prefix, "attribute": k},
        "warning",
        float(score),
        float(threshold),
        {"records": wn, "shares": {env.show(k, v): round(c / wn, 4) for v, c in top_win},
         "new_values": {env.show(k, v): round(sh, 4) for v, sh in new_top}},
        {"shares": {env.show(k, v): round(c / vn, 4) for v, c in top_base}, "distinct": len(ks.vals)},
        f"{desc}: value distribution of '{k}' shifted over {wn} records"
        + (f"; never-seen values {new_txt}" if new_txt else f" (Jensen-Shannon distance {score:.2f})"),
        stat.exemplars(lambda keys, types, k=k: k in keys),
        k,
    )


def learn(st: PopState, stat: Stat, env: Env, frozen: set, accepted: set) -> int:
    """Fold ``stat`` into the baseline of ``st``; returns keys that could not be admitted (cap).

    ``frozen``: pending items kept out of learning; ``accepted``: items adopted
    as the new normal now (removed keys dropped, new keys/types/values/templates
    taken over with the window's shares).
    """
    cfg = env.cfg
    n = stat.n
    if n <= 0:
        return 0
    d = 0.5 ** (n / cfg.half_life_records)
    n_old = st.N
    st.N = n_old * d + n
    st.n_total += n
    kcount = stat.key_count
    frozen_keys = set()
    drop_keys = set()
    frozen_types = set()
    frozen_vals = set()
    for it in frozen:
        if it[0] == "removed":
            frozen_keys.add(it[1])
        elif it[0] == "renamed":
            frozen_keys.add(it[1])
            frozen_keys.add(("new", it[2]))
        elif it[0] == "added":
            frozen_keys.add(("new", it[1]))
        elif it[0] == "type":
            frozen_types.add((it[1], it[2]))
        elif it[0] in ("values", "card"):
            frozen_vals.add(it[1])
    adopt_share: dict[str, float] = {}
    adopt_type: set = set()
    adopt_vals: set = set()
    declassify: set = set()
    for it in accepted:
        if it[0] == "removed":
            drop_keys.add(it[1])
        elif it[0] == "renamed":
            drop_keys.add(it[1])
            adopt_share[it[2]] = kcount.get(it[2], 0) / n
        elif it[0] == "added":
            adopt_share[it[1]] = kcount.get(it[1], 0) / n
        elif it[0] == "type":
            adopt_type.add(it[1])
        elif it[0] == "values":
            adopt_vals.add(it[1])
        elif it[0] == "card":
            declassify.add(it[1])
    ign = env.ignored
    for k, ks in st.keys.items():
        c = kcount.get(k, 0)
        if k in frozen_keys and n_old > 0:
            ks.s = ks.s * d + (ks.s / n_old) * n
        else:
            ks.s = ks.s * d + c
        wt = stat.key_types.get(k)
        types = ks.types
        if k in adopt_type and wt:
            ks.types = {t: float(cc) for t, cc in wt.items()}
        else:
            for t in types:
                types[t] *= d
            if wt:
                for t, cc in wt.items():
                    if (k, t) not in frozen_types:
                        types[t] = types.get(t, 0.0) + cc
            tot = sum(types.values())
            for t in [t for t, w in types.items() if w < 1e-6 * tot]:
                del types[t]
        if c:
            ks.last_seen = env.now
        if ks.enum and env.value_ignored(k):  # the ignore list changed (SIGHUP)
            declassify.add(k)
        if k in declassify:
            ks.enum = False
            ks.vals = None
            ks.vn = 0.0
            ks.distinct = None
            from river import sketch

            ks.nu = sketch.NUnique(error_rate=NUNIQUE_ERROR)
        if ks.enum:
            w = stat.values.get(k)
            if k in adopt_vals and w:
                ks.vals = {v: float(cc) for v, cc in w.items() if v != OVERFLOW}
                ks.vn = sum(ks.vals.values())
                ks.nov, ks.nov_n = None, 0
            elif w and k not in frozen_vals:
                vals = ks.vals
                for v in vals:
                    vals[v] *= d
                if env.armed and (ks.nov or not w.keys() <= vals.keys()):
                    _track_novel(ks, w, cfg)
                for v, cc in w.items():
                    if v != OVERFLOW and (v in vals or not env.armed):
                        vals[v] = vals.get(v, 0.0) + cc
                if len(vals) > 2 * cfg.enum_max_distinct:
                    for v in sorted(vals, key=vals.get)[: len(vals) - 2 * cfg.enum_max_distinct]:
                        del vals[v]
                ks.vn = sum(vals.values())
        if k not in frozen_vals:
            src = stat.values.get(k) if ks.enum else None
            if src and ks.distinct is not None and src.keys() <= ks.distinct.keys():
                ks.nsamp += sum(src.values())  # an enum key with known values: nothing new to count
            else:
                src = src or stat.samples.get(k)
                if src:
                    ks.add_distinct(src, cfg.exact_distinct_cap)
        if (
            not ks.enum
            and st.key[0] == "span"
            and ks.distinct is not None
            and ks.nsamp >= ENUM_MIN_SAMPLES
            and len(ks.distinct) <= cfg.enum_max_distinct
            and ks.nsamp >= 10 * len(ks.distinct)
            and all(t in _SCALAR_NAMES for t in ks.types)
            and k not in declassify
            and not env.value_ignored(k)
        ):
            ks.enum = True
            ks.vals = {v: float(cc) for v, cc in ks.distinct.items()}
            ks.vn = sum(ks.vals.values())
    for k in drop_keys:
        st.keys.pop(k, None)
    rejected = 0
    # most records first, ties by name: at the key cap, which keys are learned must not depend on
    # the order of a record's keys (the sender's in replay, upb's map order in live)
    for k, c in sorted(kcount.items(), key=lambda kc: (-kc[1], kc[0])):
        if k in st.keys or ign(k) or ("new", k) in frozen_keys:
            continue
        share = adopt_share.get(k)
        if share is None and env.armed and c < cfg.min_records:
            continue
        if len(st.keys) >= env.key_cap:
            rejected += 1
            continue
        ks = KeyStat(share * st.N if share is not None else float(c), env.now)
        ks.types = {t: float(cc) for t, cc in stat.key_types.get(k, {}).items()}
        samp = stat.samples.get(k)
        if samp:
            ks.add_distinct(samp, cfg.exact_distinct_cap)
        st.keys[k] = ks
    st.enum = tuple(k for k, ks in st.keys.items() if ks.enum)

    if stat.tpl or st.tpl:
        gone_frozen = {it[1] for it in frozen if it[0] == "tpl_gone"}
        new_frozen = ("tpl_new",) in frozen
        for cid in st.tpl:
            if cid not in gone_frozen:
                st.tpl[cid] *= d
        for it in accepted:
            if it[0] == "tpl_gone":
                st.tpl.pop(it[1], None)
        for cid, c in stat.tpl.items():
            if cid in st.tpl:
                st.tpl[cid] += c
            elif not new_frozen and len(st.tpl) < 4 * cfg.max_log_templates:
                st.tpl[cid] = float(c)
        tot = sum(st.tpl.values())
        for cid in [c for c, w in st.tpl.items() if w < 1e-4 * tot]:
            del st.tpl[cid]
        st.tn = sum(st.tpl.values())
        for cid in [c for c in st.texts if c not in st.tpl]:
            del st.texts[cid]
    return rejected


def _track_novel(ks: KeyStat, w: dict, cfg: Any) -> None:
    """Accumulate never-seen values of an enum key; adopt them into ``ks.vals`` once they are plainly normal.

    A value is adopted when it reached ``new_value_min_records`` without the
    share of an alert (a rare but legitimate value); everything is adopted after
    ``10 * value_min_records`` values of the key (or 64 pending values), so the
    accumulator stays small and old novelties do not linger.
    """
    nov = ks.nov if ks.nov is not None else {}
    wn = sum(w.values())
    for v, c in w.items():
        if v != OVERFLOW and v not in ks.vals:
            nov[v] = nov.get(v, 0) + c
    ks.nov_n += wn
    for v in [v for v, c in nov.items() if c >= cfg.new_value_min_records]:
        ks.vals[v] = float(nov.pop(v))
    if ks.nov_n >= 10 * cfg.value_min_records or len(nov) > 64:
        for v, c in nov.items():
            ks.vals[v] = float(c)
        nov = {}
    if nov:
        ks.nov = nov
    else:
        ks.nov, ks.nov_n = None, 0


def expire_keys(st: PopState, now: float, ttl: float) -> int:
    """Drop keys of ``st`` unseen for ``ttl`` seconds; returns how many."""
    old = [k for k, ks in st.keys.items() if now - ks.last_seen > ttl]
    for k in old:
        del st.keys[k]
    if old:
        st.enum = tuple(k for k, ks in st.keys.items() if ks.enum)
    return len(old)


__all__ = ["Env", "Finding", "GTest", "find", "learn", "expire_keys", "where", "SCALARS"]
