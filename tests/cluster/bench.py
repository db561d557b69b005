#!/usr/bin/env python3
"""The operator at scale against the real API server (a test-side bench, not a test):

    python3 tests/cluster/bench.py [--servers 1000] [--pods 20] [--hangar PATH]

1. `--servers N` container MCPServers applied at once to a control plane with no node, until every
   one has its Deployment, its Service and a status (steady state: the operator writes nothing
   more), beside the same for one server, in the same run.
2. `--pods N` (root: a node, tests/cluster/node-up.sh) N servers of the probe image until every one
   is Ready with its pod running, beside one.

Prints one line per figure, with the ratio to its baseline. The operator runs on the host with the
admin kubeconfig and no core (what status needs of core is measured elsewhere).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


class Cluster:
    def __init__(self, state: Path, node: bool):
        self.state, self.node = state, node
        # A Service per server: more than the /24 a node routes (no node then).
        wide = {} if node else {"SERVICE_CIDR": "10.96.0.0/20"}
        sh("bash", str(HERE / "up.sh"), str(state), env={**os.environ, "CONTROLLER_MANAGER": "1", **wide})
        bin_dir = sh("bash", str(HERE / "build.sh")).stdout.strip()
        self.env = {**os.environ, "KUBECONFIG": str(state / "kubeconfig"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        if node:
            images = sh("bash", str(HERE / "images" / "build.sh"), str(state / "images"), HANGAR).stdout.split()
            sh("bash", str(HERE / "node-up.sh"), str(state), *images)
        self.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        self.kubectl("wait", "--for", "condition=established", "--timeout=60s", "crd/mcpservers.mcp-hangar.io")

    def kubectl(self, *args, stdin=None) -> str:
        return subprocess.run(["kubectl", *args], input=stdin, check=True, capture_output=True, text=True,
                              env=self.env, timeout=600).stdout

    def down(self):
        if self.node:
            subprocess.run(["bash", str(HERE / "node-down.sh"), str(self.state)], timeout=300)
        subprocess.run(["bash", str(HERE / "down.sh"), str(self.state)], timeout=60)


def servers(namespace: str, count: int, image: str) -> str:
    items = [{"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
              "metadata": {"name": f"s-{i}", "namespace": namespace},
              "spec": {"mode": "container", "image": image, "healthCheck": {"enabled": False}}} for i in range(count)]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def settled(cluster: Cluster, namespace: str, count: int, pods: bool) -> bool:
    listed = json.loads(cluster.kubectl("get", "mcpservers,deployments,services", "-n", namespace, "-o", "json"))["items"]
    by_kind: dict[str, list] = {}
    for item in listed:
        by_kind.setdefault(item["kind"], []).append(item)
    servers = by_kind.get("MCPServer", [])
    if len(by_kind.get("Deployment", [])) < count or len(by_kind.get("Service", [])) < count or len(servers) < count:
        return False
    if pods:
        return all(s.get("status", {}).get("state") == "Ready" and s["status"].get("readyReplicas") == 1 for s in servers)
    return all(s.get("status", {}).get("state") for s in servers)


def measure(cluster: Cluster, namespace: str, count: int, image: str, pods: bool, limit: float) -> float:
    cluster.kubectl("create", "namespace", namespace)
    started = time.monotonic()
    cluster.kubectl("apply", "-f", "-", stdin=servers(namespace, count, image))
    while time.monotonic() - started < limit:
        if settled(cluster, namespace, count, pods):
            return time.monotonic() - started
        time.sleep(0.5)
    raise SystemExit(f"{count} servers in {namespace} did not settle within {limit:.0f}s")


def run(count: int, pods: bool) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="hangar-bench-") as tmp:
        cluster = Cluster(Path(tmp), node=pods)
        log = open(Path(tmp) / "operator.log", "w")
        operator = subprocess.Popen([HANGAR, "operator", "--leader-elect=false", "--metrics-listen", "127.0.0.1:0",
                                     "--hangar-image", "localhost/hangar:test"], env=cluster.env, stdout=log, stderr=log)
        try:
            image = "localhost/mcp-probe:v1" if pods else "ghcr.io/example/tool:1"
            one = measure(cluster, "one", 1, image, pods, 300)
            many = measure(cluster, "many", count, image, pods, 1800)
        finally:
            operator.terminate()
            operator.wait(timeout=30)
            cluster.down()
    what = "Ready with a running pod" if pods else "Deployment, Service and status written"
    return [f"{count} MCPServers to steady state ({what}): {many:.1f} s; one server: {one:.2f} s; "
            f"ratio {many / one:.1f}x for {count}x the servers ({many / count * 1000:.0f} ms per server)"]


HANGAR = ""


def main():
    global HANGAR
    p = argparse.ArgumentParser()
    p.add_argument("--servers", type=int, default=1000)
    p.add_argument("--pods", type=int, default=20)
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    p.add_argument("--hangar", default=os.environ.get("HANGAR_BIN", f"{target}/debug/hangar"))
    p.add_argument("--write", action="store_true", help="put the figures in place in docs/performance.md")
    a = p.parse_args()
    HANGAR = a.hangar
    lines = []
    if a.servers:
        lines += run(a.servers, pods=False)
    if a.pods:
        lines += run(a.pods, pods=True)
    print("\n".join(lines))
    if a.write:
        write_section(lines)


TITLE = "Operator against a real API server and a real node"


def write_section(lines: list[str]):
    """The section `hangar-bench` keeps as it is (it cannot run this: root, the Go builds)."""
    report = REPO / "docs" / "performance.md"
    md = report.read_text()
    body = (f"Measured by `python3 tests/cluster/bench.py --write` ({time.strftime('%Y-%m-%d')}, "
            f"{os.cpu_count()} logical CPUs, `hangar` from {Path(HANGAR).parent.name} build): the operator "
            "on the host against kube-apiserver and etcd of tests/cluster, and for pods a node "
            "(kubelet, containerd, runc); the baseline is one server in the same run.\n\n"
            + "".join(f"- {line}\n" for line in lines))
    heading = f"## {TITLE}\n"
    section = f"{heading}\n{body}\n"
    if heading in md:
        start = md.index(heading)
        rest = md[start + len(heading):]
        end = next((start + len(heading) + i + 1 for i in [rest.find("\n## "), rest.find("\nRSS at the end")] if i >= 0),
                   len(md))
        md = md[:start] + section + md[end:]
    else:
        at = md.find("## Memory")
        md = md[:at] + section + md[at:] if at >= 0 else md + "\n" + section
    report.write_text(md)


if __name__ == "__main__":
    sys.exit(main())
