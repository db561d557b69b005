//! The hostile-plugin corpus: components built by the test from `tests/plugins/` that loop,
//! recurse, over-allocate, trap, answer too much or nonsense, reach for files and sockets, speak
//! another WIT version or the wrong world, or are simply too big. For each, the host stays up, the
//! call falls back as DESIGN.md says (strategy → round robin over healthy members; policy → deny,
//! fail closed; loading → the previous version keeps serving), and the fault is counted in
//! `hangar_plugin_faults_total` (or `hangar_plugin_reloads_total{result="error"}` for loading)
//! and reported.
//!
//! These call the runtime directly, outside any async runtime: the fine-grained checks (the exact
//! fallback, counts, reports). The same corpus through the running gateway, with its RSS, CPU and
//! `/healthz` latency, is `tests/python/test_plugin_sandbox.py`, which writes
//! `docs/hostile-plugins.md`.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use hangar_plugin_runtime::{
    Call, Caller, Decision, Fault, Origin, PluginError, PluginRuntime, PolicyPlugin, StrategyPlugin,
    round_robin_fallback,
};
use hangar_tests::{TestGroup, build_plugin, group, hostile_plugin, runtime};

/// One row of the table.
struct Outcome {
    plugin: &'static str,
    fault: String,
    host: String,
}

fn faults(rt: &PluginRuntime, plugin: &str, world: &str, fault: Fault) -> u64 {
    rt.metrics().faults.with_label_values(&[plugin, world, fault.as_str()]).get()
}

/// The host still serves: a good plugin of the same runtime answers the next call.
fn host_serves(rt: &PluginRuntime) {
    let c = group(&[true, true]);
    assert_eq!(c.strategy(rt, "round-robin", &[]).try_pick(&c.request(0)).unwrap(), Some(0));
}

fn hostile_strategy(c: &TestGroup, config: &[(&str, &str)]) -> (StrategyPlugin, PluginRuntime, tempfile::TempDir) {
    let (rt, dir) = runtime();
    let bytes = std::fs::read(hostile_plugin()).unwrap();
    rt.install(rt.compile("hostile", &bytes, Origin::File(hostile_plugin())).unwrap());
    let plugin = c.strategy(&rt, "hostile", config);
    (plugin, rt, dir)
}

/// Picks with a hostile strategy: the fault, the round-robin fallback, the metric, the report.
fn strategy_case(plugin_text: &'static str, config: &[(&str, &str)], fault: Fault) -> (Outcome, Duration) {
    let c = group(&[true, false, true]);
    let (plugin, rt, _dir) = hostile_strategy(&c, config);
    let started = Instant::now();
    let pick = plugin.pick(&c.request(1));
    let took = started.elapsed();
    let error = pick.fault.unwrap_or_else(|| panic!("{plugin_text}: the plugin faulted"));
    assert_eq!(error.fault(), Some(fault), "{plugin_text}: {error}");
    assert_eq!(pick.index, round_robin_fallback(&c.members, &c.request(1)), "{plugin_text}: fell back to round robin");
    assert_eq!(pick.index, Some(2));
    assert_eq!(faults(&rt, "hostile", "strategy", fault), 1, "{plugin_text}: fault counted");
    assert!(rt.reports().iter().any(|r| r.plugin == "hostile"), "{plugin_text}: fault reported");
    host_serves(&rt);
    // Not wedged: the next call is cut off again.
    assert!(plugin.pick(&c.request(2)).fault.is_some(), "{plugin_text}: second call");
    let outcome = Outcome {
        plugin: plugin_text,
        fault: format!("`{}`", fault.as_str()),
        host: "picked by round robin over healthy members; counted, reported".into(),
    };
    (outcome, took)
}

fn policy_case(plugin_text: &'static str, mode: &str) -> (Outcome, PolicyPlugin, PluginRuntime, tempfile::TempDir) {
    let (rt, dir) = runtime();
    let path = build_plugin("tests/plugins/hostile-policy");
    rt.install(rt.compile("hostile-policy", &std::fs::read(&path).unwrap(), Origin::File(path)).unwrap());
    let policy = PolicyPlugin::new(&rt, "hostile-policy", vec![("mode".into(), mode.into())], None, false).unwrap();
    let outcome = Outcome { plugin: plugin_text, fault: "`bad_answer`".into(), host: String::new() };
    (outcome, policy, rt, dir)
}

fn load_refused(rt: &PluginRuntime, name: &str, bytes: &[u8]) -> PluginError {
    rt.compile(name, bytes, Origin::Builtin).err().unwrap_or_else(|| panic!("{name} was loaded"))
}

fn corpus() -> Vec<Outcome> {
    let mut rows = Vec::new();

    let (row, took) = strategy_case("infinite loop", &[("mode", "loop")], Fault::Timeout);
    assert!(took < Duration::from_millis(50), "the deadline cut the loop after {took:?}");
    rows.push(Outcome { host: format!("cut off within 50 ms; {}", row.host), ..row });
    rows.push(strategy_case("unbounded recursion", &[("mode", "recurse")], Fault::Trap).0);
    rows.push(strategy_case("allocates 4 GiB", &[("mode", "alloc")], Fault::OutOfMemory).0);
    rows.push(strategy_case("panics (trap)", &[("mode", "trap")], Fault::Trap).0);
    rows.push(strategy_case("answers an out-of-range index", &[("mode", "out-of-range")], Fault::BadAnswer).0);
    rows.push(strategy_case("chooses nobody while members are healthy", &[("mode", "none")], Fault::BadAnswer).0);

    // WASI filesystem: no directory is opened to plugins, so a host file cannot be read.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "host secret").unwrap();
    let path = secret.path().to_str().unwrap();
    rows.push(
        strategy_case("reads a host file (WASI filesystem)", &[("mode", "read-file"), ("path", path)], Fault::Trap).0,
    );

    // WASI sockets: the connection is refused inside the runtime; nothing reaches the listener.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rows.push(
        strategy_case("opens a TCP connection (WASI sockets)", &[("mode", "connect"), ("addr", &addr)], Fault::Trap).0,
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the plugin's connection reached the host's listener"
    );

    // A policy answering a 2 MiB deny reason: not sent to the client; denied with a short reason.
    let (row, policy, rt, _dir) = policy_case("policy answers a 2 MiB deny reason", "huge-deny");
    let call = Call { server: "s".into(), tool: "t".into(), caller: Caller::unverified("c"), argument_bytes: 2 };
    let (decision, fault) = policy.check(&call);
    assert_eq!(fault.and_then(|f| f.fault()), Some(Fault::BadAnswer));
    match decision {
        Decision::Deny(reason) => assert!(reason.len() < 1024 && reason.contains("fail closed"), "{}", reason.len()),
        other => panic!("fails closed, got {other:?}"),
    }
    assert_eq!(faults(&rt, "hostile-policy", "policy", Fault::BadAnswer), 1);
    host_serves(&rt);
    rows.push(Outcome { host: "call denied with a short reason (fail closed); counted, reported".into(), ..row });

    // A policy inventing 2,000 tools: tools/list shows none of them (fail closed: none at all).
    let (row, policy, rt, _dir) = policy_case("policy answers 2,000 invented tool names", "invent-tools");
    let (visible, fault) = policy.filter_tools(vec!["a".into(), "b".into()], &Default::default());
    assert_eq!(fault.and_then(|f| f.fault()), Some(Fault::BadAnswer));
    assert!(visible.is_empty());
    assert_eq!(faults(&rt, "hostile-policy", "policy", Fault::BadAnswer), 1);
    host_serves(&rt);
    rows.push(Outcome { host: "no tool listed (fail closed); counted, reported".into(), ..row });

    // Loading: refused with a message naming the problem; the previous version keeps serving.
    let (rt, _dir) = runtime();
    let future = load_refused(&rt, "future", &std::fs::read(build_plugin("tests/plugins/future-wit")).unwrap());
    let text = future.to_string();
    assert!(matches!(future, PluginError::IncompatibleVersion { .. }), "{text}");
    assert!(text.contains("hangar:plugins@1.0.0") && text.contains("hangar:plugins@0.2.0"), "{text}");
    rows.push(Outcome {
        plugin: "written for WIT `hangar:plugins@1.0.0`",
        fault: "refused at load".into(),
        host: format!("not loaded: {text}"),
    });

    let wrong = StrategyPlugin::new(&rt, "configmap", vec![], vec![], None).err().unwrap();
    assert!(matches!(wrong, PluginError::WrongWorld { expected: "strategy", found: "discovery", .. }), "{wrong}");
    rows.push(Outcome {
        plugin: "a discovery component used as a strategy (wrong world)",
        fault: "refused at setup".into(),
        host: format!("not used: {wrong}"),
    });

    // A 50 MB file in the plugin directory: refused by size before it is read or compiled.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(hostile_plugin(), dir.path().join("steady.wasm")).unwrap();
    rt.load_dir(dir.path());
    let steady = rt.current("steady").unwrap().digest.clone();
    let big = std::fs::File::create(dir.path().join("steady.wasm.tmp")).unwrap();
    big.set_len(50 << 20).unwrap();
    drop(big);
    std::fs::rename(dir.path().join("steady.wasm.tmp"), dir.path().join("steady.wasm")).unwrap();
    let loaded = rt.load_dir(dir.path());
    assert!(loaded.is_empty());
    assert_eq!(rt.current("steady").unwrap().digest, steady, "the previous version keeps serving");
    assert_eq!(rt.metrics().reloads.with_label_values(&["steady", "error"]).get(), 1);
    let report = rt.reports().into_iter().rev().find(|r| r.plugin == "steady").unwrap().message;
    assert!(report.contains("52428800 bytes is over the 16777216 byte limit"), "{report}");
    rows.push(Outcome {
        plugin: "a 50 MB file",
        fault: "refused at load".into(),
        host: "not read or compiled (over the 16 MiB limit); the previous version keeps serving; `hangar_plugin_reloads_total{result=\"error\"}`, reported".into(),
    });
    host_serves(&rt);
    rows
}

fn table(rows: &[Outcome]) -> String {
    let mut out = String::from(
        "In every case the host stayed up and the next call through a good plugin succeeded.\n\
         | plugin | fault | what the host did |\n| --- | --- | --- |\n",
    );
    for r in rows {
        let _ = writeln!(out, "| {} | {} | {} |", r.plugin, r.fault, r.host.replace('|', "\\|"));
    }
    out
}

#[test]
fn the_runtime_survives_the_hostile_corpus() {
    let rows = corpus();
    assert_eq!(rows.len(), 13, "every case ran");
    eprintln!("{}", table(&rows));
}

#[test]
fn a_refused_configuration_is_an_error_at_setup() {
    let (rt, _dir) = runtime();
    let bytes = std::fs::read(hostile_plugin()).unwrap();
    rt.install(rt.compile("hostile", &bytes, Origin::Builtin).unwrap());
    let config = vec![("mode".into(), "refuse".into())];
    let err = StrategyPlugin::new(&rt, "hostile", group(&[true]).members, config, None).err().unwrap();
    assert_eq!(err.fault(), Some(Fault::Config));
    assert!(err.to_string().contains("refused on purpose"), "{err}");
}

#[test]
fn a_good_mode_of_the_same_plugin_behaves() {
    let c = group(&[true, true]);
    let (plugin, _rt, _dir) = hostile_strategy(&c, &[("mode", "good")]);
    assert_eq!(plugin.try_pick(&c.request(3)).unwrap(), Some(1));
}
