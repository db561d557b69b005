//! `MCPServer`: one MCP server, run as a container workload or reached at a remote endpoint.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Capabilities, EnvVar, ResourceRequirements, SecurityContext, Toleration, Volume, VolumeMount},
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, State};

/// Desired state of an MCP server. Field names and defaults follow the Hangar guide's API reference.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcp-hangar.io",
    version = "v1alpha1",
    kind = "MCPServer",
    plural = "mcpservers",
    singular = "mcpserver",
    shortname = "mcps",
    category = "mcp",
    namespaced,
    status = "MCPServerStatus",
    derive = "PartialEq",
    doc = "An MCP server that Hangar runs (container) or routes to (remote).",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Tools", type_ = "integer", json_path = ".status.toolsCount"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("self.mode != 'container' || has(self.image)").message("required when mode is container").field_path(".image").reason(Reason::FieldValueRequired),
    validation = Rule::new("self.mode != 'remote' || has(self.endpoint)").message("required when mode is remote").field_path(".endpoint").reason(Reason::FieldValueRequired),
    validation = Rule::new("self.mode == 'remote' || !has(self.headers)").message("only for mode remote (a container server gets its credentials through env)").field_path(".headers"),
    validation = Rule::new("self.mode != 'container' || !has(self.transport) || self.transport != 'stdio' || (has(self.command) && size(self.command) > 0)").message("required when transport is stdio: the command that starts the server (Hangar's bridge runs it in place of the image's entrypoint)").field_path(".command").reason(Reason::FieldValueRequired)
)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerSpec {
    /// `container` (Hangar runs it) or `remote` (Hangar routes to `endpoint`).
    pub mode: ServerMode,
    /// Container image; required when mode is container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// MCP endpoint URL (Streamable HTTP, `http://` or `https://`); required when mode is remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+"))]
    pub endpoint: Option<String>,
    /// Headers core sends with every request to a remote server, e.g. its credentials
    /// (Hangar's addition). A value from a Secret is read by the operator and handed to core
    /// (core needs no Secret rights); `hangar run` reads it from an environment variable. Never
    /// logged, nor shown in status, metrics or the admin API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 16))]
    pub headers: Vec<RemoteHeader>,
    /// Desired replicas; 0 means on demand (Cold until the first request).
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 0").message("must be 0 or more (0 starts the server on demand)"))]
    pub replicas: i32,
    /// Stop a `replicas: 0` server after this long without calls.
    #[serde(rename = "idleTTL", default = "default_idle_ttl")]
    pub idle_ttl: Duration,
    /// How long a start may take before the held call fails and the server is Dead.
    #[serde(default = "default_startup_timeout")]
    pub startup_timeout: Duration,
    /// How long one `tools/call` may take before the client gets an error (a hung server does not
    /// hold a call forever). Hangar's addition; 60s by default.
    #[serde(default = "default_call_timeout")]
    pub call_timeout: Duration,
    /// MCP health checks (ping / tools list); enabled by default.
    #[serde(default)]
    pub health_check: HealthCheck,
    /// Compute resources of the server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Environment of the server; `valueFrom.secretKeyRef` is passed through, never read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Pod volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Where `volumes` are mounted in the server container (additive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Overrides of the secure defaults, field by field (see [`MCPServerSpec::effective_security_context`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Which tools are exposed, how often, and through which policy plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolsConfig>,
    /// List this server's tools and prompts under the names the server gave them, without the
    /// `<name>__` prefix (Hangar's addition; off by default). A name that another server or
    /// group also lists this way is a clash: each of them keeps it under its prefixed name only
    /// (never one shadowing the other), and core logs the clash. Prefixed names always work.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unprefixed: bool,
    /// Per-server circuit breaker; enabled by default.
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
    /// Command of the server container or local process (additive; like a container's `command`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments (additive; like a container's `args`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// How the server speaks MCP: `streamable-http` (default) or `stdio`.
    #[serde(default)]
    pub transport: Transport,
    /// Port the server (or its stdio bridge) listens on.
    #[serde(default = "default_port")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("must be a port number from 1 to 65535"))]
    pub port: i32,
    /// HTTP path of the MCP endpoint.
    #[serde(default = "default_path")]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("must start with '/', e.g. /mcp"))]
    pub path: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServerMode {
    Container,
    Remote,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    #[default]
    StreamableHttp,
    Stdio,
}

/// MCP-level health checking of a server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Time between checks.
    #[serde(default = "default_health_interval")]
    pub interval: Duration,
    /// How long one check may take.
    #[serde(default = "default_health_timeout")]
    pub timeout: Duration,
    /// Consecutive failed checks after which the server is Dead.
    #[serde(default = "default_failure_threshold")]
    #[x_kube(validation = Rule::new("self >= 1").message("must be 1 or more"))]
    pub failure_threshold: i32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: default_health_interval(),
            timeout: default_health_timeout(),
            failure_threshold: default_failure_threshold(),
        }
    }
}

/// Which tools a server exposes and how often they may be called.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ToolsConfig {
    /// Only these tools are exposed (globs allowed); empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_list: Vec<String>,
    /// These tools are never exposed (globs allowed); wins over allowList (additive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_list: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Name of the policy plugin deciding calls (additive; default the built-in `policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Pin the policy plugin to this sha256 digest (hex); a mismatch is refused (additive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{64}$')").message("must be a sha256 digest: 64 lowercase hex digits"))]
    pub policy_sha256: Option<String>,
    /// When the policy plugin faults, allow the call instead of denying it (additive; default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_open: bool,
    /// Settings handed to the policy plugin's `configure` beside the ones Hangar derives from
    /// this manifest (additive). The derived keys are refused here: set them through allowList,
    /// denyList and rateLimit.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("!self.exists(k, k in ['server', 'allow', 'deny', 'requests-per-minute', 'burst', 'callers'])").message("keys server, allow, deny, requests-per-minute, burst and callers are set by Hangar: use allowList, denyList, rateLimit and callers"))]
    pub policy_config: std::collections::BTreeMap<String, String>,
    /// Rules per caller (Hangar's addition): see [`CallerRule`]. Enforced by the host for any
    /// policy plugin, like allowList and denyList.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 64))]
    pub callers: Vec<CallerRule>,
}

/// Keys of a policy plugin's configuration that Hangar derives from `spec.tools`.
pub const DERIVED_POLICY_KEYS: [&str; 6] = ["server", "allow", "deny", "requests-per-minute", "burst", "callers"];

/// What one kind of caller may do on a server (an entry of `spec.tools.callers`, Hangar's
/// addition). The first entry that matches a caller applies to it. An entry with none of
/// `subjects`, `clientIds`, `groups`, `scopes` matches every caller, verified or not (a
/// catch-all); otherwise only callers with a verified access token, and each list given must
/// match (any of its globs). A caller that matches no entry gets no tools of the server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CallerRule {
    /// The token's subject (`sub`), globs allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// The OAuth client the token was issued to (`client_id` / `azp`), globs allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_ids: Vec<String>,
    /// Values of the configured group claim (`--auth-group-claim`), globs allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Scopes of the token, globs allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Of the server's tools, only these for this caller (globs); empty: all the server allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_list: Vec<String>,
    /// These tools never for this caller (globs), beside the server's denyList.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_list: Vec<String>,
    /// A bucket for each caller this entry matches, beside the server's own `rateLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// An HTTP header for a remote server: a literal `value`, or one from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("set exactly one of value and valueFrom"))]
#[serde(rename_all = "camelCase")]
pub struct RemoteHeader {
    /// The header's name, e.g. `Authorization` (letters, digits and `-`); not one the MCP
    /// transport sets itself. Lengths are bounded so the API server can afford the rule.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9-]+$"))]
    #[x_kube(validation = Rule::new("!self.matches('(?i)^(host|content-length|content-type|accept|connection|transfer-encoding|mcp-session-id|mcp-protocol-version|last-event-id)$')").message("is set by the MCP transport itself; choose another header"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<HeaderSource>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderSource {
    /// A key of a Secret in the server's namespace. `hangar run` reads it from the environment
    /// variable named after both, upper-cased with `-` and `.` as `_`: Secret `api-creds`, key
    /// `token` → `API_CREDS_TOKEN`.
    pub secret_key_ref: SecretKeyRef,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

impl SecretKeyRef {
    /// The environment variable `hangar run` reads this key from.
    pub fn env_var(&self) -> String {
        format!("{}_{}", self.name, self.key)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
            .collect()
    }
}

/// A token bucket per caller and tool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained rate.
    #[x_kube(validation = Rule::new("self >= 1").message("must be 1 or more"))]
    pub requests_per_minute: i32,
    /// Calls allowed at once above the rate (additive; default = requestsPerMinute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("must be 1 or more"))]
    pub burst: Option<i32>,
}

impl RateLimit {
    pub fn effective_burst(&self) -> i32 {
        self.burst.unwrap_or(self.requests_per_minute)
    }
}

/// Per-server circuit breaker: open after `failureThreshold` failures, half-open after `resetTimeout`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_breaker_threshold")]
    #[x_kube(validation = Rule::new("self >= 1").message("must be 1 or more"))]
    pub failure_threshold: i32,
    #[serde(default = "default_reset_timeout")]
    pub reset_timeout: Duration,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self { enabled: true, failure_threshold: default_breaker_threshold(), reset_timeout: default_reset_timeout() }
    }
}

/// Observed state of an MCP server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub tools_count: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_health_check: Option<Time>,
    #[serde(default)]
    pub consecutive_failures: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl MCPServerSpec {
    /// The guide's secure container defaults with the user's `securityContext` laid over them field by field.
    pub fn effective_security_context(&self) -> SecurityContext {
        let mut effective = secure_security_context();
        let Some(user) = &self.security_context else { return effective };
        macro_rules! take {
            ($($field:ident),*) => { $( if user.$field.is_some() { effective.$field = user.$field.clone(); } )* };
        }
        take!(
            allow_privilege_escalation,
            app_armor_profile,
            capabilities,
            privileged,
            proc_mount,
            read_only_root_filesystem,
            run_as_group,
            run_as_non_root,
            run_as_user,
            se_linux_options,
            seccomp_profile,
            windows_options
        );
        effective
    }

    /// Whether the server starts on demand (`replicas: 0`).
    pub fn on_demand(&self) -> bool {
        self.replicas == 0
    }
}

/// The guide's "Pod Security" block: what every MCP server container gets unless overridden.
pub fn secure_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65534),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        ..Default::default()
    }
}

fn yes() -> bool {
    true
}
fn default_replicas() -> i32 {
    1
}
fn default_idle_ttl() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_startup_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_call_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_health_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_failure_threshold() -> i32 {
    3
}
fn default_breaker_threshold() -> i32 {
    5
}
fn default_reset_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_port() -> i32 {
    8080
}
fn default_path() -> String {
    "/mcp".into()
}
