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
    /// What entries may do beyond the safe defaults (Hangar's addition; all off by default):
    /// other namespaces, privileged containers, hostPath volumes, added capabilities, running
    /// as root, naming a ServiceAccount. Entries that need more are refused and reported.
    #[serde(default, skip_serializing_if = "EntryPermissions::is_default")]
    pub entry_permissions: EntryPermissions,
}

/// The opt-ins of a discovery source. Whoever may write a source's ConfigMaps (in a Namespace
/// source: anyone with ConfigMap write access in a selected namespace) gets exactly these.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryPermissions {
    /// Namespaces entries may name with `namespace:` besides their own: the namespace they were
    /// found in (Namespace sources) or the source's namespace (ConfigMap sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub namespaces: Vec<String>,
    /// `securityContext.privileged`, `allowPrivilegeEscalation`, unconfined seccomp/AppArmor,
    /// `procMount`, `seLinuxOptions`, Windows host processes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// `hostPath` volumes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_path: bool,
    /// `securityContext.capabilities` other than dropping ALL.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub add_capabilities: bool,
    /// `runAsUser: 0`, `runAsGroup: 0` or `runAsNonRoot: false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_as_root: bool,
    /// `serviceAccountName`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub service_account: bool,
    /// Secrets entries may name (by name, in the entry's namespace): in `headers[].valueFrom`,
    /// `env[].valueFrom.secretKeyRef`, `secret` volumes and `projected` secret sources. Others
    /// are refused: a ConfigMap writer could otherwise have a Secret sent to a URL of theirs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub secrets: Vec<String>,
    /// PersistentVolumeClaims entries may mount (by name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub persistent_volume_claims: Vec<String>,
    /// Projected ServiceAccount tokens (`projected.sources[].serviceAccountToken`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub service_account_tokens: bool,
    /// Volumes of the node or the network beyond `emptyDir`, `configMap`, `downwardAPI`,
    /// `secret`, `projected`, `persistentVolumeClaim` and `hostPath` (each governed above):
    /// `nfs`, `csi`, `iscsi`, `local`, `ephemeral`, ...
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub node_volumes: bool,
    /// `tolerations` and `nodeSelector`: where the server's pod may be placed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scheduling: bool,
    /// Hosts entries' `endpoint`s may name (globs such as `*.team-a.svc`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub endpoint_hosts: Vec<String>,
}

impl EntryPermissions {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
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
    /// Top-level spec fields entries may not set (Hangar's addition), e.g. `image`,
    /// `securityContext`: an entry that sets one is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "pinned_fields_schema")]
    pub pinned_fields: Vec<String>,
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
    /// A discovered server's labels: the template's, the entry's, and the source's ownership marks.
    pub fn labels_for(
        &self,
        source_namespace: &str,
        source: &str,
        found: &[(String, String)],
    ) -> std::collections::BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        // An entry may not claim (or disown) servers through the ownership labels.
        labels.extend(found.iter().filter(|(k, _)| !k.starts_with(crate::labels::DISCOVERED_BY)).cloned());
        labels.insert(crate::labels::DISCOVERED_BY.to_string(), source.to_string());
        labels.insert(crate::labels::DISCOVERED_BY_NAMESPACE.to_string(), source_namespace.to_string());
        labels
    }
}

/// One entry of a source, admitted: where the server goes and what it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct AdmittedEntry {
    pub namespace: String,
    pub spec: MCPServerSpec,
}

impl MCPDiscoverySourceSpec {
    /// Where an entry's server lives unless it names another allowed namespace: for a Namespace
    /// source, the namespace of the ConfigMap or Service it came from (the tenant's own); for a
    /// ConfigMap source, the source's namespace (its author chose that ConfigMap).
    pub fn home_namespace<'a>(&self, source_namespace: &'a str, document_namespace: &'a str) -> &'a str {
        match self.source_type {
            SourceType::Namespace if !document_namespace.is_empty() => document_namespace,
            _ => source_namespace,
        }
    }

    /// Checks one discovered entry against the source's rules and completes it from the
    /// template. `spec_json` is what the parser found; `requested_namespace` is the entry's
    /// `namespace:` (empty: its home). The error names the field and the fix.
    pub fn admit(
        &self,
        home_namespace: &str,
        requested_namespace: &str,
        spec_json: &str,
    ) -> Result<AdmittedEntry, String> {
        let found: serde_json::Value =
            serde_json::from_str(spec_json).map_err(|e| format!("the parser returned a spec that is not JSON: {e}"))?;
        let serde_json::Value::Object(found) = found else {
            return Err("the parser returned a spec that is not an object".into());
        };
        let permissions = &self.entry_permissions;
        let namespace = if requested_namespace.is_empty() || requested_namespace == home_namespace {
            home_namespace.to_string()
        } else if permissions.namespaces.iter().any(|n| n == requested_namespace) {
            requested_namespace.to_string()
        } else {
            return Err(format!(
                "namespace: {requested_namespace:?} is not this entry's namespace ({home_namespace:?}); \
                 list it in the source's spec.entryPermissions.namespaces to allow it"
            ));
        };
        let template = self.provider_template.clone().unwrap_or_default();
        let known = server_fields();
        for field in found.keys() {
            if !known.contains(field.as_str()) {
                return Err(format!("{field}: not an MCPServer spec field; remove it from the entry"));
            }
            if template.pinned_fields.iter().any(|p| p == field) {
                return Err(format!(
                    "{field}: pinned by the source's spec.providerTemplate.pinnedFields; remove it from the entry"
                ));
            }
        }
        privileges_needed(&found, permissions)?;
        let mut merged = template.spec.0;
        merged.extend(found);
        let spec = serde_json::from_value(serde_json::Value::Object(merged)).map_err(|e| e.to_string())?;
        Ok(AdmittedEntry { namespace, spec })
    }
}

/// A list of MCPServer spec field names, so that a misspelt pin is refused rather than ignored.
fn pinned_fields_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let fields: Vec<&String> = server_fields().iter().collect();
    schemars::json_schema!({"type": "array", "maxItems": 32, "items": {"type": "string", "enum": fields}})
}

/// The top-level fields of an MCPServer spec, from its schema.
fn server_fields() -> &'static std::collections::BTreeSet<String> {
    static FIELDS: std::sync::OnceLock<std::collections::BTreeSet<String>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        let schema = schemars::schema_for!(MCPServerSpec);
        schema
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    })
}

/// Refuses what an entry asks for beyond the secure defaults unless the source opted in.
fn privileges_needed(
    entry: &serde_json::Map<String, serde_json::Value>,
    allowed: &EntryPermissions,
) -> Result<(), String> {
    use serde_json::Value;
    let refuse = |field: &str, opt_in: &str| {
        Err(format!(
            "{field}: discovered servers may not ask for this unless the source sets spec.entryPermissions.{opt_in}: true"
        ))
    };
    if entry.contains_key("serviceAccountName") && !allowed.service_account {
        return refuse("serviceAccountName", "serviceAccount");
    }
    let volumes = entry.get("volumes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if !allowed.host_path && volumes.iter().any(|v| v.get("hostPath").is_some()) {
        return refuse("volumes[].hostPath", "hostPath");
    }
    let by_name = |field: &str, list: &str, name: &str, allowed_names: &[String]| {
        if allowed_names.iter().any(|n| n == name) {
            Ok(())
        } else {
            Err(format!(
                "{field}: {name:?} is not in the source's spec.entryPermissions.{list}; discovered servers may name only those"
            ))
        }
    };
    for (field, secret) in secrets_named(entry) {
        by_name(&field, "secrets", &secret, &allowed.secrets)?;
    }
    for volume in volumes {
        if let Some(claim) = volume.get("persistentVolumeClaim") {
            let name = claim.get("claimName").and_then(Value::as_str).unwrap_or_default();
            by_name(
                "volumes[].persistentVolumeClaim",
                "persistentVolumeClaims",
                name,
                &allowed.persistent_volume_claims,
            )?;
        }
        let sources = volume.pointer("/projected/sources").and_then(Value::as_array).map(Vec::as_slice);
        if !allowed.service_account_tokens
            && sources.unwrap_or_default().iter().any(|s| s.get("serviceAccountToken").is_some())
        {
            return refuse("volumes[].projected.sources[].serviceAccountToken", "serviceAccountTokens");
        }
        const GOVERNED: [&str; 8] = [
            "name",
            "emptyDir",
            "configMap",
            "downwardAPI",
            "secret",
            "projected",
            "persistentVolumeClaim",
            "hostPath",
        ];
        if !allowed.node_volumes
            && let Some(kind) = volume.as_object().and_then(|v| v.keys().find(|k| !GOVERNED.contains(&k.as_str())))
        {
            return Err(format!(
                "volumes[].{kind}: discovered servers may not mount node or network volumes unless the source sets spec.entryPermissions.nodeVolumes: true"
            ));
        }
    }
    if !allowed.scheduling {
        for field in ["tolerations", "nodeSelector"] {
            if entry.get(field).is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
                return refuse(field, "scheduling");
            }
        }
    }
    if !allowed.endpoint_hosts.is_empty()
        && let Some(endpoint) = entry.get("endpoint").and_then(Value::as_str)
    {
        let host = url_host(endpoint);
        if !allowed.endpoint_hosts.iter().any(|p| hangar_plugin_algorithms::glob::matches(p, &host)) {
            return Err(format!(
                "endpoint: host {host:?} is not among the source's spec.entryPermissions.endpointHosts ({})",
                allowed.endpoint_hosts.join(", ")
            ));
        }
    }
    let Some(context) = entry.get("securityContext").and_then(Value::as_object) else { return Ok(()) };
    let is = |key: &str, value: Value| context.get(key) == Some(&value);
    let profile_unconfined =
        |key: &str| context.get(key).and_then(|p| p.get("type")).is_some_and(|t| t == "Unconfined");
    if !allowed.privileged {
        let privileged = is("privileged", Value::Bool(true))
            || is("allowPrivilegeEscalation", Value::Bool(true))
            || profile_unconfined("seccompProfile")
            || profile_unconfined("appArmorProfile")
            || context.get("procMount").is_some_and(|m| m != "Default")
            || context.contains_key("seLinuxOptions")
            || context.get("windowsOptions").and_then(|w| w.get("hostProcess")) == Some(&Value::Bool(true));
        if privileged {
            return refuse("securityContext", "privileged");
        }
    }
    if !allowed.add_capabilities
        && let Some(capabilities) = context.get("capabilities")
    {
        let adds = capabilities.get("add").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        let drops_all =
            capabilities.get("drop").and_then(Value::as_array).is_some_and(|d| d.iter().any(|c| c == "ALL"));
        if adds || !drops_all {
            return refuse("securityContext.capabilities", "addCapabilities");
        }
    }
    let root =
        is("runAsUser", Value::from(0)) || is("runAsGroup", Value::from(0)) || is("runAsNonRoot", Value::Bool(false));
    if root && !allowed.run_as_root {
        return refuse("securityContext.runAsUser", "runAsRoot");
    }
    Ok(())
}

/// Every Secret an entry names, with the field that names it.
fn secrets_named(entry: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    use serde_json::Value;
    let mut named = Vec::new();
    let mut add = |field: &str, name: Option<&Value>| {
        named.push((field.to_string(), name.and_then(Value::as_str).unwrap_or_default().to_string()));
    };
    let list = |key: &str| entry.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    for header in list("headers") {
        if let Some(reference) = header.pointer("/valueFrom/secretKeyRef") {
            add("headers[].valueFrom.secretKeyRef", reference.get("name"));
        }
    }
    for var in list("env") {
        if let Some(reference) = var.pointer("/valueFrom/secretKeyRef") {
            add("env[].valueFrom.secretKeyRef", reference.get("name"));
        }
    }
    for volume in list("volumes") {
        if let Some(secret) = volume.get("secret") {
            add("volumes[].secret", secret.get("secretName"));
        }
        for source in volume.pointer("/projected/sources").and_then(Value::as_array).cloned().unwrap_or_default() {
            if let Some(secret) = source.get("secret") {
                add("volumes[].projected.sources[].secret", secret.get("name"));
            }
        }
    }
    named
}

/// The host of an endpoint URL (lower case), or the text itself when it is not one.
fn url_host(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.to_ascii_lowercase()
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
    /// Entries and documents that were not applied, and why (at most [`MAX_REFUSED_SHOWN`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedEntry>,
    /// How many entries and documents were refused in the last sync.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused_count: i32,
}

/// Most refusals listed in a source's status; the count says how many there were.
pub const MAX_REFUSED_SHOWN: usize = 50;

/// An entry (or a whole document) a source did not apply.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefusedEntry {
    /// The document, e.g. `configmap/team-a/tools`.
    pub origin: String,
    /// The entry's name; empty when the whole document could not be read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entry: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

fn default_refresh() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_key() -> String {
    "providers.yaml".into()
}
