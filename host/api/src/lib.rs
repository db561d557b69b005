//! Hangar's API: the `mcp-hangar.io/v1alpha1` resources (MCPServer, MCPServerGroup,
//! MCPDiscoverySource), their defaults, and the CRDs generated from them.
//!
//! This crate has no runtime: no client, no wasmtime, no HTTP. Everything that runs depends on it.

// kube's `printcolumn(...)` lists repeat `type_ = ...`; clippy takes them for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

mod discovery;
mod duration;
mod group;
pub mod labels;
mod server;
mod state;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use discovery::{
    AdmittedEntry, ConfigMapRef, DiscoveryMode, EntryPermissions, MAX_REFUSED_SHOWN, MCPDiscoverySource,
    MCPDiscoverySourceSpec, MCPDiscoverySourceStatus, PartialServerSpec, ProviderTemplate, RefusedEntry, SourceType,
    discovered_name,
};
pub use duration::{DURATION_PATTERN, Duration, DurationError};
pub use group::{Failover, GroupMember, HealthPolicy, MCPServerGroup, MCPServerGroupSpec, MCPServerGroupStatus};
pub use server::{
    CallerRule, CircuitBreaker, DERIVED_POLICY_KEYS, HeaderSource, HealthCheck, MCPServer, MCPServerSpec,
    MCPServerStatus, RateLimit, RemoteHeader, SecretKeyRef, ServerMode, ToolsConfig, Transport,
    secure_security_context,
};
pub use state::State;

/// The three CRDs with the file each is committed as under `crds/`.
pub fn crds() -> [(&'static str, CustomResourceDefinition); 3] {
    [
        ("mcpserver.yaml", MCPServer::crd()),
        ("mcpservergroup.yaml", MCPServerGroup::crd()),
        ("mcpdiscoverysource.yaml", MCPDiscoverySource::crd()),
    ]
}

/// A CRD as the YAML document committed under `crds/` (and printed by `hangar crds`).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    serde_yaml::to_string(crd).expect("a CRD always serializes")
}

#[cfg(test)]
mod tests;
