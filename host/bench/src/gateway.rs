//! `tools/call` through the gateway against the same call sent directly to the server, over
//! loopback HTTP, at several numbers of concurrent clients. The server is the minimal Streamable
//! HTTP MCP echo server so that what is measured is the gateway.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use hangar_gateway::{
    Gateway,
    client::{self, session::SessionKeys},
    servers::BackendSpec,
};
use hangar_plugin_runtime::{PluginRuntime, RuntimeConfig};
use plotters::prelude::*;
use serde_json::{Value, json};

use hangar_tests::serve_mcp;

use crate::{Figure, Scale, format_duration, percentiles};

const CONCURRENCY: [usize; 5] = [1, 10, 50, 100, 200];

fn call_body(tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": tool, "arguments": {"text": "hello"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    }})
}

pub struct Run {
    pub p50: Duration,
    pub p99: Duration,
    pub per_second: f64,
    /// The process's CPU time and allocations per call over the run (client, gateway and echo
    /// server together; the gateway's share is through it minus direct).
    pub cpu_per_call: Duration,
    pub allocations_per_call: f64,
}

/// `clients` tasks calling `url` until `calls` are done or 10 s have passed.
pub(crate) async fn load(url: &str, tool: &str, clients: usize, calls: usize) -> Run {
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
    let body = Arc::new(call_body(tool));
    let per_client = calls.div_ceil(clients);
    let (cpu_before, allocations_before) = (crate::cpu_time(), crate::allocations());
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
                        .header("mcp-protocol-version", "2026-07-28")
                        .header("mcp-method", "tools/call")
                        .header("mcp-name", body["params"]["name"].as_str().unwrap_or_default())
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
    let count = times.len();
    let cpu_per_call = (crate::cpu_time() - cpu_before) / count.max(1) as u32;
    let allocations_per_call = (crate::allocations() - allocations_before) as f64 / count.max(1) as f64;
    let (p50, p99) = percentiles(times);
    Run { p50, p99, per_second: count as f64 / elapsed.as_secs_f64(), cpu_per_call, allocations_per_call }
}

/// Events per streamed call in the streamed-events figure (within what the gateway buffers for
/// a client that has not read yet, 64, beyond which progress is dropped).
const EVENTS: u64 = 50;

/// Allocations of the whole process per call of `tool` on `url` (one client, `calls` calls), the
/// call asking for progress: `stream` answers `EVENTS` progress notifications on an event stream
/// before its result, `echo` a plain JSON result.
async fn allocations_per_call(url: &str, tool: &str, calls: usize) -> f64 {
    let client = reqwest::Client::new();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": tool, "arguments": {"text": "hello", "count": EVENTS},
        "_meta": {"progressToken": 7, "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}
    }});
    let before = crate::allocations();
    for _ in 0..calls {
        let text = client
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", tool)
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let progress = text.matches("notifications/progress").count() as u64;
        assert!(text.contains("\"result\""), "{text}");
        assert!(progress == EVENTS || !tool.ends_with("stream"), "{progress} events: {text}");
    }
    (crate::allocations() - before) as f64 / calls as f64
}

/// The gateway's allocations per progress event it relays: (through it minus direct, for a
/// streamed call) minus (the same for a plain call), per event.
async fn allocations_per_event(direct: &str, via: &str) -> Figure {
    let calls = 200;
    let direct_plain = allocations_per_call(direct, "echo", calls).await;
    let via_plain = allocations_per_call(via, "echo__echo", calls).await;
    let direct_stream = allocations_per_call(direct, "stream", calls).await;
    let via_stream = allocations_per_call(via, "echo__stream", calls).await;
    let per_event = ((via_stream - direct_stream) - (via_plain - direct_plain)) / EVENTS as f64;
    let baseline = (direct_stream - direct_plain) / EVENTS as f64;
    Figure {
        what: format!("allocations per streamed progress event added by the gateway ({EVENTS} per call)"),
        measured: format!("{per_event:.1}"),
        baseline_name: "direct (bench client and echo server), per event".into(),
        baseline: format!("{baseline:.1}"),
        ratio: per_event / baseline.max(1e-9),
    }
}

/// (clients, direct, via) for the plot.
pub type Curve = Vec<(usize, Run, Run)>;

/// The echo server, and a gateway in front of it (remote server `echo`): their `/mcp` URLs.
pub(crate) async fn echo_and_gateway() -> anyhow::Result<(String, String)> {
    let direct = serve_mcp(hangar_tests::echo_mcp_router()).await;
    let registry = prometheus::Registry::new();
    let cache = std::env::temp_dir().join("hangar-bench-cache");
    let plugins = PluginRuntime::new(RuntimeConfig { cache_dir: Some(cache), ..Default::default() }, &registry)?;
    let gateway = Gateway::new(plugins, &registry)?;
    let spec =
        serde_json::from_value(json!({"mode": "remote", "endpoint": direct, "healthCheck": {"enabled": false}}))?;
    gateway
        .upsert_server_at(
            "default",
            "echo",
            spec,
            BackendSpec::Http { endpoint: direct.clone(), headers: Default::default() },
        )
        .map_err(anyhow::Error::msg)?;
    let state = Arc::new(client::AppState::new(gateway, SessionKeys::with_key(b"bench"), registry, None));
    let via = serve_mcp(client::router(state)).await;
    Ok((direct, via))
}

pub async fn run(scale: &Scale) -> anyhow::Result<(Vec<Figure>, Curve)> {
    let (direct, via) = echo_and_gateway().await?;
    // Warm both paths (connections, the gateway's backend session, the policy instance).
    load(&direct, "echo", 4, 400).await;
    load(&via, "echo__echo", 4, 400).await;

    let mut figures = Vec::new();
    let mut curve = Vec::new();
    for clients in CONCURRENCY {
        let calls = if clients == 1 { scale.gateway_calls / 3 } else { scale.gateway_calls };
        let d = load(&direct, "echo", clients, calls).await;
        let v = load(&via, "echo__echo", clients, calls).await;
        figures.push(Figure {
            what: format!("latency, {clients} client{}", if clients == 1 { "" } else { "s" }),
            measured: format!("p50 {} / p99 {}", format_duration(v.p50), format_duration(v.p99)),
            baseline_name: "direct".into(),
            baseline: format!("p50 {} / p99 {}", format_duration(d.p50), format_duration(d.p99)),
            ratio: v.p50.as_secs_f64() / d.p50.as_secs_f64().max(1e-9),
        });
        figures.push(Figure {
            what: format!("throughput, {clients} client{}", if clients == 1 { "" } else { "s" }),
            measured: format!("{:.0} calls/s", v.per_second),
            baseline_name: "direct".into(),
            baseline: format!("{:.0} calls/s", d.per_second),
            ratio: v.per_second / d.per_second.max(1e-9),
        });
        if clients == 1 || clients == 200 {
            let plural = if clients == 1 { "" } else { "s" };
            let added = v.cpu_per_call.saturating_sub(d.cpu_per_call);
            figures.push(Figure {
                what: format!("CPU per call added by the gateway, {clients} client{plural} (through it minus direct)"),
                measured: format_duration(added),
                baseline_name: "direct (bench client and echo server)".into(),
                baseline: format_duration(d.cpu_per_call),
                ratio: added.as_secs_f64() / d.cpu_per_call.as_secs_f64().max(1e-9),
            });
            figures.push(Figure {
                what: format!("allocations per call added by the gateway, {clients} client{plural}"),
                measured: format!("{:.0}", v.allocations_per_call - d.allocations_per_call),
                baseline_name: "direct (bench client and echo server)".into(),
                baseline: format!("{:.0}", d.allocations_per_call),
                ratio: (v.allocations_per_call - d.allocations_per_call) / d.allocations_per_call.max(1e-9),
            });
        }
        curve.push((clients, d, v));
    }
    figures.push(allocations_per_event(&direct, &via).await);
    Ok((figures, curve))
}

pub fn plot(curve: &Curve, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_ms = curve.iter().map(|(_, d, v)| d.p50.max(v.p50).as_secs_f64() * 1e3).fold(0.0, f64::max) * 1.15;
    let max_clients = curve.iter().map(|(c, ..)| *c).max().unwrap_or(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("tools/call p50 latency vs concurrent clients", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_clients * 1.05, 0.0..max_ms.max(0.01))?;
    chart.configure_mesh().x_desc("concurrent clients").y_desc("p50 latency (ms)").draw()?;
    let series = |pick: fn(&(usize, Run, Run)) -> Duration| -> Vec<(f64, f64)> {
        curve.iter().map(|p| (p.0 as f64, pick(p).as_secs_f64() * 1e3)).collect()
    };
    let direct = series(|p| p.1.p50);
    let via = series(|p| p.2.p50);
    chart
        .draw_series(LineSeries::new(direct.clone(), &BLUE))?
        .label("direct to the server")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart.draw_series(direct.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
    chart
        .draw_series(LineSeries::new(via.clone(), &RED))?
        .label("through the Hangar gateway")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart.draw_series(via.iter().map(|&p| Circle::new(p, 3, RED.filled())))?;
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
