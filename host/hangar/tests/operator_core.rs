//! The operator's core client against a real `hangar core` on loopback.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use hangar_operator::core::{CoreClient, CoreError};

struct Core(Child, String);

impl Drop for Core {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn core(key: &str) -> Core {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hangar"))
        .args(["core", "--listen", "127.0.0.1:0"])
        .env("HANGAR_API_KEY", key)
        .env("XDG_CACHE_HOME", std::env::temp_dir().join("hangar-operator-core-test"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches(',')
        .trim_end_matches("/mcp")
        .to_string();
    Core(child, url)
}

#[tokio::test]
async fn servers_are_registered_reported_and_removed_with_the_key() {
    let core = core("operator-key");
    let client = CoreClient::new(&core.1, "operator-key");
    let spec: hangar_api::MCPServerSpec =
        serde_json::from_value(serde_json::json!({"mode": "remote", "endpoint": "http://127.0.0.1:9/mcp"})).unwrap();
    client.register_server("team", "search", &spec, "http://127.0.0.1:9/mcp").await.unwrap();
    // Registration is idempotent: the operator repeats it on every reconcile.
    client.register_server("team", "search", &spec, "http://127.0.0.1:9/mcp").await.unwrap();
    let report = client.report("search").await.unwrap().expect("core knows the server");
    assert!(report.state.is_some());
    assert_eq!(client.report("other").await.unwrap(), None);
    client.remove_server("team", "search").await.unwrap();
    client.remove_server("team", "search").await.unwrap();
    assert_eq!(client.report("search").await.unwrap(), None);

    let wrong = CoreClient::new(&core.1, "not-the-key");
    assert!(matches!(
        wrong.register_server("team", "x", &spec, "http://127.0.0.1:9/mcp").await,
        Err(CoreError::Unauthorized)
    ));
}

#[tokio::test]
async fn a_call_for_a_cold_server_is_held_while_core_asks_for_a_wake_up() {
    let core = core("operator-key");
    let client = CoreClient::new(&core.1, "operator-key");
    let (wakes_tx, mut wakes) = tokio::sync::mpsc::unbounded_channel();
    let follower = client.clone();
    tokio::spawn(async move {
        let _ = follower
            .follow_wake_ups(|server| {
                let tx = wakes_tx.clone();
                async move {
                    let _ = tx.send(server);
                }
            })
            .await;
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // the event stream is open

    // Reserve a port, then leave it closed: nothing answers until "the operator" starts it.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = reserved.local_addr().unwrap();
    drop(reserved);
    let endpoint = format!("http://{address}/mcp");
    let spec: hangar_api::MCPServerSpec = serde_json::from_value(serde_json::json!({
        "mode": "remote", "endpoint": endpoint, "replicas": 0, "startupTimeout": "20s", "healthCheck": {"enabled": false}
    }))
    .unwrap();
    client.register_server("team", "sleepy", &spec, &endpoint).await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), wakes.recv()).await.unwrap().unwrap();
    assert_eq!(first, "sleepy", "registration of a cold server asks for a wake-up to learn its tools");

    // A call arrives while the server is still down: core holds it.
    let url = format!("{}/mcp", core.1);
    let call = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "sleepy__echo", "arguments": {"text": "awake"},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    });
    let second = tokio::time::timeout(std::time::Duration::from_secs(10), wakes.recv()).await.unwrap().unwrap();
    assert_eq!(second, "sleepy", "the held call asks for a wake-up too");
    assert!(!call.is_finished(), "the call is held, not failed");
    // "The operator scales it up": the server starts answering.
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, hangar_tests::echo_mcp_router()).await });
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), call).await.unwrap().unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "awake", "{answer}");
}
