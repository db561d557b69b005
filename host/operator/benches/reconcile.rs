//! 1,000 MCPServers reconciled to steady state against an in-process API server that answers
//! every request (apply echoes the object with a ready status; lists are empty):
//! `cargo bench -p hangar-operator --bench reconcile`. Prints the time and the peak RSS, and
//! the time of one reconcile alone as the baseline.

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

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let ctx = Arc::new(Context {
        client: client(),
        settings: Settings { hangar_image: "hangar:bench".into() },
        metrics: Metrics::new(&prometheus::Registry::new()).unwrap(),
        core: None,
        plugins: None,
        recorder: None,
        autoscalers: None,
    });
    let one = server(0);
    let started = Instant::now();
    for _ in 0..20 {
        reconcile(one.clone(), ctx.clone()).await.unwrap();
    }
    let single = started.elapsed() / 20;

    let servers: Vec<_> = (0..1000).map(server).collect();
    let started = Instant::now();
    // As the controller does: many reconciles in flight at once (bounded).
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in servers.chunks(50) {
        for s in chunk {
            let (s, ctx) = (s.clone(), ctx.clone());
            tasks.spawn(async move { reconcile(s, ctx).await.map(|_| ()) });
        }
        while tasks.len() > 50 {
            tasks.join_next().await;
        }
    }
    let mut failures = 0;
    while let Some(r) = tasks.join_next().await {
        if !matches!(r, Ok(Ok(()))) {
            failures += 1;
        }
    }
    let all = started.elapsed();
    println!("one reconcile (baseline):        {:>8.2} ms", single.as_secs_f64() * 1e3);
    println!(
        "1,000 servers to steady state:   {:>8.2} s  ({:.0}x the baseline, {failures} failures)",
        all.as_secs_f64(),
        all.as_secs_f64() / single.as_secs_f64().max(1e-9)
    );
    println!("peak RSS:                        {:>8.1} MiB", peak_rss_mib());
}
