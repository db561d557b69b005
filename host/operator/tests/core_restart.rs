//! Core restarted while the operator runs: core keeps no state of its own, so the operator's
//! next reconcile (every resync, and on any change) registers the server again and core serves
//! it as before. A real core (the gateway crate, in process, with an API key) on one loopback
//! port, restarted empty; the Kubernetes API is a mock that answers every request.

use std::sync::Arc;

use hangar_gateway::{
    Gateway,
    client::{self, session::SessionKeys},
};
use hangar_operator::{core::CoreClient, metrics::Metrics, server, workload::Settings};
use hangar_plugin_runtime::{PluginRuntime, RuntimeConfig};
use kube::client::Body;
use serde_json::{Value, json};

const KEY: &str = "restart-key";

/// Starts a core on `addr` (port 0: any); returns its address and the task serving it.
async fn start_core(addr: &str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let registry = prometheus::Registry::new();
    let cache = std::env::temp_dir().join("hangar-core-restart-plugins");
    let plugins =
        PluginRuntime::new(RuntimeConfig { cache_dir: Some(cache), ..Default::default() }, &registry).unwrap();
    let gateway = Gateway::new(plugins, &registry).unwrap();
    let state = Arc::new(client::AppState::new(gateway, SessionKeys::with_key(b"k"), registry, Some(KEY.into())));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let bound = listener.local_addr().unwrap();
    (bound, tokio::spawn(async move { axum::serve(listener, client::router(state)).await.unwrap() }))
}

fn remote_server() -> hangar_api::MCPServer {
    serde_json::from_value(json!({
        "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
        "metadata": {"name": "search", "namespace": "team", "uid": "u1", "generation": 1,
                     "finalizers": ["mcp-hangar.io/cleanup"]},
        "spec": {"mode": "remote", "endpoint": "http://127.0.0.1:9/mcp", "healthCheck": {"enabled": false}},
    }))
    .unwrap()
}

/// A Kubernetes API that accepts whatever the reconciler writes (status patches), answering
/// with the server object.
fn context(core: CoreClient) -> Arc<server::Context> {
    let (service, mut handle) = tower_test::mock::pair::<::http::Request<Body>, ::http::Response<Body>>();
    tokio::spawn(async move {
        while let Some((_request, send)) = handle.next_request().await {
            let body: Value = serde_json::to_value(remote_server()).unwrap();
            send.send_response(
                ::http::Response::builder().body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap(),
            );
        }
    });
    Arc::new(server::Context {
        client: kube::Client::new(service, "default"),
        settings: Settings { hangar_image: "hangar:test".into(), isolation: hangar_operator::workload::Isolation::Off },
        metrics: Metrics::new(&prometheus::Registry::new()).unwrap(),
        core: Some(core),
        plugins: None,
        recorder: None,
        autoscalers: None,
        endpoint_slices: None,
        servers: None,
    })
}

#[tokio::test]
async fn a_restarted_core_is_refilled_by_the_next_reconcile() {
    let (addr, first) = start_core("127.0.0.1:0").await;
    let core = CoreClient::new(&format!("http://{addr}"), KEY);
    let ctx = context(core.clone());
    server::reconcile(Arc::new(remote_server()), ctx.clone()).await.unwrap();
    assert!(core.report("team", "search").await.unwrap().is_some(), "registered by the first reconcile");

    // Core restarts: a new, empty process on the same address.
    first.abort();
    let _ = first.await;
    let (_, second) = start_core(&addr.to_string()).await;
    assert_eq!(core.report("team", "search").await.unwrap(), None, "the new core starts empty");

    server::reconcile(Arc::new(remote_server()), ctx).await.unwrap();
    assert!(core.report("team", "search").await.unwrap().is_some(), "the next reconcile registered it again");
    second.abort();
}
