"""Traces and the audit log, judged by real peers: Jaeger v2 (built from its Go module) receives
OTLP from `hangar run`, from a client and from servers written with the official Python SDK,
and the tests read what it stored through its query API."""
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO
from hangar_proc import Hangar, hangar_bin, notes_server, wait_for
from test_gateway import call, free_port, post, start, wait_tools  # noqa: F401  (start is a fixture)

SERVERS = Path(__file__).parent / "servers"
VENV_PYTHON = sys.executable


@pytest.fixture(scope="session")
def observability_bin() -> Path:
    out = subprocess.run(["bash", str(REPO / "tests" / "observability" / "build.sh")],
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out)


class Jaeger:
    def __init__(self, bin_dir: Path, folder: Path):
        self.ports = {name: free_port() for name in ("query", "query_grpc", "otlp_grpc", "otlp_http")}
        env = {**os.environ, "JAEGER_QUERY_PORT": str(self.ports["query"]),
               "JAEGER_QUERY_GRPC_PORT": str(self.ports["query_grpc"]),
               "JAEGER_OTLP_GRPC_PORT": str(self.ports["otlp_grpc"]),
               "JAEGER_OTLP_HTTP_PORT": str(self.ports["otlp_http"])}
        self.log = open(folder / "jaeger.log", "w")
        config = REPO / "tests" / "observability" / "jaeger.yaml"
        self.proc = subprocess.Popen([str(bin_dir / "jaeger"), "--config", f"file:{config}"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.query = f"http://127.0.0.1:{self.ports['query']}"
        self.otlp_http = f"http://127.0.0.1:{self.ports['otlp_http']}"
        self.otlp_grpc = f"http://127.0.0.1:{self.ports['otlp_grpc']}"
        wait_for(self._up, timeout=60)

    def _up(self) -> bool:
        assert self.proc.poll() is None, f"jaeger exited: {Path(self.log.name).read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(f"{self.query}/api/services", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def trace(self, trace_id: str) -> list[dict]:
        """The spans Jaeger stored for a trace, each with its service, parent and tags."""
        try:
            with urllib.request.urlopen(f"{self.query}/api/traces/{trace_id}", timeout=5) as r:
                data = json.load(r)["data"]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise
        spans = []
        for t in data:
            for s in t["spans"]:
                spans.append({
                    "service": t["processes"][s["processID"]]["serviceName"],
                    "name": s["operationName"], "id": s["spanID"],
                    "parent": next((r["spanID"] for r in s["references"] if r["refType"] == "CHILD_OF"), None),
                    "tags": {tag["key"]: tag["value"] for tag in s["tags"]},
                    "start": s["startTime"],
                })
        return sorted(spans, key=lambda s: s["start"])

    def wait_trace(self, trace_id: str, until) -> list[dict]:
        """Polls (bounded) until the trace's spans satisfy `until`; exports arrive in batches."""
        last = []

        def ready():
            nonlocal last
            last = self.trace(trace_id)
            return until(last)
        try:
            wait_for(ready, timeout=30, interval=0.3)
        except AssertionError:
            raise AssertionError(f"trace {trace_id} incomplete: {json.dumps(last, indent=1)[:4000]}")
        return last

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def jaeger(observability_bin, tmp_path_factory):
    j = Jaeger(observability_bin, tmp_path_factory.mktemp("jaeger"))
    yield j
    j.stop()


def traced_server(name: str, jaeger: Jaeger, labels: str = "{}", extra_env: str = "", tools: str = "") -> str:
    """An MCPServer for servers/traced.py (Python SDK, stdio) exporting its spans to Jaeger."""
    return (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\n"
        f"metadata: {{name: {name}, labels: {labels}}}\n"
        "spec:\n  mode: container\n  image: x\n  transport: stdio\n"
        f"  command: [\"{VENV_PYTHON}\", \"{SERVERS / 'traced.py'}\"]\n"
        f"  env: [{{name: OTEL_EXPORTER_OTLP_ENDPOINT, value: \"{jaeger.otlp_http}\"}}, "
        f"{{name: OTEL_SERVICE_NAME, value: {name}}}{extra_env}]\n" + tools
    )


def exporting(jaeger: Jaeger, protocol: str = "http/protobuf") -> dict:
    endpoint = jaeger.otlp_grpc if protocol == "grpc" else jaeger.otlp_http
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "hangar"}


def audit_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def client_call(url: str, jaeger: Jaeger, tool: str, arguments: dict) -> dict:
    """One tool call by the official Python SDK client, traced (servers/traced_client.py)."""
    out = subprocess.run([VENV_PYTHON, str(SERVERS / "traced_client.py"), url, tool, json.dumps(arguments)],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_http})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_failover_call_is_one_trace_from_the_client_through_hangar_to_the_server(start, jaeger, tmp_path):
    audit = tmp_path / "audit.log"
    group = (
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServerGroup\nmetadata: {name: traced}\n"
        "spec:\n  selector: {matchLabels: {app: traced}}\n  strategy: Failover\n"
        "  failover: {maxRetries: 1, retryDelay: 10ms}\n"
    )
    h = start({
        "a.yaml": traced_server("traced-a", jaeger, "{app: traced}", ", {name: CRASH_ON_CALL, value: '1'}"),
        "b.yaml": traced_server("traced-b", jaeger, "{app: traced}"),
        "group.yaml": group,
    }, env=exporting(jaeger), flags=["--audit", str(audit)])
    wait_tools(h.url, {"traced__echo"})

    outcome = client_call(h.url, jaeger, "traced__echo", {"text": "zq-argument-7"})
    assert outcome.get("result") == {"result": "zq-argument-7"}, outcome
    trace_id = outcome["trace_id"]

    def complete(spans):
        return any(s["service"] == "traced-b" for s in spans) and sum(
            1 for s in spans if s["service"] == "hangar" and s["name"] == "tools/call echo") == 2
    spans = jaeger.wait_trace(trace_id, complete)
    by_id = {s["id"]: s for s in spans}
    (tmp_path / "trace.json").write_text(json.dumps(spans, indent=1))

    # The client's span → Hangar's request span → two attempts → the second member's span.
    request = next(s for s in spans if s["service"] == "hangar" and s["name"] == "tools/call traced__echo")
    assert by_id[request["parent"]]["service"] == "agent", "Hangar continues the client's trace"
    assert request["tags"]["mcp.method.name"] == "tools/call"
    assert request["tags"]["gen_ai.tool.name"] == "traced__echo"
    attempts = [s for s in spans if s["service"] == "hangar" and s["name"] == "tools/call echo"]
    assert [a["parent"] for a in attempts] == [request["id"]] * 2
    assert [a["tags"]["hangar.server"] for a in attempts] == ["traced-a", "traced-b"]
    assert attempts[0]["tags"]["error.type"] == "unavailable" and attempts[0]["tags"].get("error") is True
    assert "error.type" not in attempts[1]["tags"]
    picks = [s for s in spans if s["service"] == "hangar" and s["name"] == "pick"]
    assert [(p["tags"]["hangar.member"], p["tags"]["hangar.plugin"]) for p in picks] == [
        ("traced-a", "failover"), ("traced-b", "failover")]
    served = next(s for s in spans if s["service"] == "traced-b")
    assert served["parent"] == attempts[1]["id"], "the server's span is a child of the attempt that reached it"
    assert not any(s["service"] == "traced-a" for s in spans), "the crashed member exported nothing"
    # No argument values in any attribute.
    assert "zq-argument-7" not in json.dumps([s["tags"] for s in spans if s["service"] == "hangar"])

    # The audit log has both attempts, under the same trace id.
    records = [r for r in audit_records(audit) if r.get("trace_id") == trace_id]
    assert [(r["server"], r["decision"], r["outcome"]) for r in records] == [
        ("traced-a", "allowed", "error"), ("traced-b", "allowed", "ok")], audit.read_text()
    assert all(r["log"] == "hangar.audit" and r["group"] == "traced" and r["tool"] == "echo" for r in records)
    assert "zq-argument-7" not in audit.read_text(), "no argument values in the audit log"


def stateless_call(url: str, tool: str, arguments: dict, headers: dict) -> tuple[int, dict]:
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}}
    status, _, answer = post(url, body, headers)
    return status, answer


def test_denials_and_rate_limits_are_error_spans_and_audit_records_over_grpc(start, jaeger, tmp_path):
    audit = tmp_path / "audit.log"
    tools = "  tools:\n    denyList: [echo]\n"
    limited = "  tools:\n    rateLimit: {requestsPerMinute: 1}\n"
    h = start({"guarded.yaml": traced_server("guarded", jaeger, tools=tools),
               "limited.yaml": traced_server("limited", jaeger, tools=limited)},
              env=exporting(jaeger, "grpc"), flags=["--audit", str(audit), "--audit-hash-arguments"])
    wait_tools(h.url, {"limited__echo"})

    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    status, answer = stateless_call(h.url, "guarded__echo", {"text": "secret words"},
                                    {"traceparent": f"00-{trace_id}-{parent}-01"})
    assert "denyList" in answer["error"]["message"], answer

    def denied(spans):
        return any(s["name"] == "policy" for s in spans)
    spans = jaeger.wait_trace(trace_id, denied)
    request = next(s for s in spans if s["name"] == "tools/call guarded__echo")
    assert request["parent"] == parent, "the traceparent header is continued"
    assert request["tags"]["error.type"] == str(answer["error"]["code"]) and request["tags"]["error"] is True
    policy = next(s for s in spans if s["name"] == "policy")
    assert policy["tags"]["hangar.decision"] == "denied" and policy["tags"]["error"] is True
    assert not any(s["name"] == "tools/call echo" for s in spans), "a denied call makes no attempt"

    # Two calls where the limit admits one; the second is refused, audited and traced.
    outcomes = []
    for _ in range(2):
        tid = secrets.token_hex(16)
        status, answer = stateless_call(h.url, "limited__echo", {"text": "x"},
                                        {"traceparent": f"00-{tid}-{secrets.token_hex(8)}-01"})
        outcomes.append((tid, "error" in answer))
    assert [failed for _, failed in outcomes] == [False, True], outcomes
    limited_trace = outcomes[1][0]
    spans = jaeger.wait_trace(limited_trace, lambda spans: any(s["name"] == "policy" for s in spans))
    assert next(s for s in spans if s["name"] == "policy")["tags"]["hangar.decision"] == "rate_limited"

    records = wait_for(lambda: (r := audit_records(audit)) and len(r) >= 3 and r)
    denial = next(r for r in records if r["trace_id"] == trace_id)
    assert denial["decision"] == "denied" and denial["server"] == "guarded" and "denyList" in denial["reason"], denial
    assert len(denial["arguments_sha256"]) == 64, "the opt-in digest of the arguments"
    assert "secret words" not in audit.read_text()
    assert next(r for r in records if r["trace_id"] == limited_trace)["decision"] == "rate_limited"


def test_with_tracing_off_hangar_makes_no_spans_and_passes_the_clients_context_on(start, jaeger):
    h = start({"plain.yaml": traced_server("plain", jaeger)})
    wait_tools(h.url, {"plain__echo"})
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "plain__echo", "arguments": {"text": "t"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {},
                  "traceparent": f"00-{trace_id}-{parent}-01"}}}
    status, _, answer = post(h.url, body)
    assert answer["result"]["structuredContent"] == {"result": "t"}, answer
    spans = jaeger.wait_trace(trace_id, lambda spans: len(spans) >= 1)
    time.sleep(1)
    spans = jaeger.trace(trace_id)
    assert [(s["service"], s["parent"]) for s in spans] == [("plain", parent)], spans


def test_a_trace_exporter_hangar_cannot_use_is_refused_naming_the_variable(tmp_path):
    out = subprocess.run([hangar_bin(), "run", str(tmp_path),
                          "--listen", "127.0.0.1:0"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                              "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert out.returncode == 1 and "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\": use grpc or http/protobuf" in out.stderr, out.stderr


def test_admin_writes_and_plugins_are_audited(tmp_path):
    """`hangar core`: registrations accepted and refused; `hangar run`: a plugin loaded, one
    refused, and the loaded one faulting."""
    from test_core import KEY, admin
    from test_plugin_sandbox import build, group

    audit = tmp_path / "core-audit.log"
    core = Hangar(tmp_path, {"HANGAR_API_KEY": KEY}, ["core", "--audit", str(audit)])
    try:
        spec = {"spec": {"mode": "remote", "endpoint": "http://127.0.0.1:9/mcp"}}
        assert admin(core, "PUT", "/api/v1/servers/team/remote", spec)[0] == 200
        assert admin(core, "PUT", "/api/v1/servers/team/remote", spec, key="wrong-key-of-enough-length")[0] == 401
        assert admin(core, "DELETE", "/api/v1/servers/team/remote")[0] == 204
        admin(core, "GET", "/api/v1/servers")
    finally:
        core.stop()
    records = audit_records(audit)
    assert [(r["event"], r["decision"], r["request"]) for r in records] == [
        ("admin", "accepted", "PUT /api/v1/servers/team/remote"),
        ("admin", "refused", "PUT /api/v1/servers/team/remote"),
        ("admin", "accepted", "DELETE /api/v1/servers/team/remote"),
    ], "writes only, each once"
    assert records[0]["admin_key"] == hashlib.sha256(KEY.encode()).hexdigest()[:12] and "admin_key" not in records[1]
    assert records[0]["server"] == "team/remote" and records[1]["reason"] == "HTTP 401 Unauthorized"
    assert KEY not in audit.read_text()

    folder = tmp_path / "run"
    (folder / "plugins").mkdir(parents=True)
    (folder / "plugins" / "broken.wasm").write_bytes(b"\0asm but not really")
    shutil.copy(build("tests/plugins/hostile", "hangar_test_hostile_plugin"), folder / "plugins" / "hostile.wasm")
    (folder / "a.yaml").write_text(notes_server("picked-a", "{app: picked}"))
    (folder / "b.yaml").write_text(notes_server("picked-b", "{app: picked}"))
    (folder / "group.yaml").write_text(group("trap"))
    audit = folder / "audit.log"
    h = Hangar(folder, None, ["run", str(folder), "--audit", str(audit)])
    try:
        wait_tools(h.url, {"picked__word_count"})
        assert asyncio.run(call(h.url, "picked__word_count", {"text": "a b"})).structured_content == {"result": 2}
        records = wait_for(lambda: (r := [x for x in audit_records(audit) if x["event"] == "plugin"])
                           and any(x["decision"] == "fault" for x in r) and r)
    finally:
        h.stop()
    decisions = {(r["plugin"], r["decision"]) for r in records}
    assert {("broken", "refused"), ("hostile", "loaded"), ("hostile", "fault")} <= decisions, records
    loaded = next(r for r in records if r["decision"] == "loaded")
    assert loaded["world"] == "strategy" and loaded["reason"].startswith("sha256 ")
    assert "trap" in next(r for r in records if r["decision"] == "fault")["reason"]


def test_every_alert_of_the_chart_fires_and_stays_quiet_as_promtool_says(observability_bin, tmp_path):
    """promtool's rule unit tests (tests/observability/alerts-test.yaml) against the PrometheusRule
    the chart renders; every alert has a case where it fires and one where it must not."""
    import yaml
    helm = Path(subprocess.run(["bash", str(REPO / "tests" / "cluster" / "build.sh")],
                               capture_output=True, text=True, check=True).stdout.strip()) / "helm"
    rendered = subprocess.run([str(helm), "template", "mcp-hangar-operator", str(REPO / "charts" / "mcp-hangar-operator"),
                               "-n", "mcp-hangar", "--kube-version", "1.33.0", "--set", "prometheusRule.enabled=true",
                               "--show-only", "templates/prometheusrule.yaml"], capture_output=True, text=True, check=True)
    groups = yaml.safe_load(rendered.stdout)["spec"]["groups"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    tests = REPO / "tests" / "observability" / "alerts-test.yaml"
    shutil.copy(tests, tmp_path / "alerts-test.yaml")
    out = subprocess.run([str(observability_bin / "promtool"), "test", "rules", "alerts-test.yaml"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr

    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    cases = [c for t in yaml.safe_load(tests.read_text())["tests"] for c in t["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert len(alerts) >= 5 and alerts == firing == quiet, (alerts, firing, quiet)
