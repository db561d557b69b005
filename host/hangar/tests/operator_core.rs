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
    let core = core("operator-key-0123456789");
    let client = CoreClient::new(&core.1, "operator-key-0123456789");
    let spec: hangar_api::MCPServerSpec =
        serde_json::from_value(serde_json::json!({"mode": "remote", "endpoint": "http://127.0.0.1:9/mcp"})).unwrap();
    client.register_server("team", "search", &spec, "http://127.0.0.1:9/mcp", &[], &[]).await.unwrap();
    // Registration is idempotent: the operator repeats it on every reconcile.
    client.register_server("team", "search", &spec, "http://127.0.0.1:9/mcp", &[], &[]).await.unwrap();
    let report = client.report("team", "search").await.unwrap().expect("core knows the server");
    assert!(report.state.is_some());
    assert_eq!(client.report("team", "other").await.unwrap(), None);
    assert_eq!(client.report("elsewhere", "search").await.unwrap(), None, "reports are per namespace");
    client.remove_server("team", "search").await.unwrap();
    client.remove_server("team", "search").await.unwrap();
    assert_eq!(client.report("team", "search").await.unwrap(), None);

    let wrong = CoreClient::new(&core.1, "not-the-key-0123456789");
    assert!(matches!(
        wrong.register_server("team", "x", &spec, "http://127.0.0.1:9/mcp", &[], &[]).await,
        Err(CoreError::Unauthorized)
    ));
}

#[tokio::test]
async fn one_namespace_cannot_replace_or_remove_another_namespaces_server() {
    let core = core("operator-key-0123456789");
    let client = CoreClient::new(&core.1, "operator-key-0123456789");
    let spec = |endpoint: &str| -> hangar_api::MCPServerSpec {
        serde_json::from_value(serde_json::json!({"mode": "remote", "endpoint": endpoint})).unwrap()
    };
    client
        .register_server("team-a", "search", &spec("http://127.0.0.1:9/a"), "http://127.0.0.1:9/a", &[], &[])
        .await
        .unwrap();
    // team-b's server of the same name would receive every client's calls to search__*: refused.
    match client
        .register_server("team-b", "search", &spec("http://127.0.0.1:9/b"), "http://127.0.0.1:9/b", &[], &[])
        .await
    {
        Err(CoreError::Refused { status: 409, message }) => {
            assert!(message.contains("namespace \"team-a\"") && message.contains("rename"), "{message}")
        }
        other => panic!("expected 409, got {other:?}"),
    }
    // A deletion from team-b leaves team-a's server alone (the operator reads 404 as "gone").
    client.remove_server("team-b", "search").await.unwrap();
    assert!(client.report("team-a", "search").await.unwrap().is_some(), "team-a's server survives team-b's delete");
    let raw = reqwest::Client::new();
    let delete = raw
        .delete(format!("{}/api/v1/servers/team-b/search", core.1))
        .bearer_auth("operator-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 404);
    assert!(delete.text().await.unwrap().contains("left alone"));
    // Names that cannot be DNS labels are refused before anything is registered.
    for (namespace, name) in [("team-a", "a__b"), ("team-a", "se\u{0430}rch"), ("team-a", "x%0Ay"), ("Team", "ok")] {
        let refused = client
            .register_server(namespace, name, &spec("http://127.0.0.1:9/c"), "http://127.0.0.1:9/c", &[], &[])
            .await;
        assert!(matches!(refused, Err(CoreError::Refused { status: 400, .. })), "{namespace}/{name}: {refused:?}");
    }
    // After team-a removes it, team-b may take the name.
    client.remove_server("team-a", "search").await.unwrap();
    client
        .register_server("team-b", "search", &spec("http://127.0.0.1:9/b"), "http://127.0.0.1:9/b", &[], &[])
        .await
        .unwrap();
    // Groups follow the same rule, and share names with servers.
    let group: hangar_api::MCPServerGroupSpec =
        serde_json::from_value(serde_json::json!({"selector": {"matchLabels": {"a": "b"}}})).unwrap();
    let taken = client.register_group("team-a", "search", &group, &[]).await;
    assert!(matches!(taken, Err(CoreError::Refused { status: 409, .. })), "{taken:?}");
}

#[tokio::test]
async fn a_call_for_a_cold_server_is_held_while_core_asks_for_a_wake_up() {
    let core = core("operator-key-0123456789");
    let client = CoreClient::new(&core.1, "operator-key-0123456789");
    let (wakes_tx, mut wakes) = tokio::sync::mpsc::unbounded_channel();
    let follower = client.clone();
    tokio::spawn(async move {
        let _ = follower
            .follow_wake_ups(|namespace, server| {
                let tx = wakes_tx.clone();
                async move {
                    let _ = tx.send(format!("{namespace}/{server}"));
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
    client.register_server("team", "sleepy", &spec, &endpoint, &[], &[]).await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), wakes.recv()).await.unwrap().unwrap();
    assert_eq!(first, "team/sleepy", "registration of a cold server asks for a wake-up to learn its tools");

    // A call arrives while the server is still down: core holds it.
    let url = format!("{}/mcp", core.1);
    let call = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "sleepy__echo")
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
    assert_eq!(second, "team/sleepy", "the held call asks for a wake-up too");
    assert!(!call.is_finished(), "the call is held, not failed");
    // "The operator scales it up": the server starts answering.
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, hangar_tests::echo_mcp_router()).await });
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), call).await.unwrap().unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "awake", "{answer}");
}

#[tokio::test]
async fn a_group_registration_says_whether_its_strategy_plugin_serves() {
    let core = core("operator-key-0123456789");
    let client = CoreClient::new(&core.1, "operator-key-0123456789");
    let group = |strategy: &str| -> hangar_api::MCPServerGroupSpec {
        serde_json::from_value(serde_json::json!({"selector": {"matchLabels": {"app": "x"}}, "strategy": strategy}))
            .unwrap()
    };
    let members = [serde_json::json!("a"), serde_json::json!("b")];
    let builtin = client.register_group("team", "rr", &group("RoundRobin"), &members).await.unwrap().unwrap();
    assert!(builtin.resolved, "{builtin:?}");
    assert_eq!((builtin.name.as_str(), builtin.reason.as_str()), ("round-robin", "PluginLoaded"));
    // A custom strategy that is not loaded: the group is registered all the same (round robin
    // serves it), and core says why.
    let missing = client.register_group("team", "custom", &group("team-strategy"), &members).await.unwrap().unwrap();
    assert!(!missing.resolved);
    assert_eq!(missing.reason, "PluginNotFound");
    assert!(missing.message.contains("team-strategy") && missing.message.contains("round robin"), "{missing:?}");
}
