"""The application: wires receiver -> pipeline -> detectors -> alerts -> HTTP.

One :class:`App` per process (or per test: every piece is an instance, the
Prometheus registry is injected). ``serve`` builds it, :meth:`App.start`,
waits for signals, :meth:`App.stop`. ``replay`` builds it with
``serve=False`` and feeds the pipeline directly (:mod:`detector.replay.runner`).

Seams for other parts:

* :data:`DETECTOR_CLASSES` — the one place that says which class implements
  each detector family (``"module:Class"``). Test-only override: the
  environment variable ``OTEL_ANOMALY_DETECTOR_CLASSES`` =
  ``"family=module:Class,family2=module:Class"`` (used by the backpressure test
  to slow a detector down; never set it in production).
* :meth:`App.state_dict` / :meth:`App.load_state` — everything learned
  (detectors, alerts, deployments, event clock) as plain picklable data; call
  only from the worker thread or while the worker is stopped (see
  :meth:`App.collect_state`, which does that for you). Checkpointing
  (:mod:`detector.state.checkpoint`) is wired in :meth:`App.start` /
  :meth:`App.stop` when ``state.directory`` is set.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, disable_created_metrics

from detector import __version__
from detector.alerts.manager import AlertManager
from detector.config.loader import ConfigError, load_config
from detector.config.root import Config, LoggingConfig
from detector.detectors.base import Deployments, Detector, DetectorContext, IdentityHasher
from detector.expose.collector import AlertCollector
from detector.expose.http import HttpServer
from detector.expose.metrics import SelfMetrics
from detector.pipeline.worker import Pipeline
from detector.state.budget import apply_budget

log = logging.getLogger("otel_anomaly.app")
alert_log = logging.getLogger("otel_anomaly.alerts")

disable_created_metrics()  # no *_created series (CONTRACT: the metric list is exact)

DETECTOR_CLASSES: dict[str, str] = {
    "error_rate": "detector.detectors.error_rate.detector:ErrorRateDetector",
    "schema_drift": "detector.detectors.schema_drift.detector:SchemaDriftDetector",
    "auth": "detector.detectors.auth.detector:AuthDetector",
}
"""Detector family -> ``"module:Class"``; the order is the call order. A family
whose module does not exist yet is skipped with a warning."""

STATE_FORMAT = 1

SERVE_GC_THRESHOLD = (50_000, 20, 100)
"""``gc.set_threshold`` for ``serve``: the detectors hold many long-lived small objects
and allocate per record, so CPython's default gen-0 threshold (700) runs the cycle
collector thousands of times a second under load. Measured on the auth bench
(tests/bench/RESULTS.md, bench_auth, one simulated day): 17.1 -> 11.8 µs per auth event."""


# ---------------------------------------------------------------------- detectors


def detector_classes() -> dict[str, str]:
    """:data:`DETECTOR_CLASSES` with the test-only environment override applied."""
    classes = dict(DETECTOR_CLASSES)
    override = os.environ.get("OTEL_ANOMALY_DETECTOR_CLASSES", "")
    for part in filter(None, (p.strip() for p in override.split(","))):
        family, _, target = part.partition("=")
        if family and target:
            classes[family.strip()] = target.strip()
    return classes


def load_detector_class(family: str, target: str) -> type[Detector] | None:
    """Import ``module:Class``; None (logged) when the module does not exist yet.

    When ``Class`` is missing but the module has exactly one :class:`Detector`
    subclass named ``family``, that one is used. Any other import error is raised.
    """
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            log.warning("detector %s not available (%s not found); it will not run", family, module_name)
            return None
        raise
    cls = getattr(module, cls_name, None)
    if cls is None:
        found = [
            v for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, Detector) and v is not Detector and getattr(v, "name", None) == family
        ]  # fmt: skip
        if len(found) != 1:
            raise ImportError(f"{target}: no class {cls_name} in {module_name}")
        cls = found[0]
    return cls


def build_detectors(config: Config, context: DetectorContext) -> dict[str, Detector]:
    """One instance per enabled family in :func:`detector_classes` order."""
    out: dict[str, Detector] = {}
    for family, target in detector_classes().items():
        section = getattr(config.detectors, family, None)
        if section is not None and not getattr(section, "enabled", True):
            continue
        cls = load_detector_class(family, target)
        if cls is None:
            continue
        out[family] = cls(section, context)
    return out


# ---------------------------------------------------------------------- logging


_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (RFC 3339), ``level``, ``logger``, ``msg``, extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD_ATTRS and not k.startswith("_"):
                doc[k] = v
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_logging(cfg: LoggingConfig, stream: Any = None) -> None:
    """Root logger to stderr at ``logging.level``, JSON lines or plain text."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_otel_anomaly", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._otel_anomaly = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if cfg.format == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(cfg.level.upper())


# ---------------------------------------------------------------------- the app


class App:
    """Everything one process runs; see the module docstring.

    Args:
        config: the validated config.
        config_path: file to re-read on SIGHUP (:meth:`reload`); None = no reload.
        registry: Prometheus registry (a fresh one by default).
        serve: True for ``serve`` (worker thread, wall-clock watermark, receiver,
            HTTP); False for ``replay`` (synchronous pipeline, nothing listens).
        salt: identity-hash salt; default from :mod:`detector.state.checkpoint`
            (``state.hash_salt`` or ``<state.directory>/salt``) or random.
    """

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        registry: CollectorRegistry | None = None,
        serve: bool = True,
        salt: bytes | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.serve = serve
        self.memory_plan = apply_budget(config)  # caps the user left at their defaults follow state.memory_budget_mib
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = SelfMetrics(self.registry)
        self.deployments = Deployments()
        self._ckpt_mod = _checkpoint_module()
        self.salt = salt if salt is not None else self._load_salt()
        self.hasher = IdentityHasher(self.salt)
        self.context = DetectorContext(window_seconds=config.pipeline.window, hasher=self.hasher, deployments=self.deployments)
        self.detectors = build_detectors(config, self.context)
        for name in self.detectors:  # exported at 0 from the start, not only after the first window closes
            self.metrics.tracked_series.labels(detector=name).set(0)
            self.metrics.evicted_series.labels(detector=name)
        self.alerts = AlertManager(config.alerts, self.deployments, config.pipeline.window, on_overflow=self.metrics.alerts_overflow.inc)
        self.alerts.listeners.append(self._log_transition)
        self.pipeline = Pipeline(config.pipeline, self.detectors, self.alerts, self.metrics, self.deployments, serve=serve)
        self.registry.register(AlertCollector(lambda: self.pipeline.snapshot))
        self.receiver: Any = None
        self.http: HttpServer | None = None
        self.checkpointer: Any = None
        self.restored = False
        self._state_done = False
        self._stopping = False
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the HTTP endpoint, restore state, start the worker and the receiver.

        Raises:
            OSError / detector.receive.server.ReceiverError: an address cannot be bound
            (everything already started is stopped again).
        """
        from detector.receive.server import Receiver

        self._started = True
        try:
            # HTTP first: /healthz answers (and /readyz says 503) while a large checkpoint loads
            h = self.config.http
            self.http = HttpServer(
                h.endpoint, self.registry, self.alerts_json, self.ready_status,
                tls=h.tls, basic_auth=h.basic_auth, read_timeout=h.read_timeout,
            )  # fmt: skip
            self.http.start()
            self._restore()
            self.pipeline.start()
            self.receiver = Receiver(self.config.receiver, self.pipeline, self.metrics)
            self.receiver.start()
        except BaseException:
            self.stop(grace=1.0)
            raise
        log.info(
            "serving",
            extra={
                "grpc_port": self.receiver.port,
                "http_port": self.http.port,
                "http_tls": self.http.tls,
                "http_basic_auth": self.config.http.basic_auth is not None,
                "version": __version__,
                "detectors": list(self.detectors),
            },
        )
        for warning in cleartext_secrets(self.config):
            log.warning(warning)

    def stop(self, grace: float = 10.0) -> None:
        """Graceful stop: refuse new data (UNAVAILABLE), finish in-flight calls,
        drain the queue, close every open window (alerts flushed), checkpoint,
        stop HTTP. Safe before :meth:`start` and when called twice."""
        if self._stopping:
            return
        self._stopping = True
        self.pipeline.accepting = False
        if self.receiver is not None:
            self.receiver.set_accepting(False)
            self.receiver.stop(grace)
        drained = self.pipeline.stop(timeout=max(120.0, grace))
        if not drained:
            log.error("analysis queue not drained in time; %d items left", self.pipeline.queue.items)
        if self.checkpointer is not None:
            try:
                self.checkpointer.save_now()
                self.checkpointer.wait(10)
            except Exception:
                log.exception("final checkpoint failed")
        if self.http is not None:
            self.http.stop()
        log.info(
            "stopped",
            extra={"received": self._counts("received"), "processed": self._counts("processed"), "windows_closed": self.pipeline.windows_closed},
        )

    # ------------------------------------------------------------------ state seam

    def state_dict(self) -> dict[str, Any]:
        """Everything learned, as picklable data. Call on the worker thread or
        while it is stopped (use :meth:`collect_state` from other threads)."""
        return {
            "format": STATE_FORMAT,
            "detectors": {name: det.state_dict() for name, det in self.detectors.items()},
            "alerts": self.alerts.state_dict(),
            "deployments": self.deployments.state_dict(),
            "pipeline": self.pipeline.state_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (before :meth:`start`, or on the worker).

        All or nothing: the state is loaded into *fresh* detectors, alert
        manager and deployments, which replace the running ones only when every
        part loaded; the pipeline's clock is put back as it was if its part
        fails. On any error the exception propagates and the app is exactly as
        before the call (no detector half-loaded). Families missing from
        ``state`` start cold; families in ``state`` that are not running are ignored.

        Raises:
            Exception: whatever a component's ``load_state`` raised (bad or
                incompatible state).
        """
        deployments = Deployments()
        if "deployments" in state:
            deployments.load_state(state["deployments"])
        context = DetectorContext(window_seconds=self.config.pipeline.window, hasher=self.hasher, deployments=deployments)
        detectors = build_detectors(self.config, context)
        for name, det in detectors.items():
            sub = state.get("detectors", {}).get(name)
            if sub is not None:
                det.load_state(sub)
        alerts = AlertManager(self.config.alerts, deployments, self.config.pipeline.window, on_overflow=self.metrics.alerts_overflow.inc)
        if "alerts" in state:
            alerts.load_state(state["alerts"])
        alerts.listeners.extend(self.alerts.listeners)
        if "pipeline" in state:
            before = self.pipeline.state_dict()
            try:
                self.pipeline.load_state(state["pipeline"])
            except BaseException:
                self.pipeline.load_state(before)
                raise
        # commit: every part loaded
        context.restored = True
        self.deployments, self.context, self.alerts = deployments, context, alerts
        self.detectors.clear()  # the same dict object the pipeline iterates
        self.detectors.update(detectors)
        self.pipeline.detectors, self.pipeline.alerts, self.pipeline.deployments = self.detectors, alerts, deployments
        self.restored = True
        self.pipeline._publish()

    def collect_state(self, timeout: float = 30.0) -> dict[str, Any]:
        """:meth:`state_dict` taken on the worker thread (safe from any thread)."""
        return self.pipeline.run_on_worker(self.state_dict, timeout)

    def _load_salt(self) -> bytes:
        st = self.config.state
        configured = getattr(st, "hash_salt", None)
        if configured:
            return configured.encode("utf-8")
        mod = self._ckpt_mod
        if mod is not None and st.directory and hasattr(mod, "load_or_create_salt"):
            if self.serve:
                return mod.load_or_create_salt(st.directory, None)
            p = Path(st.directory) / getattr(mod, "SALT_FILENAME", "salt")
            if p.is_file():
                return p.read_bytes()
        return secrets.token_bytes(32)

    def _restore(self) -> None:
        mod = self._ckpt_mod
        st = self.config.state
        if mod is not None and st.directory and hasattr(mod, "Checkpointer"):
            schema = mod.feature_schema({**self.detectors, "alerts": self.alerts, "pipeline": self.pipeline, "app": STATE_FORMAT})
            self.checkpointer = mod.Checkpointer(
                st.directory, st.checkpoint_interval, collect=self.state_dict, metrics=self.metrics,
                meta=mod.CheckpointMeta.current(schema),
            )  # fmt: skip
            try:
                state = self.checkpointer.restore()
            except Exception:
                log.exception("checkpoint restore failed; starting cold")
                state = None
            if state:
                try:
                    self.load_state(state)  # all or nothing: on failure every detector stays cold
                    log.info("state restored", extra={"directory": st.directory})
                except Exception as exc:
                    self.metrics.checkpoint_restore_failures.inc()
                    log.error(
                        "checkpoint could not be applied (%s: %s); every detector starts cold",
                        type(exc).__name__, exc, exc_info=True, extra={"directory": st.directory},
                    )  # fmt: skip
                    if hasattr(self.checkpointer, "set_aside"):
                        self.checkpointer.set_aside()
            self.pipeline.every(min(1.0, st.checkpoint_interval), self.checkpointer.tick)
        self._state_done = True

    # ------------------------------------------------------------------ reload (SIGHUP)

    def reload(self) -> bool:
        """Re-read :attr:`config_path`; apply thresholds/alert rules/log level keeping
        learned state. On an invalid file keep the running config, log every
        problem and count ``config_reloads_total{result="error"}``. Returns success."""
        if not self.config_path:
            log.warning("SIGHUP ignored: no --config file to reload")
            return False
        try:
            new = load_config(self.config_path)
            apply_budget(new)
        except (ConfigError, ValueError) as exc:
            self.metrics.config_reloads.labels(result="error").inc()
            problems = [str(p) for p in exc.problems] if isinstance(exc, ConfigError) else [str(exc)]
            log.error("config reload failed; keeping the running config", extra={"problems": problems})
            return False
        old = self.config
        needs_restart = [s for s in ("state",) if getattr(new, s) != getattr(old, s)]
        needs_restart += _restart_keys(new, old, self.receiver)
        for key in ("window", "queue_items"):
            if getattr(new.pipeline, key) != getattr(old.pipeline, key):
                needs_restart.append(f"pipeline.{key}")
        for family in DETECTOR_CLASSES:
            if getattr(getattr(new.detectors, family, None), "enabled", True) != getattr(getattr(old.detectors, family, None), "enabled", True):
                needs_restart.append(f"detectors.{family}.enabled")
        credential_problems = self._reload_credentials(new)
        if credential_problems:
            log.error(
                "TLS/credential files could not be used; keeping the running certificates and secrets",
                extra={"path": self.config_path, "problems": credential_problems},
            )  # fmt: skip

        def apply() -> None:
            for name, det in self.detectors.items():
                det.reconfigure(getattr(new.detectors, name, None))
            self.alerts.reconfigure(new.alerts)
            self.pipeline.reconfigure(new.pipeline)

        try:
            self.pipeline.run_on_worker(apply)
        except Exception as exc:
            self.metrics.config_reloads.labels(result="error").inc()
            log.exception("config reload failed while applying; detectors may have partly new thresholds: %s", exc)
            return False
        logging.getLogger().setLevel(new.logging.level.upper())
        self.config = new
        for warning in cleartext_secrets(new):
            log.warning(warning)
        if credential_problems:
            self.metrics.config_reloads.labels(result="error").inc()
            log.warning("config reloaded except TLS/credential files", extra={"path": self.config_path, "needs_restart": needs_restart})
            return False
        self.metrics.config_reloads.labels(result="ok").inc()
        log.info("config reloaded", extra={"path": self.config_path, "needs_restart": needs_restart})
        return True

    def _reload_credentials(self, new: Config) -> list[str]:
        """Re-read TLS certificates/keys/CAs, the bearer token and the basic-auth password
        named by ``new`` (receiver and HTTP endpoint, each all-or-nothing). Returns the
        problems (empty = all applied); a part with a problem keeps its running files.
        Switching gRPC TLS/mTLS on or off is left for a restart (the old paths are re-read)."""
        from detector.expose.http import HttpServerError
        from detector.receive.server import ReceiverError

        problems: list[str] = []
        if self.receiver is not None:
            g = new.receiver.grpc
            running_tls = self.receiver.config.grpc.tls
            if _tls_mode(g.tls) != _tls_mode(running_tls):
                g = g.model_copy(update={"tls": running_tls})
            try:
                self.receiver.reload_credentials(g)
            except ReceiverError as exc:
                problems.append(str(exc))
        if self.http is not None:
            h = new.http
            try:
                self.http.reload_credentials(h.tls, h.basic_auth, h.read_timeout)
            except HttpServerError as exc:
                problems.append(str(exc))
        return problems

    # ------------------------------------------------------------------ views

    def alerts_json(self) -> list[dict[str, Any]]:
        """``/api/v1/alerts`` content: firing alerts, then resolved within ``keep_resolved``."""
        return list(self.pipeline.snapshot.alerts.alerts)

    def ready_status(self) -> tuple[bool, str]:
        """``/readyz``: ready once state is restored and the receiver listens."""
        if self._stopping:
            return False, "shutting down"
        if not self._state_done:
            return False, "restoring state"
        if self.receiver is None or self.receiver.port is None:
            return False, "receiver not listening"
        if not self.pipeline.alive():
            return False, "analysis worker not running"
        return True, "ready"

    def _counts(self, what: str) -> dict[str, int]:
        """``{signal: n}`` of ``otel_anomaly_<what>_items_total`` (received / processed)."""
        name = f"otel_anomaly_{what}_items_total"
        return {s: int(self.registry.get_sample_value(name, {"signal": s}) or 0) for s in ("spans", "log_records", "data_points")}

    def _log_transition(self, alert: dict[str, Any]) -> None:
        alert_log.info(
            "alert %s: %s/%s %s%s: %s",
            alert["state"], alert["detector"], alert["kind"], alert["service"],
            f" -> {alert['peer']}" if alert["peer"] else "", alert["summary"],
            extra={"transition": alert["state"], "alert": alert},
        )  # fmt: skip


def cleartext_secrets(config: Config) -> list[str]:
    """One warning per endpoint whose credentials would cross the network unencrypted.

    ``http.basic_auth`` without ``http.tls`` (RFC 7617 §4: the password is only
    base64-encoded) and ``receiver.grpc.auth`` without ``receiver.grpc.tls``
    (the bearer token is sent as plain metadata). Not config errors: TLS may be
    terminated in front of the process (a sidecar, a mesh). Names keys, never values.
    """
    out = []
    if config.http.basic_auth is not None and config.http.tls is None:
        out.append("http.basic_auth is set without http.tls: the password crosses the network in clear "
                   "unless TLS is terminated in front of otel-anomaly")  # fmt: skip
    g = config.receiver.grpc
    if g.auth is not None and g.tls is None:
        out.append("receiver.grpc.auth is set without receiver.grpc.tls: the bearer token crosses the network in clear "
                   "unless TLS is terminated in front of otel-anomaly")  # fmt: skip
    return out


def _tls_mode(tls: Any) -> str:
    """``"off"``, ``"tls"`` or ``"mtls"`` of a ``receiver.grpc.tls`` value."""
    return "off" if tls is None else ("mtls" if tls.client_ca_file else "tls")


def _restart_keys(new: Config, old: Config, receiver: Any) -> list[str]:
    """Dotted keys of ``receiver`` / ``http`` whose change SIGHUP cannot apply.

    Hot (applied by :meth:`App._reload_credentials`): TLS file paths and
    contents, the bearer token, ``http.tls`` on/off, ``http.basic_auth``,
    ``http.read_timeout``. Everything else needs a restart, as does switching
    gRPC TLS or mTLS on or off (compared with what the receiver runs).
    """
    out = []
    g_new = new.receiver.grpc.model_dump(exclude={"tls", "auth"})
    g_old = old.receiver.grpc.model_dump(exclude={"tls", "auth"})
    out += [f"receiver.grpc.{k}" for k in g_new if g_new[k] != g_old.get(k)]
    running_tls = receiver.config.grpc.tls if receiver is not None else old.receiver.grpc.tls
    if _tls_mode(new.receiver.grpc.tls) != _tls_mode(running_tls):
        out.append("receiver.grpc.tls")
    if new.http.endpoint != old.http.endpoint:
        out.append("http.endpoint")
    return out


def _checkpoint_module() -> Any:
    try:
        return importlib.import_module("detector.state.checkpoint")
    except ModuleNotFoundError as exc:
        if exc.name and "detector.state.checkpoint".startswith(exc.name):
            return None
        raise


# ---------------------------------------------------------------------- serve


def serve_main(config_path: str | None) -> int:
    """``otel-anomaly serve``: run until SIGTERM/SIGINT (exit 0); SIGHUP reloads."""
    try:
        config = load_config(config_path) if config_path else Config()
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return 2
    configure_logging(config.logging)
    stop = threading.Event()
    hup = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: hup.set())
    try:
        app = App(config, config_path=config_path)
    except ValueError as exc:  # e.g. a memory budget too small for the base process
        log.error("invalid configuration: %s", exc)
        return 2
    except OSError as exc:  # e.g. state.directory is a file or not writable: one line, not a traceback
        log.error("cannot start: %s", exc)
        return 1
    try:
        app.start()
    except Exception as exc:
        log.error("cannot start: %s", exc)
        return 1
    gc.set_threshold(*SERVE_GC_THRESHOLD)
    while not stop.is_set():
        stop.wait(0.2)
        if hup.is_set():
            hup.clear()
            try:
                app.reload()
            except Exception:
                log.exception("config reload crashed; keeping the running config")
    log.info("signal received; stopping gracefully")
    app.stop()
    return 0
