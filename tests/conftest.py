"""Shared fixtures for every test directory.

Fixtures (use them; keep them general):

``free_port``      -> ``() -> int``: a TCP port that was free a moment ago on 127.0.0.1.
                      Prefer binding ``:0`` and reading the bound port where the
                      component allows it (``serve`` below does).
``serve``          -> ``(config: dict | None = None, env: dict | None = None, timeout=30, name="serve")
                      -> ServeProcess``: starts ``python -m detector serve`` as a
                      subprocess with ``config`` deep-merged over test defaults
                      (gRPC and HTTP on ``127.0.0.1:0``, ``state.directory`` in
                      ``tmp_path``, JSON logs), waits until it serves and kills
                      it at teardown if the test did not stop it. See
                      :class:`tests.support.serve.ServeProcess` for ``.grpc_target``,
                      ``.http_url``, ``.sample(name, **labels)``, ``.alerts()``,
                      ``.transitions()``, ``.logs()``, ``.reload()``, ``.stop()``,
                      ``.wait_until()``.
``testdata``       -> ``(name: str | None = None) -> Path``: a folder of the shared
                      real test data (``$OTEL_ANOMALY_TESTDATA``, else
                      ``../shared/data`` relative to the repo). When absent the
                      test is skipped with the reason printed — unless
                      ``OTEL_ANOMALY_REQUIRE_TESTDATA=1``, then it fails.
``repo_root``      -> Path of the repository.
``project_data``   -> Path of ``tests/data`` (small files committed with the project).

Helpers for building records without OTLP: :mod:`tests.support.records`; test
detectors (recorder, slow): :mod:`tests.support.detectors`; OTel SDK senders:
:mod:`tests.support.otlp`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.support.serve import REPO, ServeProcess, start_serve


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """Factory: ``free_port() -> int`` (see module docstring)."""
    return _free_port


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def project_data() -> Path:
    return REPO / "tests" / "data"


def testdata_root() -> Path | None:
    """The shared real-data folder, or None when it is not there."""
    env = os.environ.get("OTEL_ANOMALY_TESTDATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


def require_testdata(name: str | None = None) -> Path:
    """Path of ``name`` inside the shared data; skip (or fail when
    ``OTEL_ANOMALY_REQUIRE_TESTDATA=1``) with the reason when missing."""
    root = testdata_root()
    path = None if root is None else (root / name if name else root)
    if path is None or not path.exists():
        where = os.environ.get("OTEL_ANOMALY_TESTDATA") or str(REPO.parent / "shared" / "data")
        reason = f"test data {name or ''} not found under {where} (set OTEL_ANOMALY_TESTDATA)"
        if os.environ.get("OTEL_ANOMALY_REQUIRE_TESTDATA") == "1":
            pytest.fail(reason + " and OTEL_ANOMALY_REQUIRE_TESTDATA=1", pytrace=False)
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture
def testdata():
    """Factory: ``testdata(name=None) -> Path`` (see module docstring)."""
    return require_testdata


@pytest.fixture
def serve(tmp_path):
    """Factory starting ``otel-anomaly serve`` subprocesses (see module docstring)."""
    started: list[ServeProcess] = []
    counter = [0]

    def start(config: dict | None = None, env: dict[str, str] | None = None, timeout: float = 30.0, name: str | None = None) -> ServeProcess:
        counter[0] += 1
        sp = start_serve(tmp_path, config, env, timeout, name or f"serve{counter[0]}")
        started.append(sp)
        return sp

    yield start
    for sp in started:
        if sp.proc.poll() is None:
            sp.proc.kill()
            sp.proc.wait(10)
