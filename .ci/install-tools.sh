#!/usr/bin/env bash
# Installs the external programs the end-to-end tests use (Prometheus, promtool)
# and builds the OpenTelemetry Collector once into a cache outside git.
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# Also used by the deploy tests (usually in the base image already): test certificates,
# the systemd unit check, the private /etc/hosts of the scale-out test.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends $(printf '%s\n' "${need_apt[@]}" | sort -u)
fi
# The OpenTelemetry Collector (ocb build, cached outside git; a few minutes the first time).
if [ "${OTEL_ANOMALY_SKIP_OTELCOL_BUILD:-0}" != "1" ]; then
  bash deploy/otelcol/build.sh >/dev/null
fi
