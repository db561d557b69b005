//! `MCPDiscoverySource`: finds MCP servers in ConfigMaps or annotated namespaces and creates
//! MCPServers for them.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, MCPServerSpec};

/// Desired state of a discovery source.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcp-hangar.io",
    version = "v1alpha1",
    kind = "MCPDiscoverySource",
    plural = "mcpdiscoverysources",
    singular = "mcpdiscoverysource",
    shortname = "mcpds",
    category = "mcp",
    namespaced,
    status = "MCPDiscoverySourceStatus",
    derive = "PartialEq",
    doc = "A source of MCP server definitions (a ConfigMap, or labelled namespaces) turned into MCPServers.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Discovered", type_ = "integer", json_path = ".status.discoveredCount"),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.lastSyncTime")
)]
#[x_kube(
    validation = Rule::new("self.type != 'ConfigMap' || has(self.configMapRef)").message("required when type is ConfigMap").field_path(".configMapRef").reason(Reason::FieldValueRequired),
    validation = Rule::new("self.type != 'Namespace' || has(self.namespaceSelector)").message("required when type is Namespace").field_path(".namespaceSelector").reason(Reason::FieldValueRequired)
)]
#[serde(rename_all = "camelCase")]
pub struct MCPDiscoverySourceSpec {
    /// `Namespace` or `ConfigMap`.
    #[serde(rename = "type")]
    pub source_type: SourceType,
    /// `Additive` never deletes; `Authoritative` prunes servers this source created that are gone.
    #[serde(default)]
    pub mode: DiscoveryMode,
    /// How often the source is read again (it is also read on change).
    #[serde(default = "default_refresh")]
    pub refresh_interval: Duration,
    /// Namespaces searched when type is Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// The ConfigMap read when type is ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapRef>,
    /// Base for every discovered server; discovered fields are laid on top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_template: Option<ProviderTemplate>,
    /// Name of the discovery plugin that parses the source (additive; default by type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parser: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SourceType {
    Namespace,
    ConfigMap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum DiscoveryMode {
    #[default]
    Additive,
    Authoritative,
}

/// A ConfigMap holding server definitions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapRef {
    pub name: String,
    /// Defaults to the source's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The key holding the definitions (default `providers.yaml`).
    #[serde(default = "default_key")]
    pub key: String,
}

/// What every discovered server starts from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProviderTemplate {
    /// Labels put on every discovered MCPServer.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// A partial MCPServer spec.
    #[serde(default)]
    pub spec: PartialServerSpec,
}

/// Some fields of an [`MCPServerSpec`], any of them absent; kept as written so that only what the
/// user set is laid under the discovered fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PartialServerSpec(pub serde_json::Map<String, serde_json::Value>);

impl JsonSchema for PartialServerSpec {
    fn schema_name() -> Cow<'static, str> {
        "PartialServerSpec".into()
    }

    fn inline_schema() -> bool {
        true
    }

    /// MCPServerSpec's schema with nothing required, no defaults and no cross-field rules at its
    /// top: the same fields, type-checked, but a fragment.
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = MCPServerSpec::json_schema(generator);
        if let Some(object) = schema.as_object_mut() {
            object.remove("required");
            object.remove("x-kubernetes-validations");
            if let Some(serde_json::Value::Object(properties)) = object.get_mut("properties") {
                for property in properties.values_mut() {
                    if let Some(p) = property.as_object_mut() {
                        p.remove("default");
                    }
                }
            }
            object.insert("description".into(), "A partial MCPServer spec.".into());
        }
        schema
    }
}

impl ProviderTemplate {
    /// A discovered server's spec: the template's fields as the base, the discovered ones
    /// (`spec_json`, from the discovery plugin) on top.
    pub fn complete(&self, spec_json: &str) -> Result<MCPServerSpec, String> {
        let found: serde_json::Value =
            serde_json::from_str(spec_json).map_err(|e| format!("the parser returned a spec that is not JSON: {e}"))?;
        let serde_json::Value::Object(found) = found else {
            return Err("the parser returned a spec that is not an object".into());
        };
        let mut merged = self.spec.0.clone();
        merged.extend(found);
        serde_json::from_value(serde_json::Value::Object(merged)).map_err(|e| e.to_string())
    }

    /// A discovered server's labels: the template's, the entry's, and the source's ownership mark.
    pub fn labels_for(&self, source: &str, found: &[(String, String)]) -> std::collections::BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.extend(found.iter().cloned());
        labels.insert(crate::labels::DISCOVERED_BY.to_string(), source.to_string());
        labels
    }
}

/// The MCPServer name of entry `entry` found by source `source`.
pub fn discovered_name(source: &str, entry: &str) -> String {
    format!("{source}-{entry}")
}

/// Observed state of a discovery source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPDiscoverySourceStatus {
    #[serde(default)]
    pub discovered_count: i32,
    /// Names (`namespace/name`) of the MCPServers this source manages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discovered: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn default_refresh() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_key() -> String {
    "providers.yaml".into()
}
