#!/usr/bin/env bash
# Runs every Hangar test on a fresh machine: installs what the tests need (the wasm target,
# a Python venv with the real peers), then formatting, lints, cargo test and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build outputs and the venv live outside the clone so CI runs on this machine reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hangar/target}"
VENV="${HANGAR_VENV:-$HOME/.cache/hangar/venv}"

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
rustup component add rustfmt clippy >/dev/null 2>&1 || true

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== pytest"
"$VENV/bin/pytest" -q tests/python
