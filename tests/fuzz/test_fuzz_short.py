"""The short fuzz run of ``make test`` (~25 s) and the committed regression corpus.

The long run is ``make fuzz`` (``FUZZ_SECONDS``, default 600); see
:mod:`tests.fuzz.run`. Every input under ``tests/fuzz/corpus/<target>/`` was
once a crash or hang; each must now be handled (documented error or success).
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import run
from tests.fuzz.targets import all_targets, corpus_files

TARGETS = {t.name: t for t in all_targets()}
CASES = [(name, p) for name in TARGETS for p in corpus_files(name)]


@pytest.mark.parametrize("name,path", CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_regression_corpus(name, path):
    target = TARGETS[name]
    target.setup()
    try:
        outcome, crash = run.run_one(target, path.read_bytes())
    finally:
        target.teardown()
    assert crash is None, f"{path}: {type(crash).__name__}: {crash}"


def test_short_mutation_run():
    """Every target for a few seconds from a fixed seed: no crash, no hang, no runaway RSS."""
    seconds = float(os.environ.get("FUZZ_SHORT_SECONDS", "12"))
    failures, stats = run.fuzz(seconds, seed=20261130, timeout=10.0, max_growth_mib=128.0, verbose=True, save=False)
    assert {s.name for s in stats} == set(TARGETS)
    assert all(s.execs > 10 for s in stats), [(s.name, s.execs) for s in stats]
    assert not failures, "\n".join(f"{f.kind} in {f.target}: {f.summary}\n{f.detail}" for f in failures)


# ----------------------------------------------------------------------------- hypothesis (structure-aware)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


@FAST
@given(st.binary(max_size=2048))
def test_decoders_on_arbitrary_bytes(data):
    from detector.normalise import UndecodableRequest, decode_logs, decode_metrics, decode_traces

    for decode in (decode_traces, decode_logs, decode_metrics):
        try:
            decode(data)
        except UndecodableRequest:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)
otlp_keys = st.sampled_from(
    ["resourceSpans", "resourceLogs", "resourceMetrics", "resource", "attributes", "scopeSpans", "spans", "traceId",
     "spanId", "kind", "status", "code", "key", "value", "stringValue", "intValue", "kvlistValue", "values",
     "arrayValue", "bytesValue", "logRecords", "body", "severityNumber", "timeUnixNano", "scopeLogs", "name"]
)
otlp_like = st.recursive(
    json_values,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(otlp_keys, children, max_size=5),
    max_leaves=40,
)


@FAST
@given(st.dictionaries(st.sampled_from(["resourceSpans", "resourceLogs", "resourceMetrics", "x"]), otlp_like, min_size=1, max_size=2))
def test_otlp_json_parser_on_generated_objects(obj):
    from detector.normalise import normalise_logs, normalise_metrics, normalise_traces
    from detector.normalise.otlp_json import OtlpJsonError, parse_request

    try:
        signal, msg = parse_request(json.dumps(obj))
    except OtlpJsonError:
        return
    {"traces": normalise_traces, "logs": normalise_logs, "metrics": normalise_metrics}[signal](msg)


config_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from(["10s", "5m", "0s", "-1s", "x", "1h30m", "*", ""]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=20,
)
sections = st.sampled_from(["receiver", "http", "pipeline", "detectors", "alerts", "state", "logging", "nope"])


@FAST
@given(st.dictionaries(sections, config_values, max_size=4))
def test_config_loader_on_generated_documents(doc):
    import yaml

    from detector.config.loader import ConfigError, load_config_text

    try:
        load_config_text(yaml.safe_dump(doc), "gen.yaml")
    except ConfigError:
        pass
