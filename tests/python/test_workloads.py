"""The Deployments and Services the operator makes of MCPServers (`hangar render`) are valid
Kubernetes objects with the guide's secure pod defaults."""
import subprocess

import kubernetes_validate
import pytest
import yaml

from conftest import EXAMPLES, REPO
from hangar_proc import hangar_bin


@pytest.fixture(scope="module")
def rendered():
    out = subprocess.run([hangar_bin(), "render", str(EXAMPLES), str(REPO / "examples" / "local")], capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_every_container_server_gets_a_deployment_and_a_service(rendered):
    deployments = sorted(d["metadata"]["name"] for d in rendered if d["kind"] == "Deployment")
    services = sorted(d["metadata"]["name"] for d in rendered if d["kind"] == "Service")
    assert deployments == services
    assert {"sqlite-tools", "github-tools", "expensive-tool", "sqlite-primary", "sqlite-replica", "my-mcp-server", "everything", "notes-a"} <= set(deployments)
    assert "external-api" not in deployments, "remote servers get no workload"


@pytest.mark.parametrize("version", ["1.33.0", "1.37.0"])
def test_rendered_objects_validate_against_kubernetes_schemas(rendered, version):
    for doc in rendered:
        kubernetes_validate.validate(doc, version, strict=True)


def test_pods_carry_the_secure_defaults_and_the_network_policy_label(rendered):
    bridged = 0
    for d in (d for d in rendered if d["kind"] == "Deployment"):
        pod = d["spec"]["template"]
        assert pod["metadata"]["labels"]["mcp-hangar.io/mcp_server"] == "true"
        sc = pod["spec"]["containers"][0]["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert sc["runAsNonRoot"] is True
        if d["metadata"]["name"] == "my-mcp-server":
            assert sc["runAsUser"] == 1000 and sc["readOnlyRootFilesystem"] is False
        else:
            assert sc["runAsUser"] == 65534 and sc["readOnlyRootFilesystem"] is True
        if pod["spec"]["containers"][0]["image"] == "node:20-slim":  # the local demo's stdio `everything`
            assert pod["spec"]["containers"][0]["args"][:2] == ["bridge", "--listen"], "stdio servers run under the bridge"
            bridged += 1
    assert bridged == 1, "the local demo's stdio server was rendered"
