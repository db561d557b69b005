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
