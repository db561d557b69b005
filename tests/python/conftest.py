"""Shared paths and loaders for the Python checks of Hangar's artefacts."""
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
EXAMPLES = REPO / "examples" / "kubernetes"
INVALID = REPO / "tests" / "manifests" / "invalid"


def load_all(path: Path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.fixture(scope="session")
def crds():
    """kind -> CRD document, from the committed crds/ folder."""
    out = {}
    for f in sorted(CRD_DIR.glob("*.yaml")):
        (crd,) = load_all(f)
        out[crd["spec"]["names"]["kind"]] = crd
    return out


def schema_of(crd):
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def pytest_terminal_summary(terminalreporter):
    """How many tests ran against the real control plane (tests/cluster), and on a real node."""
    def count(outcome, module):
        return sum(1 for r in terminalreporter.stats.get(outcome, [])
                   if module in getattr(r, "nodeid", "") and r.when == "call")
    for module, where in (("test_cluster.py", "against a real kube-apiserver and etcd"),
                          ("test_node.py", "on a real node (kubelet, containerd, runc)")):
        if any(module in getattr(r, "nodeid", "") for rs in terminalreporter.stats.values() for r in rs):
            terminalreporter.write_line(f"{where}: {count('passed', module)} tests passed, "
                                        f"{count('failed', module)} failed")
