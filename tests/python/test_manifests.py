"""The guide's manifests against the generated schemas, judged by engines Hangar did not write:
`jsonschema` for the OpenAPI schema and `cel-python` for the x-kubernetes-validations rules."""
import celpy
import jsonschema
import pytest

from conftest import EXAMPLES, INVALID, load_all, schema_of

CEL = celpy.Environment()


def hangar_docs(path):
    return [d for d in load_all(path) if d.get("apiVersion", "").startswith("mcp-hangar.io/")]


def schema_errors(crds, doc):
    schema = schema_of(crds[doc["kind"]])
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def cel_errors(schema, value, path=""):
    """Evaluates every x-kubernetes-validations rule where the value is present, as the API server does."""
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        program = CEL.program(CEL.compile(rule["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            errors.append(f"{path}{rule.get('fieldPath', '')}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                errors += cel_errors(sub, value[key], f"{path}.{key}" if path else key)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += cel_errors(schema["items"], item, f"{path}[{i}]")
    return errors


EXAMPLE_DOCS = [(p, d) for p in sorted(EXAMPLES.glob("*.yaml")) for d in hangar_docs(p)]


def test_every_hangar_example_is_checked():
    kinds = sorted({d["kind"] for _, d in EXAMPLE_DOCS})
    assert kinds == ["MCPDiscoverySource", "MCPServer", "MCPServerGroup"]
    assert len(EXAMPLE_DOCS) == 12


@pytest.mark.parametrize("path,doc", EXAMPLE_DOCS, ids=lambda x: getattr(x, "name", None) or x["metadata"]["name"])
def test_guide_example_passes_schema_and_cel(crds, path, doc):
    assert schema_errors(crds, doc) == []
    assert cel_errors(schema_of(crds[doc["kind"]]), doc) == []


# Which engine rejects each invalid manifest. The rest (unknown fields, metadata, apiVersion,
# broken YAML) are the API server's own checks outside the CRD schema; cargo tests cover them.
REJECTED_BY_SCHEMA = {
    "duration-without-unit.yaml",
    "unparsable-duration.yaml",
    "group-without-selector.yaml",
    "secret-ref-without-key.yaml",
    "unknown-mode.yaml",
    "unknown-discovery-mode.yaml",
    "string-replicas.yaml",
}
REJECTED_BY_CEL = {
    "remote-without-endpoint.yaml": "spec.endpoint: required when mode is remote",
    "container-without-image.yaml": "spec.image: required when mode is container",
    "negative-replicas.yaml": "spec.replicas: must be 0 or more",
    "zero-rate-limit.yaml": "spec.tools.rateLimit.requestsPerMinute: must be 1 or more",
    "health-percentage-over-100.yaml": "spec.healthPolicy.minHealthyPercentage: must be a percentage from 0 to 100",
    "configmap-source-without-ref.yaml": "spec.configMapRef: required when type is ConfigMap",
    "namespace-source-without-selector.yaml": "spec.namespaceSelector: required when type is Namespace",
    "policy-config-derived-key.yaml": "spec.tools.policyConfig: keys server, allow, deny",
    "header-value-and-secret.yaml": "spec.headers[0]: set exactly one of value and valueFrom",
    "header-set-by-transport.yaml": "spec.headers[0].name: is set by the MCP transport itself",
    "headers-on-container.yaml": "spec.headers: only for mode remote",
    "stdio-without-command.yaml": "spec.command: required when transport is stdio",
    "caller-rule-zero-rate.yaml": "spec.tools.callers[0].rateLimit.requestsPerMinute: must be 1 or more",
}


@pytest.mark.parametrize("name", sorted(REJECTED_BY_SCHEMA | set(REJECTED_BY_CEL)))
def test_invalid_manifest_is_rejected_by_an_independent_engine(crds, name):
    (doc,) = load_all(INVALID / name)
    by_schema = schema_errors(crds, doc)
    if name in REJECTED_BY_SCHEMA:
        assert by_schema, f"jsonschema accepted {name}"
    else:
        assert by_schema == []
        errors = cel_errors(schema_of(crds[doc["kind"]]), doc)
        assert any(e.startswith(REJECTED_BY_CEL[name]) for e in errors), errors
