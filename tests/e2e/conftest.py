"""End-to-end tests: real Collector (built by deploy/otelcol/build.sh), real Prometheus,
real ``otel-anomaly serve`` processes. Each test skips with a printed reason when a program
is missing, and fails instead when ``OTEL_ANOMALY_REQUIRE_E2E=1`` (CI)."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)
