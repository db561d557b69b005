#!/usr/bin/env bash
# Runs every Hangar test on a fresh machine: installs what the tests need (the wasm target,
# a Python venv with the real peers), then formatting, lints, cargo test and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build outputs and the venv live outside the clone so CI runs on this machine reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hangar/target}"
VENV="${HANGAR_VENV:-$HOME/.cache/hangar/venv}"

# One timing line per phase, printed together before pytest (whose own summary line, with its
# time, stays the last line of a green run), or at exit when a phase failed.
PHASES=()
phase_started=$SECONDS
phase_name="setup"
phase() {
  PHASES+=("$(printf '%-34s %5ds' "$phase_name" $((SECONDS - phase_started)))")
  phase_name="$1"
  phase_started=$SECONDS
  echo "== $1"
}
report_phases() {
  PHASES+=("$(printf '%-34s %5ds' "$phase_name" $((SECONDS - phase_started)))")
  echo "== timings (total ${SECONDS}s)"
  printf '   %s\n' "${PHASES[@]}"
}
trap 'status=$?; [ $status -eq 0 ] || report_phases; exit $status' EXIT

rustup target add wasm32-wasip2 wasm32-wasip1 >/dev/null 2>&1 || rustup target add wasm32-wasip2 wasm32-wasip1
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# Plugin authors are promised `cargo component build`; the template test uses it.
if ! cargo component --version >/dev/null 2>&1; then
  phase "install cargo-component (once per machine; 8-30 min on 2 cores)"
  cargo install --locked cargo-component@0.21.1
fi
export HANGAR_REQUIRE_CARGO_COMPONENT=1

phase "python venv, npm packages"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
# The local demo's servers (npm reference server, Python SDK server) are the gateway tests' backends.
bash examples/local/setup.sh
# The Prometheus Operator's CRD models (npm), for the chart's ServiceMonitor and PrometheusRule.
npm ci --prefix tests/node --no-audit --no-fund --silent
# The official MCP conformance suite, Node 22 (the npm package node) and the TypeScript SDK for its
# reference server and the TypeScript clients.
npm ci --prefix tests/conformance --no-audit --no-fund --silent
# A real OpenID provider (oidc-provider) issuing the access tokens of the OAuth tests.
npm ci --prefix tests/oidc --no-audit --no-fund --silent

# The wasm-only workspaces (built-in plugins, template, test plugins) next to the host's.
WASM_CRATES="plugins examples/plugin-template tests/plugins/hostile tests/plugins/hostile-policy tests/plugins/future-wit tests/plugins/strategy-0-1-0"

phase "cargo fmt --check"
cargo fmt --all --check
for c in $WASM_CRATES; do cargo fmt --manifest-path "$c/Cargo.toml" --all --check; done
phase "cargo clippy"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
for c in $WASM_CRATES; do
  cargo clippy --manifest-path "$c/Cargo.toml" --target wasm32-wasip2 --locked --quiet --target-dir "$CARGO_TARGET_DIR/wasm-clippy" -- -D warnings
done
phase "cargo test (plugin algorithms)"
cargo test --manifest-path plugins/Cargo.toml -p hangar-plugin-algorithms --locked --target-dir "$CARGO_TARGET_DIR/wasm-clippy"
phase "cargo test"
cargo test --workspace --locked
# kube-apiserver, etcd, kubectl, helm, kube-controller-manager and the node's kubelet,
# kube-scheduler and kube-proxy from the Go module proxy, built once per go.mod/go.sum into
# ~/.cache/hangar/cluster (about 12 minutes of 2 cores when cold).
phase "control plane and node (tests/cluster/build.sh)"
bash tests/cluster/build.sh
# The node's container runtime (test_node.py): Debian's containerd, runc and CNI plugins, and
# objcopy for the hangar image. Installed once per machine; the node tests need root.
if ! command -v containerd >/dev/null || ! command -v runc >/dev/null || [ ! -x /usr/lib/cni/bridge ] \
    || ! command -v objcopy >/dev/null; then
  phase "install containerd, runc, CNI plugins (apt, once per machine)"
  packages="containerd runc containernetworking-plugins binutils"
  apt-get install -y --no-install-recommends $packages >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends $packages >/dev/null; }
fi
# Jaeger, Prometheus and promtool from the Go module proxy, cached the same way (about 11 minutes
# of 2 cores when cold).
phase "jaeger, prometheus (tests/observability/build.sh)"
bash tests/observability/build.sh
# The docs as a book (mdbook from crates.io, pinned; installed once per machine beside the caches).
MDBOOK="$HOME/.cache/hangar/tools/bin/mdbook"
if [ "$("$MDBOOK" --version 2>/dev/null)" != "mdbook v0.5.4" ]; then
  phase "install mdbook (once per machine; about 3 min)"
  cargo install --locked --quiet mdbook@0.5.4 --no-default-features --features search --root "$HOME/.cache/hangar/tools"
fi
phase "mdbook build docs"
"$MDBOOK" build docs -d "$CARGO_TARGET_DIR/book"
report_phases
trap - EXIT
echo "== pytest (its time is on its summary line)"
export HANGAR_BIN="$CARGO_TARGET_DIR/debug/hangar"
# The real node's tests mostly wait for pods: they run beside the others (their own control
# plane and node), and their output follows the others' at the end.
node_log="$CARGO_TARGET_DIR/pytest-node.log"
"$VENV/bin/pytest" -q tests/python/test_node.py --basetemp "$CARGO_TARGET_DIR/pytest-node" --durations=5 > "$node_log" 2>&1 &
node_tests=$!
others=0
"$VENV/bin/pytest" -q tests/python --ignore=tests/python/test_node.py || others=$?
node=0
wait $node_tests || node=$?
echo "== pytest tests/python/test_node.py (on a real node, run beside the others)"
cat "$node_log"
[ $others = 0 ] && [ $node = 0 ]
