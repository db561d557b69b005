#!/usr/bin/env bash
# The test node's images, as docker-archive tars in OUT (for node-up.sh): `bash build.sh OUT HANGAR`.
#   localhost/pause:hangar          the pod sandbox (pause/)
#   localhost/mcp-probe:v1          probe/: which pod answered, env and files it was given
#   localhost/mcp-everything:v1     the official Go SDK's example "everything" server (HTTP with
#   ghcr.io/mcp-hangar/everything:v1.8.0   -http ADDR, else stdio), with glibc beside it so that
#                                   Hangar's bridge, copied in by the operator's init container,
#                                   runs there; the second name is the book's (getting started)
#   localhost/hangar:test           the hangar binary given, laid out as host/hangar/Dockerfile's
#   ghcr.io/mcp-hangar/hangar:<appVersion>   image (/hangar, user 65532, glibc and CA
#                                   certificates); the second name is the chart's default
# The Go binaries are built statically once per source digest into ~/.cache/hangar/node-images.
set -euo pipefail
out=$(mkdir -p "$1" && cd "$1" && pwd)
hangar=$2
cd "$(dirname "$0")"
digest=$(cat go.mod go.sum ./*/*.go | sha256sum | cut -c1-16)
bin="${HANGAR_NODE_IMAGES_CACHE:-$HOME/.cache/hangar/node-images}/$digest"
if [ ! -x "$bin/everything" ]; then
  mkdir -p "$bin.tmp"
  CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags '-s -w' -o "$bin.tmp/" \
    ./pause ./probe github.com/modelcontextprotocol/go-sdk/examples/server/everything
  rm -rf "$bin" && mv "$bin.tmp" "$bin"
fi
mk() { python3 mkimage.py "$@"; }
mk "$out/pause.tar" localhost/pause:hangar "$bin/pause=/pause" --entrypoint /pause --user 65535:65535
mk "$out/probe.tar" localhost/mcp-probe:v1 "$bin/probe=/probe" --entrypoint /probe --user 65534:65534
mk "$out/everything.tar" localhost/mcp-everything:v1,ghcr.io/mcp-hangar/everything:v1.8.0 "$bin/everything=/everything" --entrypoint /everything \
  --user 65534:65534 --libs "$hangar"
# The debug build's line tables are not needed in a pod (and would double the import).
objcopy --strip-debug "$hangar" "$out/hangar.bin"
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' ../../../charts/mcp-hangar-operator/Chart.yaml)
mk "$out/hangar.tar" "localhost/hangar:test,ghcr.io/mcp-hangar/hangar:$app_version" "$out/hangar.bin=/hangar" --entrypoint /hangar --libs "$out/hangar.bin"
rm -f "$out/hangar.bin"
ls "$out"/*.tar
