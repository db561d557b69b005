//! `hangar plugin test` and `hangar plugin list` on good, hostile and broken components.

use std::process::{Command, Output};

fn hangar(args: &[&str]) -> Output {
    let cache = std::env::temp_dir().join("hangar-plugin-cli-test-cache");
    Command::new(env!("CARGO_BIN_EXE_hangar")).args(args).env("XDG_CACHE_HOME", cache).output().expect("hangar runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_good_strategy_passes_every_scenario() {
    let wasm = hangar_tests::build_plugin("examples/plugin-template");
    let out = hangar(&["plugin", "test", wasm.to_str().unwrap(), "--calls", "200"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("world   strategy (hangar:plugins/load-balancer@0.2.0)"), "{text}");
    for scenario in ["all healthy", "some unhealthy", "none healthy", "retry after m0 failed"] {
        assert!(text.contains(scenario), "{scenario} missing:\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("none healthy") && l.contains("- - - -")), "{text}");
    assert!(text.contains("asks for latency in every pick"), "the template reads latencies: {text}");
    assert!(text.contains("result: ok"));
}

#[test]
fn a_strategy_built_against_wit_0_1_0_is_adapted_and_says_so() {
    let wasm = hangar_tests::build_plugin("tests/plugins/strategy-0-1-0");
    let out = hangar(&["plugin", "test", wasm.to_str().unwrap(), "--calls", "50"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("world   strategy (hangar:plugins/load-balancer@0.1.0)"), "{text}");
    assert!(text.contains("rebuild against hangar:plugins@0.2.0"), "{text}");
    assert!(text.contains("asks for every member's full state (0.1.0) in every pick"), "{text}");
    // Round robin through the adapter: the same picks a 0.2.0 round robin makes.
    let all = text.lines().find(|l| l.starts_with("all healthy")).unwrap();
    assert!(all.contains("m0 m1 m2 m3 m0 m1 m2 m3"), "{all}");
    let retry = text.lines().find(|l| l.starts_with("retry after m0 failed")).unwrap();
    assert!(retry.contains("m1 m2 m3 m1 m2 m3 m1 m2"), "m0 comes through the adapter as tried: {retry}");
}

#[test]
fn tool_names_and_member_sets_are_the_authors_to_choose() {
    let wasm = hangar_tests::hostile_plugin(); // mode=good: round robin over healthy members
    let args = ["--config", "mode=good", "--calls", "20", "--members", "9", "--tool", "search"];
    let out = hangar(&[&["plugin", "test", wasm.to_str().unwrap()][..], &args].concat());
    let text = stdout(&out);
    assert!(text.contains("members 9; tools in turn: search"), "{text}");
    assert!(text.contains("asks for nothing but the eligible members"), "{text}");
    // With nine members, some pick lands beyond the default four.
    let all = text.lines().find(|l| l.starts_with("all healthy")).unwrap();
    assert!(all.split_whitespace().any(|p| ["m4", "m5", "m6", "m7", "m8"].contains(&p)), "{all}");
    let refused = hangar(&["plugin", "test", wasm.to_str().unwrap(), "--members", "0"]);
    assert!(!refused.status.success());
}

#[test]
fn a_hostile_strategy_is_reported_not_crashed_on() {
    let wasm = hangar_tests::hostile_plugin();
    for mode in ["loop", "trap", "alloc"] {
        let out =
            hangar(&["plugin", "test", wasm.to_str().unwrap(), "--config", &format!("mode={mode}"), "--calls", "10"]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{mode}: {text}");
        assert!(text.contains("all healthy              error: plugin"), "{mode}: {text}");
        assert!(text.contains("result: FAILED"), "{mode}: {text}");
    }
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.wasm");
    std::fs::write(&file, b"\0asmnope").unwrap();
    let out = hangar(&["plugin", "test", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("error: plugin \"broken\" cannot be loaded: not a valid WebAssembly component"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn list_shows_builtins_and_directory_plugins_with_digests() {
    let dir = tempfile::tempdir().unwrap();
    let failover = hangar_builtin_plugins::BUILTINS.iter().find(|b| b.name == "failover").unwrap();
    std::fs::write(dir.path().join("my-failover.wasm"), failover.bytes).unwrap();
    let out = hangar(&["plugin", "list", "--dir", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("round-robin") && l.contains("strategy") && l.ends_with("built-in")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("my-failover") && l.contains("my-failover.wasm")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("policy ") && l.contains(" policy ")), "{text}");
}

#[test]
fn test_runs_a_ranker_on_sample_queries() {
    let dir = tempfile::tempdir().unwrap();
    let ranker = hangar_builtin_plugins::BUILTINS.iter().find(|b| b.name == "ranker").unwrap();
    let file = dir.path().join("my-ranker.wasm");
    std::fs::write(&file, ranker.bytes).unwrap();
    let out = hangar(&["plugin", "test", file.to_str().unwrap(), "--calls", "20"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("world   ranker (hangar:plugins/tool-ranker@0.3.0)"), "{text}");
    assert!(!text.contains("older WIT"), "{text}");
    let line = |query: &str| text.lines().find(|l| l.starts_with(query)).unwrap_or_default().to_string();
    assert!(line("show what is in a folder").contains("filesystem/list_directory"), "{text}");
    assert!(line("open a ticket for a bug").contains("github/create_issue"), "{text}");
    assert!(line("book a flight").contains("(none fits)"), "{text}");
    // A configuration the ranker refuses is an error naming the key.
    let out = hangar(&["plugin", "test", file.to_str().unwrap(), "--config", "colour=blue"]);
    assert!(!out.status.success() && stdout(&out).contains("colour"), "{}", stdout(&out));
}
