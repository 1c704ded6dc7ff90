"""Run ``otel-anomaly serve`` as a real subprocess and talk to it (used via the ``serve`` fixture).

The process binds ``127.0.0.1:0`` for both endpoints (no port races); the
ports are read from its ``"serving"`` JSON log line. stdout+stderr go to a log
file (never a pipe, so a chatty process cannot block).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]


def deep_merge(base: dict, extra: dict) -> dict:
    """``base`` updated recursively with ``extra`` (new dict; lists replaced)."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class ServeProcess:
    """A running ``otel-anomaly serve``.

    Attributes:
        proc: the :class:`subprocess.Popen`. config_path / log_path: its files.
        grpc_port, http_port: bound ports. grpc_target: ``"127.0.0.1:PORT"``.
        http_url: ``"http://127.0.0.1:PORT"``.
    """

    def __init__(self, proc: subprocess.Popen, config_path: Path, log_path: Path) -> None:
        self.proc = proc
        self.config_path = config_path
        self.log_path = log_path
        self.grpc_port = 0
        self.http_port = 0

    # -------------------------------------------------------------- start / stop

    def wait_serving(self, timeout: float = 30.0) -> "ServeProcess":
        """Block until the ``serving`` log line (ports) appears; AssertionError with the log tail if it dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.logs():
                if line.get("msg") == "serving":
                    self.grpc_port = int(line["grpc_port"])
                    self.http_port = int(line["http_port"])
                    return self
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            time.sleep(0.05)
        raise AssertionError(f"serve not ready after {timeout}s:\n{self.log_text()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig`` (default SIGTERM) and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"serve did not stop within {timeout}s after signal {sig}:\n{self.log_text()[-4000:]}")

    def reload(self, config: dict | None = None, text: str | None = None) -> None:
        """Rewrite the config file (dict as YAML, or raw ``text``) and send SIGHUP."""
        if text is None:
            text = yaml.safe_dump(config or {})
        self.config_path.write_text(text)
        self.proc.send_signal(signal.SIGHUP)

    # -------------------------------------------------------------- reading

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, str]:
        """HTTP GET ``path``; returns ``(status, body text)`` (4xx/5xx too)."""
        req = urllib.request.Request(self.http_url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Every sample of ``/metrics`` as ``{(name, sorted label items): value}``."""
        status, text = self.get("/metrics")
        assert status == 200, text
        out: dict[tuple[str, tuple], float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def sample(self, name: str, **labels: str) -> float | None:
        """One sample's value from ``/metrics`` (exact label set), or None."""
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def samples(self, name: str, **labels: str) -> list[tuple[dict, float]]:
        """All samples of ``name`` whose labels include ``labels``."""
        return [
            (dict(k[1]), v) for k, v in self.metrics().items() if k[0] == name and all(dict(k[1]).get(a) == b for a, b in labels.items())
        ]  # fmt: skip

    def alerts(self) -> list[dict[str, Any]]:
        status, body = self.get("/api/v1/alerts")
        assert status == 200, body
        return json.loads(body)["alerts"]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def logs(self) -> list[dict[str, Any]]:
        """The process's JSON log lines so far (other lines skipped)."""
        out = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def transitions(self) -> list[dict[str, Any]]:
        """Alert JSON of every transition logged so far, in order."""
        return [line["alert"] for line in self.logs() if line.get("logger") == "otel_anomaly.alerts" and "alert" in line]

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2, what: str = "condition") -> Any:
        """Poll ``predicate()`` until truthy (returned); AssertionError with the log tail on timeout."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            if self.proc.poll() is not None:
                break
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what} (last={last!r}):\n{self.log_text()[-3000:]}")


def start_serve(workdir: Path, config: dict | None = None, env: dict[str, str] | None = None, timeout: float = 30.0, name: str = "serve") -> ServeProcess:
    """Write a config (defaults: both endpoints on 127.0.0.1:0, state in ``workdir/state``,
    JSON logs at info) merged with ``config``, start ``python -m detector serve``, wait until serving."""
    base = {
        "receiver": {"grpc": {"endpoint": "127.0.0.1:0"}},
        "http": {"endpoint": "127.0.0.1:0"},
        "state": {"directory": str(workdir / "state")},
        "logging": {"level": "info", "format": "json"},
    }
    cfg = deep_merge(base, config or {})
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    log_path = workdir / f"{name}.log"
    penv = dict(os.environ)
    penv["PYTHONPATH"] = str(REPO) + os.pathsep + penv.get("PYTHONPATH", "")
    penv.update(env or {})
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "detector", "serve", "--config", str(config_path)],
            cwd=REPO,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=penv,
        )
    return ServeProcess(proc, config_path, log_path).wait_serving(timeout)
