//! Property tests of the manifest loader and checker (`hangar validate`, `hangar run`): any text
//! and any mutation of a valid manifest gives documents or problems that name where they are,
//! never a panic. CI runs the default number of cases; a longer run:
//! `PROPTEST_CASES=20000 cargo test --release -p hangar-manifests --test fuzz`.

use std::path::Path;

use hangar_manifests::{Checker, Report, parse_documents};
use proptest::prelude::*;
use serde_json::{Value, json};

fn check_text(text: &str) -> Report {
    let (documents, problems) = parse_documents(Path::new("fuzz.yaml"), text);
    let mut report = Report { problems, ..Default::default() };
    // Compiling the schemas is the slow part; one checker serves every case.
    static CHECKER: std::sync::OnceLock<Checker> = std::sync::OnceLock::new();
    let checker = CHECKER.get_or_init(Checker::new);
    for d in documents {
        checker.check_into(d, &mut report);
    }
    report
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-zA-Z0-9 :/._-]{0,12}".prop_map(Value::from),
        prop::sample::select(vec!["0s", "5m", "-1s", "1h30m", "container", "remote", "stdio", "Authoritative", "x"])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn valid_manifests() -> Vec<Value> {
    vec![
        json!({"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer", "metadata": {"name": "a", "namespace": "n"},
               "spec": {"mode": "container", "image": "x", "replicas": 1, "idleTTL": "5m",
                        "healthCheck": {"enabled": true, "interval": "30s", "failureThreshold": 3},
                        "tools": {"allowList": ["a*"], "rateLimit": {"requestsPerMinute": 60}}}}),
        json!({"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer", "metadata": {"name": "r"},
               "spec": {"mode": "remote", "endpoint": "https://example.com/mcp"}}),
        json!({"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServerGroup", "metadata": {"name": "g"},
               "spec": {"selector": {"matchLabels": {"team": "a"}}, "strategy": "RoundRobin",
                        "failover": {"enabled": true, "maxRetries": 2}}}),
        json!({"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPDiscoverySource", "metadata": {"name": "d"},
               "spec": {"type": "ConfigMap", "configMapRef": {"name": "c"}, "mode": "Additive", "refreshInterval": "1m"}}),
    ]
}

/// Sets `value` at a path of `keys`, following objects (creating where missing); every other
/// step prefers an existing key, so that mutations hit real fields as often as new ones.
fn set_at(doc: &mut Value, keys: &[String], value: Value) {
    let mut at = doc;
    for (i, key) in keys.iter().enumerate() {
        if !at.is_object() {
            *at = json!({});
        }
        let map = at.as_object_mut().unwrap();
        let existing = map.keys().nth(key.len() % map.len().max(1)).cloned();
        let key = if i % 2 == 0 { existing.unwrap_or_else(|| key.clone()) } else { key.clone() };
        if i + 1 == keys.len() {
            map.insert(key, value);
            return;
        }
        at = map.entry(key).or_insert(json!({}));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn any_text_gives_documents_or_located_problems(text in "(?s).{0,400}") {
        let report = check_text(&text);
        for p in &report.problems {
            prop_assert!(p.to_string().starts_with("fuzz.yaml:"), "{}", p);
            prop_assert!(!p.message.is_empty());
        }
    }

    #[test]
    fn yaml_shaped_text_never_panics(
        lines in prop::collection::vec("( {0,4})([a-zA-Z]{1,8}: ?)?(-|\\[|\\{|---|[a-z0-9\"']{0,6}|\\||>)?", 0..30)
    ) {
        check_text(&lines.join("\n"));
    }

    #[test]
    fn a_mutated_valid_manifest_is_valid_or_has_a_named_problem(
        which in 0usize..4,
        keys in prop::collection::vec("[a-zA-Z]{1,10}", 1..4),
        value in any_json(),
    ) {
        let mut doc = valid_manifests().swap_remove(which);
        set_at(&mut doc, &keys, value);
        let text = serde_yaml::to_string(&doc).unwrap();
        let report = check_text(&text);
        let outcomes = report.resources.len() + report.others.len() + usize::from(!report.problems.is_empty());
        prop_assert_eq!(outcomes, 1, "one document: a resource, another kind, or problems");
        for p in &report.problems {
            prop_assert!(!p.message.is_empty());
        }
    }
}

#[test]
fn the_unmutated_manifests_are_valid() {
    for doc in valid_manifests() {
        let report = check_text(&serde_yaml::to_string(&doc).unwrap());
        assert!(report.problems.is_empty(), "{:?}", report.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        assert_eq!(report.resources.len(), 1);
    }
}
