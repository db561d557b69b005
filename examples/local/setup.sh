#!/usr/bin/env bash
# Installs what the local demo's MCP servers need, into this folder: the reference server
# from npm (node_modules/) and the official Python MCP SDK (.venv/). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
if [ ! -d node_modules/@modelcontextprotocol/server-everything ]; then
  npm ci --no-audit --no-fund --silent
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
