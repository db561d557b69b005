use std::path::Path;

use hangar_api::labels;
use serde_json::json;

use super::*;

fn check_yaml(text: &str) -> Report {
    let (documents, problems) = parse_documents(Path::new("t.yaml"), text);
    let checker = Checker::new();
    let mut report = Report { problems, ..Default::default() };
    for d in documents {
        checker.check_into(d, &mut report);
    }
    report
}

fn messages(report: &Report) -> Vec<String> {
    report.problems.iter().map(|p| p.to_string()).collect()
}

#[test]
fn documents_are_numbered_from_one_and_empty_ones_skipped() {
    let (docs, problems) = parse_documents(Path::new("f.yaml"), "---\na: 1\n---\n---\nb: 2\n");
    assert!(problems.is_empty());
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].origin.to_string(), "f.yaml:1", "a leading --- starts the first document");
    assert_eq!(docs[1].origin.to_string(), "f.yaml:3", "the empty second document still counts");
    assert_eq!(docs[1].value, json!({"b": 2}));
}

#[test]
fn a_valid_server_is_typed_with_defaults() {
    let report = check_yaml(&format!(
        "apiVersion: {}\nkind: MCPServer\nmetadata: {{name: s}}\nspec: {{mode: container, image: x}}\n",
        labels::API_VERSION
    ));
    assert!(report.problems.is_empty(), "{:?}", messages(&report));
    let Resource::Server(server) = &report.resources[0].1 else { panic!("a server") };
    assert_eq!(server.spec.replicas, 1);
}

#[test]
fn nulls_are_pruned_as_the_api_server_does() {
    let report = check_yaml(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: s}\nspec: {mode: remote, endpoint: 'http://h/mcp', image: null}\n",
    );
    assert!(report.problems.is_empty(), "{:?}", messages(&report));
}

#[test]
fn other_kinds_are_kept_for_callers() {
    let report = check_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n");
    assert_eq!(report.others.len(), 1);
    assert!(report.problems.is_empty());
}

#[test]
fn unknown_kind_in_our_group_is_named() {
    let report = check_yaml("apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPProxy\nmetadata: {name: p}\n");
    assert!(
        messages(&report)[0].contains("kind: MCPProxy is not a Hangar kind; use one of MCPServer"),
        "{:?}",
        messages(&report)
    );
}

#[test]
fn several_problems_in_one_document_are_each_reported() {
    let report = check_yaml(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: Bad_Name}\nspec: {mode: container, image: x, replicaz: 2, startupTimeout: soon}\n",
    );
    let all = messages(&report).join("\n");
    assert!(all.contains("metadata.name: \"Bad_Name\" must be lowercase"), "{all}");
    assert!(all.contains("spec.replicaz: unknown field"), "{all}");
    assert!(all.contains("spec.startupTimeout: invalid duration \"soon\""), "{all}");
}

#[test]
fn cel_rules_come_from_the_generated_crd() {
    // A nested CEL rule (not a schema keyword): the tools sha256 pin format.
    let report = check_yaml(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: s}\nspec: {mode: remote, endpoint: 'http://h/mcp', tools: {policySha256: nothex}}\n",
    );
    assert_eq!(
        messages(&report),
        vec!["t.yaml:1: MCPServer s: spec.tools.policySha256: must be a sha256 digest: 64 lowercase hex digits"]
    );
}

#[test]
fn provider_template_is_a_typed_fragment() {
    let ok = check_yaml(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata: {name: d}\nspec: {type: ConfigMap, configMapRef: {name: c}, providerTemplate: {spec: {idleTTL: 5m}}}\n",
    );
    assert!(ok.problems.is_empty(), "{:?}", messages(&ok));
    let bad = check_yaml(
        "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata: {name: d}\nspec: {type: ConfigMap, configMapRef: {name: c}, providerTemplate: {spec: {idleTTL: 5, replicas: many}}}\n",
    );
    let all = messages(&bad).join("\n");
    assert!(all.contains("spec.providerTemplate.spec.replicas"), "{all}");
    assert!(all.contains("spec.providerTemplate.spec.idleTTL"), "{all}");
}
