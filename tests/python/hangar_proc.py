"""Starts `hangar run` on a folder of manifests, on a free loopback port, and stops it."""
import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path

from conftest import REPO

LOCAL = REPO / "examples" / "local"
PYTHON = LOCAL / ".venv" / "bin" / "python"
EVERYTHING = LOCAL / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
NOTES = LOCAL / "servers" / "notes.py"


def hangar_bin() -> str:
    if os.environ.get("HANGAR_BIN"):
        return os.environ["HANGAR_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    return str(Path(target) / "debug" / "hangar")


def notes_server(name: str, labels: str = "{}", tools: str = "") -> str:
    """An MCPServer manifest for the Python SDK notes server, run locally over stdio."""
    return textwrap.dedent(f"""\
        apiVersion: mcp-hangar.io/v1alpha1
        kind: MCPServer
        metadata: {{name: {name}, labels: {labels}}}
        spec:
          mode: container
          image: python:3.11-slim
          transport: stdio
          command: ["{PYTHON}", "{NOTES}"]
        """) + textwrap.indent(tools, "  ")


def everything_server(name: str = "everything", tools: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: mcp-hangar.io/v1alpha1
        kind: MCPServer
        metadata: {{name: {name}}}
        spec:
          mode: container
          image: node:20-slim
          transport: stdio
          command: [node, "{EVERYTHING}", stdio]
        """) + textwrap.indent(tools, "  ")


class Hangar:
    """`hangar run DIR --listen 127.0.0.1:0`; `url` is the MCP endpoint it printed."""

    def __init__(self, folder: Path, env: dict | None = None, args: list[str] | None = None,
                 listen: str = "127.0.0.1:0"):
        """`args` replaces `run DIR` (e.g. ["core"] or ["bridge", "--", ...]); logs go to folder."""
        self.folder = folder
        self.log = open(folder / "hangar.log", "w")
        args = args or ["run", str(folder)]
        command = [hangar_bin(), *args[:1], "--listen", listen, *args[1:]]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env={**os.environ, **(env or {})},
        )
        line = self.proc.stdout.readline()
        match = re.search(r"(http://\S+/mcp)", line)
        assert match, f"no endpoint printed: {line!r}; log: {(folder / 'hangar.log').read_text()}"
        self.url = match.group(1)
        self.base = self.url[: -len("/mcp")]

    def children(self, needle: str) -> list[int]:
        """PIDs of the server processes this hangar started whose command line contains needle."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-f", needle], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def stateless_headers(body) -> dict:
    """The headers a 2026-07-28 request carries beside its body (SEP-2243): its version, its method
    and, for tools/call, prompts/get and resources/read, the tool, prompt or URI it names."""
    if not isinstance(body, dict) or "method" not in body:
        return {}
    params = body.get("params") or {}
    version = (params.get("_meta") or {}).get("io.modelcontextprotocol/protocolVersion")
    if version is None:
        return {}
    headers = {"mcp-protocol-version": version, "mcp-method": body["method"]}
    key = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(body["method"])
    if key and key in params:
        headers["mcp-name"] = params[key]
    return headers


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1):
    """Polls until predicate() is truthy (bounded), returning its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
