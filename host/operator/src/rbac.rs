//! The Kubernetes API calls the operator makes, as ClusterRole rules: the chart's ClusterRole is
//! these (with `rbac.guideRules`, the guide's rules first; a test compares them), and every request the reconciler tests
//! send to the mocked API server must be covered by one of them (checked in `expect`).

use serde_json::{Value, json};

/// One rule: an API group, its resources (`resource/subresource` for subresources), verbs.
pub struct Rule {
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

/// What the operator itself uses. Server-side apply is a `patch`, and `create` when the object
/// is new.
pub const OPERATOR_RULES: &[Rule] = &[
    // Controllers (list/watch), finalizers and discovered servers (patch, server-side apply),
    // pruning (delete), wake-ups (list by name).
    Rule {
        group: "mcp-hangar.io",
        resources: &["mcpservers", "mcpservergroups", "mcpdiscoverysources"],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
    },
    Rule {
        group: "mcp-hangar.io",
        resources: &["mcpservers/status", "mcpservergroups/status", "mcpdiscoverysources/status"],
        verbs: &["patch"],
    },
    // Workloads of container servers, and wake-ups through the scale subresource.
    Rule { group: "apps", resources: &["deployments"], verbs: &["get", "list", "watch", "create", "patch"] },
    Rule { group: "apps", resources: &["deployments/scale"], verbs: &["patch"] },
    Rule { group: "", resources: &["services"], verbs: &["list", "create", "patch"] },
    // The isolation NetworkPolicy of each namespace with container servers (server-side apply).
    Rule { group: "networking.k8s.io", resources: &["networkpolicies"], verbs: &["create", "patch"] },
    // The ready pods of servers' Services, handed to core (sessions stay on their pod).
    Rule { group: "discovery.k8s.io", resources: &["endpointslices"], verbs: &["list", "watch"] },
    // State from pods; discovery reads ConfigMaps and Namespaces (and labels core's namespace).
    Rule { group: "", resources: &["pods"], verbs: &["list", "watch"] },
    Rule { group: "", resources: &["configmaps"], verbs: &["get", "list", "watch"] },
    // The named Secrets of remote servers' spec.headers, handed to core (which has no Secret rights).
    Rule { group: "", resources: &["secrets"], verbs: &["get"] },
    Rule { group: "", resources: &["namespaces"], verbs: &["list", "patch"] },
    // HPAs are cached so that their Deployments' replicas are left to them.
    Rule { group: "autoscaling", resources: &["horizontalpodautoscalers"], verbs: &["list", "watch"] },
    Rule { group: "coordination.k8s.io", resources: &["leases"], verbs: &["get", "create", "update"] },
    Rule { group: "events.k8s.io", resources: &["events"], verbs: &["create", "patch"] },
];

/// The guide's ClusterRole rules ("Automatically created by Helm chart").
pub const GUIDE_RULES: &[Rule] = &[
    Rule {
        group: "mcp-hangar.io",
        resources: &["mcpservers", "mcpservergroups", "mcpdiscoverysources"],
        verbs: &["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    Rule {
        group: "",
        resources: &["pods", "secrets", "configmaps"],
        verbs: &["get", "list", "watch", "create", "update", "patch", "delete"],
    },
];

/// The ClusterRole's `rules`, as the chart renders them: what the operator uses, and the
/// guide's broad rules before them only with `guide_rules` (the chart's `rbac.guideRules`, off by
/// default: they let the operator create, change and delete every pod, Secret and ConfigMap of
/// the cluster, which it never does).
pub fn cluster_role_rules(guide_rules: bool) -> Value {
    let rule = |r: &Rule| json!({"apiGroups": [r.group], "resources": r.resources, "verbs": r.verbs});
    let guide = GUIDE_RULES.iter().take(if guide_rules { GUIDE_RULES.len() } else { 0 });
    Value::Array(guide.chain(OPERATOR_RULES).map(rule).collect())
}

/// The RBAC verb of a request (`GET` of a collection is `list`, with `watch=true` it is `watch`).
pub fn verb(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        (_, _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// (group, resource[/subresource], named) of an API path such as
/// `/apis/apps/v1/namespaces/x/deployments/y/scale` or `/api/v1/pods`.
pub fn resource_of(path: &str) -> Option<(String, String, bool)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    match rest {
        [resource] => Some((group, resource.to_string(), false)),
        [resource, _name] => Some((group, resource.to_string(), true)),
        [resource, _name, sub] => Some((group, format!("{resource}/{sub}"), true)),
        _ => None,
    }
}

/// Whether the operator's rules allow this request.
pub fn allows(method: &str, path: &str, query: &str) -> bool {
    let Some((group, resource, named)) = resource_of(path) else { return false };
    let verb = verb(method, named, query.split('&').any(|p| p == "watch=true"));
    OPERATOR_RULES
        .iter()
        .any(|r| r.group == group && r.resources.contains(&resource.as_str()) && r.verbs.contains(&verb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_resources_and_verbs() {
        assert_eq!(
            resource_of("/apis/apps/v1/namespaces/x/deployments/y/scale"),
            Some(("apps".into(), "deployments/scale".into(), true))
        );
        assert_eq!(resource_of("/api/v1/namespaces"), Some((String::new(), "namespaces".into(), false)));
        assert_eq!(resource_of("/api/v1/namespaces/mcp"), Some((String::new(), "namespaces".into(), true)));
        assert_eq!(resource_of("/api/v1/namespaces/mcp/pods"), Some((String::new(), "pods".into(), false)));
        assert!(allows("PATCH", "/apis/apps/v1/namespaces/x/deployments/y/scale", ""));
        assert!(allows("GET", "/apis/apps/v1/deployments", "watch=true&resourceVersion=1"));
        assert!(!allows("DELETE", "/apis/apps/v1/namespaces/x/deployments/y", ""), "owners delete, not us");
        assert!(allows("GET", "/api/v1/namespaces/x/secrets/y", ""), "a remote server's header Secret, by name");
        assert!(!allows("GET", "/api/v1/namespaces/x/secrets", ""), "the operator never lists Secrets");
    }
}
