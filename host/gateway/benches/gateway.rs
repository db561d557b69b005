//! `tools/call` through the gateway against the same call sent directly to the server, in one
//! process on loopback: `cargo bench -p hangar-gateway --bench gateway`. The server is the minimal
//! Streamable HTTP MCP echo server (2026-07-28, JSON answers) so that what is measured is the
//! gateway. Prints p50/p99 latency and throughput at 1, 50 and 200 concurrent clients, and the
//! latency the gateway adds. Every load loop is bounded in calls and in time.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::Router;
use hangar_gateway::{Gateway, backend::BackendSpec, http, session::SessionKeys};
use hangar_plugin_runtime::{PluginRuntime, RuntimeConfig};
use serde_json::{Value, json};

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}/mcp")
}

fn call_body(tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": tool, "arguments": {"text": "hello"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    }})
}

struct Run {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

/// `clients` tasks calling `url` until `calls` are done or 10 s have passed.
async fn load(url: &str, tool: &str, clients: usize, calls: usize) -> Run {
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
    let body = Arc::new(call_body(tool));
    let per_client = calls.div_ceil(clients);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, body, url) = (client.clone(), body.clone(), url.to_string());
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    if Instant::now() > deadline {
                        break;
                    }
                    let t = Instant::now();
                    let response: Value = client
                        .post(&url)
                        .header("accept", "application/json, text/event-stream")
                        .json(&*body)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    assert_eq!(response["result"]["content"][0]["text"], "hello", "{response}");
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    times.sort();
    Run {
        p50: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
        per_second: times.len() as f64 / elapsed.as_secs_f64(),
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let direct = serve(hangar_tests::echo_mcp_router()).await;
    let registry = prometheus::Registry::new();
    let plugins = PluginRuntime::new(RuntimeConfig::default(), &registry).unwrap();
    let gateway = Gateway::new(plugins, &registry).unwrap();
    let spec = serde_json::from_value(json!({"mode": "remote", "endpoint": direct, "healthCheck": {"enabled": false}}))
        .unwrap();
    gateway.upsert_server_at("echo", spec, BackendSpec::Http { endpoint: direct.clone() }).unwrap();
    let state = Arc::new(http::AppState::new(gateway, SessionKeys::with_key(b"bench"), registry, None));
    let via = serve(http::router(state)).await;
    // Warm both paths (connections, the gateway's backend session, the policy instance).
    load(&direct, "echo", 4, 400).await;
    load(&via, "echo__echo", 4, 400).await;

    println!(
        "{:<8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "clients", "direct p50", "direct p99", "via p50", "via p99", "added p50", "direct/s", "via/s"
    );
    for clients in [1usize, 50, 200] {
        let calls = if clients == 1 { 3000 } else { 20_000 };
        let d = load(&direct, "echo", clients, calls).await;
        let v = load(&via, "echo__echo", clients, calls).await;
        println!(
            "{clients:<8} {:>10.0}µs {:>10.0}µs {:>10.0}µs {:>10.0}µs {:>10.0}µs {:>12.0} {:>12.0}",
            us(d.p50),
            us(d.p99),
            us(v.p50),
            us(v.p99),
            us(v.p50) - us(d.p50),
            d.per_second,
            v.per_second
        );
    }
}
