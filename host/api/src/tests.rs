//! Defaults, field by field, against the guide's API reference table, and the CRDs' shape.

use std::time::Duration as StdDuration;

use serde_json::json;

use super::*;

fn server(spec: serde_json::Value) -> MCPServerSpec {
    serde_json::from_value(spec).expect("spec deserializes")
}

#[test]
fn server_defaults_follow_the_guides_table() {
    let spec = server(json!({"mode": "container", "image": "example/tool:1"}));
    assert_eq!(spec.replicas, 1, "replicas defaults to 1");
    assert_eq!(spec.idle_ttl.as_std(), StdDuration::from_secs(300), "idleTTL defaults to 5m");
    assert_eq!(spec.startup_timeout.as_std(), StdDuration::from_secs(30), "startupTimeout defaults to 30s");
    assert_eq!(spec.call_timeout.as_std(), StdDuration::from_secs(60), "callTimeout (Hangar's) defaults to 60s");
    assert!(spec.health_check.enabled, "healthCheck defaults to enabled");
    assert!(spec.circuit_breaker.enabled, "circuitBreaker defaults to enabled");
    assert_eq!(spec.resources, None);
    assert!(spec.env.is_empty() && spec.volumes.is_empty() && spec.tolerations.is_empty());
    assert_eq!(spec.security_context, None, "no override: secure defaults apply");
    assert_eq!(spec.service_account_name, None);
    assert!(spec.node_selector.is_empty());
    assert_eq!(spec.tools, None);
    // Additive fields.
    assert_eq!(spec.transport, Transport::StreamableHttp);
    assert_eq!(spec.port, 8080);
    assert_eq!(spec.path, "/mcp");
    assert!(spec.command.is_empty() && spec.args.is_empty());
}

#[test]
fn nested_defaults_fill_what_a_partial_block_leaves_out() {
    let spec = server(json!({
        "mode": "remote", "endpoint": "https://api.example.com/mcp",
        "healthCheck": {"interval": "1m"},
        "circuitBreaker": {"failureThreshold": 9},
    }));
    assert!(spec.health_check.enabled);
    assert_eq!(spec.health_check.interval.as_std(), StdDuration::from_secs(60));
    assert_eq!(spec.health_check.timeout.as_std(), StdDuration::from_secs(10));
    assert_eq!(spec.health_check.failure_threshold, 3);
    assert!(spec.circuit_breaker.enabled);
    assert_eq!(spec.circuit_breaker.failure_threshold, 9);
    assert_eq!(spec.circuit_breaker.reset_timeout.as_std(), StdDuration::from_secs(30));
}

#[test]
fn secure_defaults_are_the_guides_pod_security_block() {
    let sc = server(json!({"mode": "container", "image": "x"})).effective_security_context();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65534));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    assert_eq!(sc.privileged, None);
}

#[test]
fn security_override_replaces_only_the_fields_it_names() {
    let sc = server(json!({
        "mode": "container", "image": "x",
        "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": false},
    }))
    .effective_security_context();
    assert_eq!(sc.run_as_user, Some(1000));
    assert_eq!(sc.read_only_root_filesystem, Some(false));
    assert_eq!(sc.run_as_non_root, Some(true), "untouched fields keep the secure default");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
}

#[test]
fn group_defaults() {
    let spec: MCPServerGroupSpec =
        serde_json::from_value(json!({"selector": {"matchLabels": {"mcp-hangar.io/category": "database"}}})).unwrap();
    assert_eq!(spec.strategy, "RoundRobin");
    assert!(spec.failover.enabled);
    assert_eq!(spec.failover.max_retries, 2);
    assert_eq!(spec.failover.retry_delay.as_std(), StdDuration::from_millis(500));
    assert_eq!(spec.health_policy.min_healthy_percentage, 50);
    assert_eq!(spec.health_policy.unhealthy_threshold, 3);
}

#[test]
fn health_policy_sets_group_state() {
    let policy = HealthPolicy { min_healthy_percentage: 50, unhealthy_threshold: 3 };
    assert_eq!(policy.group_state(4, 4), State::Ready);
    assert_eq!(policy.group_state(2, 4), State::Ready, "exactly the minimum is enough");
    assert_eq!(policy.group_state(1, 4), State::Degraded);
    assert_eq!(policy.group_state(0, 4), State::Dead);
    assert_eq!(policy.group_state(0, 0), State::Dead);
}

#[test]
fn discovery_defaults() {
    let spec: MCPDiscoverySourceSpec =
        serde_json::from_value(json!({"type": "ConfigMap", "configMapRef": {"name": "defs"}})).unwrap();
    assert_eq!(spec.mode, DiscoveryMode::Additive);
    assert_eq!(spec.refresh_interval.as_std(), StdDuration::from_secs(300));
    let cm = spec.config_map_ref.unwrap();
    assert_eq!(cm.key, "providers.yaml");
    assert_eq!(cm.namespace, None);
}

#[test]
fn an_unparsable_duration_names_its_field() {
    let err =
        serde_json::from_value::<MCPServerSpec>(json!({"mode": "container", "image": "x", "idleTTL": "5 minutes"}))
            .unwrap_err()
            .to_string();
    assert!(err.contains("invalid duration \"5 minutes\""), "{err}");
}

#[test]
fn defaults_round_trip_in_the_guides_spelling() {
    let spec = server(json!({"mode": "container", "image": "x"}));
    let back = serde_json::to_value(&spec).unwrap();
    assert_eq!(back["idleTTL"], "5m");
    assert_eq!(back["startupTimeout"], "30s");
    assert_eq!(back["healthCheck"]["interval"], "30s");
    assert_eq!(server(back), spec);
}

#[test]
fn crds_have_names_columns_and_status() {
    let expect = [
        ("mcpservers", "MCPServer", "mcps", vec!["Mode", "State", "Ready", "Tools", "Age"]),
        ("mcpservergroups", "MCPServerGroup", "mcpsg", vec!["Strategy", "Healthy", "State", "Age"]),
        ("mcpdiscoverysources", "MCPDiscoverySource", "mcpds", vec!["Type", "Mode", "Discovered", "Last Sync"]),
    ];
    for ((_, crd), (plural, kind, short, columns)) in crds().iter().zip(expect) {
        assert_eq!(crd.spec.group, "mcp-hangar.io");
        assert_eq!(crd.spec.names.plural, plural);
        assert_eq!(crd.spec.names.kind, kind);
        assert_eq!(crd.spec.names.short_names.as_deref(), Some(&[short.to_string()][..]));
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["mcp".to_string()][..]));
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.subresources.as_ref().unwrap().status.is_some(), "{kind} has a status subresource");
        let names: Vec<_> =
            version.additional_printer_columns.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, columns, "{kind} printer columns");
    }
}

#[test]
fn crds_carry_the_cross_field_rules() {
    let text: String = crds().iter().map(|(_, crd)| crd_yaml(crd)).collect();
    for rule in [
        "self.mode != 'container' || has(self.image)",
        "self.mode != 'remote' || has(self.endpoint)",
        "self.type != 'ConfigMap' || has(self.configMapRef)",
        "self.type != 'Namespace' || has(self.namespaceSelector)",
        "self >= 0 && self <= 100",
    ] {
        assert!(text.contains(rule), "missing rule {rule}");
    }
}
