"""Fuzz targets: what is fuzzed, how inputs are mutated, and which exceptions are documented.

A *crash* is any exception other than the target's documented ones (or a
broken invariant on the output); a *hang* is one input taking longer than the
runner's per-input timeout. Inputs are bytes on disk (``corpus/<target>/*``)
so every crash found becomes a committed regression case.

Targets:

``decode_traces`` / ``decode_logs`` / ``decode_metrics``
    :mod:`detector.normalise` on mutated protobuf bytes; documented:
    ``UndecodableRequest``. Output invariants: ids of the documented lengths,
    ``service`` a non-empty str, ``accepted``/``rejected`` consistent, and (traces,
    logs) the same records and counts as the standard decode alone
    (:mod:`detector.normalise.fastpath` is differential-fuzzed against it, with
    its one documented difference).
``replay_json``
    :func:`detector.replay.reader.iter_requests` on a file of mutated OTLP/JSON
    lines (+ normalising every request it yields); documented: ``ReplayInputError``.
``replay_binary``
    the same reader on mutated ``.pb`` files (single and length-delimited).
``config``
    :func:`detector.config.loader.load_config_text` on mutated YAML, then the
    memory-budget plan and per-service resolution; documented: ``ConfigError``.
``pipeline``
    decoded mutated requests through an in-process App (real detectors, alert
    manager); any detector exception is a crash.
``receiver``
    a real running gRPC receiver (see :mod:`tests.fuzz.receiver_target`).
"""

from __future__ import annotations

import math
import os
import random
import tempfile
from pathlib import Path
from typing import Callable

from tests.fuzz import mutate, seeds


class Target:
    """One fuzz target. Subclasses set ``name`` and ``documented`` and implement the three methods."""

    name: str = ""
    documented: tuple[type[BaseException], ...] = ()

    def seeds(self) -> list[bytes]:
        raise NotImplementedError

    def mutate(self, rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
        raise NotImplementedError

    def execute(self, data: bytes) -> None:
        """Run the product on ``data``; raise only ``documented`` exceptions."""
        raise NotImplementedError

    def setup(self) -> None:
        """Acquire resources (servers, temp dirs) before the first execute."""

    def teardown(self) -> None:
        """Release what :meth:`setup` acquired (safe to call twice)."""


class InvariantError(AssertionError):
    """The product returned, but its output breaks a documented invariant."""


def _check_records(result) -> None:
    from detector.normalise.records import LogRecord, SpanRecord

    if result.rejected != sum(result.reasons.values()):
        raise InvariantError(f"rejected {result.rejected} != sum(reasons) {dict(result.reasons)}")
    for sp in result.spans:
        if type(sp) is not SpanRecord:
            raise InvariantError(f"span of type {type(sp)}")
        if len(sp.trace_id) != 16 or sp.trace_id == bytes(16):
            raise InvariantError(f"accepted span with trace_id {sp.trace_id!r}")
        if len(sp.span_id) != 8 or sp.span_id == bytes(8):
            raise InvariantError(f"accepted span with span_id {sp.span_id!r}")
        if sp.parent_span_id not in (b"",) and len(sp.parent_span_id) != 8:
            raise InvariantError(f"parent_span_id {sp.parent_span_id!r}")
        if not isinstance(sp.service, str) or not sp.service:
            raise InvariantError(f"service {sp.service!r}")
        if not isinstance(sp.end, float) or math.isnan(sp.end):
            raise InvariantError(f"end {sp.end!r}")
        if not isinstance(sp.is_error, bool):
            raise InvariantError(f"is_error {sp.is_error!r}")
        if not isinstance(sp.operation, str) or not isinstance(sp.peer, str):
            raise InvariantError(f"operation/peer {sp.operation!r} {sp.peer!r}")
        if not isinstance(sp.attrs, dict):
            raise InvariantError("attrs not a dict")
        for v in (sp.principal, sp.source, sp.user_agent):
            if v is not None and not isinstance(v, str):
                raise InvariantError(f"identity field {v!r} is not a str")
    for lr in result.logs:
        if type(lr) is not LogRecord:
            raise InvariantError(f"log of type {type(lr)}")
        if not isinstance(lr.service, str) or not lr.service:
            raise InvariantError(f"service {lr.service!r}")
        if not isinstance(lr.time, float) or math.isnan(lr.time):
            raise InvariantError(f"time {lr.time!r}")


class DecodeTarget(Target):
    """``decode_<signal>`` on mutated protobuf bytes."""

    def __init__(self, signal: str) -> None:
        from detector.normalise import UndecodableRequest, decode_logs, decode_metrics, decode_traces

        self.signal = signal
        self.name = f"decode_{signal}"
        self.documented = (UndecodableRequest,)
        self._decode: Callable = {"traces": decode_traces, "logs": decode_logs, "metrics": decode_metrics}[signal]

    def seeds(self) -> list[bytes]:
        return seeds.binary_seeds(self.signal)

    def mutate(self, rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
        return mutate_request(rng, self.signal, data, corpus)

    def _standard(self, data: bytes):
        """The decode without :mod:`detector.normalise.fastpath` (None when it refuses the bytes)."""
        from detector.normalise import UndecodableRequest, normalise_logs, normalise_traces
        from detector.normalise._common import decode_standard
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        cls, normalise = {"traces": (ExportTraceServiceRequest, normalise_traces),
                          "logs": (ExportLogsServiceRequest, normalise_logs)}[self.signal]  # fmt: skip
        try:
            return decode_standard(cls, data, normalise)
        except UndecodableRequest:
            return None

    def execute(self, data: bytes) -> str:
        from tests.support.records import result_difference

        try:
            result = self._decode(data)
        except self.documented:
            if self.signal != "metrics" and self._standard(data) is not None:
                raise InvariantError("the decode refused bytes the standard decode accepts") from None
            raise
        _check_records(result)
        if self.signal != "metrics":
            standard = self._standard(data)
            diff = "the standard decode refuses them" if standard is None else result_difference(result, standard)
            if diff:
                # the documented difference (fastpath module docstring): of a repeated key only the
                # last value is read; with the repeats collapsed the standard decode must agree
                from detector.normalise import fastpath

                fast_cls = fastpath.TRACES if self.signal == "traces" else fastpath.LOGS
                collapsed = self._standard(fast_cls.FromString(data).SerializeToString())
                if collapsed is not None and result_difference(result, collapsed) is None:
                    diff = None
            if diff:
                raise InvariantError(f"fast and standard decode differ: {diff}")
        return f"{bool(result.accepted)}:{bool(result.rejected)}:{result.utf8_repaired}:{bool(result.truncated)}"


def mutate_request(rng: random.Random, signal: str, data: bytes, corpus: list[bytes]) -> bytes:
    """Structural (when the seed parses) and/or byte-level mutation of an OTLP request."""
    if signal in ("traces", "logs") and rng.random() < 0.5:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        cls = ExportTraceServiceRequest if signal == "traces" else ExportLogsServiceRequest
        try:
            msg = cls.FromString(data)
        except Exception:
            msg = None
        if msg is not None:
            (mutate.mutate_trace_message if signal == "traces" else mutate.mutate_logs_message)(rng, msg)
            out = msg.SerializeToString()
            return mutate.mutate_bytes(rng, out, corpus, 1) if rng.random() < 0.3 else out
    return mutate.mutate_bytes(rng, data, corpus)


class _TempDirTarget(Target):
    def setup(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix=f"otelanom-fuzz-{self.name}-")

    def teardown(self) -> None:
        d = getattr(self, "_dir", None)
        if d is not None:
            d.cleanup()
            self._dir = None

    def _file(self, suffix: str) -> Path:
        if getattr(self, "_dir", None) is None:
            self.setup()
        return Path(self._dir.name) / f"input{suffix}"


def _drain_replay(path: Path) -> None:
    from detector.normalise import normalise_logs, normalise_metrics, normalise_traces

    from detector.replay.reader import iter_requests

    norm = {"traces": normalise_traces, "logs": normalise_logs, "metrics": normalise_metrics}
    for signal, msg in iter_requests(path):
        if signal not in norm:
            raise InvariantError(f"unknown signal {signal!r}")
        _check_records(norm[signal](msg))


class ReplayJsonTarget(_TempDirTarget):
    """The replay reader on a file of mutated OTLP/JSON lines (plain or gzip)."""

    name = "replay_json"

    def __init__(self) -> None:
        from detector.replay.reader import ReplayInputError

        self.documented = (ReplayInputError,)

    def seeds(self) -> list[bytes]:
        lines = seeds.json_line_seeds()
        return [ln.encode("utf-8") for ln in lines] + ["\n".join(lines).encode("utf-8")]

    def mutate(self, rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
        texts = data.decode("utf-8", "replace").split("\n")
        i = rng.randrange(len(texts))
        texts[i] = mutate.mutate_json_line(rng, texts[i], [c.decode("utf-8", "replace") for c in corpus[:20]])
        if rng.random() < 0.2:
            texts.insert(rng.randrange(len(texts) + 1), rng.choice(["", "   ", "{}", "[]", "null", "{", "\x00"]))
        return "\n".join(texts).encode("utf-8", "surrogatepass")

    def execute(self, data: bytes) -> None:
        import gzip

        gz = len(data) % 7 == 0
        path = self._file(".jsonl.gz" if gz else ".jsonl")
        path.write_bytes(gzip.compress(data, 1) if gz else data)
        _drain_replay(path)


class ReplayBinaryTarget(_TempDirTarget):
    """The replay reader on mutated binary ``.pb`` files (single request or delimited stream)."""

    name = "replay_binary"

    def __init__(self) -> None:
        from detector.replay.reader import ReplayInputError

        self.documented = (ReplayInputError,)

    def seeds(self) -> list[bytes]:
        out = []
        for signal in ("traces", "logs", "metrics"):
            reqs = [s for s in seeds.binary_seeds(signal, 3) if s]
            out.append(reqs[0])
            out.append(b"".join(mutate._varint(len(r)) + r for r in reqs))
        return out

    def mutate(self, rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
        return mutate.mutate_bytes(rng, data, corpus)

    def execute(self, data: bytes) -> None:
        suffix = [".pb", "-traces.pb", "-logs.binpb", "-metrics.bin", ".pb.gz"][len(data) % 5]
        path = self._file(suffix)
        if suffix.endswith(".gz"):
            import gzip

            data = gzip.compress(data, 1)
        path.write_bytes(data)
        _drain_replay(path)


class ConfigTarget(Target):
    """The config loader on mutated YAML, then budget planning and per-service resolution."""

    name = "config"

    def __init__(self) -> None:
        from detector.config.loader import ConfigError

        self.documented = (ConfigError,)

    def seeds(self) -> list[bytes]:
        return [s.encode("utf-8") for s in seeds.config_seeds()]

    def mutate(self, rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
        text = mutate.mutate_yaml(rng, data.decode("utf-8", "replace"), [c.decode("utf-8", "replace") for c in corpus[:20]])
        return text.encode("utf-8", "surrogatepass")

    def execute(self, data: bytes) -> None:
        from detector.config.loader import load_config_text
        from detector.state.budget import apply_budget

        text = data.decode("utf-8", "replace")
        cfg = load_config_text(text, "fuzz.yaml")
        apply_budget(cfg)
        for family in ("error_rate", "schema_drift", "auth"):
            section = getattr(cfg.detectors, family)
            for svc in ("checkout", "batch-nightly", "", "unknown_service"):
                section.for_service(svc)


class PipelineTarget(Target):
    """Mutated OTLP traces/logs decoded and fed through an in-process App's pipeline.

    Exercises the three real detectors and the alert manager with hostile but
    decodable records (odd types in well-known attributes, extreme times,
    huge/empty names, thousands of attributes). Byte 0 picks traces or logs.
    Documented: ``UndecodableRequest``. A crash is any exception from the
    pipeline or from a detector (the worker would count it in
    ``otel_anomaly_detector_errors_total`` and lose the window's data).
    """

    name = "pipeline"

    def __init__(self) -> None:
        from detector.app import App  # noqa: F401  (ImportError = target absent)
        from detector.normalise import UndecodableRequest

        self.documented = (UndecodableRequest,)
        self._app = None

    def setup(self) -> None:
        import os

        from prometheus_client import CollectorRegistry

        from detector.app import App
        from detector.config.root import Config

        os.environ.setdefault("OTEL_ANOMALY_DETECTOR_CLASSES", "error_rate=detector.detectors.error_rate.detector:ErrorRateDetector")
        cfg = Config.model_validate({"state": {"directory": None, "memory_budget_mib": 256}, "pipeline": {"window": "1s", "allowed_lateness": "0s"}})
        self._app = App(cfg, registry=CollectorRegistry(), serve=False, salt=b"fuzz")

        def reraise(name: str) -> None:
            raise  # the detector's exception being handled by the worker  # noqa: PLE0704

        self._app.pipeline._detector_failed = reraise

    def teardown(self) -> None:
        self._app = None

    def seeds(self) -> list[bytes]:
        return [b"\x00" + d for d in seeds.binary_seeds("traces", 3)] + [b"\x01" + d for d in seeds.binary_seeds("logs", 3)]

    def mutate(self, rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
        head = data[:1] or b"\x00"
        signal = "logs" if head[0] & 1 else "traces"
        return head + mutate_request(rng, signal, data[1:], [c[1:] for c in corpus[:50]])

    def execute(self, data: bytes) -> str:
        import time

        from detector.normalise import decode_logs, decode_traces
        from detector.pipeline.batch import Batch

        if self._app is None:
            self.setup()
        head = data[0] if data else 0
        res = (decode_logs if head & 1 else decode_traces)(data[1:])
        if res.accepted:
            self._app.pipeline.process(Batch(res.spans, res.logs, 0, time.time()))
            if head & 0x10:
                self._app.pipeline.flush()
        return f"{bool(res.spans)}:{bool(res.logs)}"


def all_targets() -> list[Target]:
    """Every target whose product code exists in this checkout (missing modules are skipped)."""
    out: list[Target] = []
    for make in (
        lambda: DecodeTarget("traces"),
        lambda: DecodeTarget("logs"),
        lambda: DecodeTarget("metrics"),
        ReplayJsonTarget,
        ReplayBinaryTarget,
        ConfigTarget,
        PipelineTarget,
    ):
        try:
            out.append(make())
        except ImportError:
            continue
    try:
        from tests.fuzz.receiver_target import ReceiverTarget

        out.append(ReceiverTarget())
    except ImportError:
        pass
    return out


def by_name(name: str) -> Target:
    """The target called ``name``.

    Raises:
        KeyError: no such target (or its product code is missing).
    """
    for t in all_targets():
        if t.name == name:
            return t
    raise KeyError(name)


def corpus_dir() -> Path:
    """``tests/fuzz/corpus`` — committed regression inputs, one folder per target."""
    return Path(__file__).resolve().parent / "corpus"


def corpus_files(name: str) -> list[Path]:
    """The committed regression inputs of target ``name``, sorted."""
    d = corpus_dir() / name
    return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []


