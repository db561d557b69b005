//! Label and annotation keys under `mcp-hangar.io/` that users and Hangar itself set.

/// The API group of every Hangar resource.
pub const GROUP: &str = "mcp-hangar.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as it appears in manifests.
pub const API_VERSION: &str = "mcp-hangar.io/v1alpha1";

/// Set on every pod of an MCP server; the guide's NetworkPolicy selects it.
pub const MCP_SERVER: &str = "mcp-hangar.io/mcp_server";
/// Failover order inside a group: lower first, then by name.
pub const PRIORITY: &str = "mcp-hangar.io/priority";
/// Weight for weighted strategies (default 1).
pub const WEIGHT: &str = "mcp-hangar.io/weight";
/// Set on MCPServers a discovery source created, naming that source.
pub const DISCOVERED_BY: &str = "mcp-hangar.io/discovered-by";
/// Set beside [`DISCOVERED_BY`]: the namespace of that source (pruning keys on both).
pub const DISCOVERED_BY_NAMESPACE: &str = "mcp-hangar.io/discovered-by-namespace";
/// Annotation on a discovered MCPServer: the document it came from (e.g. `configmap/team-a/tools`).
pub const DISCOVERED_FROM: &str = "mcp-hangar.io/discovered-from";
/// Marks ConfigMaps that Namespace discovery reads like a ConfigMap source.
pub const PROVIDERS: &str = "mcp-hangar.io/providers";
/// Annotation on a Service that Namespace discovery turns into a remote server.
pub const ANNOTATION_MCP_SERVER: &str = "mcp-hangar.io/mcp-server";
/// Annotation: the Service port to use (default: the first port).
pub const ANNOTATION_PORT: &str = "mcp-hangar.io/port";
/// Annotation: the MCP path on that Service (default `/mcp`).
pub const ANNOTATION_PATH: &str = "mcp-hangar.io/path";
/// Namespace label the guide's NetworkPolicy admits traffic from.
pub const CORE_NAMESPACE: &str = "mcp-hangar.io/core";

use std::collections::BTreeMap;

/// Whether `s` is an RFC 1123 label (namespace, MCPServer and group names): lowercase letters,
/// digits and '-', starting and ending with a letter or digit, at most 63 characters.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` match `selector` as Kubernetes matches them: every matchLabels pair, and
/// every matchExpressions requirement (In, NotIn, Exists, DoesNotExist). An empty selector
/// matches everything. An unknown operator matches nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    pairs && expressions
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions() {
        let db = labels(&[("mcp-hangar.io/category", "database"), ("tier", "primary")]);
        let by_label = LabelSelector {
            match_labels: Some([("mcp-hangar.io/category".to_string(), "database".to_string())].into()),
            ..Default::default()
        };
        assert!(selector_matches(&by_label, &db));
        assert!(!selector_matches(&by_label, &labels(&[("mcp-hangar.io/category", "search")])));
        let exprs = |e| LabelSelector { match_expressions: Some(vec![e]), ..Default::default() };
        assert!(selector_matches(&exprs(expr("tier", "In", &["primary", "replica"])), &db));
        assert!(!selector_matches(&exprs(expr("tier", "NotIn", &["primary"])), &db));
        assert!(selector_matches(&exprs(expr("tier", "Exists", &[])), &db));
        assert!(!selector_matches(&exprs(expr("tier", "DoesNotExist", &[])), &db));
        assert!(!selector_matches(&exprs(expr("tier", "Bogus", &[])), &db));
        assert!(selector_matches(&LabelSelector::default(), &db));
    }
}
