"""SchemaDriftDetector: what services send changes — attributes, types, values, schema URLs, log structure.

Learns, per population (see :mod:`.state`), which attribute keys are sent and
how often, with which value types, which values for low-cardinality keys, and
how many distinct values; per service the resource attributes; per (service,
scope) the ``schema_url``; per (service, log scope) the body keys and the Drain
templates of text bodies. Reports the contract's kinds: ``attribute_added``,
``attribute_removed``, ``attribute_type_changed``, ``attribute_renamed``,
``value_distribution_shift``, ``cardinality_explosion``, ``schema_url_changed``,
``log_structure_changed``.

When it works: changes that show up in what one side sends (a deploy renaming
or dropping an attribute, an id that became a string, a status code never seen
before, ids leaking into an enum attribute, a log line whose format changed).
When it does not: changes in values of high-cardinality keys (only their
cardinality is watched), slow drifts inside the learned tolerance, populations
with fewer than ``min_records`` records per ``max_merged_windows`` windows (they
learn but are never tested). A population is tested when ``min_records``
records are there (merging windows); its alert candidates are repeated in the
windows between two tests while the change is pending, so low-traffic alerts
do not flap.

Benign vs breaking (severity): a semantic-convention rename (table derived
from the official schema file, :mod:`.semconv`) with a matching ``schema_url``
change, or right after a deploy, is ``info``; the ``*/dup`` migration period
(both names) is not reported; a known key appearing is never reported (optional
attributes); a new key right after a deploy (``context.deployments``) is
``info``, otherwise ``warning``; removals, type changes, value shifts and
cardinality explosions are ``warning``; ``schema_url_changed`` is ``info``.
``critical`` comes from the alert manager's correlation with error rates.

Cost: per span a key-type signature (``tuple(attrs)``, ``tuple(map(type, ...))``)
and one dict increment, plus value counts for enum keys and, for the first
``value_sample_per_window`` records of a population per window, a value
sample: 3.5-5 µs per span amortised with 30 attributes on the shared 2-vCPU
VM under load (tests/bench/bench_schema_drift.py, tests/bench/RESULTS.md).
Everything statistical runs at window close, vectorised where it is per series
(the G-test p-values of all keys in one ``scipy.stats.chi2.sf`` call).

river: ``sketch.NUnique`` (salted blake2s, survives restarts) estimates the
cardinality of high-cardinality keys; presence, type and value changes are
counting problems and use counts with explicit thresholds, a binomial tail and
the G-test instead of river's binary drift detectors, which research/algorithms.md
§1.5 measured as noisy or slow at these volumes (§2.2, §2.4: "river is barely
needed here").

Identities (ids, sessions, users, addresses: ``value_ignore_keys``) are
checked for presence and type only; ``ignore_keys`` (request ids...) not at all.

Score direction: higher is more anomalous; the unit depends on the kind (share
of records, JS distance, number of new values); each candidate carries its
threshold in the same unit.

Bounded state: ``max_operations_per_service``, ``max_populations`` (LRU),
``max_keys_per_population``, per-window signature caps, TTLs; overflow of
keys is reported once per (service, peer) as ``cardinality_explosion`` with
subject ``{"limit": "attribute_keys_per_operation"}``; a known service creating
``cardinality_new_values`` new operations in one window (ids in span names or
routes), or hitting ``max_operations_per_service``, as ``{"limit":
"operations_per_service"}``.

References: research/algorithms.md §2.2; OpenTelemetry schema files
(opentelemetry.io/docs/specs/otel/schemas/); semantic-conventions
``docs/non-normative/http-migration.md`` (dup period); Drain (He et al., ICWS
2017) via drain3; G-test (Sokal & Rohlf, Biometry); Jensen-Shannon (Lin 1991).
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import replace
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np
from scipy.stats import chi2

from detector.detectors.base import Candidate, Detector, DetectorContext, Window
from detector.detectors.schema_drift import semconv
from detector.detectors.schema_drift.config import SchemaDriftConfig
from detector.detectors.schema_drift.evaluate import Env, Finding, GTest, expire_keys, find, learn
from detector.detectors.schema_drift.logs import new_miner, template_id, template_text
from detector.detectors.schema_drift.state import PopState, PopWin, SchemaState, Stat
from detector.normalise.records import LogRecord, SpanRecord

log = logging.getLogger(__name__)

NAME = "schema_drift"
STATE_FORMAT = 1
_GLOBAL_SIG_CAP = 20_000  # distinct signatures per window over all populations
_SCHEMA_CAP = 10_000  # (service, scope) schema_url entries per window
_MAX_SCORES = 10_000
WARMUP_MERGE = 6  # windows merged at most while a population warms up (learning only)
WARN_SEVERITY = 13  # OTel logs data model: WARN = 13..16; text lines at or above are not template-mined


class _Acc:
    """Everything counted for one open window."""

    __slots__ = ("pops", "schema", "nsigs", "dropped", "new_ops", "start", "end")

    def __init__(self, window: Window) -> None:
        self.pops: dict[tuple, PopWin] = {}
        self.schema: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
        self.nsigs = 0
        self.dropped: dict[str, int] = {}
        self.new_ops: dict[str, list] = {}  # service -> [count, example operation names]
        self.start = window.start
        self.end = window.end


class _Matcher:
    """Glob matching of keys against a pattern list, cached per key (bounded)."""

    __slots__ = ("patterns", "cache")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self.cache: dict[str, bool] = {}

    def __call__(self, key: str) -> bool:
        hit = self.cache.get(key)
        if hit is None:
            hit = any(fnmatch.fnmatchcase(key, p) for p in self.patterns)
            if len(self.cache) > 20_000:
                self.cache.clear()
            self.cache[key] = hit
        return hit


class SchemaDriftDetector(Detector):
    """The ``schema_drift`` detector family (see the module docstring).

    Args:
        config: :class:`~.config.SchemaDriftConfig`.
        context: :class:`~detector.detectors.base.DetectorContext` (window length,
            hasher for values shown in alerts, deployments).
    """

    name: ClassVar[str] = NAME
    STATE_VERSION: ClassVar[int] = STATE_FORMAT  # checked by detector.state.checkpoint.feature_schema

    def __init__(self, config: SchemaDriftConfig, context: DetectorContext) -> None:
        super().__init__(config, context)
        self._windows: dict[int, _Acc] = {}
        self._pops: dict[tuple, PopState] = {}
        self._svc_pops: dict[str, int] = {}
        self._svc_first: dict[str, float] = {}
        self._schemas: dict[tuple[str, str], SchemaState] = {}
        self._schema_changes: dict[str, list[tuple[float, Any, Any]]] = {}
        self._matchers: dict[tuple, _Matcher] = {}
        self._scores: dict[tuple[str, str, str], float] = {}
        self._sticky: dict[tuple, tuple[float, list[Candidate]]] = {}
        self._closes = 0
        self.evicted_keys_total = 0
        self.dropped_records_total = 0

    # ------------------------------------------------------------------ hot path
    def _acc(self, window: Window) -> _Acc:
        acc = self._windows.get(window.index)
        if acc is None:
            acc = self._windows[window.index] = _Acc(window)
        return acc

    def _open(self, acc: _Acc, pk: tuple, now: float) -> PopWin | None:
        """PopWin of population ``pk`` in ``acc``, creating the population if the caps allow."""
        st = self._pops.get(pk)
        if st is None:
            service = pk[1]
            cfg = self.config
            if self._svc_pops.get(service, 0) >= cfg.max_operations_per_service:
                acc.dropped[service] = acc.dropped.get(service, 0) + 1
                self.dropped_records_total += 1
                return None
            if len(self._pops) >= cfg.max_populations:
                self._evict_one()
            st = PopState(pk, now)
            if pk[0] == "log":
                st.miner = new_miner(cfg.max_log_templates)
            elif pk[0] == "span":
                entry = acc.new_ops.get(service)
                if entry is None:
                    entry = acc.new_ops[service] = [0, []]
                entry[0] += 1
                if len(entry[1]) < 5:
                    entry[1].append(pk[3][:80])
            self._pops[pk] = st
            if service not in self._svc_pops:
                self._svc_first[service] = now
            self._svc_pops[service] = self._svc_pops.get(service, 0) + 1
        pw = acc.pops[pk] = PopWin(st, acc.start)
        return pw

    def _evict_one(self) -> None:
        pk = next(iter(self._pops))
        self._drop_pop(pk)

    def _drop_pop(self, pk: tuple) -> None:
        self._pops.pop(pk, None)
        service = pk[1]
        left = self._svc_pops.get(service, 1) - 1
        if left <= 0:
            self._svc_pops.pop(service, None)
            self._svc_first.pop(service, None)
        else:
            self._svc_pops[service] = left
        self.evicted_total += 1

    def _count_resource(self, acc: _Acc, res, n: int) -> None:
        """Count the resource's key signature once per record (``n`` records carry it)."""
        pk = ("resource", res.service, 0, "", "")
        pw = acc.pops.get(pk) or self._open(acc, pk, acc.start)
        if pw is None:
            return
        a = res.attrs
        keys = tuple(a)
        types = tuple(map(type, a.values()))
        h = hash((keys, types))
        c = pw.sigs.get(h)
        if c is not None:
            pw.sigs[h] = c + n
        elif len(pw.sigs) < self.config.max_signatures_per_window:
            pw.new_sig(h, keys, types, b"")
            pw.sigs[h] = n
        else:
            for _ in range(min(n, 16)):
                pw.fallback(a, 2 * self.config.max_keys_per_population)
        if pw.nsamp < self.config.value_sample_per_window:
            pw.sample(a)
        pw.n += n

    def _count_schema(self, acc: _Acc, res, scope, n: int) -> None:
        sk = (res.service, scope.name)
        d = acc.schema.get(sk)
        if d is None:
            if len(acc.schema) >= _SCHEMA_CAP:
                return
            d = acc.schema[sk] = {}
        u = (res.schema_url, scope.schema_url)
        d[u] = d.get(u, 0) + n

    def observe_spans(self, window: Window, spans: Sequence[SpanRecord]) -> None:
        """Count signatures, enum values and value samples of ``spans`` (all in ``window``)."""
        acc = self._acc(window)
        pops = acc.pops
        cfg = self.config
        sig_cap = cfg.max_signatures_per_window
        kc_cap = 2 * cfg.max_keys_per_population
        nsample = cfg.value_sample_per_window
        last_res = last_scope = None
        run = 0
        for s in spans:
            res = s.resource
            if res is not last_res or s.scope is not last_scope:
                if run:
                    self._count_schema(acc, last_res, last_scope, run)
                    self._count_resource(acc, last_res, run)
                    run = 0
                last_res, last_scope = res, s.scope
            run += 1
            pk = ("span", res.service, s.kind, s.operation, s.peer)
            pw = pops.get(pk)
            if pw is None:
                pw = self._open(acc, pk, acc.start)
                if pw is None:
                    continue
            a = s.attrs
            keys = tuple(a)
            vals = tuple(a.values())
            types = tuple(map(type, vals))
            h = hash((keys, types))
            sigs = pw.sigs
            c = sigs.get(h)
            if c is not None:
                sigs[h] = c + 1
            elif len(sigs) < sig_cap and acc.nsigs < _GLOBAL_SIG_CAP:
                pw.new_sig(h, keys, types, s.trace_id)
                acc.nsigs += 1
            else:
                pw.fallback(a, kc_cap)
                if pw.enum:
                    pw.count_values(a)
                h = None
            if h is not None and pw.enum:
                g = pw.getters.get(h)
                if g is not None:
                    try:
                        vk = (h, g[0](vals))
                        c = pw.vsig.get(vk)
                        if c is not None:
                            pw.vsig[vk] = c + 1
                        else:
                            pw.count_value_sig(h, vals, a)
                    except TypeError:
                        pw.count_values(a)
            if pw.nsamp < nsample:
                pw.sample(a)
            pw.n += 1
        if run:
            self._count_schema(acc, last_res, last_scope, run)
            self._count_resource(acc, last_res, run)

    def observe_logs(self, window: Window, logs: Sequence[LogRecord]) -> None:
        """Count body-key signatures (kvlist or JSON-object bodies) and Drain templates (text bodies).

        Text lines at WARN severity or above are not template-mined: a new
        error message is an error-rate matter, not a format change.
        """
        acc = self._acc(window)
        pops = acc.pops
        cfg = self.config
        sig_cap = cfg.max_signatures_per_window
        kc_cap = 2 * cfg.max_keys_per_population
        nsample = cfg.value_sample_per_window
        last_res = last_scope = None
        run = 0
        for r in logs:
            res = r.resource
            if res is not last_res or r.scope is not last_scope:
                if run:
                    self._count_schema(acc, last_res, last_scope, run)
                    run = 0
                last_res, last_scope = res, r.scope
            run += 1
            pk = ("log", res.service, 0, r.scope.name, "")
            pw = pops.get(pk)
            if pw is None:
                pw = self._open(acc, pk, acc.start)
                if pw is None:
                    continue
            body = r.body
            tb = type(body)
            if tb is str:
                stripped = body.strip()
                if stripped[:1] == "{" and stripped[-1:] == "}" and len(stripped) <= 65536:
                    try:
                        parsed = json.loads(stripped)
                    except ValueError:
                        parsed = None
                    if type(parsed) is dict:
                        body, tb = parsed, dict
                if tb is str:
                    if r.severity_number >= WARN_SEVERITY:
                        continue  # warnings/errors: new messages there are the error detectors' business
                    cid = template_id(pw.st.miner, body)
                    pw.tpl[cid] = pw.tpl.get(cid, 0) + 1
                    pw.n += 1
                    continue
            if tb is not dict:
                continue
            before = len(pw.sigs)
            pw.add_record(body, r.trace_id, sig_cap if acc.nsigs < _GLOBAL_SIG_CAP else 0, kc_cap)
            acc.nsigs += len(pw.sigs) - before
            if pw.nsamp < nsample:
                pw.sample(body)
            pw.n += 1
        if run:
            self._count_schema(acc, last_res, last_scope, run)

    # ------------------------------------------------------------------ window close
    def _matcher(self, patterns: list[str]) -> _Matcher:
        key = tuple(patterns)
        m = self._matchers.get(key)
        if m is None:
            if len(self._matchers) > 256:
                self._matchers.clear()
            m = self._matchers[key] = _Matcher(key)
        return m

    def _after_deploy(self, service: str, now: float, cfg) -> bool:
        last = self.context.deployments.last(service)
        return last is not None and -self.context.window_seconds <= now - last[0] <= cfg.deploy_grace

    def _shower(self, cfg):
        plain = self._matcher(cfg.plain_value_keys)
        hasher = self.context.hasher

        def show(key: str, value: Any) -> str:
            text = value if isinstance(value, str) else repr(value)
            text = text[:64]
            return text if plain(key) else hasher(text)

        return show

    def close_window(self, window: Window) -> list[Candidate]:
        """Test and learn every population that saw data in ``window`` (and older unclosed windows)."""
        accs = [self._windows.pop(i) for i in sorted(i for i in self._windows if i <= window.index)]
        now = window.end
        out: list[Candidate] = []
        self._closes += 1
        for acc in accs:
            out.extend(self._close_schema(acc, now))
        ready: list[tuple[PopState, Stat]] = []
        dropped: dict[str, int] = {}
        key_cap = self.config.max_keys_per_population
        for acc in accs:
            for svc, c in acc.dropped.items():
                dropped[svc] = dropped.get(svc, 0) + c
            for pk, pw in acc.pops.items():
                st = pw.st
                if self._pops.get(pk) is not st or pw.n == 0:
                    continue
                st.last_seen = now
                self._pops[pk] = self._pops.pop(pk)  # LRU: most recent last
                if st.pend is None:
                    st.pend = Stat(pw.start)
                st.pend.add(pw, acc.end, 4 * key_cap)
                if pw.tpl and st.miner is not None:
                    for cid in pw.tpl:  # Drain widens templates as it sees more lines: refresh the text
                        st.texts[cid] = template_text(st.miner, cid)
        seen = set()
        for acc in accs:
            for pk, pw in acc.pops.items():
                st = pw.st
                if id(st) in seen or self._pops.get(pk) is not st or st.pend is None:
                    continue
                seen.add(id(st))
                cfg = self.config.for_service(pk[1])
                need = max(cfg.min_records, cfg.log_min_records) if pk[0] == "log" else cfg.min_records
                armed = st.n_total >= cfg.warmup_records and now - st.first_seen >= cfg.warmup
                if (
                    st.pend.n >= need
                    or st.pend.windows >= cfg.max_merged_windows
                    or (not armed and st.pend.windows >= WARMUP_MERGE)
                ):
                    ready.append((st, st.pend))
                    st.pend = None
        out.extend(self._evaluate(ready, now))
        out.extend(self._sticky_candidates(now, {id(st) for st, _ in ready}))
        out.extend(self._new_operations(accs, now))
        for svc, c in dropped.items():
            out.append(
                Candidate(
                    detector=NAME,
                    kind="cardinality_explosion",
                    service=svc,
                    subject={"limit": "operations_per_service"},
                    score=float(c),
                    threshold=float(self.config.max_operations_per_service),
                    severity="warning",
                    observed={"dropped_records": c},
                    baseline={"max_operations_per_service": self.config.max_operations_per_service},
                    summary=f"{svc}: more than {self.config.max_operations_per_service} distinct (kind, operation, peer) "
                    f"populations; {c} records of new ones were not analysed (span names or routes with ids?)",
                )
            )
        out = _merge(out)
        if self._closes % 30 == 0:
            self._expire(now)
        self._update_scores(out)
        return out

    def _evaluate(self, ready: list[tuple[PopState, Stat]], now: float) -> list[Candidate]:
        work: list[tuple[PopState, Stat, Env, list[Finding], bool]] = []
        gtests: list[GTest] = []
        for st, stat in ready:
            service = st.key[1]
            cfg = self.config.for_service(service)
            armed = st.n_total >= cfg.warmup_records and now - st.first_seen >= cfg.warmup
            changes = [(o, nv) for t, o, nv in self._schema_changes.get(service, ()) if now - t <= cfg.accept_after]
            env = Env(
                cfg=cfg,
                ignored=self._matcher(cfg.ignore_keys),
                value_ignored=self._matcher(cfg.value_ignore_keys),
                show=self._shower(cfg),
                after_deploy=self._after_deploy(service, now, cfg),
                schema_change=changes,
                key_cap=self.config.max_keys_per_population,
                now=now,
                armed=armed,
            )
            findings: list[Finding] = []
            need = max(cfg.min_records, cfg.log_min_records) if st.key[0] == "log" else cfg.min_records
            tested = armed and stat.n >= need
            if tested:
                mark = len(gtests)
                findings = find(st, stat, env, gtests)
                for g in gtests[mark:]:
                    g.finding.observed["_pop"] = len(work)
            work.append((st, stat, env, findings, tested))
        if gtests:
            p = chi2.sf(np.array([g.g for g in gtests]), np.array([g.df for g in gtests]))
            for g, pv in zip(gtests, p):
                idx = g.finding.observed.pop("_pop")
                if pv < work[idx][2].cfg.value_p_value:
                    g.finding.observed["p_value"] = float(pv)
                    g.finding.observed["js_distance"] = round(g.js, 4)
                    work[idx][3].append(g.finding)
        out: list[tuple[Candidate, PopState, Finding]] = []
        for st, stat, env, findings, tested in work:
            if not tested:  # too few records to test (or warming up): learn, leave pending changes as they are
                learn(st, stat, env, set(st.pending), set())
                continue
            found = {f.item for f in findings}
            for it in [it for it in st.pending if it not in found]:
                del st.pending[it]
            accepted = set()
            for f in findings:
                since = st.pending.setdefault(f.item, stat.start)
                if now - since >= env.cfg.accept_after:
                    accepted.add(f.item)
                    del st.pending[f.item]
                    continue
                _, service, kind, op, peer = st.key
                out.append(
                    (
                        Candidate(
                            detector=NAME,
                            kind=f.kind,
                            service=service,
                            peer=peer,
                            subject=f.subject,
                            score=float(f.score),
                            threshold=float(f.threshold),
                            severity=f.severity,
                            observed=f.observed,
                            baseline=f.baseline,
                            summary=f.summary,
                            exemplar_trace_ids=f.exemplars,
                        ),
                        st,
                        f,
                    )
                )
            learn(st, stat, env, set(st.pending), accepted)  # keys refused at the cap show up as overflow next time
            fired = [c for c, s2, _ in out if s2 is st]
            if fired:
                self._sticky[st.key] = (now, fired)
            else:
                self._sticky.pop(st.key, None)
        self._other_side(out)
        return [c for c, _, _ in out]

    def _new_operations(self, accs: list[_Acc], now: float) -> list[Candidate]:
        """A known service creating ``cardinality_new_values`` new span operations in one window: ids in names/routes."""
        counts: dict[str, list] = {}
        for acc in accs:
            for svc, (c, ex) in acc.new_ops.items():
                cur = counts.setdefault(svc, [0, []])
                cur[0] += c
                cur[1].extend(ex[: 5 - len(cur[1])])
        out = []
        for svc, (c, ex) in counts.items():
            cfg = self.config.for_service(svc)
            first = self._svc_first.get(svc, now)
            if c < cfg.cardinality_new_values or now - first < cfg.warmup + self.context.window_seconds:
                continue
            out.append(
                Candidate(
                    detector=NAME,
                    kind="cardinality_explosion",
                    service=svc,
                    subject={"limit": "operations_per_service"},
                    score=float(c),
                    threshold=float(cfg.cardinality_new_values),
                    severity="warning",
                    observed={"new_operations": c, "examples": ex},
                    baseline={"operations": self._svc_pops.get(svc, 0)},
                    summary=f"{svc}: {c} never-seen span operations in one window, e.g. '{ex[0] if ex else ''}' "
                    f"(ids leaking into span names or routes?)",
                )
            )
        return out

    def _sticky_candidates(self, now: float, tested: set[int]) -> list[Candidate]:
        """Repeat the last findings of populations not tested in this close while the change is pending.

        A low-traffic population is tested only every few windows (when
        ``min_records`` are there); its alert must not resolve in between. The
        repeat stops when a test no longer finds the change, when it is accepted,
        or ``max_merged_windows`` windows after the last test.
        """
        out: list[Candidate] = []
        horizon = self.config.max_merged_windows * self.context.window_seconds
        for pk in list(self._sticky):
            when, cands = self._sticky[pk]
            st = self._pops.get(pk)
            if st is None or now - when > horizon or not st.pending:
                del self._sticky[pk]
                continue
            if id(st) in tested:
                continue
            out.extend(replace(c) for c in cands)
        return out

    def _other_side(self, out: list[tuple[Candidate, PopState, Finding]]) -> None:
        """State in each edge candidate whether the other side of the edge shows the same change."""
        index: set[tuple[str, str, str, str]] = set()
        for c, st, f in out:
            if st.key[0] == "span" and f.attribute:
                index.add((c.service, c.peer, c.kind, f.attribute))
        for c, st, f in out:
            if st.key[0] != "span" or not c.peer or not f.attribute:
                continue
            side = "client" if st.key[2] in (3, 4) else "server"
            c.subject = {**c.subject, "side": side}
            if c.peer not in self._svc_pops:
                c.observed["other_side"] = "not observed"
                continue
            same = (c.peer, c.service, c.kind, f.attribute) in index or (c.peer, "", c.kind, f.attribute) in index
            c.observed["other_side"] = "same change" if same else "no change"
            other = "server" if side == "client" else "client"
            c.summary += (
                f"; {c.peer}'s {other} spans show the same change" if same
                else f"; only the {side} side ({c.service}) changed, {c.peer}'s {other} spans do not show it"
            )

    def _close_schema(self, acc: _Acc, now: float) -> list[Candidate]:
        """Test and learn ``schema_url`` pairs per (service, scope); counts merge until ``min_records``."""
        out: list[Candidate] = []
        for (service, scope), counts in acc.schema.items():
            ss = self._schemas.get((service, scope))
            if ss is None:
                if len(self._schemas) >= self.config.max_populations:
                    self._schemas.pop(next(iter(self._schemas)))
                    self.evicted_total += 1
                ss = self._schemas[(service, scope)] = SchemaState(acc.start)
            else:
                self._schemas[(service, scope)] = self._schemas.pop((service, scope))
            ss.last_seen = now
            cfg = self.config.for_service(service)
            pend = ss.pend
            if pend is None:
                pend = ss.pend = {"counts": {}, "windows": 0, "start": acc.start}
            for u, c in counts.items():
                if u in pend["counts"] or len(pend["counts"]) < 64:
                    pend["counts"][u] = pend["counts"].get(u, 0) + c
            pend["windows"] += 1
            n = sum(pend["counts"].values())
            if n < cfg.min_records and pend["windows"] < cfg.max_merged_windows:
                continue
            ss.pend = None
            counts = pend["counts"]
            armed = ss.n_total >= cfg.warmup_records and now - ss.first_seen >= cfg.warmup
            tested = armed and n >= cfg.min_records
            found = set()
            accepted = set()
            if tested:
                for urls, c in counts.items():
                    if ss.urls.get(urls, 0.0) > 0.0 or c / n < cfg.schema_url_min_share:
                        continue
                    item = ("schema", urls)
                    found.add(item)
                    since = ss.pending.setdefault(item, pend["start"])
                    old = max(ss.urls, key=ss.urls.get) if ss.urls else ("", "")
                    old_url = old[1] or old[0]
                    new_url = urls[1] or urls[0]
                    changes = self._schema_changes.setdefault(service, [])
                    changes.append((now, semconv.version_of(old_url), semconv.version_of(new_url)))
                    del changes[:-8]
                    if now - since >= cfg.accept_after:
                        accepted.add(urls)
                        del ss.pending[item]
                        continue
                    out.append(
                        Candidate(
                            detector=NAME,
                            kind="schema_url_changed",
                            service=service,
                            subject={"scope": scope, "schema_url": new_url},
                            score=c / n,
                            threshold=cfg.schema_url_min_share,
                            severity="info",
                            observed={"share": round(c / n, 4), "records": n, "resource_schema_url": urls[0],
                                      "scope_schema_url": urls[1]},
                            baseline={"schema_url": old_url, "resource_schema_url": old[0], "scope_schema_url": old[1]},
                            summary=f"{service} (scope '{scope}'): schema_url changed from '{old_url or '(none)'}' "
                            f"to '{new_url or '(none)'}' on {100.0 * c / n:.1f}% of {n} records",
                        )
                    )
                for it in [it for it in ss.pending if it not in found]:
                    del ss.pending[it]
            d = 0.5 ** (n / cfg.half_life_records)
            for u in list(ss.urls):
                ss.urls[u] *= d
                if ss.urls[u] < 1e-6:
                    del ss.urls[u]
            for urls, c in counts.items():
                if ("schema", urls) in ss.pending:
                    continue
                if urls in accepted:
                    ss.urls[urls] = float(c) / n * (ss.N * d + n)
                elif len(ss.urls) < 64:
                    ss.urls[urls] = ss.urls.get(urls, 0.0) + c
            ss.N = ss.N * d + n
            ss.n_total += n
        return out

    # ------------------------------------------------------------------ upkeep
    def _expire(self, now: float) -> None:
        ttl = self.config.population_ttl
        for pk in [pk for pk, st in self._pops.items() if now - st.last_seen > ttl]:
            self._drop_pop(pk)
        for sk in [sk for sk, ss in self._schemas.items() if now - ss.last_seen > ttl]:
            del self._schemas[sk]
            self.evicted_total += 1
        kttl = self.config.key_ttl
        for st in self._pops.values():
            self.evicted_keys_total += expire_keys(st, now, kttl)
        for svc in list(self._schema_changes):
            self._schema_changes[svc] = [c for c in self._schema_changes[svc] if now - c[0] <= 86400.0]
            if not self._schema_changes[svc]:
                del self._schema_changes[svc]

    def _update_scores(self, out: list[Candidate]) -> None:
        new: dict[tuple[str, str, str], float] = {}
        for c in out:
            k = (c.kind, c.service, c.peer)
            if c.score > new.get(k, float("-inf")):
                new[k] = c.score
        for k in self._scores:
            if k not in new and len(new) < _MAX_SCORES:
                new[k] = 0.0 if self._scores[k] != 0.0 else None  # type: ignore[assignment]
        self._scores = {k: v for k, v in new.items() if v is not None}

    def scores(self) -> Iterable[tuple[str, str, str, float]]:
        """``(kind, service, peer, score)`` of the last closed window; 0 once for series that went quiet."""
        return [(k, s, p, v) for (k, s, p), v in self._scores.items()]

    def tracked_series(self) -> int:
        """Populations (span, resource, log) plus (service, scope) schema_url entries held."""
        return len(self._pops) + len(self._schemas)

    def reconfigure(self, config: SchemaDriftConfig) -> None:
        """New thresholds and caps; learned state kept (caps shrink lazily through eviction)."""
        self.config = config
        self._matchers.clear()
        while len(self._pops) > config.max_populations:
            self._evict_one()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Learned state as plain data (river ``NUnique`` and drain3 ``TemplateMiner`` objects pickle).

        Open windows are not included: a restart loses at most the counts of the
        windows not yet closed.
        """
        return {
            "format": STATE_FORMAT,
            "pops": [st.state() for st in self._pops.values()],
            "schemas": [(k, ss.state()) for k, ss in self._schemas.items()],
            "schema_changes": {k: list(v) for k, v in self._schema_changes.items()},
            "svc_first": dict(self._svc_first),
            "evicted_total": self.evicted_total,
            "evicted_keys_total": self.evicted_keys_total,
        }

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state_dict`.

        Raises:
            ValueError: ``state`` is not empty and is not this detector's layout
                (``format`` != :data:`STATE_FORMAT`): the app's all-or-nothing
                restore then starts every detector cold instead of this one alone.
        """
        if not state:
            return
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"schema_drift state format {state.get('format')!r}, expected {STATE_FORMAT}")
        self._pops = {}
        self._svc_pops = {}
        for d in state.get("pops", []):
            st = PopState.from_state(d)
            if st.key[0] == "log" and st.miner is None:
                st.miner = new_miner(self.config.max_log_templates)
            self._pops[st.key] = st
            self._svc_pops[st.key[1]] = self._svc_pops.get(st.key[1], 0) + 1
        self._svc_first = {svc: state.get("svc_first", {}).get(svc, st_first) for svc, st_first in
                           ((st.key[1], st.first_seen) for st in self._pops.values())}
        self._schemas = {tuple(k): SchemaState.from_state(t) for k, t in state.get("schemas", [])}
        self._schema_changes = {k: [tuple(c) for c in v] for k, v in state.get("schema_changes", {}).items()}
        self.evicted_total = state.get("evicted_total", 0)
        self.evicted_keys_total = state.get("evicted_keys_total", 0)


def _merge(cands: list[Candidate]) -> list[Candidate]:
    """One candidate per alert id (several log body-key changes, or two accs, collapse into one)."""
    rank = {"info": 0, "warning": 1, "critical": 2}
    by_id: dict[str, Candidate] = {}
    for c in cands:
        cid = c.alert_id
        cur = by_id.get(cid)
        if cur is None:
            by_id[cid] = c
            continue
        if rank[c.severity] > rank[cur.severity]:
            cur.severity = c.severity
        if c.score > cur.score:
            cur.score = c.score
        more = cur.observed.setdefault("more", [])
        if len(more) < 10:
            more.append({"summary": c.summary, **{k: v for k, v in c.observed.items() if k != "more"}})
        for t in c.exemplar_trace_ids:
            if t not in cur.exemplar_trace_ids and len(cur.exemplar_trace_ids) < 5:
                cur.exemplar_trace_ids.append(t)
    return list(by_id.values())
