//! Helpers for tests that need real plugin components: building a plugin crate for
//! wasm32-wasip2 the way a plugin author does, and runtimes with a private cache.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
};

use hangar_plugin_runtime::{MemberInfo, MemberState, PickRequest, PluginRuntime, RuntimeConfig, StrategyPlugin};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

fn target_root() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"))
}

/// Builds the plugin crate at `dir` (relative to the repo) with
/// `cargo build --release --target wasm32-wasip2` and returns the component's path. Built once
/// per test process.
pub fn build_plugin(dir: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(p) = built.get(dir) {
        return p.clone();
    }
    let manifest = repo_root().join(dir).join("Cargo.toml");
    let target_dir = target_root().join("test-plugins");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {dir} for wasm32-wasip2 failed");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let package =
        text.lines().find_map(|l| l.strip_prefix("name = \"").and_then(|r| r.strip_suffix('"'))).expect("package name");
    let wasm = target_dir.join("wasm32-wasip2/release").join(format!("{}.wasm", package.replace('-', "_")));
    assert!(wasm.exists(), "{} missing", wasm.display());
    built.insert(dir.to_string(), wasm.clone());
    wasm
}

/// The test-only plugin that misbehaves as configured (`mode=loop|alloc|trap|...`).
pub fn hostile_plugin() -> PathBuf {
    build_plugin("tests/plugins/hostile")
}

/// A runtime with a private, throw-away compile cache.
pub fn runtime() -> (PluginRuntime, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig { cache_dir: Some(cache.path().to_path_buf()), ..Default::default() };
    (PluginRuntime::new(config, &prometheus::Registry::new()).unwrap(), cache)
}

pub fn builtin_bytes(name: &str) -> &'static [u8] {
    hangar_builtin_plugins::BUILTINS.iter().find(|b| b.name == name).unwrap().bytes
}

/// A group of members named m0.. with the given health (priority = position, weight 1), as a
/// strategy plugin is configured with it and called for it.
pub struct TestGroup {
    pub members: Vec<MemberInfo>,
    pub healthy: Vec<bool>,
    pub latency_avg_us: Vec<u64>,
}

pub fn group(healthy: &[bool]) -> TestGroup {
    TestGroup {
        members: (0..healthy.len())
            .map(|i| MemberInfo { name: format!("m{i}"), priority: i as i32, weight: 1 })
            .collect(),
        healthy: healthy.to_vec(),
        latency_avg_us: vec![0; healthy.len()],
    }
}

impl TestGroup {
    /// `name` configured for this group with `config`.
    pub fn strategy(&self, rt: &PluginRuntime, name: &str, config: &[(&str, &str)]) -> StrategyPlugin {
        let config = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        StrategyPlugin::new(rt, name, self.members.clone(), config, None).unwrap()
    }

    /// Call `sequence` of tool `echo`, first attempt.
    pub fn request(&self, sequence: u64) -> PickRequest {
        let members = (0..self.members.len())
            .map(|i| MemberState {
                healthy: self.healthy[i],
                tried: false,
                in_flight: 0,
                latency_avg_us: self.latency_avg_us[i],
                consecutive_failures: 0,
            })
            .collect();
        PickRequest { tool: "echo".into(), sequence, random: sequence.wrapping_mul(0x9E37_79B9), attempt: 0, members }
    }
}

/// A memory figure of this process from /proc/self/status (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn own_memory_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'));
    line.and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Serves `router` on a free loopback port (on the current tokio runtime); returns its `/mcp` URL.
pub async fn serve_mcp(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/mcp")
}

/// A minimal Streamable HTTP MCP server (2026-07-28, JSON answers) with one tool, `echo`, that
/// answers with its `text` argument: a backend cheap enough not to hide what is measured.
pub fn echo_mcp_router() -> axum::Router {
    use axum::{Json, routing::post};
    use serde_json::{Value, json};
    async fn mcp(Json(request): Json<Value>) -> axum::response::Response {
        use axum::response::IntoResponse;
        let id = request["id"].clone();
        // `stream`: `count` progress notifications on an event stream, then the result.
        if request["params"]["name"] == "stream" {
            let token = request["params"]["_meta"]["progressToken"].clone();
            let count = request["params"]["arguments"]["count"].as_u64().unwrap_or(0);
            let mut body = String::new();
            for progress in 0..count {
                let event = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": progress, "total": count}});
                body.push_str(&format!("event: message\ndata: {event}\n\n"));
            }
            let result = json!({"jsonrpc": "2.0", "id": id, "result": {
                "content": [{"type": "text", "text": "streamed"}], "isError": false, "resultType": "complete"}});
            body.push_str(&format!("event: message\ndata: {result}\n\n"));
            return ([(axum::http::header::CONTENT_TYPE, "text/event-stream")], body).into_response();
        }
        Json(answer(request, id)).into_response()
    }
    fn answer(request: Value, id: Value) -> Value {
        let cache = json!({"resultType": "complete", "ttlMs": 0, "cacheScope": "private"});
        let mut result = match request["method"].as_str().unwrap_or_default() {
            "server/discover" => json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}}),
            "tools/list" => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}},
                {"name": "stream", "inputSchema": {"type": "object"}}]}),
            "tools/call" => {
                let text = request["params"]["arguments"]["text"].clone();
                return json!({"jsonrpc": "2.0", "id": id, "result": {
                    "content": [{"type": "text", "text": text}], "isError": false, "resultType": "complete"}});
            }
            _ => return json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "not found"}}),
        };
        if let (Some(r), Value::Object(c)) = (result.as_object_mut(), cache) {
            r.extend(c);
        }
        json!({"jsonrpc": "2.0", "id": id, "result": result})
    }
    axum::Router::new().route("/mcp", post(mcp))
}
