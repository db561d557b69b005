//! A server that sends its progress notifications and its answer in one go (one read of its
//! event stream): the client still gets every notification, before the answer, on an event
//! stream — not a plain JSON answer with the notifications lost. Through the gateway's real HTTP
//! router, with the echo server's `stream` tool.

mod common;

use std::sync::Arc;

use hangar_gateway::client::{self, session::SessionKeys};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_sent_with_the_answer_all_reach_the_client_first() {
    let echo = hangar_tests::serve_mcp(hangar_tests::echo_mcp_router()).await;
    let (gateway, registry, _cache) = common::gateway_with("echo", &echo);
    let state = Arc::new(client::AppState::new(gateway, SessionKeys::with_key(b"test"), registry, None));
    let url = hangar_tests::serve_mcp(client::router(state)).await;
    let client = reqwest::Client::new();
    let mut attempts = 0;
    for _ in 0..20 {
        attempts += 1;
        let answer = client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "echo__stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "echo__stream", "arguments": {"count": 10},
                "_meta": {"progressToken": "p", "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {}}}}))
            .send()
            .await
            .unwrap();
        let text = answer.text().await.unwrap();
        if text.contains("unknown tool") {
            // The catalogue is listed in the background just after registration.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        let progress: Vec<usize> = text.match_indices("notifications/progress").map(|(i, _)| i).collect();
        let result = text.find("\"result\"").expect("an answer");
        assert_eq!(progress.len(), 10, "every notification arrives: {text}");
        assert!(progress.iter().all(|&p| p < result), "notifications before the answer: {text}");
        assert!(text.contains("\"progressToken\":\"p\""), "with the client's own token: {text}");
        return;
    }
    panic!("echo__stream was never listed ({attempts} attempts)");
}
