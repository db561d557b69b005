//! What the gateway's integration tests share: a gateway with one remote server registered.

use std::sync::Arc;

use hangar_gateway::{Gateway, servers::BackendSpec};
use hangar_plugin_runtime::{PluginRuntime, RuntimeConfig};
use serde_json::json;

/// A gateway (its plugin cache in the returned directory, which must outlive it) with the remote
/// server `name` at `endpoint` registered, health checks off; and the registry of its metrics.
pub fn gateway_with(name: &str, endpoint: &str) -> (Arc<Gateway>, prometheus::Registry, tempfile::TempDir) {
    let registry = prometheus::Registry::new();
    let cache = tempfile::tempdir().unwrap();
    let plugins =
        PluginRuntime::new(RuntimeConfig { cache_dir: Some(cache.path().into()), ..Default::default() }, &registry)
            .unwrap();
    let gateway = Gateway::new(plugins, &registry).unwrap();
    let spec =
        serde_json::from_value(json!({"mode": "remote", "endpoint": endpoint, "healthCheck": {"enabled": false}}))
            .unwrap();
    let backend = BackendSpec::Http { endpoint: endpoint.to_string(), headers: Default::default() };
    gateway.upsert_server_at("default", name, spec, backend).unwrap();
    (gateway, registry, cache)
}
