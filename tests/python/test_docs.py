"""The docs cannot rot: generated reference pages are what the source makes today, every metric a
running Hangar exports is in the metrics reference, links resolve, manifests are valid, and the
shell blocks marked runnable run (the local ones here, the cluster ones in test_node.py)."""
import asyncio
import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from conftest import REPO
from hangar_proc import everything_server, hangar_bin
from test_gateway import call, start, wait_tools  # noqa: F401  (start is a fixture)


CHART = REPO / "charts" / "mcp-hangar-operator"


def test_the_generated_reference_pages_are_fresh(tmp_path):
    check = lambda folder: subprocess.run([hangar_bin(), "reference", "--check", str(folder), "--chart", str(CHART)],
                                          capture_output=True, text=True, timeout=60)
    out = check(REPO / "docs" / "reference")
    assert out.returncode == 0, out.stderr
    # And --check does fail on a stale page.
    (tmp_path / "cli.md").write_text("old")
    out = check(tmp_path)
    assert out.returncode == 1 and "cli.md" in out.stderr and "crds.md" in out.stderr, out.stderr
    assert "helm-values.md" in out.stderr and "wit.md" in out.stderr and "README.md" not in out.stderr, out.stderr
    assert "metrics.md" in out.stderr, out.stderr
    metrics = (REPO / "docs" / "reference" / "metrics.md").read_text()
    assert "| `hangar_calls_total` | counter | `server`, `tool`, `outcome` |" in metrics, metrics
    assert "| `mcp_operator_provider_state` | gauge | `namespace`, `name`, `state` |" in metrics, metrics
    assert "| `MCPServerDead` | critical | 2m | `mcp_operator_provider_state{state=\"Dead\"} == 1` |" in metrics, metrics
    assert "{{ $labels.name }}" in metrics and '{{ "{{" }}' not in metrics, metrics
    cli = (REPO / "docs" / "reference" / "cli.md").read_text()
    assert "`--audit <stdout|FILE>`" in cli and "`HANGAR_AUDIT`" in cli
    crds = (REPO / "docs" / "reference" / "crds.md").read_text()
    assert "`spec.tools.rateLimit.requestsPerMinute`" in crds and "## MCPServerGroup" in crds
    values = (CHART / "README.md").read_text()
    assert "| `telemetry.otlp.endpoint` | `\"\"` | e.g. http://otel-collector.observability:4318 |" in values, values
    assert "package hangar:plugins" in (REPO / "docs" / "reference" / "wit.md").read_text()


def test_every_exported_metric_is_documented(start):
    h = start({"everything.yaml": everything_server()})
    wait_tools(h.url, {"everything__echo"})
    asyncio.run(call(h.url, "everything__echo", {"message": "hi"}))
    text = urllib.request.urlopen(h.base + "/metrics", timeout=10).read().decode()
    exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert {"hangar_calls_total", "mcp_server_operation_duration_seconds"} <= exported, exported
    documented = (REPO / "docs" / "reference" / "metrics.md").read_text()
    missing = sorted(m for m in exported if f"| `{m}` |" not in documented)
    assert not missing, f"metrics missing from docs/reference/metrics.md (registered outside a `collectors()`?): {missing}"


def slug(heading: str) -> str:
    """The anchor mdBook and GitHub give a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_internal_links_and_anchors_of_the_docs_resolve():
    pages = sorted((REPO / "docs").rglob("*.md")) + [REPO / "README.md"]
    anchors = {p: {slug(h) for h in re.findall(r"^#+ (.+)$", p.read_text(), re.M)} for p in pages}
    broken, checked = [], 0
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            checked += 1
            if not resolved.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors.get(resolved, set()):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert checked >= 20 and not broken, broken
    summary = (REPO / "docs" / "SUMMARY.md").read_text()
    listed = {(REPO / "docs" / p).resolve() for p in re.findall(r"\]\(([^)]+)\)", summary)}
    unlisted = [p.relative_to(REPO) for p in pages if p.parent.is_relative_to(REPO / "docs")
                and p.name != "SUMMARY.md" and p.resolve() not in listed]
    assert not unlisted, f"pages not in docs/SUMMARY.md: {unlisted}"


def book_manifests() -> list[tuple[str, str]]:
    """Every Hangar manifest in a YAML block of the book: (page, text)."""
    found = []
    for page in sorted((REPO / "docs").rglob("*.md")):
        for block in re.findall(r"```ya?ml\n(.*?)```", page.read_text(), re.S):
            if "mcp-hangar.io/" in block and "kind:" in block:
                found.append((str(page.relative_to(REPO)), block))
    return found


def test_every_manifest_in_the_book_is_valid(tmp_path):
    manifests = book_manifests()
    assert len(manifests) >= 2
    for i, (page, text) in enumerate(manifests):
        path = tmp_path / f"{i}.yaml"
        path.write_text(text)
        out = subprocess.run([hangar_bin(), "validate", str(path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{page}: {out.stdout}{out.stderr}"


# A shell block the tests run is marked in its info string: ```bash,test=local (run, must exit 0),
# ```bash,test=local-serve (started, left running until the page's blocks are done) or
# ```bash,test=local-cleanup (run last, also when a test failed); the same with `cluster` for
# test_node.py. A ```text block right after it lists lines its output must contain (for a serve
# block: before the next block runs).
RUNNABLE = re.compile(r"```bash,test=([\w-]+)\n(.*?)```(?:\s*```text\n(.*?)```)?", re.S)


def runnable_blocks(page: Path, kind: str) -> list[tuple[str, str, list[str]]]:
    """(role: run, serve or cleanup; script; expected lines) of the page's `kind` blocks, in order."""
    found = []
    for mark, script, expected in RUNNABLE.findall(page.read_text()):
        role = "run" if mark == kind else mark.removeprefix(f"{kind}-")
        if mark.startswith(kind) and role in ("run", "serve", "cleanup"):
            found.append((role, script, [line for line in expected.splitlines() if line.strip()]))
    return found


def run_block(where: str, script: str, expected: list[str], env: dict, timeout: float):
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{where}: exit {out.returncode}\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
    missing = [e for e in expected if e not in out.stdout]
    assert not missing, f"{where}: {missing} not in its output:\n{out.stdout[-3000:]}"


@contextlib.contextmanager
def book_page(page: Path, kind: str, env: dict, timeout: float = 600):
    """Runs the page's `kind` blocks as a reader would, from the repository's root, and yields
    how many ran while its serve blocks still serve; its cleanup blocks run at the end. A serve
    block's output must show its expected lines before the next block runs."""
    blocks = runnable_blocks(page, kind)
    served: list[subprocess.Popen] = []
    failed = True
    try:
        for role, script, expected in blocks:
            where = f"{page.relative_to(REPO)}: {script.strip()}"
            if role == "run":
                run_block(where, script, expected, env, timeout)
            elif role == "serve":
                proc = subprocess.Popen(["bash", "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
                lines: list[str] = []
                threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
                served.append(proc)
                deadline = time.monotonic() + timeout
                while not all(any(e in line for line in list(lines)) for e in expected):
                    assert proc.poll() is None and time.monotonic() < deadline, f"{where}: {''.join(lines)[-3000:]}"
                    time.sleep(0.2)
        yield len(blocks)
        failed = False
    finally:
        for proc in served:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for role, script, expected in blocks:
            if role == "cleanup":
                try:
                    run_block(f"{page.relative_to(REPO)}: {script.strip()}", script, expected, env, timeout)
                except AssertionError as e:
                    if not failed:  # else the failure that stopped the page is the one to see
                        raise
                    print(f"clean-up after a failure: {e}")


@contextlib.contextmanager
def book_port(timeout: float = 1800):
    """The book's commands use 127.0.0.1:8080; the local and the cluster page's tests run in two
    pytest processes at once (tests/run.sh), so they take turns, and find the port free."""
    with open("/tmp/hangar-book-8080.lock", "w") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "another test held 127.0.0.1:8080 for too long"
                time.sleep(1)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", 8080)) != 0, "the book's endpoint is 127.0.0.1:8080, and something listens there"
        yield


def test_the_books_local_commands_run():
    """Getting started on one machine, as the book says it: `hangar run examples/local/` (the
    `hangar` under test first on PATH), the Python SDK client, /readyz and /metrics."""
    env = {**os.environ, "PATH": f"{Path(hangar_bin()).parent}:{os.environ['PATH']}"}
    ran = 0
    with book_port():
        for page in sorted((REPO / "docs").rglob("*.md")):
            with book_page(page, "local", env) as blocks:
                ran += blocks
    assert ran >= 3, f"only {ran} runnable local blocks in the book"
