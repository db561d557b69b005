"""On a real node: the control plane of tests/cluster plus kube-scheduler, a kubelet, Debian's
containerd and runc (tests/cluster/node-up.sh), so pods really run, from images built here
(tests/cluster/images: Hangar's own, an official Go SDK example server, a probe server). The
operator and core run on the host as in test_cluster.py and reach pods over the node's bridge;
a test that needs the node fails when it cannot start one (it needs root)."""
import asyncio
import json
import os
import re
import subprocess
import threading
import time
import urllib.request

import pytest
from mcp import Client

from conftest import REPO
from hangar_proc import hangar_bin, wait_for
from test_docs import book_page, book_port
from test_cluster import (  # noqa: F401 (core: the fixture, `hangar core` with the admin key)
    CORE_KEY, Operator, apply, control_plane, core, core_env, helm, namespaces, server_json)

CLUSTER = REPO / "tests" / "cluster"


def node_processes(state) -> list[str]:
    """Processes of the node in `state` (their command line names its folder) and any container
    process (other tests may run control planes of their own meanwhile: those are not counted)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(state) in cmdline or re.match(r"(/pause|/probe|/everything|/hangar bridge|containerd-shim)", cmdline):
            found.append(cmdline.split(" ")[0])
    return sorted(found)


def host_state(state) -> str:
    """What a node could leave behind on the host: processes, links, routes, netfilter rules,
    cgroups, mounts, the kernel settings the kubelet would change, files under /run and /var."""
    def run(*cmd):
        return subprocess.run(cmd, capture_output=True, text=True).stdout
    procs = node_processes(state)
    # Rules and chains of their own; an empty table whose built-in chains accept (left once
    # kube-proxy has run and cleaned up: iptables cannot delete a table) changes nothing.
    builtin = re.compile(r":(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT ")
    rules = [re.sub(r"\[\d+:\d+\]", "", line) for line in (run("iptables-save") + run("ip6tables-save")).splitlines()
             if line.startswith(("-", ":")) and not builtin.match(re.sub(r"\[\d+:\d+\]", "", line))]
    cgroups = run("sh", "-c", "ls -d /sys/fs/cgroup/*/hangar-node 2>/dev/null")
    mounts = [line.split()[4] for line in open("/proc/self/mountinfo")]
    sysctls = [open(f"/proc/sys/{k}").read().strip() for k in ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")]
    files = run("ls", "-a", "/run", "/var/lib", "/var/log", "/usr/libexec")
    return json.dumps({"procs": procs, "links": run("ip", "-o", "link", "show").count("\n"),
                       "link_names": re.findall(r"^\d+: (\S+):", run("ip", "-o", "link", "show"), re.M),
                       "routes": run("ip", "route"), "rules": rules, "cgroups": cgroups, "mounts": mounts,
                       "sysctls": sysctls, "files": files}, indent=1)


def build_images(folder) -> list[str]:
    out = subprocess.run(["bash", str(CLUSTER / "images" / "build.sh"), str(folder), hangar_bin()],
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


def node_up(state, images, kube_proxy: bool):
    up = subprocess.run(["bash", str(CLUSTER / "node-up.sh"), str(state), *images], capture_output=True, text=True,
                        timeout=600, env={**os.environ, "KUBE_PROXY": "1" if kube_proxy else "0"})
    assert up.returncode == 0, f"a node needs root, containerd, runc and the CNI plugins: {up.stderr[-3000:]}"


def node_down(state):
    subprocess.run(["bash", str(CLUSTER / "node-down.sh"), str(state)], timeout=300)


def test_a_node_starts_runs_a_pod_and_leaves_nothing_on_the_host(tmp_path_factory):
    state = tmp_path_factory.mktemp("node-lifecycle")
    before = host_state(state)
    images = build_images(state / "images")
    kube = control_plane(state)
    try:
        started = time.monotonic()
        node_up(state, images, kube_proxy=True)
        print(f"node Ready in {time.monotonic() - started:.1f}s")
        kube("run", "probe", "--image", "localhost/mcp-probe:v1", "--image-pull-policy", "IfNotPresent", "--port", "8080")
        kube("wait", "--for", "condition=Ready", "pod/probe", "--timeout=120s")
        assert host_state(state) != before, "the node shows while it runs (a check that cannot fail proves nothing)"
    finally:
        node_down(state)
        subprocess.run(["bash", str(CLUSTER / "down.sh"), str(state)], timeout=60)
    after = host_state(state)
    assert after == before, "\n".join(
        f"{k}: before {json.loads(before)[k]!r} after {json.loads(after)[k]!r}"
        for k in json.loads(before) if json.loads(before)[k] != json.loads(after)[k])


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A control plane with the CRDs and a node (kube-proxy too: pods reach the API server through
    the `kubernetes` Service); `node.images` are the imported image archives."""
    state = tmp_path_factory.mktemp("node-cluster")
    images = build_images(state / "images")
    kube = control_plane(state)
    try:
        node_up(state, images, kube_proxy=True)
        kube("apply", "--server-side", "-f", str(REPO / "crds"))
        for name in ("mcpservers", "mcpservergroups", "mcpdiscoverysources"):
            kube("wait", "--for", "condition=established", "--timeout=60s", f"crd/{name}.mcp-hangar.io")
        kube.sock = str(state / "node" / "containerd" / "containerd.sock")
        yield kube
    finally:
        node_down(state)
        subprocess.run(["bash", str(CLUSTER / "down.sh"), str(state)], timeout=60)


@pytest.fixture
def operator(node, tmp_path, core, request):
    """`hangar operator` on the host under the chart's ClusterRole (the chart runs no operator
    pod here), driving `core`; MCP servers' stdio bridge comes from the local hangar image."""
    release = "node-" + re.sub(r"[^a-z0-9]", "", request.node.name.lower())[-20:]
    op = Operator(node, tmp_path, release, core_env(core), args=["--hangar-image", "localhost/hangar:test"],
                  chart=["--set", "operator.replicas=0"])
    op.namespaces = []
    yield op
    # The test's namespaces go while the operator runs (it removes its finalizers), so the next
    # test's operator and pods share the node with nothing of this one.
    if op.namespaces:
        node("delete", "namespace", *op.namespaces, "--wait=true", "--timeout=60s", check=False)
    op.stop()


def namespace(node, operator, name: str):
    """A namespace for one test, deleted after it."""
    namespaces(node, name)
    operator.namespaces.append(name)


def container_process(kube, namespace: str, pod: str) -> int:
    """The host PID of a pod's first container, as containerd runs it."""
    status = json.loads(kube("get", "pod", pod, "-n", namespace, "-o", "json").stdout)["status"]
    container = status["containerStatuses"][0]["containerID"].split("://")[1]
    tasks = subprocess.run(["ctr", "-a", kube.sock, "-n", "k8s.io", "tasks", "ls"], capture_output=True, text=True).stdout
    for line in tasks.splitlines():
        fields = line.split()
        if fields and fields[0] == container:
            return int(fields[1])
    raise AssertionError(f"no task for container {container}: {tasks}")


def proc_status(pid: int) -> dict:
    return dict(line.split(":\t", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":\t" in line)


def root_mount_options(pid: int) -> list[str]:
    for line in open(f"/proc/{pid}/mountinfo"):
        fields = line.split()
        if fields[4] == "/":
            return fields[5].split(",")
    raise AssertionError("no root mount")


def pods_of(kube, namespace: str, server: str) -> list[dict]:
    out = kube("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/name={server}", "-o", "json").stdout
    return json.loads(out)["items"]


def running(pods: list[dict]) -> list[dict]:
    return [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
            and all(c.get("ready") for c in p["status"].get("containerStatuses", []))]


def delete_pod_under_load(node, namespace: str, pod: str, callers: int, caller) -> None:
    """Runs `callers` copies of `caller(killed_at)` at once and deletes `pod` 2 s in; `killed_at`
    holds the time of the deletion once it is asked for, so callers know when to stop."""
    killed_at: list[float] = []

    def kill():
        time.sleep(2)
        killed_at.append(time.monotonic())
        node("delete", "pod", pod, "-n", namespace, "--wait=false")

    killer = threading.Thread(target=kill)
    killer.start()

    async def load():
        await asyncio.gather(*(caller(killed_at) for _ in range(callers)))

    asyncio.run(load())
    killer.join()


def mcp_server(name: str, namespace: str, spec: dict) -> dict:
    """A container server; an always-on one is health-checked every 2 s (it is Ready after the
    first check passes: the default interval would only make the tests wait)."""
    checks = {} if spec.get("replicas") == 0 else {"healthCheck": {"interval": "2s"}}
    return {"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"mode": "container", **checks, **spec}}


def state_of(kube, namespace: str, name: str) -> dict:
    """The server's status; empty while it does not exist yet."""
    out = kube("get", "mcpserver", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout).get("status", {}) if out.returncode == 0 else {}


def ready_status(kube, namespace: str, name: str, timeout: float = 120) -> dict:
    return wait_for(lambda: (s := state_of(kube, namespace, name)).get("state") == "Ready"
                    and s.get("readyReplicas") and s, timeout=timeout, interval=0.5)


def core_servers(core) -> list[dict]:
    request = urllib.request.Request(core.base + "/api/v1/servers", headers={"authorization": f"Bearer {CORE_KEY}"})
    return json.loads(urllib.request.urlopen(request, timeout=10).read())["servers"]


def test_a_container_server_runs_as_a_pod_with_the_secure_defaults_and_answers_through_core(node, operator, core):
    namespace(node, operator, "pods-team")
    node("create", "secret", "generic", "probe-secret", "-n", "pods-team", "--from-literal=token=s3cr3t-from-secret")
    node("create", "configmap", "probe-files", "-n", "pods-team", "--from-literal=greeting.txt=hello from a volume")
    apply(node, mcp_server("probe", "pods-team", {
        "image": "localhost/mcp-probe:v1",
        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "probe-secret", "key": "token"}}}],
        "volumes": [{"name": "files", "configMap": {"name": "probe-files"}}],
        "volumeMounts": [{"name": "files", "mountPath": "/files", "readOnly": True}]}))
    # A user's override of the secure defaults: another uid, the rest kept.
    apply(node, mcp_server("probe-uid", "pods-team", {"image": "localhost/mcp-probe:v1",
                                                      "securityContext": {"runAsUser": 4242}}))
    status = ready_status(node, "pods-team", "probe")
    assert status["readyReplicas"] == 1 and status["toolsCount"] == 3, status
    assert status.get("lastStartedAt"), status
    (pod,) = running(pods_of(node, "pods-team", "probe"))
    started = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    assert status["lastStartedAt"] == started, (status["lastStartedAt"], started)
    columns = node("get", "mcpservers", "-A").stdout
    row = next(line.split() for line in columns.splitlines() if line.split()[:2] == ["pods-team", "probe"])
    assert row[2:6] == ["container", "Ready", "1", "3"], columns

    # The secure defaults as the runtime applied them, read from the container's process.
    pid = container_process(node, "pods-team", pod["metadata"]["name"])
    st = proc_status(pid)
    assert st["Uid"].split()[:2] == ["65534", "65534"], st["Uid"]
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0 and int(st["CapBnd"], 16) == 0, st
    assert st["NoNewPrivs"].strip() == "1", st["NoNewPrivs"]
    assert st["Seccomp"].strip() == "2", "RuntimeDefault seccomp filter"
    assert "ro" in root_mount_options(pid), "read-only root filesystem"
    ready_status(node, "pods-team", "probe-uid")
    (other,) = running(pods_of(node, "pods-team", "probe-uid"))
    st = proc_status(container_process(node, "pods-team", other["metadata"]["name"]))
    assert st["Uid"].split()[0] == "4242" and int(st["CapEff"], 16) == 0 and st["NoNewPrivs"].strip() == "1", st

    # Core reaches the pod at its address (from the Service's EndpointSlice).
    listed = {s["name"]: s for s in core_servers(core)}
    assert listed["probe"]["addresses"] == [f"http://{pod['status']['podIP']}:8080/mcp"], listed["probe"]

    async def through_core():
        async with Client(core.url) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            whoami = (await c.call_tool("probe__whoami", {})).content[0].text
            token = (await c.call_tool("probe__env", {"name": "TOKEN"})).content[0].text
            greeting = (await c.call_tool("probe__read", {"name": "/files/greeting.txt"})).content[0].text
            return names, whoami, token, greeting

    names, whoami, token, greeting = asyncio.run(through_core())
    assert {"probe__whoami", "probe__env", "probe__read"} <= names, names
    assert whoami == pod["metadata"]["name"], "the pod answered"
    assert token == "s3cr3t-from-secret", "env from the Secret reached the container"
    assert greeting == "hello from a volume", "the volume is mounted"


def wait_addresses(core, server: str, count: int, timeout: float = 120) -> list[str]:
    return wait_for(lambda: len(a := next((s.get("addresses", []) for s in core_servers(core) if s["name"] == server), []))
                    == count and all(":8080/" in x for x in a) and a, timeout=timeout, interval=0.5)


def raw_session_calls(url: str, tool: str, calls: int) -> list[str]:
    """A handshake session whose every request is a new connection (urllib keeps none open)."""
    def post(body: dict, session: str | None = None):
        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                   "connection": "close"}
        if session:
            headers |= {"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
        with urllib.request.urlopen(request, timeout=30) as r:
            text = r.read().decode()
            data = [line[5:] for line in text.splitlines() if line.startswith("data:")]
            return r.headers.get("mcp-session-id"), json.loads(data[-1] if data else text or "null")

    session, init = post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
    assert session and "result" in init, init
    post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    answers = []
    for i in range(calls):
        _, answer = post({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                          "params": {"name": tool, "arguments": {}}}, session)
        assert "result" in answer, answer
        answers.append(answer["result"]["content"][0]["text"])
    return answers


def test_two_replicas_keep_every_handshake_session_on_its_pod_and_share_the_calls(node, operator, core):
    namespace(node, operator, "replicas-team")
    apply(node, mcp_server("pair", "replicas-team", {"image": "localhost/mcp-probe:v1", "replicas": 2}))
    wait_for(lambda: server_json(node, "replicas-team", "pair").get("status", {}).get("readyReplicas") == 2,
             timeout=180, interval=0.5)
    wait_addresses(core, "pair", 2)
    pods = {p["metadata"]["name"] for p in running(pods_of(node, "replicas-team", "pair"))}
    assert len(pods) == 2, pods

    async def session(calls: int) -> list[str]:
        async with Client(core.url, mode="legacy") as c:
            return [(await c.call_tool("pair__whoami", {})).content[0].text for _ in range(calls)]

    async def sessions(n: int, calls: int):
        return await asyncio.gather(*(session(calls) for _ in range(n)))

    answered = asyncio.run(sessions(8, 10))
    assert all(len(a) == 10 for a in answered), "every call of every session answered"
    assert all(len(set(a)) == 1 for a in answered), f"each session stays on its pod: {answered}"
    assert {a[0] for a in answered} == pods, f"the sessions spread over both pods: {answered}"
    # Each request on a new connection: the session still finds its pod.
    for _ in range(3):
        raw = raw_session_calls(core.url, "pair__whoami", 6)
        assert len(set(raw)) == 1 and raw[0] in pods, raw

    # A pod deleted under load: sessions on it move to a pod that remains; calls in flight to the
    # dying pod are the only ones that may fail.
    counts = {"ok": 0, "failed": 0}
    after_kill: list[tuple[float, str]] = []

    async def loaded_session(killed_at: list[float], calls: int = 1000):
        """Calls until 15 s after the kill (at most `calls`)."""
        async with Client(core.url, mode="legacy") as c:
            for _ in range(calls):
                if killed_at and time.monotonic() - killed_at[0] > 15:
                    break
                try:
                    who = (await c.call_tool("pair__whoami", {})).content[0].text
                    counts["ok"] += 1
                    if killed_at:
                        after_kill.append((time.monotonic() - killed_at[0], who))
                except Exception:  # noqa: BLE001 (counted)
                    counts["failed"] += 1
                await asyncio.sleep(0.05)

    victim = sorted(pods)[0]
    delete_pod_under_load(node, "replicas-team", victim, 6, loaded_session)
    print("under load with a pod deleted:", counts, "answers after the kill:", len(after_kill))
    assert counts["ok"] > 100, counts
    assert counts["failed"] <= 6, f"at most the calls in flight at the dying pod fail: {counts}"
    late = [who for t, who in after_kill if t > 10]
    assert late and victim not in late, f"10 s after the kill no call goes to the deleted pod: {after_kill[-10:]}"





def test_a_cold_server_starts_a_pod_on_the_first_call_and_goes_back_to_zero(node, operator, core):
    namespace(node, operator, "cold-pods")
    apply(node, mcp_server("sleepy", "cold-pods", {"image": "localhost/mcp-probe:v1", "replicas": 0,
                                                    "idleTTL": "5s", "startupTimeout": "90s"}))
    # A start slower than startupTimeout: the call fails with a clear error.
    apply(node, mcp_server("slow", "cold-pods", {"image": "localhost/mcp-probe:v1", "replicas": 0, "idleTTL": "5s",
                                                  "startupTimeout": "4s", "env": [{"name": "START_DELAY", "value": "30s"}]}))
    # Registered cold, woken once so core learns its tools, then idle: no pod, Cold.
    wait_for(lambda: state_of(node, "cold-pods", "sleepy").get("toolsCount") == 3, timeout=180, interval=0.5)
    wait_for(lambda: state_of(node, "cold-pods", "sleepy").get("state") == "Cold"
             and not pods_of(node, "cold-pods", "sleepy"), timeout=240, interval=1)

    async def call(tool: str):
        async with Client(core.url) as c:
            started = time.monotonic()
            result = await c.call_tool(tool, {})
            return result, time.monotonic() - started

    result, took = asyncio.run(call("sleepy__whoami"))
    (pod,) = running(pods_of(node, "cold-pods", "sleepy"))
    assert not result.is_error and result.content[0].text == pod["metadata"]["name"], result
    print(f"cold start answered in {took:.1f}s")
    assert took < 90, "answered within startupTimeout"
    wait_for(lambda: state_of(node, "cold-pods", "sleepy").get("state") == "Cold"
             and not pods_of(node, "cold-pods", "sleepy"), timeout=240, interval=1)

    wait_for(lambda: state_of(node, "cold-pods", "slow").get("state") in ("Cold", "Dead", "Initializing"), timeout=60)
    with pytest.raises(Exception) as failed:
        result, _ = asyncio.run(call("slow__whoami"))
        if result.is_error:
            raise RuntimeError(result.content[0].text)
    assert "did not become ready within spec.startupTimeout (4s)" in repr(failed.value), failed.value
    # Not left half-started: once idle it goes back to zero like any cold server.
    wait_for(lambda: state_of(node, "cold-pods", "slow").get("state") == "Cold"
             and not pods_of(node, "cold-pods", "slow"), timeout=240, interval=1)


def condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def test_a_missing_image_and_a_crashing_container_show_in_state_and_a_fix_recovers(node, operator, core):
    namespace(node, operator, "broken-pods")
    apply(node, mcp_server("missing", "broken-pods", {"image": "localhost/does-not-exist:v1"}))
    apply(node, mcp_server("crashing", "broken-pods", {"image": "localhost/mcp-probe:v1",
                                                       "env": [{"name": "LISTEN", "value": "no-such-address"}]}))
    dead = wait_for(lambda: (s := state_of(node, "broken-pods", "missing")).get("state") == "Dead"
                    and condition(s, "Ready").get("reason") == "ContainerFailing" and s, timeout=240, interval=1)
    text = condition(dead, "Ready")["message"]
    assert "localhost/does-not-exist:v1" in text and re.search("ImagePullBackOff|ErrImagePull", text), text
    crashed = wait_for(lambda: (s := state_of(node, "broken-pods", "crashing")).get("state") == "Dead"
                       and "CrashLoopBackOff" in json.dumps(s["conditions"]) and s, timeout=240, interval=1)
    assert "localhost/mcp-probe:v1" in json.dumps(crashed["conditions"]), crashed
    # Fixing the specs recovers both.
    apply(node, mcp_server("missing", "broken-pods", {"image": "localhost/mcp-probe:v1"}))
    apply(node, mcp_server("crashing", "broken-pods", {"image": "localhost/mcp-probe:v1"}))
    for name in ("missing", "crashing"):
        status = ready_status(node, "broken-pods", name, timeout=240)
        assert status["readyReplicas"] == 1 and status["toolsCount"] == 3, status


def test_a_stdio_server_runs_in_a_pod_behind_hangars_bridge(node, operator, core):
    """`transport: stdio`: the operator's init container copies hangar (from Hangar's own image)
    into the pod, and `hangar bridge` serves the Go SDK's example server over Streamable HTTP."""
    namespace(node, operator, "stdio-pods")
    apply(node, mcp_server("everything", "stdio-pods", {"image": "localhost/mcp-everything:v1", "transport": "stdio",
                                                         "command": ["/everything"]}))
    status = ready_status(node, "stdio-pods", "everything", timeout=180)
    assert status["toolsCount"] >= 5 and "greet" in status["tools"], status
    (pod,) = running(pods_of(node, "stdio-pods", "everything"))
    # The operator's own image (--hangar-image); the runtime may report it by another of its names.
    assert pod["spec"]["initContainers"][0]["image"] == "localhost/hangar:test", pod["spec"]["initContainers"]
    init = pod["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 0, init

    async def greet():
        async with Client(core.url) as c:
            return (await c.call_tool("everything__greet", {"name": "pod"})).content[0].text

    assert "pod" in asyncio.run(greet())


def test_a_failover_group_of_two_container_servers_loses_no_call_when_a_pod_is_deleted(node, operator, core):
    namespace(node, operator, "failover-pods")
    for name, priority in (("primary", "1"), ("standby", "2")):
        server = mcp_server(name, "failover-pods", {"image": "localhost/mcp-probe:v1"})
        server["metadata"]["labels"] = {"app": "probe-pair", "mcp-hangar.io/priority": priority}
        apply(node, server)
    apply(node, {"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServerGroup",
                 "metadata": {"name": "fo", "namespace": "failover-pods"},
                 "spec": {"selector": {"matchLabels": {"app": "probe-pair"}}, "strategy": "Failover"}})
    for name in ("primary", "standby"):
        ready_status(node, "failover-pods", name, timeout=180)
    wait_addresses(core, "primary", 1)
    wait_addresses(core, "standby", 1)
    (primary,) = [p["metadata"]["name"] for p in running(pods_of(node, "failover-pods", "primary"))]
    counts = {"ok": 0, "failed": 0, "attempted": 0}
    served: dict[str, int] = {}

    async def caller(killed_at: list[float]):
        async with Client(core.url) as c:
            for _ in range(2000):
                if killed_at and time.monotonic() - killed_at[0] > 12:
                    break
                counts["attempted"] += 1
                try:
                    who = (await c.call_tool("fo__whoami", {})).content[0].text
                    counts["ok"] += 1
                    served[who] = served.get(who, 0) + 1
                except Exception as e:  # noqa: BLE001 (counted)
                    counts["failed"] += 1
                    print("failed:", repr(e)[:300])
                await asyncio.sleep(0.02)

    delete_pod_under_load(node, "failover-pods", primary, 4, caller)
    print("failover under load:", counts, served)
    assert counts["attempted"] > 100 and counts["failed"] == 0, counts
    standby = {p["metadata"]["name"] for p in pods_of(node, "failover-pods", "standby")}
    assert served.get(primary, 0) > 0 and any(served.get(s, 0) > 0 for s in standby), served


def test_a_configmap_discovery_entry_becomes_a_running_pod(node, operator, core):
    namespace(node, operator, "discovered-pods")
    apply(node, {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "definitions", "namespace": "discovered-pods"},
                 "data": {"providers.yaml": json.dumps({"probe": {"mode": "container", "image": "localhost/mcp-probe:v1"}})}})
    apply(node, {"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPDiscoverySource",
                 "metadata": {"name": "catalog", "namespace": "discovered-pods"},
                 "spec": {"type": "ConfigMap", "refreshInterval": "5s", "configMapRef": {"name": "definitions"}}})
    status = ready_status(node, "discovered-pods", "catalog-probe", timeout=180)
    assert status["toolsCount"] == 3, status
    (pod,) = running(pods_of(node, "discovered-pods", "catalog-probe"))

    async def whoami():
        async with Client(core.url) as c:
            return (await c.call_tool("catalog-probe__whoami", {})).content[0].text

    assert asyncio.run(whoami()) == pod["metadata"]["name"]


def pods_by_name(kube, namespace: str, name: str) -> list[dict]:
    out = kube("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/name={name}", "-o", "json").stdout
    return json.loads(out)["items"]


def test_the_books_cluster_path_runs_as_written_then_two_operators_and_a_hot_reloaded_strategy(node):
    """docs/getting-started/cluster.md, its commands exactly: `helm install` with the chart's
    defaults (Hangar's image under the chart's own name, imported into the node; the operator
    reaches the API server through the `kubernetes` Service and core by its Service's DNS name,
    CoreDNS), the first MCPServer Ready, `kubectl port-forward` to core and the Python SDK client
    calling its tool through it. Then, on that install: `helm upgrade` to two operator pods (one
    holds the Lease); core, in its pod, reloads a strategy plugin written into the plugins
    ConfigMap (the kubelet's own `..data` swap) and routes a group's calls by it, asked through
    the book's port-forward. Last, the book's clean-up: `helm uninstall` leaves no pod."""
    release, ns = "mcp-hangar-operator", "mcp-system"
    chart = str(REPO / "charts" / "mcp-hangar-operator")
    page = REPO / "docs" / "getting-started" / "cluster.md"
    core_url = "http://127.0.0.1:8080"
    with book_port(), book_page(page, "cluster", node.env) as ran:
        assert ran == 5, f"{ran} runnable blocks in {page}"

        helm(node, "upgrade", release, chart, "-n", ns, "--reuse-values", "--set", "operator.replicas=2")
        operators = wait_for(lambda: len(r := running(pods_by_name(node, ns, "mcp-hangar-operator"))) == 2
                             and len(pods_by_name(node, ns, "mcp-hangar-operator")) == 2 and r, timeout=300, interval=1)
        names = {p["metadata"]["name"] for p in operators}
        try:
            holder = wait_for(lambda: (h := node("get", "lease", "hangar-operator", "-n", ns, "-o",
                                                 "jsonpath={.spec.holderIdentity}", check=False).stdout.strip()) in names
                              and h, timeout=90)
        except AssertionError:
            logs = [node("logs", "-n", ns, p["metadata"]["name"], check=False).stdout[-1500:] for p in operators]
            raise AssertionError(f"no operator leads: {node('get', 'leases', '-A').stdout} {logs}")
        assert holder in names, (holder, names)
        (core_pod,) = running(pods_by_name(node, ns, "mcp-hangar-core"))
        with urllib.request.urlopen(f"http://{core_pod['status']['podIP']}:8080/healthz", timeout=10) as r:
            assert r.status == 200

        team = "latency-team"
        namespaces(node, team)
        for name, delay in (("quick", "0s"), ("sluggish", "150ms")):
            server = mcp_server(name, team, {"image": "localhost/mcp-probe:v1", "env": [{"name": "CALL_DELAY", "value": delay}]})
            server["metadata"]["labels"] = {"app": "latency"}
            apply(node, server)
        apply(node, {"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServerGroup",
                     "metadata": {"name": "fastest", "namespace": team},
                     "spec": {"selector": {"matchLabels": {"app": "latency"}}, "strategy": "lowest-latency"}})
        for name in ("quick", "sluggish"):
            ready_status(node, team, name, timeout=240)
        quick = running(pods_of(node, team, "quick"))[0]["metadata"]["name"]

        def group_plugin() -> dict:
            status = json.loads(node("get", "mcpservergroup", "fastest", "-n", team, "-o", "json").stdout).get("status", {})
            return condition(status, "PluginResolved")

        wait_for(lambda: group_plugin().get("status") == "False", timeout=120, interval=1)

        async def calls(n: int) -> list[str]:
            async with Client(core_url + "/mcp") as c:
                return [(await c.call_tool("fastest__whoami", {})).content[0].text for _ in range(n)]

        def group_serves() -> bool:
            try:
                return len(asyncio.run(calls(1))) == 1
            except Exception:  # noqa: BLE001 (a member core has not yet seen pass a health check)
                return False

        # The operator's Ready is its view; core's health checks of the members may lag it on a
        # busy machine.
        wait_for(group_serves, timeout=120, interval=2)
        before = asyncio.run(calls(20))
        assert 0 < before.count(quick) < 20, f"no plugin yet: round robin over both: {before}"

        target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
        plugin = REPO / target / "test-plugins" / "wasm32-wasip2" / "release" / "lowest_latency.wasm"
        assert plugin.exists(), f"{plugin}: built by cargo test (tests/plugin_template.rs)"
        configmap = node("create", "configmap", "mcp-hangar-plugins", "-n", ns,
                         f"--from-file=lowest-latency.wasm={plugin}", "--dry-run=client", "-o", "yaml").stdout
        node("apply", "-f", "-", stdin=configmap)
        wait_for(lambda: group_plugin().get("status") == "True", timeout=180, interval=1)
        after = asyncio.run(calls(30))
        assert after.count(quick) >= 27, f"the plugin sends calls to the quicker member: {after}"
        node("delete", "namespace", team, "--wait=true", "--timeout=120s")
    # The book's clean-up ran: nothing of the release is left running.
    wait_for(lambda: not node("get", "pods", "-n", ns, "-o", "name").stdout.strip(), timeout=180, interval=1)
    assert node("get", "namespace", "mcp-servers", check=False).returncode != 0 or \
        wait_for(lambda: node("get", "namespace", "mcp-servers", check=False).returncode != 0, timeout=180, interval=1)
