"""Against a real control plane: kube-apiserver and etcd built from the Go module proxy
(tests/cluster), started once per run on loopback with RBAC on. The CRDs are compiled by the API
server itself (CEL rules and their cost estimates included), and manifests are judged by it, in
parity with `hangar validate`."""
import asyncio
import json
import os
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from mcp import Client

from conftest import REPO
from hangar_proc import NOTES, PYTHON, Hangar, hangar_bin, wait_for
from test_gateway import free_port

GUARDED = REPO / "tests" / "python" / "servers" / "guarded.py"

CLUSTER = REPO / "tests" / "cluster"


def control_plane(state: Path):
    """Starts the control plane in `state` (up.sh; down.sh stops it); returns kubectl for it."""
    # With kube-controller-manager: Deployments get ReplicaSets, owned objects are collected.
    up = subprocess.run(["bash", str(CLUSTER / "up.sh"), str(state)], capture_output=True, text=True, timeout=3000,
                        env={**os.environ, "CONTROLLER_MANAGER": "1"})
    assert up.returncode == 0, up.stderr[-3000:]
    bin_dir = subprocess.run(["bash", str(CLUSTER / "build.sh")], capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "KUBECONFIG": str(state / "kubeconfig"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def kubectl(*args, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)
        if check:
            assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
        return out

    kubectl.state = state
    kubectl.env = env
    return kubectl


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    state = tmp_path_factory.mktemp("control-plane")
    yield control_plane(state)
    subprocess.run(["bash", str(CLUSTER / "down.sh"), str(state)], timeout=60)


@pytest.fixture(scope="module")
def crds(kube):
    kube("apply", "--server-side", "-f", str(REPO / "crds"))
    for name in ("mcpservers", "mcpservergroups", "mcpdiscoverysources"):
        kube("wait", "--for", "condition=established", "--timeout=60s", f"crd/{name}.mcp-hangar.io")
    return kube


def test_the_api_server_compiles_every_crd_and_its_cel_rules(crds):
    out = crds("get", "crd", "-o", "yaml").stdout
    for crd in yaml.safe_load(out)["items"]:
        if not crd["metadata"]["name"].endswith(".mcp-hangar.io"):
            continue
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True", crd["metadata"]["name"]
    listed = crds("get", "mcpservers", "-A")
    assert "No resources found" in listed.stdout + listed.stderr


def test_kubectl_explain_shows_the_reference_pages_descriptions(crds):
    reference = (REPO / "docs" / "reference" / "crds.md").read_text()
    row = next(line for line in reference.splitlines() if line.startswith("| `spec.tools` |"))
    description = row.rstrip(" |").rsplit(" | ", 1)[1]
    # The API server publishes a new CRD's OpenAPI a few seconds after it is established.
    explain = lambda: crds("explain", "mcpserver.spec.tools", check=False)
    explained = " ".join(wait_for(lambda: (out := explain()).returncode == 0 and out, timeout=60).stdout.split())
    assert description in explained, (description, explained[:1500])


def test_every_manifest_in_the_book_is_accepted_by_the_api_server(crds, tmp_path):
    from test_docs import book_manifests
    for i, (page, text) in enumerate(book_manifests()):
        path = tmp_path / f"{i}.yaml"
        path.write_text(text)
        for ns in namespaces_of([path]):
            crds("create", "namespace", ns, check=False)
        out = crds("apply", "--dry-run=server", "--validate=strict", "-f", str(path), check=False)
        assert out.returncode == 0, f"{page}: {out.stderr}"


def namespaces_of(files: list[Path]) -> set[str]:
    out = set()
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if isinstance(doc, dict) and doc.get("metadata", {}).get("namespace"):
                out.add(doc["metadata"]["namespace"])
    return out


def kinds_of(f: Path) -> set[str]:
    return {d.get("apiVersion", "") for d in yaml.safe_load_all(f.read_text()) if isinstance(d, dict)}


def test_every_example_hangar_validate_accepts_the_api_server_accepts(crds):
    # The Prometheus Operator's kinds have no CRDs here (the chart tests check them against its models).
    files = [f for f in sorted((REPO / "examples" / "kubernetes").glob("*.yaml"))
             if not any(k.startswith("monitoring.coreos.com/") for k in kinds_of(f))]
    assert len(files) >= 5
    for ns in namespaces_of(files):
        crds("create", "namespace", ns, check=False)
    for f in files:
        assert subprocess.run([hangar_bin(), "validate", str(f)], capture_output=True).returncode == 0, f
        out = crds("apply", "--dry-run=server", "--validate=strict", "-f", str(f), check=False)
        assert out.returncode == 0, f"{f.name}: hangar validate accepts it, the API server does not: {out.stderr}"


def test_every_manifest_hangar_validate_rejects_the_api_server_rejects_naming_the_same_field(crds):
    files = sorted((REPO / "tests" / "manifests" / "invalid").glob("*.yaml"))
    for ns in namespaces_of([f for f in files if "broken" not in f.name]):
        crds("create", "namespace", ns, check=False)
    mismatches, compared = [], 0
    for f in files:
        expect = f.read_text().splitlines()[0].removeprefix("# expect: ")
        out = crds("apply", "--dry-run=server", "--validate=strict", "-f", str(f), check=False)
        if out.returncode == 0:
            mismatches.append(f"{f.name}: the API server accepted what hangar validate rejects ({expect})")
            continue
        named = re.search(r"\b(spec\.[A-Za-z0-9_.]+)", expect)
        field = named.group(1) if named else None
        if field and field not in out.stderr:
            mismatches.append(f"{f.name}: hangar validate names {field}; the API server says: {out.stderr.strip()}")
        compared += field is not None
    assert not mismatches, "\n".join(mismatches)
    assert compared >= 10, f"only {compared} manifests named a spec field to compare"


def test_the_chart_installs_upgrades_keeping_its_key_and_uninstalls(crds):
    def helm(*args):
        out = subprocess.run(["helm", *args], capture_output=True, text=True, env=crds.env, timeout=300)
        assert out.returncode == 0, f"helm {' '.join(args)}: {out.stderr}"
        return out.stdout

    chart = str(REPO / "charts" / "mcp-hangar-operator")
    helm("install", "mcp-hangar-operator", chart, "-n", "mcp-system", "--create-namespace")
    key_of = lambda: crds("get", "secret", "mcp-hangar-operator-credentials", "-n", "mcp-system",
                          "-o", "jsonpath={.data.api-key}").stdout
    key = key_of()
    assert len(key) > 40
    release = "app.kubernetes.io/instance=mcp-hangar-operator"
    made = crds("get", "deployments,services,serviceaccounts", "-n", "mcp-system", "-l", release, "-o", "name").stdout.split()
    assert "deployment.apps/mcp-hangar-operator" in made and "deployment.apps/mcp-hangar-core" in made, made
    assert crds("get", "clusterrole", "-l", release, "-o", "name").stdout.strip(), "the ClusterRole was created"
    # What the operator's ServiceAccount may do, asked of the real API server's authorizer.
    operator_sa = "system:serviceaccount:mcp-system:mcp-hangar-operator"
    can = lambda *what: crds("auth", "can-i", *what, "--as", operator_sa, check=False).stdout.strip() == "yes"
    for allowed in [("get", "secrets", "-n", "team"), ("list", "pods", "-n", "team"), ("watch", "configmaps", "-A"),
                    ("patch", "deployments.apps", "-n", "team"), ("patch", "mcpservers.mcp-hangar.io/status", "-n", "team")]:
        assert can(*allowed), f"the operator may {allowed}"
    for refused in [("create", "pods", "-n", "team"), ("delete", "pods", "-n", "team"), ("list", "secrets", "-n", "team"),
                    ("create", "secrets", "-n", "team"), ("update", "secrets", "-n", "team"),
                    ("delete", "configmaps", "-n", "team"), ("create", "configmaps", "-n", "team"),
                    ("delete", "deployments.apps", "-n", "team"), ("create", "clusterrolebindings")]:
        assert not can(*refused), f"the operator may not {refused}"
    helm("upgrade", "mcp-hangar-operator", chart, "-n", "mcp-system")
    assert key_of() == key, "an upgrade keeps the generated API key"
    helm("uninstall", "mcp-hangar-operator", "-n", "mcp-system")
    left = crds("get", "deployments,services,serviceaccounts,configmaps,roles,rolebindings", "-n", "mcp-system",
                "-l", release, "-o", "name").stdout.split()
    left += crds("get", "clusterroles,clusterrolebindings", "-l", release, "-o", "name").stdout.split()
    assert left == [], f"left after uninstall: {left}"
    # The key's Secret is kept on purpose (helm.sh/resource-policy: keep): a reinstall keeps the key.
    assert key_of() == key


def apply(kube, obj: dict):
    kube("apply", "-f", "-", stdin=json.dumps(obj))


def namespaces(kube, *names: str):
    for ns in names:
        kube("create", "namespace", ns, check=False)


CORE_KEY = "e2e-admin-key-0123456789abcdef"


@pytest.fixture
def core(tmp_path):
    """`hangar core` with an admin key; `core_env(core)` is what the operator needs to drive it."""
    h = Hangar(tmp_path, {"HANGAR_API_KEY": CORE_KEY}, ["core"])
    yield h
    h.stop()


def core_env(core: Hangar) -> dict:
    return {"HANGAR_URL": core.base, "HANGAR_API_KEY": CORE_KEY}


def helm(kube, *args):
    out = subprocess.run(["helm", *args], capture_output=True, text=True, env=kube.env, timeout=300)
    assert out.returncode == 0, f"helm {' '.join(args)}: {out.stderr}"
    return out.stdout


class Operator:
    """The chart installed as `release` (core off), and `hangar operator` running locally as the
    chart's ServiceAccount: a token from the TokenRequest API, so the real authorizer enforces the
    chart's ClusterRole. `env` adds to the operator's environment (HANGAR_URL, HANGAR_API_KEY)."""

    def __init__(self, kube, tmp_path, release: str, env: dict | None = None, replica: int = 0,
                 args: list[str] | None = None, chart: list[str] | None = None):
        self.kube, self.release, self.installed = kube, release, replica == 0
        if self.installed:  # further replicas share the first one's release
            helm(kube, "install", release, str(REPO / "charts" / "mcp-hangar-operator"), "-n", release,
                 "--create-namespace", "--set", "core.enabled=false", "--set", "hangar.url=", *(chart or []))
        account = f"{release}-mcp-hangar-operator"  # the chart names its ServiceAccount after the release
        token = kube("create", "token", account, "-n", release, "--duration", "1h").stdout.strip()
        cluster = yaml.safe_load((kube.state / "kubeconfig").read_text())["clusters"][0]["cluster"]
        kubeconfig = tmp_path / f"{release}.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "operator",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "operator", "user": {"token": token}}],
            "contexts": [{"name": "operator", "context": {"cluster": "c", "user": "operator", "namespace": release}}],
        }))
        self.identity = f"{release}-{replica}"
        self.log_path = tmp_path / f"{self.identity}-operator.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [hangar_bin(), "operator", "--leader-namespace", release, "--metrics-listen", "127.0.0.1:0", *(args or [])],
            env={**kube.env, "KUBECONFIG": str(kubeconfig), "HOSTNAME": self.identity, **(env or {})},
            stdout=self.log, stderr=self.log)

    def stop(self) -> str:
        """Stops the operator (SIGTERM) and uninstalls the chart it installed; returns its log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()
        if self.installed:
            helm(self.kube, "uninstall", self.release, "-n", self.release)
        text = self.log_path.read_text()
        assert "Forbidden" not in text and "forbidden" not in text, text[-3000:]
        return text


def server_json(kube, namespace: str, name: str) -> dict:
    return json.loads(kube("get", "mcpserver", name, "-n", namespace, "-o", "json").stdout)


def test_the_operator_under_the_charts_rbac_reconciles_a_server_without_a_forbidden(crds, tmp_path):
    namespaces(crds, "tools-team")
    server = {"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
              "metadata": {"name": "sqlite-tools", "namespace": "tools-team"},
              "spec": {"mode": "container", "image": "ghcr.io/example/sqlite:1", "replicas": 1}}
    apply(crds, server)
    operator = Operator(crds, tmp_path, "rbac-check")
    try:
        wait_for(lambda: crds("get", "deployment", "sqlite-tools", "-n", "tools-team", check=False).returncode == 0,
                 timeout=60)
        crds("get", "service", "sqlite-tools", "-n", "tools-team")
        # The namespace's isolation policy (default: ingress only from core's namespace).
        policy = json.loads(crds("get", "networkpolicy", "mcp-server-isolation", "-n", "tools-team", "-o", "json").stdout)
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert policy["spec"]["podSelector"] == {"matchLabels": {"mcp-hangar.io/mcp_server": "true"}}
        assert policy["spec"]["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {"mcp-hangar.io/core": "true"}}}]}]
        deployment = json.loads(crds("get", "deployment", "sqlite-tools", "-n", "tools-team", "-o", "json").stdout)
        owners = deployment["metadata"].get("ownerReferences", [])
        assert [(o["kind"], o["name"], o.get("controller")) for o in owners] == [("MCPServer", "sqlite-tools", True)]
        conditions = wait_for(lambda: server_json(crds, "tools-team", "sqlite-tools").get("status", {}).get("conditions"),
                              timeout=60)
        assert conditions, "status written through the status subresource"
        assert crds("get", "lease", "-n", "rbac-check", "-o", "name").stdout.strip(), "the leader holds a Lease"
        # kube-controller-manager turns the Deployment into a ReplicaSet...
        wait_for(lambda: crds("get", "replicasets", "-n", "tools-team", "-o", "name").stdout.strip(), timeout=60)
        # ...and collects what the MCPServer owned once it is deleted.
        crds("delete", "mcpserver", "sqlite-tools", "-n", "tools-team", "--wait=true", "--timeout=60s")
        wait_for(lambda: crds("get", "deployment,service", "-n", "tools-team", "-o", "name").stdout.strip() == "",
                 timeout=60)
    finally:
        operator.stop()


def test_operator_and_core_serve_a_remote_server_to_the_official_sdk_client(crds, tmp_path, core):
    port = free_port()
    notes = subprocess.Popen([str(PYTHON), str(NOTES), "--http", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    operator = None
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0)
        namespaces(crds, "notes-team")
        server = {"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
                  "metadata": {"name": "notes", "namespace": "notes-team"},
                  "spec": {"mode": "remote", "endpoint": f"http://127.0.0.1:{port}/mcp"}}
        apply(crds, server)
        operator = Operator(crds, tmp_path, "with-core", core_env(core))
        status = wait_for(lambda: (s := server_json(crds, "notes-team", "notes").get("status", {}))
                          .get("state") == "Ready" and s, timeout=90)
        assert status["toolsCount"] == 4 and "word_count" in status["tools"], status
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions.get("Registered") == "True", conditions
        columns = crds("get", "mcpservers", "-A").stdout
        assert "MODE" in columns and "STATE" in columns and "TOOLS" in columns and "Ready" in columns, columns
        described = crds("describe", "mcpserver", "notes", "-n", "notes-team").stdout
        assert "Events:" in described and "Registered" in described, described[-2000:]

        async def through_core():
            async with Client(core.url) as c:
                names = [t.name for t in (await c.list_tools()).tools]
                r = await c.call_tool("notes__word_count", {"text": "through the cluster"})
                return names, r.structured_content["result"]

        names, result = asyncio.run(through_core())
        assert "notes__word_count" in names and result == 3

        # Deleting the MCPServer: its finalizer takes it out of core, then it is gone.
        crds("delete", "mcpserver", "notes", "-n", "notes-team", "--wait=true", "--timeout=60s")
        request = urllib.request.Request(core.base + "/api/v1/servers", headers={"authorization": f"Bearer {CORE_KEY}"})
        listed = json.loads(urllib.request.urlopen(request, timeout=10).read())["servers"]
        assert all(s["name"] != "notes" for s in listed), listed
    finally:
        if operator:
            operator.stop()
        notes.kill()
        notes.wait()


def test_a_remote_servers_credential_comes_from_a_secret_the_operator_reads_and_is_never_shown(crds, tmp_path, core):
    """Core has no Secret rights: the operator (under the chart's ClusterRole) reads the Secret a
    remote server's spec.headers names and hands the value to core, which sends it to the server."""
    secret = "Bearer cluster-credential-5be1d0"
    guard_log = tmp_path / "guard.log"
    port = free_port()
    guarded = subprocess.Popen([str(PYTHON), str(GUARDED), str(port)], stderr=subprocess.DEVNULL,
                               env={**os.environ, "GUARD_EXPECT": secret, "GUARD_LOG": str(guard_log)})
    operator = None
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0)
        namespaces(crds, "crm-team")
        header = {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "crm-credentials", "key": "authorization"}}}
        server = {"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
                  "metadata": {"name": "crm", "namespace": "crm-team"},
                  "spec": {"mode": "remote", "endpoint": f"http://127.0.0.1:{port}/mcp", "headers": [header]}}
        apply(crds, server)
        operator = Operator(crds, tmp_path, "with-secrets", core_env(core))
        # Without the Secret the registration is refused, naming the Secret (not a value).
        registered = wait_for(lambda: next((c for c in server_json(crds, "crm-team", "crm").get("status", {})
                                            .get("conditions", []) if c["type"] == "Registered"), None), timeout=90)
        assert registered["status"] == "False" and "crm-team/crm-credentials does not exist" in registered["message"], registered
        crds("create", "secret", "generic", "crm-credentials", "-n", "crm-team", f"--from-literal=authorization={secret}")
        # The next reconcile (at most the operator's periodic requeue) registers it.
        crds("annotate", "mcpserver", "crm", "-n", "crm-team", "touch=1", "--overwrite")
        wait_for(lambda: server_json(crds, "crm-team", "crm").get("status", {}).get("state") == "Ready", timeout=120)

        async def through_core():
            async with Client(core.url) as c:
                return (await c.call_tool("crm__secret_word", {})).content[0].text

        assert asyncio.run(through_core()) == "swordfish"
        assert set(guard_log.read_text().splitlines()) == {secret}, "only the Secret's value reached the server"
        request = urllib.request.Request(core.base + "/api/v1/servers", headers={"authorization": f"Bearer {CORE_KEY}"})
        shown = [urllib.request.urlopen(request, timeout=10).read().decode(),
                 crds("get", "mcpserver", "crm", "-n", "crm-team", "-o", "yaml").stdout,
                 crds("describe", "mcpserver", "crm", "-n", "crm-team").stdout,
                 urllib.request.urlopen(core.base + "/metrics", timeout=10).read().decode()]
        assert not [s for s in shown if "cluster-credential" in s]
    finally:
        if operator:
            log = operator.stop()
            assert "cluster-credential" not in log
        guarded.kill()
        guarded.wait()
    core.stop()
    assert "cluster-credential" not in (core.folder / "hangar.log").read_text()


def test_discovery_creates_owned_servers_and_refuses_what_a_tenant_may_not_ask(crds, tmp_path):
    namespaces(crds, "discovery-home", "tenant-a")
    crds("label", "namespace", "tenant-a", "mcp-hangar.io/enabled=true", "--overwrite")
    providers = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "tools", "namespace": "tenant-a", "labels": {"mcp-hangar.io/providers": "true"}},
        "data": {"providers.yaml": yaml.safe_dump({
            "search": {"mode": "remote", "endpoint": "http://search.tenant-a/mcp"},
            "escape": {"mode": "remote", "endpoint": "http://x/mcp", "namespace": "kube-system"},
            "root": {"mode": "container", "image": "x", "securityContext": {"privileged": True}},
            # The tenant's Secret, sent to a URL of the ConfigMap writer's choosing.
            "leak": {"mode": "remote", "endpoint": "http://search.tenant-a/mcp", "headers": [
                {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "db-creds", "key": "password"}}}]},
            "mount": {"mode": "container", "image": "x", "volumes": [{"name": "s", "secret": {"secretName": "db-creds"}}]},
            "token": {"mode": "container", "image": "x", "volumes": [
                {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]},
            "tolerate": {"mode": "container", "image": "x", "tolerations": [{"operator": "Exists"}]},
            "outside": {"mode": "remote", "endpoint": "http://collector.example/mcp"},
            # Named like a server the tenant made by hand: left alone, never taken over or pruned.
            "mine": {"mode": "remote", "endpoint": "http://search.tenant-a/other"},
        })},
    }
    source = {
        "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPDiscoverySource",
        "metadata": {"name": "tenants", "namespace": "discovery-home"},
        "spec": {"type": "Namespace", "mode": "Authoritative", "refreshInterval": "5s",
                 "namespaceSelector": {"matchLabels": {"mcp-hangar.io/enabled": "true"}},
                 "entryPermissions": {"endpointHosts": ["*.tenant-a"]}},
    }
    own = {"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
           "metadata": {"name": "tenants-mine", "namespace": "tenant-a"},
           "spec": {"mode": "remote", "endpoint": "http://mine.tenant-a/mcp"}}
    apply(crds, own)
    apply(crds, providers)
    apply(crds, source)
    operator = Operator(crds, tmp_path, "discovery-check")
    try:
        status = wait_for(lambda: (s := json.loads(crds("get", "mcpdiscoverysource", "tenants", "-n", "discovery-home",
                                                         "-o", "json").stdout).get("status", {})).get("refusedCount") and s,
                          timeout=60)
        assert status["discovered"] == ["tenant-a/tenants-search"], status
        assert status["refusedCount"] == 8, status
        reasons = {r["entry"]: r["reason"] for r in status["refused"]}
        assert "entryPermissions.secrets" in reasons["leak"] and "entryPermissions.secrets" in reasons["mount"], reasons
        assert "serviceAccountTokens" in reasons["token"] and "scheduling" in reasons["tolerate"], reasons
        assert "endpointHosts" in reasons["outside"], reasons
        assert "was not created by this source" in reasons["mine"], reasons
        found = json.loads(crds("get", "mcpservers", "-A", "-l", "mcp-hangar.io/discovered-by=tenants", "-o", "json").stdout)
        placed = sorted(f"{s['metadata']['namespace']}/{s['metadata']['name']}" for s in found["items"])
        assert placed == ["tenant-a/tenants-search"], "nothing in kube-system, nothing privileged, no Secret, not over the tenant's own"
        mine = json.loads(crds("get", "mcpserver", "tenants-mine", "-n", "tenant-a", "-o", "json").stdout)
        assert mine["spec"]["endpoint"] == "http://mine.tenant-a/mcp", "the tenant's own server was not applied over"
        # Authoritative: an entry removed from the ConfigMap is pruned.
        providers["data"]["providers.yaml"] = yaml.safe_dump({"other": {"mode": "remote", "endpoint": "http://other.tenant-a/mcp"}})
        apply(crds, providers)
        wait_for(lambda: crds("get", "mcpserver", "tenants-search", "-n", "tenant-a", check=False).returncode != 0,
                 timeout=60)
        crds("get", "mcpserver", "tenants-other", "-n", "tenant-a")
        crds("get", "mcpserver", "tenants-mine", "-n", "tenant-a"), "never pruned: not this source's"
    finally:
        operator.stop()


def reconciles(operator: "Operator") -> float:
    """The operator's `mcp_operator_reconcile_total`, summed, from its own /metrics."""
    address = wait_for(lambda: re.search(r"metrics and probes listening address=(\S+)", operator.log_path.read_text()),
                       timeout=30).group(1)
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("mcp_operator_reconcile_total"))


def test_a_second_operator_leads_once_the_first_stops(crds, tmp_path):
    def holder():
        out = crds("get", "lease", "hangar-operator", "-n", "leaders", "-o", "jsonpath={.spec.holderIdentity}", check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    def server(name):
        apply(crds, {
            "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer", "metadata": {"name": name, "namespace": "leaders"},
            "spec": {"mode": "container", "image": "ghcr.io/example/x:1"}})

    def deployed(name):
        return crds("get", "deployment", name, "-n", "leaders", check=False).returncode == 0

    first = Operator(crds, tmp_path, "leaders")
    second = None
    try:
        wait_for(lambda: holder() == "leaders-0", timeout=60)
        second = Operator(crds, tmp_path, "leaders", replica=1)
        server("before")
        wait_for(lambda: deployed("before"), timeout=60)
        time.sleep(3)
        assert holder() == "leaders-0", "the first keeps the Lease while it runs"
        assert "waiting to lead" in second.log_path.read_text()
        # A follower runs no controller: it has reconciled (and so written) nothing.
        assert reconciles(first) > 0 and reconciles(second) == 0, (reconciles(first), reconciles(second))
        first.proc.terminate()  # SIGTERM releases the Lease
        first.proc.wait(timeout=30)
        wait_for(lambda: holder() == "leaders-1", timeout=30)  # well within the 15 s lease
        server("after")
        wait_for(lambda: deployed("after"), timeout=60)
        assert reconciles(second) > 0, "leading, it reconciles"
    finally:
        if second:
            second.stop()
        first.stop()


def test_a_call_for_a_cold_server_scales_its_deployment_to_one_and_idle_takes_it_back(crds, tmp_path, core):
    operator = None

    def replicas():
        out = crds("get", "deployment", "cold", "-n", "cold-team", "-o", "jsonpath={.spec.replicas}", check=False)
        return out.stdout.strip() if out.returncode == 0 else None

    try:
        namespaces(crds, "cold-team")
        apply(crds, {
            "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer", "metadata": {"name": "cold", "namespace": "cold-team"},
            "spec": {"mode": "container", "image": "ghcr.io/example/cold:1", "replicas": 0, "idleTTL": "3s",
                     "startupTimeout": "3s", "healthCheck": {"enabled": False}}})
        operator = Operator(crds, tmp_path, "cold-check", core_env(core))
        # Registered cold; core asks once for a wake-up to learn its tools; idleTTL takes it back to 0.
        wait_for(lambda: replicas() == "1", timeout=60)
        print("woken at registration", time.strftime("%X"))
        # The operator decides idleness on its periodic reconcile (about a minute apart).
        wait_for(lambda: replicas() == "0", timeout=180)
        print("idle again", time.strftime("%X"))
        # A client's call wakes it again (the call itself fails: no pod ever answers here).
        try:
            asyncio.run(call_tool(core.url, "cold__anything"))
        except BaseException as e:  # noqa: BLE001 (expected: the server never became ready)
            print("call failed as expected", time.strftime("%X"), repr(e)[:300])
        wait_for(lambda: replicas() == "1", timeout=60)
    finally:
        if operator:
            operator.stop()


async def call_tool(url: str, tool: str):
    async with Client(url) as c:
        return await c.call_tool(tool, {})


def test_a_group_of_two_remote_servers_fails_over_when_one_stops(crds, tmp_path, core):
    ports = [free_port(), free_port()]
    backends = [subprocess.Popen([str(PYTHON), str(NOTES), "--http", str(p)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL) for p in ports]
    operator = None
    try:
        for p in ports:
            wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", p)) == 0)
        namespaces(crds, "group-team")
        for name, p in zip(("notes-a", "notes-b"), ports):
            apply(crds, {
                "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
                "metadata": {"name": name, "namespace": "group-team", "labels": {"app": "notes"}},
                "spec": {"mode": "remote", "endpoint": f"http://127.0.0.1:{p}/mcp",
                         "healthCheck": {"interval": "1s", "timeout": "1s"}}})
        apply(crds, {
            "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServerGroup",
            "metadata": {"name": "notes", "namespace": "group-team"},
            "spec": {"selector": {"matchLabels": {"app": "notes"}}, "strategy": "RoundRobin",
                     "failover": {"maxRetries": 1, "retryDelay": "10ms"}}})
        operator = Operator(crds, tmp_path, "group-check", core_env(core))
        group = lambda: json.loads(crds("get", "mcpservergroup", "notes", "-n", "group-team", "-o", "json").stdout)
        wait_for(lambda: group().get("status", {}).get("healthyMembers") == 2, timeout=90)

        async def calls(n):
            async with Client(core.url) as c:
                return [(await c.call_tool("notes__word_count", {"text": "a b"})).structured_content["result"]
                        for _ in range(n)]

        assert wait_for(lambda: (r := asyncio.run(calls(1))) and r) == [2]
        # A group whose strategy plugin is not loaded is still served (round robin), and says so.
        apply(crds, {
            "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServerGroup",
            "metadata": {"name": "notes-custom", "namespace": "group-team"},
            "spec": {"selector": {"matchLabels": {"app": "notes"}}, "strategy": "team-strategy",
                     "exposeMembers": True}})
        custom = lambda: json.loads(crds("get", "mcpservergroup", "notes-custom", "-n", "group-team", "-o", "json").stdout)
        resolved = lambda: next((c for c in custom().get("status", {}).get("conditions", [])
                                 if c["type"] == "PluginResolved"), None)
        condition = wait_for(resolved, timeout=90)
        assert condition["status"] == "False" and condition["reason"] == "PluginNotFound", condition
        assert "team-strategy" in condition["message"] and "round robin" in condition["message"], condition

        async def custom_call():
            async with Client(core.url) as c:
                return (await c.call_tool("notes-custom__word_count", {"text": "a b c"})).structured_content["result"]

        assert asyncio.run(custom_call()) == 3, "the group is served by the fallback"
        events = crds("get", "events", "-n", "group-team", "--field-selector",
                      "involvedObject.name=notes-custom", "-o", "json").stdout
        assert "PluginNotFound" in events, events[:2000]
        crds("delete", "mcpservergroup", "notes-custom", "-n", "group-team")
        backends[0].kill()
        backends[0].wait()
        assert asyncio.run(calls(6)) == [2] * 6, "every call answered: the dead member's calls fail over"
        wait_for(lambda: group().get("status", {}).get("healthyMembers") == 1, timeout=90)
    finally:
        if operator:
            operator.stop()
        for b in backends:
            b.kill()
            b.wait()


def test_a_configmap_source_creates_owned_servers_and_prunes_only_its_own(crds, tmp_path):
    namespaces(crds, "defs", "cm-home")
    definitions = lambda entries: {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mcp-server-definitions", "namespace": "defs"},
        "data": {"providers.yaml": yaml.safe_dump(entries)}}
    apply(crds, definitions({
        "math": {"mode": "remote", "endpoint": "http://math/mcp"},
        "fetch": {"mode": "remote", "endpoint": "http://fetch/mcp"}}))
    apply(crds, {
        "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPDiscoverySource",
        "metadata": {"name": "config", "namespace": "cm-home"},
        "spec": {"type": "ConfigMap", "mode": "Authoritative", "refreshInterval": "5s",
                 "configMapRef": {"name": "mcp-server-definitions", "namespace": "defs"}}})
    # A server of the same source name from another namespace's source: never this source's to prune.
    apply(crds, {
        "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
        "metadata": {"name": "config-old", "namespace": "cm-home",
                     "labels": {"mcp-hangar.io/discovered-by": "config", "mcp-hangar.io/discovered-by-namespace": "elsewhere"}},
        "spec": {"mode": "remote", "endpoint": "http://old/mcp"}})
    audit = tmp_path / "audit.log"
    operator = Operator(crds, tmp_path, "configmap-check", args=["--audit", str(audit)])
    try:
        names = lambda: sorted(s["metadata"]["name"] for s in json.loads(
            crds("get", "mcpservers", "-n", "cm-home", "-o", "json").stdout)["items"])
        wait_for(lambda: names() == ["config-fetch", "config-math", "config-old"], timeout=60)
        apply(crds, definitions({"math": {"mode": "remote", "endpoint": "http://math/mcp"}}))
        wait_for(lambda: names() == ["config-math", "config-old"], timeout=60)
    finally:
        operator.stop()
    # The audit log has each server created once (later syncs re-apply it unchanged) and the one pruned.
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert sorted((r["decision"], r["server"]) for r in records if r["event"] == "discovery") == [
        ("created", "cm-home/config-fetch"), ("created", "cm-home/config-math"), ("deleted", "cm-home/config-fetch")], records
    assert all(r["request"] == "MCPDiscoverySource cm-home/config" for r in records if r["event"] == "discovery")


def test_a_plugin_dropped_into_the_plugins_configmap_is_used(crds, tmp_path):
    """The kubelet updates a ConfigMap volume by writing a new timestamped folder and swapping the
    `..data` link; the operator's --plugin-dir sees the swap, loads the plugin, and a discovery
    source that names it (spec.parser) is read through it."""
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    parser = sorted(Path(target).glob("wasm-plugins/by-source/*/hangar_plugin_configmap.wasm"),
                    key=lambda p: p.stat().st_mtime)[-1]
    volume = tmp_path / "plugins"
    volume.mkdir()
    namespaces(crds, "plugin-team")
    apply(crds, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "defs", "namespace": "plugin-team"},
        "data": {"providers.yaml": yaml.safe_dump({"calc": {"mode": "remote", "endpoint": "http://calc/mcp"}})}})
    apply(crds, {
        "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPDiscoverySource",
        "metadata": {"name": "custom", "namespace": "plugin-team"},
        "spec": {"type": "ConfigMap", "refreshInterval": "5s", "parser": "team-parser",
                 "configMapRef": {"name": "defs"}}})
    operator = Operator(crds, tmp_path, "plugin-check", args=["--plugin-dir", str(volume)])
    try:
        source = lambda: json.loads(crds("get", "mcpdiscoverysource", "custom", "-n", "plugin-team", "-o", "json").stdout)
        wait_for(lambda: "team-parser" in json.dumps(source().get("status", {}).get("conditions", [])), timeout=60)
        # The kubelet's way: a new folder, `..data` swapped to it, and the file links through it.
        stamped = volume / "..2026_11_26_12_00_00.000000001"
        stamped.mkdir()
        (stamped / "team-parser.wasm").write_bytes(parser.read_bytes())
        os.symlink(stamped.name, volume / "..data_tmp")
        os.replace(volume / "..data_tmp", volume / "..data")
        os.symlink("..data/team-parser.wasm", volume / "team-parser.wasm")
        wait_for(lambda: crds("get", "mcpserver", "custom-calc", "-n", "plugin-team", check=False).returncode == 0,
                 timeout=90)
    finally:
        operator.stop()


def test_prometheus_and_jaeger_watch_core_and_the_operator_and_every_dashboard_query_has_series(crds, tmp_path):
    """A real Prometheus scrapes `hangar core` and `hangar operator` (driving the test cluster)
    while a short load runs: calls of a group whose strategy plugin is missing (fallback picks, a
    plugin fault), a denied and a rate-limited call, a cold server woken at registration, calls
    of a handshake client (backend sessions). Every query of the chart's Grafana dashboard then
    returns series; latency buckets carry exemplars naming traces; Jaeger has the operator's
    reconciles and core's requests."""
    from test_observability import Jaeger

    bin_dir = Path(subprocess.run(["bash", str(REPO / "tests" / "observability" / "build.sh")],
                                  capture_output=True, text=True, check=True).stdout.strip())
    jaeger = Jaeger(bin_dir, tmp_path)
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_http, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    (tmp_path / "core").mkdir()
    core = Hangar(tmp_path / "core", {"HANGAR_API_KEY": CORE_KEY, **otel}, ["core"])
    ports = [free_port(), free_port()]
    backends = [subprocess.Popen([str(PYTHON), str(NOTES), "--http", str(p)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL) for p in ports]
    operator = prometheus = None
    try:
        for p in ports:
            wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", p)) == 0)
        namespaces(crds, "watched")
        remote = lambda name, port, labels, tools=None: {
            "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": name, "namespace": "watched", "labels": labels},
            "spec": {"mode": "remote", "endpoint": f"http://127.0.0.1:{port}/mcp", **({"tools": tools} if tools else {})}}
        apply(crds, remote("watch-a", ports[0], {"app": "watch"}))
        apply(crds, remote("watch-b", ports[1], {"app": "watch"}))
        apply(crds, remote("watch-guarded", ports[0], {}, {"denyList": ["add_note"], "rateLimit": {"requestsPerMinute": 2}}))
        apply(crds, {
            "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServerGroup",
            "metadata": {"name": "watch-group", "namespace": "watched"},
            "spec": {"selector": {"matchLabels": {"app": "watch"}}, "strategy": "team-strategy"}})
        apply(crds, {
            "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer", "metadata": {"name": "watch-cold", "namespace": "watched"},
            "spec": {"mode": "container", "image": "ghcr.io/example/cold:1", "replicas": 0, "idleTTL": "3s",
                     "startupTimeout": "3s", "healthCheck": {"enabled": False}}})
        operator = Operator(crds, tmp_path, "watched-check", {**core_env(core), **otel, "OTEL_SERVICE_NAME": "hangar-operator"})
        operator_metrics = wait_for(lambda: (m := re.search(r"metrics and probes listening address=(\S+)",
                                                             operator.log_path.read_text())) and m.group(1))
        server_state = lambda name: server_json(crds, "watched", name).get("status", {}).get("state")
        try:
            wait_for(lambda: server_state("watch-guarded") == "Ready" and server_state("watch-a") == "Ready", timeout=120)
        except AssertionError:
            statuses = {n: server_json(crds, "watched", n).get("status") for n in ("watch-guarded", "watch-a")}
            raise AssertionError(f"not Ready: {statuses}; operator: {operator.log_path.read_text()[-3000:]}")

        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "core", "static_configs": [{"targets": [core.base.removeprefix("http://")]}]},
                {"job_name": "operator", "static_configs": [{"targets": [operator_metrics]}]},
            ]}))
        prom_port = free_port()
        prom_log = open(tmp_path / "prometheus.log", "w")
        prometheus = subprocess.Popen([str(bin_dir / "prometheus"), f"--config.file={config}",
                                       f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{prom_port}",
                                       "--enable-feature=exemplar-storage"],
                                      stdout=prom_log, stderr=subprocess.STDOUT)

        def query(expr: str) -> list:
            url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return json.load(r)["data"]["result"]
            except OSError:
                return []

        wait_for(lambda: len(query('up == 1')) == 2, timeout=60)

        async def load():
            async with Client(core.url, mode="legacy") as c:
                wait = 0
                while "watch-group__word_count" not in [t.name for t in (await c.list_tools()).tools] and wait < 100:
                    await asyncio.sleep(0.3)
                    wait += 1
                results = [(await c.call_tool("watch-group__word_count", {"text": "a b"})).structured_content["result"]]
                # A stateless client's calls are the strategy's to place (a session's stay on one member).
                async with Client(core.url) as stateless:
                    results += [(await stateless.call_tool("watch-group__word_count", {"text": "a b"})).structured_content["result"]
                                for _ in range(4)]
                refused = []
                for tool, args in [("watch-guarded__add_note", {"title": "t", "text": "x"})] + \
                        [("watch-guarded__word_count", {"text": "x"})] * 3:
                    try:
                        await c.call_tool(tool, args)
                    except Exception as e:  # noqa: BLE001 (the denial and the rate limit)
                        refused.append(str(e))
                return results, refused

        results, refused = asyncio.run(load())
        assert results == [2] * 5, "the group is served (by the fallback) and calls count"
        assert any("denyList" in r for r in refused) and any("rate limit" in r for r in refused), refused

        dashboard = json.loads((REPO / "charts" / "mcp-hangar-operator" / "dashboards" / "hangar.json").read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        assert len(exprs) >= 12
        concrete = lambda e: e.replace("$__rate_interval", "1m").replace("$__range", "10m")
        empty = lambda: [e for e in exprs if not query(concrete(e))]
        try:
            wait_for(lambda: not empty(), timeout=90, interval=1)
        except AssertionError:
            raise AssertionError(f"dashboard queries without series: {empty()}")

        # Core answers Prometheus in OpenMetrics, with the trace ids of sampled calls as exemplars
        # of its latency buckets; each names a trace Jaeger has.
        def exemplars():
            url = f"http://127.0.0.1:{prom_port}/api/v1/query_exemplars?" + urllib.parse.urlencode(
                {"query": "mcp_server_operation_duration_seconds_bucket", "start": time.time() - 600, "end": time.time()})
            with urllib.request.urlopen(url, timeout=5) as r:
                return [e for series in json.load(r)["data"] for e in series["exemplars"]]
        found = wait_for(exemplars, timeout=60)
        trace_id = found[0]["labels"]["trace_id"]
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id), found[0]
        wait_for(lambda: jaeger.trace(trace_id), timeout=30)

        # Jaeger: the operator's reconciles and core's requests arrived as spans.
        def operations(service):
            try:
                with urllib.request.urlopen(f"{jaeger.query}/api/services/{service}/operations", timeout=5) as r:
                    return set(json.load(r)["data"] or [])
            except OSError:
                return set()
        wait_for(lambda: "reconcile MCPServer" in operations("hangar-operator"), timeout=60)
        wait_for(lambda: "tools/call watch-group__word_count" in operations("hangar-core"), timeout=60)
    finally:
        if operator:
            operator.stop()
        if prometheus:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        core.stop()
        jaeger.stop()
        for b in backends:
            b.kill()
            b.wait()
