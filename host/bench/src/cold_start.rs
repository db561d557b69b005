//! Cold start: the first `tools/call` to a `replicas: 0` stdio server through the gateway (which
//! starts the process, handshakes, and forwards the call), beside the backend's own start — the
//! same process spawned by hand, initialized and called over its stdio. The backend is the
//! local demo's Python SDK server (`examples/local/setup.sh` installs it).

use std::{
    path::PathBuf,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use hangar_gateway::{
    Gateway,
    client::{self, session::SessionKeys},
};
use hangar_plugin_runtime::{PluginRuntime, RuntimeConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{Figure, Scale, format_duration, percentiles};

fn local() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/local")
}

/// Spawns the server, initializes it and calls `word_count`, as a client of its own would.
async fn direct(python: &PathBuf, script: &PathBuf) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "word_count", "arguments": {"text": "a b c"}}}),
    ];
    for m in &messages {
        stdin.write_all(format!("{m}\n").as_bytes()).await?;
    }
    stdin.flush().await?;
    while let Some(line) = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await?? {
        let answer: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if answer["id"] == 2 {
            anyhow::ensure!(answer["result"]["structuredContent"]["result"] == 3, "unexpected answer {answer}");
            return Ok(started.elapsed());
        }
    }
    anyhow::bail!("the server closed its output before answering")
}

pub async fn run(scale: &Scale) -> anyhow::Result<Vec<Figure>> {
    let python = local().join(".venv/bin/python");
    let script = local().join("servers/notes.py");
    if !python.exists() {
        return Ok(vec![Figure {
            what: "skipped: run examples/local/setup.sh first (it installs the Python SDK server used here)".into(),
            measured: "-".into(),
            baseline_name: "-".into(),
            baseline: "-".into(),
            ratio: f64::NAN,
        }]);
    }
    let registry = prometheus::Registry::new();
    let cache = std::env::temp_dir().join("hangar-bench-cache");
    let plugins = PluginRuntime::new(RuntimeConfig { cache_dir: Some(cache), ..Default::default() }, &registry)?;
    let gateway = Gateway::new(plugins, &registry)?;
    let state = Arc::new(client::AppState::new(gateway.clone(), SessionKeys::with_key(b"bench"), registry, None));
    let url = hangar_tests::serve_mcp(client::router(state)).await;
    let client = reqwest::Client::new();

    let mut own = Vec::new();
    let mut cold = Vec::new();
    // One unmeasured round each: Python's bytecode cache and the page cache warm up alike.
    for n in 0..=scale.repeats {
        let d = direct(&python, &script).await?;
        let name = format!("cold{n}");
        let spec = serde_json::from_value(json!({
            "mode": "container", "image": "x", "transport": "stdio", "replicas": 0,
            "command": [python, script], "healthCheck": {"enabled": false},
        }))?;
        gateway.upsert_server("default", &name, spec, &local())?;
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": format!("{name}__word_count"), "arguments": {"text": "a b c"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}});
        let started = Instant::now();
        let answer: Value = client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", format!("{name}__word_count"))
            .json(&body)
            .timeout(Duration::from_secs(60))
            .send()
            .await?
            .json()
            .await?;
        let c = started.elapsed();
        anyhow::ensure!(answer["result"]["structuredContent"]["result"] == 3, "unexpected answer {answer}");
        gateway.remove_server("default", &name);
        if n > 0 {
            own.push(d);
            cold.push(c);
        }
    }
    let (own50, own_max) = percentiles(own);
    let (cold50, cold_max) = percentiles(cold);
    Ok(vec![Figure {
        what: format!("first call to a cold stdio server (Python SDK), {} starts", scale.repeats),
        measured: format!("p50 {} / max {}", format_duration(cold50), format_duration(cold_max)),
        baseline_name: "the server spawned, initialized and called directly".into(),
        baseline: format!("p50 {} / max {}", format_duration(own50), format_duration(own_max)),
        ratio: cold50.as_secs_f64() / own50.as_secs_f64().max(1e-9),
    }])
}
