"""The Helm chart, rendered and linted by Helm's own engine (helm-python-sdk bundles Helm's Go
SDK), every manifest checked against Kubernetes' schemas (kubernetes-validate) and the
monitoring objects against the Prometheus Operator's published CRD models (npm)."""
import json
import os
import re
import shutil
import subprocess
import tomllib

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from conftest import CRD_DIR, EXAMPLES, REPO, load_all
from hangar_proc import hangar_bin

CHART = REPO / "charts" / "mcp-hangar-operator"
NODE_TOOLS = REPO / "tests" / "node"
KUBERNETES_VERSION = "1.33.0"
NAMESPACE = "mcp-system"

# The guide's values.yaml, verbatim.
GUIDE_VALUES = yaml.safe_load("""
operator:
  logLevel: info
  metrics:
    enabled: true
    port: 8080
  leaderElection:
    enabled: true

hangar:
  url: "http://mcp-hangar-core.mcp-system.svc.cluster.local:8080"
  existingSecret: "mcp-hangar-credentials"
  secretKey: "api-key"

resources:
  limits:
    cpu: 500m
    memory: 256Mi
  requests:
    cpu: 100m
    memory: 128Mi
""")

ALL_ON = {
    "serviceMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
    "telemetry": {"otlp": {"endpoint": "http://otel-collector.observability:4317", "protocol": "grpc"},
                  "sampler": "parentbased_traceidratio", "samplerArg": "0.25"},
    "audit": {"enabled": True, "hashArguments": True},
    "networkPolicy": {"enabled": True, "isolation": "full"},
    "imagePullSecrets": [{"name": "registry"}],
    "core": {"replicas": 2},
    "operator": {"replicas": 2},
}
ALL_OFF = {
    "networkPolicy": {"enabled": False},
    "core": {"enabled": False},
    "operator": {"metrics": {"enabled": False}, "leaderElection": {"enabled": False}},
}
VALUE_SETS = {"default": {}, "guide": GUIDE_VALUES, "all-on": ALL_ON, "all-off": ALL_OFF}


@pytest.fixture(scope="module")
def chart():
    return helm.Chart.load(str(CHART))


def render(chart, values=None):
    """The documents the chart renders (as `helm install mcp-hangar-operator -n mcp-system`)."""
    chart.validate_schema(values or {})
    files = chart.render(values or {}, name="mcp-hangar-operator", namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in files.items():
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def notes(chart, values=None):
    files = chart.render(values or {}, name="mcp-hangar-operator", namespace=NAMESPACE, is_install=True)
    return next(text for path, text in files.items() if path.endswith("NOTES.txt"))


def find(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


def container(docs, deployment):
    (d,) = find(docs, "Deployment", deployment)
    return d["spec"]["template"]["spec"]["containers"][0]


def env_of(c):
    return {e["name"]: e for e in c.get("env", [])}


def test_chart_crds_are_the_committed_crds():
    for f in sorted(CRD_DIR.glob("*.yaml")):
        assert (CHART / "crds" / f.name).read_text() == f.read_text(), f"{f.name}: copy crds/ into the chart"
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(p.name for p in CRD_DIR.glob("*.yaml"))


def test_app_version_is_the_crate_version(chart):
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())
    assert chart.metadata["appVersion"] == cargo["workspace"]["package"]["version"]
    assert chart.metadata["apiVersion"] == "v2"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_is_clean(name):
    report = helm.lint(str(CHART), VALUE_SETS[name], strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report["messages"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_manifest_is_valid_kubernetes(chart, name):
    docs = render(chart, VALUE_SETS[name])
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # not Kubernetes' own: checked against the Prometheus Operator's CRDs below
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_monitoring_objects_match_the_prometheus_operator_crds(chart):
    docs = [d for d in render(chart, ALL_ON) if d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert sorted(d["kind"] for d in docs) == ["PrometheusRule", "ServiceMonitor", "ServiceMonitor"]
    checked = validate_monitoring(docs)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The checker does refuse what its CRD refuses.
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    broken = json.loads(json.dumps(rule))
    broken["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    refused = validate_monitoring([broken])
    assert refused.returncode == 1 and "for must match pattern" in refused.stdout, refused.stdout


def validate_monitoring(docs):
    node = shutil.which("node")
    assert node, "node is needed (tests/run.sh installs the models with npm)"
    return subprocess.run(
        [node, str(NODE_TOOLS / "validate-monitoring.mjs")],
        input=json.dumps(docs), capture_output=True, text=True, timeout=60, cwd=NODE_TOOLS,
    )


def test_the_guides_alerts_are_there_as_written(chart):
    (rule,) = find(render(chart, {"prometheusRule": {"enabled": True}}), "PrometheusRule")
    rendered = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    (guide,) = load_all(EXAMPLES / "prometheusrule.yaml")
    for alert in guide["spec"]["groups"][0]["rules"]:
        mine = rendered[alert["alert"]]
        assert (mine["expr"], mine["for"], mine["labels"]) == (alert["expr"], alert["for"], alert["labels"])
        assert "{{ $labels.name }}" in mine["annotations"]["summary"], "Prometheus templating survives Helm's"
    assert {"MCPOperatorReconcileErrors", "MCPPluginFaults"} <= rendered.keys()


def test_the_cluster_role_is_what_the_operator_calls_and_the_guides_only_when_asked(chart):
    (role,) = find(render(chart), "ClusterRole")
    rbac = lambda *flags: yaml.safe_load(
        subprocess.run([hangar_bin(), "rbac", *flags], capture_output=True, text=True, check=True).stdout)
    assert role["rules"] == rbac()["rules"]
    (guide,) = load_all(EXAMPLES / "rbac-clusterrole.yaml")
    # Least privilege by default: nothing that writes what it does not own, no escalation.
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert "escalate" not in rule["verbs"] and "bind" not in rule["verbs"]
        if {"pods", "secrets", "configmaps"} & set(rule["resources"]):
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
    # The guide's broad rules, when asked for, come first and unchanged.
    (broad,) = find(render(chart, {"rbac": {"guideRules": True}}), "ClusterRole")
    assert broad["rules"] == rbac("--guide-rules")["rules"]
    assert broad["rules"][: len(guide["rules"])] == guide["rules"]
    assert broad["rules"][len(guide["rules"]):] == role["rules"]
    (binding,) = find(render(chart), "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mcp-hangar-operator", "namespace": NAMESPACE}]


def test_defaults_install_operator_and_core_with_a_generated_key(chart):
    docs = render(chart)
    (secret,) = find(docs, "Secret")
    assert set(secret["data"]) == {"api-key", "session-key"}
    op = container(docs, "mcp-hangar-operator")
    env = env_of(op)
    assert env["HANGAR_URL"]["value"] == "http://mcp-hangar-core.mcp-system.svc:8080"
    assert env["HANGAR_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "api-key"}
    core = container(docs, "mcp-hangar-core")
    assert env_of(core)["HANGAR_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    assert core["args"][0] == "core" and op["args"][0] == "operator"
    assert "--leader-elect=true" in op["args"] and "--log-level=info" in op["args"]
    # Server pods admit only core's namespace by default (the operator keeps the policy).
    assert "--network-policy=ingress" in op["args"] and "--label-core-namespace=mcp-system" in op["args"]
    (core_service,) = find(docs, "Service", "mcp-hangar-core")
    assert core_service["spec"]["ports"][0]["port"] == 8080
    assert core_service["spec"]["sessionAffinity"] == "ClientIP", "a client stays with its backend sessions"
    (metrics,) = find(docs, "Service", "mcp-hangar-operator-metrics")
    assert metrics["spec"]["ports"][0]["name"] == "metrics"
    assert metrics["metadata"]["labels"]["app.kubernetes.io/name"] == "mcp-hangar-operator", "the guide's ServiceMonitor selects it"
    # Core calls no Kubernetes API: no token, no role.
    (core_deployment,) = find(docs, "Deployment", "mcp-hangar-core")
    assert core_deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert all(s["name"] != "mcp-hangar-core" for b in find(docs, "ClusterRoleBinding") for s in b["subjects"])


def test_pods_are_non_root_read_only_and_probed(chart):
    docs = render(chart)
    for name in ("mcp-hangar-operator", "mcp-hangar-core"):
        (d,) = find(docs, "Deployment", name)
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        c = pod["containers"][0]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        plugins = next(v for v in pod["volumes"] if v["name"] == "plugins")
        assert plugins["configMap"] == {"name": "mcp-hangar-plugins", "optional": True}
        assert "--plugin-dir=/plugins" in c["args"]
    op = container(docs, "mcp-hangar-operator")
    assert op["resources"] == GUIDE_VALUES["resources"]


def test_the_guides_values_use_the_users_secret_and_url(chart):
    docs = render(chart, GUIDE_VALUES)
    assert find(docs, "Secret") == [], "the user's Secret is used, none is made"
    env = env_of(container(docs, "mcp-hangar-operator"))
    assert env["HANGAR_URL"]["value"] == GUIDE_VALUES["hangar"]["url"]
    assert env["HANGAR_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "mcp-hangar-credentials", "key": "api-key"}
    assert "kubectl create secret generic mcp-hangar-credentials" in notes(chart, GUIDE_VALUES)


def test_the_guides_install_command_sets_the_url(chart):
    values = helm.parse_set_string("hangar.url=http://mcp-hangar-core:8080")
    env = env_of(container(render(chart, values), "mcp-hangar-operator"))
    assert env["HANGAR_URL"]["value"] == "http://mcp-hangar-core:8080"


def test_everything_off(chart):
    docs = render(chart, ALL_OFF)
    assert find(docs, "Deployment", "mcp-hangar-core") == [] and find(docs, "Service") == []
    op = container(docs, "mcp-hangar-operator")
    env = env_of(op)
    assert env["HANGAR_URL"]["value"] == "" and "HANGAR_API_KEY" not in env, "no core: no integration"
    assert "--leader-elect=false" in op["args"] and "--network-policy=off" in op["args"]
    assert "no core integration" in notes(chart, ALL_OFF)


def test_everything_on(chart):
    docs = render(chart, ALL_ON)
    assert not find(docs, "NetworkPolicy"), "the operator keeps them, per namespace with servers"
    assert "--network-policy=full" in container(docs, "mcp-hangar-operator")["args"]
    assert "--label-core-namespace=mcp-system" in container(docs, "mcp-hangar-operator")["args"]
    (core,) = find(docs, "Deployment", "mcp-hangar-core")
    assert core["spec"]["replicas"] == 2
    assert env_of(container(docs, "mcp-hangar-core"))["HANGAR_SESSION_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "session-key"


def test_traces_audit_and_the_dashboard_are_off_by_default_and_configured_when_asked(chart):
    docs = render(chart)
    for deployment in ("mcp-hangar-core", "mcp-hangar-operator"):
        env = env_of(container(docs, deployment))
        assert not [n for n in env if n.startswith("OTEL_")] and "HANGAR_AUDIT" not in env
    assert not [d for d in find(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]

    docs = render(chart, ALL_ON)
    for deployment, service in (("mcp-hangar-core", "hangar-core"), ("mcp-hangar-operator", "hangar-operator")):
        env = {n: e.get("value") for n, e in env_of(container(docs, deployment)).items()}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc" and env["OTEL_SERVICE_NAME"] == service
        assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio" and env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
        assert env["OTEL_RESOURCE_ATTRIBUTES"] == "k8s.namespace.name=mcp-system" and env["HANGAR_AUDIT"] == "stdout"
    assert "--audit-hash-arguments" in container(docs, "mcp-hangar-core")["args"]
    (dashboard,) = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["mcp-hangar.json"])["panels"]
    assert json.loads((CHART / "dashboards" / "hangar.json").read_text())["panels"] == panels
    # The flags are hangar's own: core and the operator accept them as rendered.
    for command in ("core", "operator"):
        out = subprocess.run([hangar_bin(), command, "--help"], capture_output=True, text=True, check=True).stdout
        assert "--audit <stdout|FILE>" in out and "--audit-hash-arguments" in out and "HANGAR_AUDIT" in out


def test_core_auth_values_become_cores_flags(chart):
    assert not [a for a in container(render(chart), "mcp-hangar-core")["args"] if a.startswith("--auth")]
    auth = {"issuer": "https://login.example.com/realms/mcp", "audience": "https://mcp.example.com/mcp",
            "requiredScopes": ["mcp:tools", "mcp:read"], "groupClaim": "roles"}
    args = container(render(chart, {"core": {"auth": auth}}), "mcp-hangar-core")["args"]
    assert [a for a in args if a.startswith("--auth")] == [
        "--auth-issuer=https://login.example.com/realms/mcp", "--auth-audience=https://mcp.example.com/mcp",
        "--auth-group-claim=roles", "--auth-required-scopes=mcp:tools,mcp:read"]
    # The flags are hangar's own: core accepts them as rendered.
    out = subprocess.run([hangar_bin(), "core", "--help"], capture_output=True, text=True, check=True).stdout
    assert all(flag in out for flag in ("--auth-issuer", "--auth-audience", "--auth-group-claim", "--auth-required-scopes"))


@pytest.mark.parametrize(
    "values, message",
    [
        ({"core": {"auth": {"issuer": "http://login.example.com"}}}, "/core/auth/issuer"),
        ({"core": {"auth": {"requiredScopes": ["a b"]}}}, "/core/auth/requiredScopes/0"),
        ({"operator": {"logLevel": "verbose"}}, "/operator/logLevel"),
        ({"operator": {"metrics": {"port": "eighty"}}}, "/operator/metrics/port"),
        ({"operater": {}}, "'operater' not allowed"),
        ({"core": {"enabled": "yes"}}, "/core/enabled"),
        ({"hangar": {"url": "mcp-hangar-core:8080"}}, "/hangar/url"),
        ({"networkPolicy": {"isolation": "everything"}}, "/networkPolicy/isolation"),
        ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
        ({"telemetry": {"otlp": {"protocol": "http/json"}}}, "/telemetry/otlp/protocol"),
        ({"telemetry": {"otlp": {"endpoint": "otel:4317"}}}, "/telemetry/otlp/endpoint"),
    ],
)
def test_the_schema_rejects_bad_values_with_helms_error(chart, values, message):
    with pytest.raises(helm.HelmValuesError) as refused:
        chart.validate_schema(values)
    assert message in str(refused.value), str(refused.value)
    # helm lint reports the same, as `helm install` would refuse it.
    report = helm.lint(str(CHART), values, strict=True)
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"]), report


def test_notes_tell_how_to_check_and_apply_a_first_server(chart):
    text = notes(chart)
    assert "kubectl get pods -n mcp-system" in text
    assert "kind: MCPServer" in text and "kubectl port-forward" in text


def test_the_dockerfile_builds_hangar_for_a_non_root_distroless_image():
    text = (REPO / "host" / "hangar" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) >= 2, "multi-stage"
    assert "distroless" in stages[-1] and "nonroot" in stages[-1]
    assert re.search(r"^USER 65532", text, re.M)
    assert "wasm32-wasip2" in text, "the built-in plugins are built into the binary"
    assert re.search(r'^ENTRYPOINT \["/hangar"\]', text, re.M)
    assert os.path.exists(REPO / ".dockerignore")


def test_core_flags_for_sessions_connections_and_the_surface(chart):
    args = lambda values=None: container(render(chart, values), "mcp-hangar-core")["args"]
    default = args()
    assert "--session-lifetime=12h" in default and "--max-connections-per-peer=0" in default
    assert "--closed-surface" not in default
    closed = args({"core": {"closedSurface": True, "sessionLifetime": "30m", "maxConnectionsPerPeer": 64}})
    assert {"--closed-surface", "--session-lifetime=30m", "--max-connections-per-peer=64"} <= set(closed)
    with pytest.raises(Exception):
        render(chart, {"core": {"sessionLifetime": "a day"}})


def test_core_flags_for_tool_search(chart):
    args = lambda values=None: container(render(chart, values), "mcp-hangar-core")["args"]
    default = args()
    assert "--tool-search=off" in default and "--tool-search-max-tools=40" in default
    assert not any(a.startswith(("--tool-search-pinned", "--tool-search-ranker")) for a in default)
    on = args({"core": {"toolSearch": {"mode": "auto", "maxTools": 60, "pinned": ["github__create_issue", "time__*"],
                                       "ranker": "my-ranker", "synonyms": "invoice=bill"}}})
    assert {"--tool-search=auto", "--tool-search-max-tools=60", "--tool-search-pinned=github__create_issue,time__*",
            "--tool-search-ranker=my-ranker", "--tool-search-synonyms=invoice=bill"} <= set(on)
    for bad in ({"mode": "sometimes"}, {"maxTools": 0}, {"pinned": ["a,b"]}):
        with pytest.raises(Exception):
            render(chart, {"core": {"toolSearch": bad}})
