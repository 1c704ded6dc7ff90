"""Helpers for the end-to-end tests: real processes (otel-anomaly, the Collector built by
``deploy/otelcol/build.sh``, Prometheus), real OTLP senders and sinks, and small readers of
their HTTP APIs.

Nothing here imitates a component: processes are the real programs, spans come from the
OpenTelemetry SDK's OTLP/gRPC exporter, and the "existing backend" of the fan-out config is a
real gRPC server speaking OTLP (:class:`OtlpSink`).

Skipping: :func:`need` skips a test with a printed reason, or fails it when
``OTEL_ANOMALY_REQUIRE_E2E=1`` (set by ``.ci/run``), so CI cannot pass by skipping.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent import futures
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
REQUIRE_E2E = os.environ.get("OTEL_ANOMALY_REQUIRE_E2E") == "1"
REQUIRE_TESTDATA = os.environ.get("OTEL_ANOMALY_REQUIRE_TESTDATA") == "1"


def need(condition: Any, reason: str) -> None:
    """Skip the calling test (printing ``reason``) unless ``condition`` holds.

    With ``OTEL_ANOMALY_REQUIRE_E2E=1`` a missing prerequisite fails the test instead.
    """
    if condition:
        return
    print(f"e2e prerequisite missing: {reason}", file=sys.stderr)
    if REQUIRE_E2E:
        pytest.fail(f"OTEL_ANOMALY_REQUIRE_E2E=1 but {reason}")
    pytest.skip(reason)


# ----------------------------------------------------------------------------- tools


def otelcol_binary() -> Path | None:
    """Path of the Collector built by ``deploy/otelcol/build.sh``, or None when not built.

    ``$OTEL_ANOMALY_OTELCOL`` wins; else the cache path build.sh uses:
    ``${OTEL_ANOMALY_CACHE:-~/.cache/otel-anomaly}/otelcol-<release>-<sha256(manifest)[:12]>/otelcol-anomaly``.
    """
    explicit = os.environ.get("OTEL_ANOMALY_OTELCOL")
    if explicit:
        p = Path(explicit)
        return p if p.is_file() and os.access(p, os.X_OK) else None
    build_sh = (DEPLOY / "otelcol" / "build.sh").read_text()
    m = re.search(r'^release="([^"]+)"', build_sh, re.M)
    if not m:
        return None
    digest = hashlib.sha256((DEPLOY / "otelcol" / "builder-config.yaml").read_bytes()).hexdigest()[:12]
    root = Path(os.environ.get("OTEL_ANOMALY_CACHE") or Path.home() / ".cache" / "otel-anomaly")
    p = root / f"otelcol-{m.group(1)}-{digest}" / "otelcol-anomaly"
    return p if p.is_file() and os.access(p, os.X_OK) else None


def need_otelcol() -> Path:
    """The Collector binary, or skip/fail naming how to build it."""
    b = otelcol_binary()
    need(b, "the OpenTelemetry Collector is not built (run `bash deploy/otelcol/build.sh`; needs Go)")
    return b  # type: ignore[return-value]


def need_prometheus() -> str:
    """``prometheus`` on PATH, or skip/fail."""
    p = shutil.which("prometheus")
    need(p, "prometheus is not installed (`apt-get install prometheus`, done by .ci/install-tools.sh)")
    return p  # type: ignore[return-value]


def testdata_dir() -> Path | None:
    """The shared real-data folder: ``$OTEL_ANOMALY_TESTDATA`` or ``../shared/data``."""
    env = os.environ.get("OTEL_ANOMALY_TESTDATA")
    p = Path(env) if env else REPO.parent / "shared" / "data"
    return p if p.is_dir() else None


def need_testdata(sub: str) -> Path:
    """``<testdata>/<sub>``; skip when absent, fail when ``OTEL_ANOMALY_REQUIRE_TESTDATA=1``."""
    d = testdata_dir()
    p = d / sub if d else None
    if p is None or not p.exists():
        reason = f"real test data {sub} not found (set OTEL_ANOMALY_TESTDATA or put it in ../shared/data)"
        print(reason, file=sys.stderr)
        if REQUIRE_TESTDATA or REQUIRE_E2E:
            pytest.fail(f"required test data missing: {reason}")
        pytest.skip(reason)
    return p  # type: ignore[return-value]


def detector_module_present(module: str) -> bool:
    """True when ``module`` (e.g. ``detector.detectors.auth.detector``) can be imported."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def need_detector(family: str) -> None:
    """Skip (never fail: it is not an environment problem) when ``family``'s detector has
    not landed: the module named in :data:`detector.app.DETECTOR_CLASSES` is missing."""
    from detector.app import DETECTOR_CLASSES

    module = DETECTOR_CLASSES[family].partition(":")[0]
    if not detector_module_present(module):
        reason = f"the {family} detector ({module}) has not landed yet"
        print(reason, file=sys.stderr)
        pytest.skip(reason)


# ----------------------------------------------------------------------------- processes


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Proc:
    """A child process whose stdout+stderr go to ``log``; stopped with SIGTERM (then SIGKILL).

    Args:
        name: short name used in messages.
        cmd: argv.
        log: file receiving the output.
        env: extra environment variables.
        cwd: working directory (default: the repository).
    """

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.cmd = cmd
        self.log = log
        full_env = dict(os.environ)
        full_env.update(env or {})
        self._fh = open(log, "ab")
        self.popen = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=full_env, cwd=str(cwd or REPO))

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._fh.close()
        return self.popen.returncode

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def wait_until(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.25, procs: Iterable[Proc] = ()) -> Any:
    """Poll ``fn()`` until it returns something truthy; return it.

    Raises:
        AssertionError: after ``timeout`` seconds, naming ``what`` and showing the last
            value and the log tails of ``procs`` (also when one of them died).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except (OSError, urllib.error.URLError, ConnectionError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        dead = [p for p in procs if not p.alive]
        if dead or time.monotonic() >= deadline:
            logs = "\n".join(f"--- {p.name} (exit {p.popen.poll()}) ---\n{p.tail()}" for p in procs)
            reason = f"{', '.join(p.name for p in dead)} exited" if dead else f"timed out after {timeout:.0f}s"
            raise AssertionError(f"{what}: {reason}; last value: {last!r}\n{logs}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    """``(status, body)`` of a GET; HTTP errors are returned, connection errors raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def http_json(url: str, timeout: float = 3.0) -> Any:
    status, body = http_get(url, timeout)
    if status != 200:
        raise ValueError(f"GET {url}: HTTP {status}: {body[:200]}")
    return json.loads(body)


Samples = dict[tuple[str, frozenset], float]


def scrape(url: str) -> Samples:
    """Parse a Prometheus text exposition into ``{(sample name, labels): value}``."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(url)
    if status != 200:
        raise ValueError(f"scrape {url}: HTTP {status}")
    out: Samples = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def label_values(samples: Samples, name: str, label: str, **labels: str) -> set[str]:
    """Distinct values of ``label`` on samples called ``name`` matching ``labels``."""
    want = set(labels.items())
    return {dict(ls).get(label, "") for (n, ls), _ in samples.items() if n == name and want <= ls}


# ----------------------------------------------------------------------------- otel-anomaly


class OtelAnomaly:
    """One ``otel-anomaly serve`` subprocess with its own config file and ports.

    Args:
        tmp: folder for its config, log and state.
        name: instance name (log file name).
        host: address both endpoints bind to (loopback; scale-out uses 127.0.0.x).
        grpc_port / http_port: ports (free ones when None).
        config: extra config merged over the e2e defaults (window 5s, lateness 2s, no state).
        env: extra environment (e.g. the slow test detector).
    """

    def __init__(self, tmp: Path, name: str = "otel-anomaly", host: str = "127.0.0.1", grpc_port: int | None = None,
                 http_port: int | None = None, config: dict | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.host = host
        self.grpc_port = grpc_port or free_port(host)
        self.http_port = http_port or free_port(host)
        cfg: dict[str, Any] = {
            "receiver": {"grpc": {"endpoint": f"{host}:{self.grpc_port}"}},
            "http": {"endpoint": f"{host}:{self.http_port}"},
            "pipeline": {"window": "5s", "allowed_lateness": "2s"},
            "state": {"directory": None},
            "logging": {"level": "info", "format": "text"},
        }
        _merge(cfg, config or {})
        self.config_path = tmp / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.env = env or {}
        self.tmp = tmp
        self.proc: Proc | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def start(self, wait: bool = True) -> "OtelAnomaly":
        cmd = [sys.executable, "-m", "detector", "serve", "--config", str(self.config_path)]
        self.proc = Proc(self.name, cmd, self.tmp / f"{self.name}.log", env={"PYTHONPATH": str(REPO), **self.env})
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        wait_until(lambda: http_get(self.url + "/readyz")[0] == 200, timeout, f"{self.name} /readyz", procs=[self.proc])

    def stop(self) -> int | None:
        return self.proc.stop() if self.proc else None

    def metrics(self) -> Samples:
        return scrape(self.url + "/metrics")

    def alerts(self) -> list[dict]:
        return http_json(self.url + "/api/v1/alerts")["alerts"]


def _merge(base: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


# ----------------------------------------------------------------------------- the Collector


class Collector:
    """The built Collector running one of the shipped configs in ``deploy/otelcol``.

    Addresses come in through the configs' environment variables, so the shipped files are
    used unchanged; ``overrides`` are extra ``--config=yaml:...`` arguments (kept to a
    minimum and named in each test). ``hosts`` runs it in a private mount namespace whose
    ``/etc/hosts`` is that file (``unshare -m``; for the DNS resolver test).
    """

    def __init__(self, tmp: Path, config: str, env: dict[str, str] | None = None, overrides: Iterable[str] = (),
                 hosts: Path | None = None, name: str = "otelcol") -> None:
        self.binary = need_otelcol()
        self.tmp = tmp
        self.name = name
        self.config = DEPLOY / "otelcol" / config
        self.grpc_port = free_port()
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.env = {
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
            "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{self.health_port}",
            "OTELCOL_METRICS_HOST": "127.0.0.1",
            "OTELCOL_METRICS_PORT": str(self.metrics_port),
            **(env or {}),
        }
        self.overrides = list(overrides)
        self.hosts = hosts
        self.proc: Proc | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> "Collector":
        cmd = [str(self.binary), f"--config={self.config}"] + [f"--config={o}" for o in self.overrides]
        if self.hosts is not None:
            inner = f"mount --bind {self.hosts} /etc/hosts && exec " + " ".join(_shq(c) for c in cmd)
            cmd = ["unshare", "-m", "sh", "-c", inner]
        self.proc = Proc(self.name, cmd, self.tmp / f"{self.name}.log", env=self.env)
        wait_until(lambda: http_get(f"http://127.0.0.1:{self.health_port}/")[0] == 200, 30, "Collector health_check",
                   procs=[self.proc])
        return self

    def stop(self) -> int | None:
        return self.proc.stop() if self.proc else None

    def metrics(self) -> Samples:
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")


def _shq(s: str) -> str:
    import shlex

    return shlex.quote(s)


def unshare_works() -> bool:
    """True when this user may run a command in a private mount namespace with a bind mount."""
    if not shutil.which("unshare"):
        return False
    try:
        r = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /etc/hostname /etc/hostname"],
                           capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


# ----------------------------------------------------------------------------- Prometheus


class Prometheus:
    """A real Prometheus scraping ``targets`` with the shipped rules (a test copy).

    The config is the shipped ``deploy/prometheus/prometheus.yml`` with the targets, the
    intervals (1s) and the rule file path changed; the rules are the shipped
    ``otel-anomaly.rules.yml`` with every ``for:`` set to ``rule_for`` so the test does not wait
    the production hold time.
    """

    def __init__(self, tmp: Path, anomaly_targets: list[str], otelcol_targets: list[str], rule_for: str = "1s") -> None:
        self.binary = need_prometheus()
        self.tmp = tmp
        self.port = free_port()
        rules = yaml.safe_load((DEPLOY / "prometheus" / "otel-anomaly.rules.yml").read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = rule_for
        (tmp / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
        cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        cfg["global"]["scrape_interval"] = "1s"
        cfg["global"]["evaluation_interval"] = "1s"
        cfg["rule_files"] = [str(tmp / "rules.yml")]
        for job in cfg["scrape_configs"]:
            job["scrape_interval"] = "1s"
            job["scrape_timeout"] = "1s"
            targets = anomaly_targets if job["job_name"] == "otel-anomaly" else otelcol_targets
            job["static_configs"] = [{"targets": targets}]
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Prometheus":
        (self.tmp / "tsdb").mkdir(exist_ok=True)
        cmd = [self.binary, f"--config.file={self.tmp / 'prometheus.yml'}", f"--storage.tsdb.path={self.tmp / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        self.proc = Proc("prometheus", cmd, self.tmp / "prometheus.log")
        wait_until(lambda: http_get(self.url + "/-/ready")[0] == 200, 30, "Prometheus /-/ready", procs=[self.proc])
        return self

    def stop(self) -> int | None:
        return self.proc.stop() if self.proc else None

    def alerts(self) -> list[dict]:
        return http_json(self.url + "/api/v1/alerts")["data"]["alerts"]

    def query(self, expr: str) -> list[dict]:
        from urllib.parse import quote

        return http_json(f"{self.url}/api/v1/query?query={quote(expr)}")["data"]["result"]

    def targets_up(self) -> dict[str, float]:
        return {r["metric"]["instance"]: float(r["value"][1]) for r in self.query("up")}


# ----------------------------------------------------------------------------- OTLP senders / sinks


class SpanSender:
    """OpenTelemetry SDK tracers (one TracerProvider per service) exporting over OTLP/gRPC.

    Spans carry explicit start/end times so a test can send minutes of event-time history
    in seconds. Each span is a SERVER span ``GET /api/<service>`` with HTTP semconv attributes;
    an error span has status ERROR and ``http.response.status_code`` 500.
    """

    def __init__(self, endpoint: str, services: Iterable[str]) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.providers = {}
        self.tracers = {}
        self.sent: dict[str, int] = {}
        for svc in services:
            tp = TracerProvider(resource=Resource.create({"service.name": svc, "service.version": "1.0.0"}))
            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
            tp.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=200_000, max_export_batch_size=512,
                                                     schedule_delay_millis=100))
            self.providers[svc] = tp
            self.tracers[svc] = tp.get_tracer("otel-anomaly-e2e")
            self.sent[svc] = 0

    def emit(self, service: str, n: int, errors: int, t_start: float, t_end: float, attrs: dict | None = None) -> None:
        """``n`` spans of ``service`` spread over [t_start, t_end) (unix seconds), ``errors``
        of them failing, spread evenly; ``attrs`` are set on every span after (and so over)
        the default HTTP attributes."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        tracer = self.tracers[service]
        step = (t_end - t_start) / max(n, 1)
        err_every = n / errors if errors else 0
        next_err = 0.0
        for i in range(n):
            start = t_start + i * step
            is_err = errors > 0 and i >= next_err
            if is_err:
                next_err += err_every
            span = tracer.start_span(f"GET /api/{service}", kind=SpanKind.SERVER, start_time=int(start * 1e9),
                                     attributes={"http.request.method": "GET", "http.route": f"/api/{service}",
                                                 "http.response.status_code": 500 if is_err else 200})
            if attrs:
                span.set_attributes(attrs)
            if is_err:
                span.set_status(Status(StatusCode.ERROR, "internal error"))
            span.end(end_time=int((start + min(step, 0.05)) * 1e9))
        self.sent[service] += n

    def flush(self, timeout_s: float = 30.0) -> None:
        for tp in self.providers.values():
            assert tp.force_flush(int(timeout_s * 1000)), "OTel SDK could not flush its spans"

    def shutdown(self) -> None:
        for tp in self.providers.values():
            tp.shutdown()

    @property
    def total(self) -> int:
        return sum(self.sent.values())


class OtlpSink:
    """A real OTLP/gRPC server that only counts what it receives: the "existing backend"
    next to otel-anomaly in the fan-out config."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as lpb
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

        self.spans = 0
        self.log_records = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))

        def traces(req, ctx):
            self.spans += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
            return tpb.ExportTraceServiceResponse()

        def logs(req, ctx):
            self.log_records += sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)
            return lpb.ExportLogsServiceResponse()

        def metrics(req, ctx):
            return mpb.ExportMetricsServiceResponse()

        def handler(service: str, fn, req_cls, resp_cls):
            return grpc.method_handlers_generic_handler(service, {"Export": grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req_cls.FromString, response_serializer=resp_cls.SerializeToString)})

        self.server.add_generic_rpc_handlers((
            handler("opentelemetry.proto.collector.trace.v1.TraceService", traces, tpb.ExportTraceServiceRequest, tpb.ExportTraceServiceResponse),
            handler("opentelemetry.proto.collector.logs.v1.LogsService", logs, lpb.ExportLogsServiceRequest, lpb.ExportLogsServiceResponse),
            handler("opentelemetry.proto.collector.metrics.v1.MetricsService", metrics, mpb.ExportMetricsServiceRequest, mpb.ExportMetricsServiceResponse),
        ))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "OtlpSink":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(1)


def send_baseline(sender: SpanSender, services: Iterable[str], minutes: float, window_s: float, per_window: int,
                  end: float | None = None) -> float:
    """Send ``minutes`` of healthy event-time history (1 error in 100 spans) for each service,
    window by window, ending at ``end`` (default: now). Returns the end time."""
    end = time.time() if end is None else end
    start = end - minutes * 60
    n_windows = int(minutes * 60 / window_s)
    services = list(services)
    for w in range(n_windows):
        t0 = start + w * window_s
        for svc in services:
            sender.emit(svc, per_window, 1 if (w * len(services) + services.index(svc)) % 4 == 0 else 0, t0, t0 + window_s)
        if w % 12 == 11:  # about one minute of event time per Collector batch, in order
            sender.flush()
            time.sleep(0.3)
    sender.flush()
    return end
