#!/usr/bin/env bash
# Builds the observability peers of the tests from the Go module proxy (each go.mod pins its
# version): Jaeger v2 (jaeger/) and Prometheus with promtool (prometheus/), into
# ~/.cache/hangar/observability/<digest of the go.mod and go.sum files>/bin, once: a second run
# builds nothing (about 4 + 6 minutes of 2 cores when cold). Prints that bin folder.
set -euo pipefail
cd "$(dirname "$0")"
digest=$(cat jaeger/go.mod jaeger/go.sum prometheus/go.mod prometheus/go.sum | sha256sum | cut -c1-16)
out="${HANGAR_OBSERVABILITY_CACHE:-$HOME/.cache/hangar/observability}/$digest/bin"
mkdir -p "$out"
build() { # module-folder name package
  [ -x "$out/$2" ] && return
  echo "building $2 ($3)" >&2
  (cd "$1" && go build -trimpath -ldflags "-s -w" -o "$out/$2.tmp" "$3")
  mv "$out/$2.tmp" "$out/$2"
}
build jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger
build prometheus prometheus github.com/prometheus/prometheus/cmd/prometheus
build prometheus promtool github.com/prometheus/prometheus/cmd/promtool
echo "$out"
