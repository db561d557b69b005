"""Against a real control plane: kube-apiserver and etcd built from the Go module proxy
(tests/cluster), started once per run on loopback with RBAC on. The CRDs are compiled by the API
server itself (CEL rules and their cost estimates included), and manifests are judged by it, in
parity with `hangar validate`."""
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from hangar_proc import hangar_bin

CLUSTER = REPO / "tests" / "cluster"


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    state = tmp_path_factory.mktemp("control-plane")
    up = subprocess.run(["bash", str(CLUSTER / "up.sh"), str(state)], capture_output=True, text=True, timeout=3000)
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
    yield kubectl
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
    helm("upgrade", "mcp-hangar-operator", chart, "-n", "mcp-system")
    assert key_of() == key, "an upgrade keeps the generated API key"
    helm("uninstall", "mcp-hangar-operator", "-n", "mcp-system")
    left = crds("get", "deployments,services,serviceaccounts,configmaps,roles,rolebindings", "-n", "mcp-system",
                "-l", release, "-o", "name").stdout.split()
    left += crds("get", "clusterroles,clusterrolebindings", "-l", release, "-o", "name").stdout.split()
    assert left == [], f"left after uninstall: {left}"
    # The key's Secret is kept on purpose (helm.sh/resource-policy: keep): a reinstall keeps the key.
    assert key_of() == key


def test_the_operator_under_the_charts_rbac_reconciles_a_server_without_a_forbidden(crds, tmp_path):
    """`hangar operator` as a local process whose identity is the chart's ServiceAccount (a token
    from the TokenRequest API), so the real authorizer enforces the chart's ClusterRole."""
    import json
    import time

    from hangar_proc import wait_for

    def helm(*args):
        out = subprocess.run(["helm", *args], capture_output=True, text=True, env=crds.env, timeout=300)
        assert out.returncode == 0, f"helm {' '.join(args)}: {out.stderr}"

    helm("install", "rbac-check", str(REPO / "charts" / "mcp-hangar-operator"), "-n", "rbac-check",
         "--create-namespace", "--set", "core.enabled=false", "--set", "hangar.url=")
    try:
        account = "rbac-check-mcp-hangar-operator"  # the chart names its ServiceAccount after the release
        token = crds("create", "token", account, "-n", "rbac-check", "--duration", "1h").stdout.strip()
        admin = yaml.safe_load((crds.state / "kubeconfig").read_text())
        cluster = admin["clusters"][0]["cluster"]
        kubeconfig = tmp_path / "operator.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "operator",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "operator", "user": {"token": token}}],
            "contexts": [{"name": "operator", "context": {"cluster": "c", "user": "operator", "namespace": "rbac-check"}}],
        }))
        crds("create", "namespace", "tools-team", check=False)
        server = {"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
                  "metadata": {"name": "sqlite-tools", "namespace": "tools-team"},
                  "spec": {"mode": "container", "image": "ghcr.io/example/sqlite:1", "replicas": 1}}
        crds("apply", "-f", "-", stdin=json.dumps(server))
        log = open(tmp_path / "operator.log", "w")
        operator = subprocess.Popen(
            [hangar_bin(), "operator", "--leader-elect=true", "--leader-namespace", "rbac-check",
             "--metrics-listen", "127.0.0.1:0"],
            env={**crds.env, "KUBECONFIG": str(kubeconfig), "HOSTNAME": "e2e-operator"}, stdout=log, stderr=log)
        try:
            wait_for(lambda: crds("get", "deployment", "sqlite-tools", "-n", "tools-team", check=False).returncode == 0,
                     timeout=60)
            crds("get", "service", "sqlite-tools", "-n", "tools-team")
            status = wait_for(lambda: json.loads(crds("get", "mcpserver", "sqlite-tools", "-n", "tools-team", "-o", "json").stdout)
                              .get("status", {}).get("conditions"), timeout=60)
            assert status, "status written through the status subresource"
            assert crds("get", "lease", "-n", "rbac-check", "-o", "name").stdout.strip(), "the leader holds a Lease"
            time.sleep(2)
        finally:
            operator.terminate()
            operator.wait(timeout=30)
            log.close()
        text = (tmp_path / "operator.log").read_text()
        assert "Forbidden" not in text and "forbidden" not in text, text[-3000:]
    finally:
        helm("uninstall", "rbac-check", "-n", "rbac-check")
