#!/usr/bin/env bash
# Builds the otel-anomaly OpenTelemetry Collector distribution with ocb (the OpenTelemetry
# Collector Builder) from builder-config.yaml, into a cache OUTSIDE git so later runs reuse it.
#
#   bash deploy/otelcol/build.sh          # prints the binary path on the last line of stdout
#
# Cache:  ${OTEL_ANOMALY_CACHE:-$HOME/.cache/otel-anomaly}/otelcol-<release>-<manifest sha256[:12]>/otelcol-anomaly
# (the manifest hash in the folder name means an edited manifest builds anew; the Python
# tests compute the same path in tests/e2e/tools.py). Idempotent: an existing binary that
# answers `--version` is reused. Needs Go (PATH or /usr/local/go/bin) and the Go module proxy.
# The build runs under `nice` because CI shares the machine; it prints its wall time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
manifest="$here/builder-config.yaml"
release="0.160.0"                       # keep in step with builder-config.yaml
cache_root="${OTEL_ANOMALY_CACHE:-$HOME/.cache/otel-anomaly}"
hash="$(sha256sum "$manifest" | cut -c1-12)"
out="$cache_root/otelcol-$release-$hash"
bin="$out/otelcol-anomaly"

if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "otelcol: reusing $("$bin" --version) at $bin" >&2
  echo "$bin"
  exit 0
fi

export PATH="$PATH:/usr/local/go/bin:${GOPATH:-$HOME/go}/bin"
command -v go >/dev/null 2>&1 || { echo "otelcol: Go is not installed (need go >= 1.24)" >&2; exit 2; }
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0

start=$(date +%s)
mkdir -p "$out"
gobin="$cache_root/bin"
if [ ! -x "$gobin/builder-v$release" ]; then
  echo "otelcol: go install go.opentelemetry.io/collector/cmd/builder@v$release" >&2
  GOBIN="$gobin" nice -n 10 go install "go.opentelemetry.io/collector/cmd/builder@v$release"
  mv "$gobin/builder" "$gobin/builder-v$release"
fi
# ocb has no flag for the output folder: write a copy of the manifest that points into the cache.
work="$out/src"
rm -rf "$work"; mkdir -p "$work"
sed -e "s#^\(  output_path:\).*#\1 $work#" "$manifest" > "$out/manifest.yaml"
echo "otelcol: building into $work (this takes several minutes the first time)" >&2
nice -n 10 "$gobin/builder-v$release" --config="$out/manifest.yaml" --ldflags="-s -w" >&2
mv "$work/otelcol-anomaly" "$bin"
end=$(date +%s)
"$bin" --version >&2
echo "otelcol: build took $((end - start)) s" | tee "$out/BUILD_TIME" >&2
echo "$bin"
