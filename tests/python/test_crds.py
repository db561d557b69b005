"""The generated CRDs are real, structural apiextensions.k8s.io/v1 CustomResourceDefinitions."""
import kubernetes_validate
import pytest

from conftest import CRD_DIR, load_all, schema_of

KUBERNETES_VERSIONS = ["1.33.0", "1.37.0"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", sorted(CRD_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_crd_is_a_valid_customresourcedefinition(path, version):
    (crd,) = load_all(path)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    # strict: unknown fields anywhere in the CRD object are errors
    kubernetes_validate.validate(crd, version, strict=True)


def walk(schema, path="$"):
    yield path, schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(key) or []):
            yield from walk(sub, f"{path}.{key}[{i}]")


def test_schemas_are_structural(crds):
    """Every node has a type (int-or-string excepted, as Kubernetes allows) and nothing keeps unknown fields."""
    problems = []
    for kind, crd in crds.items():
        for path, node in walk(schema_of(crd)):
            in_junction = ".allOf[" in path or ".anyOf[" in path or ".oneOf[" in path
            if node.get("x-kubernetes-preserve-unknown-fields"):
                problems.append(f"{kind} {path}: preserves unknown fields")
            if "type" not in node and not node.get("x-kubernetes-int-or-string") and not in_junction:
                problems.append(f"{kind} {path}: has no type")
    assert problems == []


def test_names_and_printer_columns(crds):
    expected = {
        "MCPServer": ("mcps", ["Mode", "State", "Ready", "Tools", "Age"]),
        "MCPServerGroup": ("mcpsg", ["Strategy", "Healthy", "State", "Age"]),
        "MCPDiscoverySource": ("mcpds", ["Type", "Mode", "Discovered", "Last Sync"]),
    }
    assert set(crds) == set(expected)
    for kind, (short, columns) in expected.items():
        spec = crds[kind]["spec"]
        assert spec["group"] == "mcp-hangar.io"
        assert spec["names"]["shortNames"] == [short]
        assert spec["names"]["categories"] == ["mcp"]
        (version,) = spec["versions"]
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}
        assert [c["name"] for c in version["additionalPrinterColumns"]] == columns
