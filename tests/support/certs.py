"""Test PKI made with the ``openssl`` CLI (EC P-256 keys: fast to generate).

    pki = Pki(tmp_path / "a", "ca-a")          # a CA
    server = pki.issue("server")               # (cert.pem, key.pem), SAN localhost + 127.0.0.1
    client = pki.issue("client")
    pki.ca                                     # the CA's PEM path

:func:`need_openssl` skips a test with a printed reason when ``openssl`` is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def need_openssl() -> None:
    """Skip (printing why) when the ``openssl`` CLI is not installed; fail instead under
    ``OTEL_ANOMALY_REQUIRE_E2E=1`` (CI installs it, so the TLS tests cannot skip there)."""
    if shutil.which("openssl") is None:
        if os.environ.get("OTEL_ANOMALY_REQUIRE_E2E") == "1":
            pytest.fail("openssl CLI not found but OTEL_ANOMALY_REQUIRE_E2E=1 (.ci/install-tools.sh installs it)")
        print("openssl not found: TLS tests skipped")
        pytest.skip("openssl CLI not found (needed to make test certificates)")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


class Pki:
    """A self-signed CA in ``directory`` (created) that issues leaf certificates.

    Attributes:
        directory: where every file lives. ca: the CA certificate (PEM path).
    """

    def __init__(self, directory: Path, name: str = "test-ca") -> None:
        need_openssl()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.ca = self.directory / f"{name}.pem"
        self.ca_key = self.directory / f"{name}.key"
        _openssl("req", "-x509", *_EC, "-keyout", self.ca_key.name, "-out", self.ca.name, "-days", "2",
                 "-subj", f"/CN={name}", cwd=self.directory)  # fmt: skip

    def issue(self, name: str, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> tuple[Path, Path]:
        """A leaf certificate signed by this CA: ``(cert_path, key_path)``; SAN = ``hosts``."""
        d = self.directory
        san = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl("req", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", self.ca.name, "-CAkey", self.ca_key.name,
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)  # fmt: skip
        return d / f"{name}.pem", d / f"{name}.key"
