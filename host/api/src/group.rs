//! `MCPServerGroup`: MCP servers selected by label, served under one name with a strategy.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, State};

/// Desired state of a group of MCP servers.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcp-hangar.io",
    version = "v1alpha1",
    kind = "MCPServerGroup",
    plural = "mcpservergroups",
    singular = "mcpservergroup",
    shortname = "mcpsg",
    category = "mcp",
    namespaced,
    status = "MCPServerGroupStatus",
    derive = "PartialEq",
    doc = "MCP servers selected by label and served as one, with load balancing and failover.",
    printcolumn(name = "Strategy", type_ = "string", json_path = ".spec.strategy"),
    printcolumn(name = "Healthy", type_ = "integer", json_path = ".status.healthyMembers"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerGroupSpec {
    /// Members: MCPServers in the group's namespace whose labels match.
    pub selector: LabelSelector,
    /// RoundRobin, LeastConnections, Random, Failover, WeightedRoundRobin, or a loaded strategy plugin's name.
    #[serde(default = "default_strategy")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9][A-Za-z0-9_.-]*$')").message("must name a strategy: RoundRobin, LeastConnections, Random, Failover, WeightedRoundRobin, or a plugin's name (letters, digits, '-', '_', '.')"))]
    pub strategy: String,
    /// Pin the strategy plugin to this sha256 digest (hex); a mismatch is refused (additive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{64}$')").message("must be a sha256 digest: 64 lowercase hex digits"))]
    pub strategy_sha256: Option<String>,
    /// Settings handed to the strategy plugin's `configure` as key/value pairs, e.g. a seed or
    /// weights (Hangar's addition; the built-in strategies take none).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub strategy_config: std::collections::BTreeMap<String, String>,
    /// Also list and serve the members under their own names (`<member>__<tool>`), beside the
    /// group (Hangar's addition). Off by default: a member is reached only through its group, so
    /// the group's strategy, failover and every member's limits apply to each call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expose_members: bool,
    /// List the group's tools and prompts without the `<group>__` prefix, as for a server's
    /// `spec.unprefixed` (Hangar's addition; off by default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unprefixed: bool,
    #[serde(default)]
    pub failover: Failover,
    #[serde(default)]
    pub health_policy: HealthPolicy,
}

/// Retrying a failed call on another member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Further members tried after the first one fails.
    #[serde(default = "default_max_retries")]
    #[x_kube(validation = Rule::new("self >= 0").message("must be 0 or more"))]
    pub max_retries: i32,
    /// Pause before each retry.
    #[serde(default = "default_retry_delay")]
    pub retry_delay: Duration,
}

impl Default for Failover {
    fn default() -> Self {
        Self { enabled: true, max_retries: default_max_retries(), retry_delay: default_retry_delay() }
    }
}

/// How member health sets the group's state.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthPolicy {
    /// Below this share of healthy members the group is Degraded (with none healthy it is Dead).
    #[serde(default = "default_min_healthy")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("must be a percentage from 0 to 100"))]
    pub min_healthy_percentage: i32,
    /// Consecutive failures after which a member counts as unhealthy.
    #[serde(default = "default_unhealthy_threshold")]
    #[x_kube(validation = Rule::new("self >= 1").message("must be 1 or more"))]
    pub unhealthy_threshold: i32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self { min_healthy_percentage: default_min_healthy(), unhealthy_threshold: default_unhealthy_threshold() }
    }
}

impl HealthPolicy {
    /// The group's state for `healthy` of `total` members: Dead with none healthy, Degraded
    /// below `minHealthyPercentage`, Ready otherwise.
    pub fn group_state(&self, healthy: usize, total: usize) -> State {
        if healthy == 0 {
            return State::Dead;
        }
        // healthy/total >= min% without floating point
        if healthy * 100 >= total * self.min_healthy_percentage.clamp(0, 100) as usize {
            State::Ready
        } else {
            State::Degraded
        }
    }
}

/// One member as the group sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
}

/// Observed state of a group.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerGroupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<GroupMember>,
    #[serde(default)]
    pub healthy_members: i32,
    #[serde(default)]
    pub total_members: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn yes() -> bool {
    true
}
fn default_strategy() -> String {
    "RoundRobin".into()
}
fn default_max_retries() -> i32 {
    2
}
fn default_retry_delay() -> Duration {
    Duration::from_millis(500)
}
fn default_min_healthy() -> i32 {
    50
}
fn default_unhealthy_threshold() -> i32 {
    3
}
