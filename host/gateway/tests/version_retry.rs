//! Hangar as a client of its servers: a server that refuses the first request's protocol version
//! (-32022) names the versions it supports, and Hangar asks again with one of them — the
//! stateless revision when listed (as the conformance suite's client scenario `request-metadata`
//! does), else `initialize` with the newest handshake version listed — instead of falling back to
//! its own newest handshake.

mod common;

use std::sync::{Arc, Mutex};

use axum::{Json, http::StatusCode, response::IntoResponse, routing::post};
use serde_json::{Value, json};

/// A server that refuses its first request with -32022 listing `supported`, then answers:
/// `server/discover` if it supports 2026-07-28, `initialize` with the version asked if that is
/// listed. Every request's method and version (from `_meta` or `initialize`) is recorded.
fn refusing_server(supported: &'static [&'static str], seen: Arc<Mutex<Vec<(String, String)>>>) -> axum::Router {
    axum::Router::new().route(
        "/mcp",
        post(move |Json(request): Json<Value>| {
            let seen = seen.clone();
            async move {
                let method = request["method"].as_str().unwrap_or_default().to_string();
                let version = request["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"]
                    .as_str()
                    .or(request["params"]["protocolVersion"].as_str())
                    .unwrap_or_default()
                    .to_string();
                let first = {
                    let mut seen = seen.lock().unwrap();
                    seen.push((method.clone(), version.clone()));
                    seen.len() == 1
                };
                let id = request["id"].clone();
                if id.is_null() {
                    return StatusCode::ACCEPTED.into_response();
                }
                if first || !(supported.contains(&version.as_str()) || method == "tools/list") {
                    let error = json!({"code": -32022, "message": "Unsupported protocol version",
                        "data": {"supported": supported, "requested": version}});
                    return (StatusCode::BAD_REQUEST, Json(json!({"jsonrpc": "2.0", "id": id, "error": error})))
                        .into_response();
                }
                let result = match method.as_str() {
                    "server/discover" => json!({"supportedVersions": supported, "capabilities": {"tools": {}},
                        "serverInfo": {"name": "refusing", "version": "1"}, "resultType": "complete"}),
                    "initialize" => json!({"protocolVersion": version, "capabilities": {"tools": {}},
                        "serverInfo": {"name": "refusing", "version": "1"}}),
                    "tools/list" => json!({"tools": [{"name": "ok", "inputSchema": {"type": "object"}}]}),
                    _ => json!({}),
                };
                Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
            }
        }),
    )
}

async fn listed_through_gateway(supported: &'static [&'static str]) -> (Vec<Value>, Vec<(String, String)>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let endpoint = hangar_tests::serve_mcp(refusing_server(supported, seen.clone())).await;
    let (gateway, _registry, _cache) = common::gateway_with("refusing", &endpoint);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let tools = gateway.list_tools(&Default::default()).await;
        if !tools.is_empty() || std::time::Instant::now() > deadline {
            return (tools, seen.lock().unwrap().clone());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_discover_is_asked_again_with_the_stateless_revision_it_lists() {
    let (tools, seen) = listed_through_gateway(&["2026-07-28"]).await;
    assert_eq!(tools.iter().map(|t| t["name"].as_str().unwrap()).collect::<Vec<_>>(), ["refusing__ok"], "{seen:?}");
    assert_eq!(seen[0], ("server/discover".into(), "2026-07-28".into()));
    assert_eq!(seen[1], ("server/discover".into(), "2026-07-28".into()), "asked again: {seen:?}");
    assert!(seen.iter().all(|(m, _)| m != "initialize"), "no fallback to the handshake: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_listing_only_an_older_handshake_is_initialized_with_it() {
    let (tools, seen) = listed_through_gateway(&["2025-03-26", "2025-06-18"]).await;
    assert_eq!(tools.len(), 1, "{seen:?}");
    assert_eq!(seen[1], ("initialize".into(), "2025-06-18".into()), "the newest it lists: {seen:?}");
}
