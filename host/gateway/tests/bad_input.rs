//! Bad input at the MCP endpoint, over real HTTP on loopback: random bodies (bytes, JSON,
//! JSON-RPC-shaped), protocol versions, session ids and content types get a clear answer — a
//! JSON-RPC error or an HTTP error with a JSON body — never a 5xx, a panic or a hang; and a soak
//! of 100,000 bad requests leaves memory bounded.
//!
//! CI runs proptest's default number of cases; a longer run:
//! `PROPTEST_CASES=20000 cargo test --release -p hangar-gateway --test bad_input`.

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use hangar_gateway::{
    Gateway,
    client::{self, session::SessionKeys},
    servers::BackendSpec,
};
use hangar_plugin_runtime::{PluginRuntime, RuntimeConfig};
use proptest::prelude::*;
use serde_json::{Value, json};

struct Harness {
    runtime: tokio::runtime::Runtime,
    url: String,
    client: reqwest::Client,
    /// For bodies over the limit: the server answers 413 without reading them and closes the
    /// connection, which must not go back into the shared pool.
    unpooled: reqwest::Client,
}

/// One gateway (with an echo backend, so that valid calls reach a server) for every case.
fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let url = runtime.block_on(async {
            let backend = hangar_tests::serve_mcp(hangar_tests::echo_mcp_router()).await;
            let registry = prometheus::Registry::new();
            let cache = std::env::temp_dir().join("hangar-bad-input-plugins");
            let config = RuntimeConfig { cache_dir: Some(cache), ..Default::default() };
            let gateway = Gateway::new(PluginRuntime::new(config, &registry).unwrap(), &registry).unwrap();
            let spec = serde_json::from_value(
                json!({"mode": "remote", "endpoint": backend, "healthCheck": {"enabled": false}}),
            )
            .unwrap();
            gateway
                .upsert_server_at(
                    "default",
                    "echo",
                    spec,
                    BackendSpec::Http { endpoint: backend.clone(), headers: Default::default() },
                )
                .unwrap();
            let state = Arc::new(client::AppState::new(gateway, SessionKeys::with_key(b"fuzz"), registry, None));
            hangar_tests::serve_mcp(client::router(state)).await
        });
        let unpooled = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
        Harness { runtime, url, client: reqwest::Client::new(), unpooled }
    })
}

#[derive(Clone, Debug)]
struct BadRequest {
    body: Vec<u8>,
    version: Option<&'static str>,
    session: Option<String>,
    content_type: Option<&'static str>,
    accept: Option<&'static str>,
}

/// Sends one request and checks the answer is well-formed; returns the status.
async fn send(h: &Harness, r: &BadRequest) -> Result<u16, String> {
    let client = if r.body.len() > client::MAX_BODY_BYTES { &h.unpooled } else { &h.client };
    let mut request = client.post(&h.url).body(r.body.clone()).timeout(Duration::from_secs(30));
    if let Some(v) = r.version {
        request = request.header("mcp-protocol-version", v);
    }
    if let Some(s) = &r.session {
        request = request.header("mcp-session-id", s.as_str());
    }
    if let Some(c) = r.content_type {
        request = request.header("content-type", c);
    }
    if let Some(a) = r.accept {
        request = request.header("accept", a);
    }
    let response = request.send().await.map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = response.bytes().await.map_err(|e| format!("body: {e}"))?;
    if status >= 500 {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    let messages: Vec<Value> = if content_type.starts_with("application/json") {
        vec![serde_json::from_slice(&body).map_err(|e| format!("{status}: JSON body does not parse: {e}"))?]
    } else if content_type.starts_with("text/event-stream") {
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| serde_json::from_str(d.trim()).map_err(|e| format!("SSE data does not parse: {e}")))
            .collect::<Result<_, _>>()?
    } else {
        if !body.is_empty() && status != 202 {
            return Err(format!("{status}: body of type {content_type:?}: {}", String::from_utf8_lossy(&body)));
        }
        Vec::new()
    };
    for m in messages.iter().flat_map(|m| m.as_array().cloned().unwrap_or_else(|| vec![m.clone()])) {
        let answered = m.get("result").is_some() || m.get("error").is_some() || m.get("method").is_some();
        if !answered {
            return Err(format!("{status}: neither result, error nor notification: {m}"));
        }
        if let Some(e) = m.get("error") {
            let clear = e.get("message").and_then(Value::as_str).is_some_and(|s| !s.is_empty())
                || e.as_str().is_some_and(|s| !s.is_empty());
            if !clear {
                return Err(format!("{status}: an error without a message: {m}"));
            }
        }
    }
    Ok(status)
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const METHODS: [&str; 12] = [
    "initialize",
    "notifications/initialized",
    "tools/list",
    "tools/call",
    "server/discover",
    "ping",
    "notifications/cancelled",
    "resources/list",
    "no/such",
    "",
    "tools/call/../../admin",
    "\u{0}",
];

fn jsonrpc_shaped() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop_oneof![Just(json!("2.0")), Just(json!("1.0")), Just(json!(2)), Just(Value::Null)]),
        prop::option::of(prop_oneof![
            any::<i64>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::from),
            any_json()
        ]),
        prop::option::of(prop_oneof![prop::sample::select(METHODS.to_vec()).prop_map(Value::from), any_json()]),
        prop::option::of(prop_oneof![
            any_json(),
            (prop::sample::select(vec!["echo__echo", "echo", "nope__x", ""]), any_json())
                .prop_map(|(name, arguments)| json!({"name": name, "arguments": arguments})),
        ]),
    )
        .prop_map(|(jsonrpc, id, method, params)| {
            let mut m = serde_json::Map::new();
            for (k, v) in [("jsonrpc", jsonrpc), ("id", id), ("method", method), ("params", params)] {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            }
            Value::Object(m)
        })
}

fn bad_request() -> impl Strategy<Value = BadRequest> {
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        jsonrpc_shaped().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(jsonrpc_shaped(), 0..4).prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ];
    (
        body,
        prop::option::of(prop::sample::select(vec![
            "2025-06-18",
            "2025-11-25",
            "2026-07-28",
            "1999-01-01",
            "garbage",
            "",
        ])),
        prop::option::of(prop_oneof!["[ -~]{0,40}", Just("eyJuIjoxfQ.AAAA".to_string())]),
        prop::option::of(prop::sample::select(vec![
            "application/json",
            "text/plain",
            "application/json; charset=utf-8",
        ])),
        prop::option::of(prop::sample::select(vec!["application/json, text/event-stream", "text/plain", "*/*"])),
    )
        .prop_map(|(body, version, session, content_type, accept)| BadRequest {
            body,
            version,
            session,
            content_type,
            accept,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn every_bad_request_gets_a_clear_answer(request in bad_request()) {
        let h = harness();
        let outcome = h.runtime.block_on(send(h, &request));
        prop_assert!(outcome.is_ok(), "{:?}: {}", request, outcome.unwrap_err());
    }
}

/// The soak's mix: malformed JSON, unknown methods, forged sessions, wrong versions, wrong
/// content types, calls to unknown tools, and (rarely) bodies over the 4 MiB limit.
fn soak_request(i: usize) -> BadRequest {
    let call = |method: &str, params: Value| {
        serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": i, "method": method, "params": params})).unwrap()
    };
    let plain = BadRequest {
        body: Vec::new(),
        version: None,
        session: None,
        content_type: Some("application/json"),
        accept: None,
    };
    match i % 8 {
        0 => BadRequest { body: format!("{{\"jsonrpc\": \"2.0\", \"id\": {i}, \"method\": ").into_bytes(), ..plain },
        1 => BadRequest { body: call("no/such/method", json!({})), version: Some("2026-07-28"), ..plain },
        2 => BadRequest { body: call("tools/list", json!({})), session: Some(format!("forged-{i}.AAAA")), ..plain },
        3 => BadRequest { body: call("tools/list", json!({})), version: Some("1999-01-01"), ..plain },
        4 => BadRequest { body: call("tools/list", json!({})), content_type: Some("text/plain"), ..plain },
        5 => BadRequest {
            body: call(
                "tools/call",
                json!({"name": format!("nope__{i}"), "arguments": {}, "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}),
            ),
            version: Some("2026-07-28"),
            ..plain
        },
        6 if i % 4000 == 6 => BadRequest { body: vec![b' '; 5 << 20], ..plain },
        _ => BadRequest { body: b"[]".to_vec(), ..plain },
    }
}

#[test]
fn a_soak_of_100k_bad_requests_keeps_memory_bounded() {
    const REQUESTS: usize = 100_000;
    const WORKERS: usize = 8;
    let h = harness();
    let deadline = Instant::now() + Duration::from_secs(240);
    let run = |from: usize, to: usize| {
        h.runtime.block_on(async {
            let mut tasks = Vec::new();
            for w in 0..WORKERS {
                tasks.push(tokio::spawn(async move {
                    let h = harness();
                    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
                    for i in (from + w..to).step_by(WORKERS) {
                        if Instant::now() > deadline {
                            break;
                        }
                        let status = send(h, &soak_request(i)).await.unwrap_or_else(|e| panic!("request {i}: {e}"));
                        *statuses.entry(status).or_default() += 1;
                    }
                    statuses
                }));
            }
            let mut all = std::collections::BTreeMap::<u16, usize>::new();
            for t in tasks {
                for (s, n) in t.await.unwrap() {
                    *all.entry(s).or_default() += n;
                }
            }
            all
        })
    };
    // Warm up (connections, buffers, allocator arenas), then measure.
    run(0, 10_000);
    let before = hangar_tests::own_memory_kib("VmRSS");
    let statuses = run(10_000, REQUESTS);
    let after = hangar_tests::own_memory_kib("VmRSS");
    let sent: usize = statuses.values().sum();
    println!("soak: {sent} bad requests after warm-up; statuses {statuses:?}; RSS {before} KiB → {after} KiB");
    assert!(sent >= 10_000, "the soak ran ({sent} requests before its time bound)");
    assert!(statuses.keys().all(|s| *s < 500), "{statuses:?}");
    assert!(after < before + 32 * 1024, "RSS grew from {before} KiB to {after} KiB over {sent} bad requests");
}
