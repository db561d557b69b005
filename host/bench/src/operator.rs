//! 1,000 MCPServers reconciled to steady state against an in-process API server that answers
//! every request (apply echoes the object with a ready status; lists are empty), beside one
//! reconcile alone.

use std::{sync::Arc, time::Instant};

use hangar_api::MCPServer;
use hangar_operator::{
    metrics::Metrics,
    server::{Context, FINALIZER, reconcile},
    workload::Settings,
};
use http::{Request, Response};
use kube::{Client, client::Body};
use serde_json::{Value, json};

use crate::Figure;

const SERVERS: usize = 1000;
/// Reconciles in flight at once, as the controller runs them.
const CONCURRENT: usize = 50;

/// Answers like an API server that accepts everything.
fn answer(method: &http::Method, path: &str, body: Value) -> Value {
    if method == http::Method::GET {
        return json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []});
    }
    if path.ends_with("/status") || path.contains("/mcpservers/") {
        return json!({"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer", "metadata": {"name": "x", "namespace": "bench"}, "spec": {"mode": "remote", "endpoint": "http://x/mcp"}});
    }
    let mut object = body;
    if path.contains("/deployments/") {
        object["status"] = json!({"replicas": 1, "readyReplicas": 1});
    }
    object
}

fn client() -> Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().clone();
            let path = request.uri().path().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let reply = answer(&method, &path, body);
            send.send_response(Response::builder().body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap());
        }
    });
    Client::new(service, "bench")
}

fn server(i: usize) -> Arc<MCPServer> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": format!("server-{i}"), "namespace": "bench", "uid": format!("uid-{i}"), "generation": 1, "finalizers": [FINALIZER]},
            "spec": {"mode": "container", "image": "ghcr.io/example/tool:1", "tools": {"allowList": ["a", "b"]}},
        }))
        .unwrap(),
    )
}

pub async fn run() -> anyhow::Result<Vec<Figure>> {
    let ctx = Arc::new(Context {
        client: client(),
        settings: Settings {
            hangar_image: "hangar:bench".into(),
            isolation: hangar_operator::workload::Isolation::Off,
        },
        metrics: Metrics::new(&prometheus::Registry::new())?,
        core: None,
        plugins: None,
        recorder: None,
        autoscalers: None,
        endpoint_slices: None,
        servers: None,
    });
    let one = server(0);
    let started = Instant::now();
    for _ in 0..20 {
        reconcile(one.clone(), ctx.clone()).await?;
    }
    let single = started.elapsed() / 20;
    let (rss_before, _) = crate::rss_mib();

    let servers: Vec<_> = (0..SERVERS).map(server).collect();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut failures = 0;
    for s in servers {
        let ctx = ctx.clone();
        tasks.spawn(async move { reconcile(s, ctx).await.map(|_| ()) });
        while tasks.len() >= CONCURRENT {
            if !matches!(tasks.join_next().await, Some(Ok(Ok(())))) {
                failures += 1;
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        if !matches!(r, Ok(Ok(()))) {
            failures += 1;
        }
    }
    let all = started.elapsed();
    anyhow::ensure!(failures == 0, "{failures} reconciles failed");
    let (rss_after, _) = crate::rss_mib();
    Ok(vec![
        Figure {
            what: format!("{SERVERS} servers to steady state ({CONCURRENT} reconciles at once)"),
            measured: format!("{:.2} s", all.as_secs_f64()),
            baseline_name: "one reconcile".into(),
            baseline: format!("{:.2} ms", single.as_secs_f64() * 1e3),
            ratio: all.as_secs_f64() / single.as_secs_f64().max(1e-9),
        },
        Figure {
            what: format!("RSS after {SERVERS} servers"),
            measured: format!("{rss_after:.1} MiB"),
            baseline_name: "RSS before".into(),
            baseline: format!("{rss_before:.1} MiB"),
            ratio: rss_after / rss_before.max(0.1),
        },
    ])
}
