"""The docs cannot rot: generated reference pages are what the source makes today, and every
metric a running Hangar exports is in the observability page's table."""
import asyncio
import re
import subprocess
import urllib.request

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
    documented = (REPO / "docs" / "observability.md").read_text()
    missing = sorted(m for m in exported if f"`{m}`" not in documented)
    assert not missing, f"metrics missing from docs/observability.md: {missing}"


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
