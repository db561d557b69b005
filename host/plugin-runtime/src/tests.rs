//! The built-in plugins through the real wasm path, the cache, and load-time checks.

use super::*;
use crate::plugins::Pick;

pub(crate) fn runtime_in(cache: &Path) -> PluginRuntime {
    let config = RuntimeConfig { cache_dir: Some(cache.to_path_buf()), ..Default::default() };
    PluginRuntime::new(config, &prometheus::Registry::new()).expect("runtime starts")
}

fn runtime() -> (PluginRuntime, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (runtime_in(dir.path()), dir)
}

/// A group of (name, healthy, in flight, priority, weight) members, as a strategy is given it.
struct Group {
    members: Vec<MemberInfo>,
    healthy: Vec<bool>,
    in_flight: Vec<u32>,
}

fn group(spec: &[(&str, bool, u32, i32, u32)]) -> Group {
    Group {
        members: spec
            .iter()
            .map(|&(name, _, _, priority, weight)| MemberInfo { name: name.into(), priority, weight })
            .collect(),
        healthy: spec.iter().map(|s| s.1).collect(),
        in_flight: spec.iter().map(|s| s.2).collect(),
    }
}

impl Group {
    fn request(&self, sequence: u64, random: u64, tried: Vec<u32>) -> PickRequest {
        let members = (0..self.members.len())
            .map(|i| MemberState {
                healthy: self.healthy[i],
                tried: tried.contains(&(i as u32)),
                in_flight: self.in_flight[i],
                latency_avg_us: 0,
                consecutive_failures: 0,
            })
            .collect();
        PickRequest { tool: "t".into(), sequence, random, attempt: tried.len() as u32, members }
    }

    fn strategy(&self, rt: &PluginRuntime, name: &str) -> StrategyPlugin {
        StrategyPlugin::new(rt, name, self.members.clone(), vec![], None).unwrap()
    }
}

fn picks(plugin: &StrategyPlugin, g: &Group, n: u64) -> Vec<u32> {
    (0..n).map(|s| plugin.try_pick(&g.request(s, s, vec![])).unwrap().unwrap()).collect()
}

#[test]
fn builtins_are_loaded_with_their_worlds() {
    let (rt, _dir) = runtime();
    let list = rt.list();
    let named = |n: &str| list.iter().find(|p| p.name == n).unwrap_or_else(|| panic!("{n} loaded"));
    for s in ["round-robin", "least-connections", "random", "failover", "weighted-round-robin"] {
        assert_eq!(named(s).world, WorldKind::Strategy);
    }
    assert_eq!(named("policy").world, WorldKind::Policy);
    assert_eq!(named("configmap").world, WorldKind::Discovery);
    assert_eq!(named("namespace").world, WorldKind::Discovery);
    assert!(list.iter().all(|p| p.origin == Origin::Builtin && p.digest.len() == 64));
}

#[test]
fn round_robin_cycles_exactly_over_healthy_members() {
    let (rt, _dir) = runtime();
    let c = group(&[("a", true, 0, 0, 1), ("b", false, 0, 0, 1), ("c", true, 0, 0, 1), ("d", true, 0, 0, 1)]);
    let p = c.strategy(&rt, "round-robin");
    assert_eq!(picks(&p, &c, 6), [0, 2, 3, 0, 2, 3]);
    // A retry never repeats the member that failed.
    assert_eq!(p.try_pick(&c.request(0, 0, vec![0])).unwrap(), Some(2));
    assert_eq!(p.try_pick(&c.request(1, 0, vec![0])).unwrap(), Some(3));
}

#[test]
fn least_connections_picks_the_minimum_in_flight() {
    let (rt, _dir) = runtime();
    let c = group(&[("a", true, 5, 0, 1), ("b", true, 2, 0, 1), ("c", true, 2, 0, 1), ("d", false, 0, 0, 1)]);
    let p = c.strategy(&rt, "least-connections");
    assert_eq!(picks(&p, &c, 4), [1, 2, 1, 2], "ties between b and c alternate by sequence");
}

#[test]
fn groups_beyond_64_members_travel_as_words() {
    let (rt, _dir) = runtime();
    // 150 members, every third unhealthy, in-flight counts falling towards the end.
    let spec: Vec<(String, bool, u32)> = (0..150).map(|i| (format!("m{i:03}"), i % 3 != 1, 300 - i as u32)).collect();
    let c = group(&spec.iter().map(|(n, h, f)| (n.as_str(), *h, *f, 0, 1)).collect::<Vec<_>>());
    let healthy: Vec<u32> = (0..150).filter(|i| i % 3 != 1).collect();
    let p = c.strategy(&rt, "round-robin");
    let n = healthy.len() as u64;
    assert_eq!(picks(&p, &c, n), healthy, "one cycle over the healthy members, past bit 64 and 128");
    let least = c.strategy(&rt, "least-connections");
    assert_eq!(least.try_pick(&c.request(0, 0, vec![])).unwrap(), Some(149), "the fewest in flight is the last");
    assert_eq!(least.try_pick(&c.request(0, 0, vec![149])).unwrap(), Some(147), "149 tried, 148 unhealthy");
}

#[test]
fn random_is_roughly_uniform_over_10k_picks() {
    let (rt, _dir) = runtime();
    let c = group(&[("a", true, 0, 0, 1), ("b", true, 0, 0, 1), ("c", false, 0, 0, 1), ("d", true, 0, 0, 1)]);
    let p = c.strategy(&rt, "random");
    let mut counts = [0u32; 4];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for s in 0..10_000 {
        // xorshift: the host's random numbers
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        counts[p.try_pick(&c.request(s, x, vec![])).unwrap().unwrap() as usize] += 1;
    }
    assert_eq!(counts[2], 0, "never the unhealthy member");
    for i in [0, 1, 3] {
        assert!((3000..3700).contains(&counts[i]), "member {i}: {counts:?}");
    }
}

#[test]
fn failover_takes_priority_then_name_and_skips_unhealthy_and_tried() {
    let (rt, _dir) = runtime();
    let c =
        group(&[("zeta", true, 0, 0, 1), ("alpha", true, 0, 1, 1), ("beta", true, 0, 0, 1), ("aaa", false, 0, 0, 1)]);
    let p = c.strategy(&rt, "failover");
    assert_eq!(picks(&p, &c, 3), [2, 2, 2], "priority 0 first, beta before zeta; aaa is unhealthy");
    assert_eq!(p.try_pick(&c.request(0, 0, vec![2])).unwrap(), Some(0));
    assert_eq!(p.try_pick(&c.request(0, 0, vec![2, 0])).unwrap(), Some(1));
    assert_eq!(p.try_pick(&c.request(0, 0, vec![2, 0, 1])).unwrap(), None);
}

#[test]
fn weighted_round_robin_follows_weights() {
    let (rt, _dir) = runtime();
    let c = group(&[("a", true, 0, 0, 5), ("b", true, 0, 0, 1), ("c", true, 0, 0, 1)]);
    let p = c.strategy(&rt, "weighted-round-robin");
    assert_eq!(picks(&p, &c, 7), [0, 0, 1, 0, 2, 0, 0], "smooth WRR spreads the heavy member");
}

fn policy_config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn call(tool: &str) -> Call {
    Call { server: "github-tools".into(), tool: tool.into(), caller: Caller::unverified(""), argument_bytes: 2 }
}

#[test]
fn default_policy_allows_denies_globs_and_names_buckets() {
    let (rt, _dir) = runtime();
    let config = policy_config(&[
        ("server", "github-tools"),
        ("allow", "create_issue"),
        ("allow", "list_*"),
        ("deny", "list_secrets"),
        ("requests-per-minute", "30"),
        ("burst", "5"),
    ]);
    let p = PolicyPlugin::new(&rt, "policy", config, None, false).unwrap();
    let bucket = RateLimit { key: "github-tools".into(), requests_per_minute: 30, burst: 5 };
    assert_eq!(p.check(&call("create_issue")), (Decision::Allow(vec![bucket.clone()]), None));
    assert_eq!(p.check(&call("list_issues")), (Decision::Allow(vec![bucket]), None));
    let (Decision::Deny(why), None) = p.check(&call("delete_repo")) else { panic!("denied") };
    assert!(why.contains("not in spec.tools.allowList"), "{why}");
    assert!(matches!(p.check(&call("list_secrets")).0, Decision::Deny(_)));
    let tools = ["create_issue", "delete_repo", "list_issues", "list_secrets"].map(String::from).to_vec();
    assert_eq!(p.filter_tools(tools, &Caller::default()).0, ["create_issue", "list_issues"]);
}

#[test]
fn default_policy_applies_the_rules_of_the_caller_it_is_given() {
    let (rt, _dir) = runtime();
    let rules = r#"[{"groups": ["ops"]}, {"allowList": ["get_*"], "rateLimit": {"requestsPerMinute": 5}}]"#;
    let config = policy_config(&[("server", "s"), ("callers", rules)]);
    let p = PolicyPlugin::new(&rt, "policy", config, None, false).unwrap();
    let ops = Caller { verified: true, subject: "ann".into(), groups: vec!["ops".into()], ..Caller::default() };
    // The same groups claimed without a token count for nothing: the catch-all rule applies.
    let claimed = Caller { verified: false, ..ops.clone() };
    let tools = ["get_x", "set_x"].map(String::from).to_vec();
    assert_eq!(p.filter_tools(tools.clone(), &ops).0, ["get_x", "set_x"]);
    assert_eq!(p.filter_tools(tools, &claimed).0, ["get_x"]);
    let as_caller = |caller: &Caller, tool: &str| p.check(&Call { caller: caller.clone(), ..call(tool) }).0;
    assert_eq!(as_caller(&ops, "set_x"), Decision::Allow(vec![]));
    assert!(matches!(as_caller(&claimed, "set_x"), Decision::Deny(w) if w.contains("callers[1].allowList")));
    let bucket = RateLimit { key: "s/callers[1]/name:ann".into(), requests_per_minute: 5, burst: 5 };
    assert_eq!(as_caller(&claimed, "get_x"), Decision::Allow(vec![bucket]));
}

#[test]
fn a_policy_configuration_error_is_refused_with_the_key() {
    let (rt, _dir) = runtime();
    let err = PolicyPlugin::new(&rt, "policy", policy_config(&[("requests-per-minute", "0")]), None, false)
        .err()
        .expect("refused");
    assert_eq!(err.fault(), Some(Fault::Config));
    assert!(err.to_string().contains("requests-per-minute"), "{err}");
}

#[test]
fn configmap_parser_reads_providers() {
    let (rt, _dir) = runtime();
    let p = DiscoveryPlugin::new(&rt, "configmap", None).unwrap();
    let doc = Document {
        origin: "configmap/mcp-config/defs".into(),
        namespace: "mcp-config".into(),
        name: "defs".into(),
        key: "providers.yaml".into(),
        content: "math:\n  mode: remote\n  endpoint: http://math/mcp\n".into(),
    };
    let found = p.parse(SourceKind::ConfigMap, std::slice::from_ref(&doc)).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name, "math");
    let spec: serde_json::Value = serde_json::from_str(&found[0].spec_json).unwrap();
    assert_eq!(spec, serde_json::json!({"mode": "remote", "endpoint": "http://math/mcp"}));
    let bad = Document { content: "math: [".into(), ..doc };
    let err = p.parse(SourceKind::ConfigMap, &[bad]).unwrap_err();
    assert!(err.to_string().starts_with("configmap/mcp-config/defs: invalid YAML"), "{err}");
}

#[test]
fn a_restart_loads_compiled_artifacts_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let first = runtime_in(dir.path());
    assert_eq!(
        first.metrics().compilations.get(),
        hangar_builtin_plugins::BUILTINS.len() as u64,
        "a cold cache compiles every built-in once"
    );
    let second = runtime_in(dir.path());
    assert_eq!(second.metrics().compilations.get(), 0, "a restart must not recompile");
    let c = group(&[("a", true, 0, 0, 1), ("b", true, 0, 0, 1)]);
    assert_eq!(c.strategy(&second, "round-robin").try_pick(&c.request(1, 0, vec![])).unwrap(), Some(1));
}

#[test]
fn wrong_world_unknown_name_and_pins_are_refused_clearly() {
    let (rt, _dir) = runtime();
    let err = StrategyPlugin::new(&rt, "configmap", vec![], vec![], None).err().unwrap();
    assert_eq!(err.to_string(), "plugin \"configmap\" is a discovery plugin, but a strategy plugin is needed here");
    let err = StrategyPlugin::new(&rt, "fastest", vec![], vec![], None).err().unwrap();
    assert!(err.to_string().starts_with("no plugin named \"fastest\"; loaded: configmap, failover"), "{err}");
    let digest = rt.current("round-robin").unwrap().digest.clone();
    assert!(StrategyPlugin::new(&rt, "round-robin", vec![], vec![], Some(&digest)).is_ok());
    let err = StrategyPlugin::new(&rt, "round-robin", vec![], vec![], Some(&"0".repeat(64))).err().unwrap();
    assert!(matches!(err, PluginError::DigestMismatch { .. }), "{err}");
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let (rt, _dir) = runtime();
    let err = rt.compile("junk", b"not wasm at all", Origin::Builtin).err().unwrap();
    assert!(err.to_string().contains("not a valid WebAssembly component"), "{err}");
}

#[test]
fn the_fallback_is_round_robin_over_healthy_members() {
    let c = group(&[("a", true, 0, 0, 1), ("b", false, 0, 0, 1), ("c", true, 0, 0, 1)]);
    let got: Vec<_> = (0..4).map(|s| round_robin_fallback(&c.members, &c.request(s, 0, vec![]))).collect();
    assert_eq!(got, [Some(0), Some(2), Some(0), Some(2)]);
    let _ = Pick { index: None, fault: None };
}

#[test]
fn a_live_handle_follows_a_new_version_and_drops_its_pooled_instances() {
    let (rt, _dir) = runtime();
    let bytes = |name: &str| hangar_builtin_plugins::BUILTINS.iter().find(|b| b.name == name).unwrap().bytes;
    rt.install(rt.compile("live", bytes("round-robin"), Origin::Builtin).unwrap());
    let c = group(&[("b", true, 0, 0, 1), ("a", true, 0, 1, 1), ("c", true, 0, 0, 1)]);
    let live = c.strategy(&rt, "live");
    let pinned_digest = rt.current("live").unwrap().digest.clone();
    let pinned = StrategyPlugin::new(&rt, "live", c.members.clone(), vec![], Some(&pinned_digest)).unwrap();
    assert_eq!(picks(&live, &c, 3), [0, 1, 2], "round robin, from the pool's hot instance");
    rt.install(rt.compile("live", bytes("failover"), Origin::Builtin).unwrap());
    assert_eq!(picks(&live, &c, 3), [0, 0, 0], "the next call runs the new version (failover: b, priority 0)");
    assert_eq!(picks(&pinned, &c, 3), [0, 1, 2], "a pinned handle keeps its version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbound_strategy_serves_by_the_fallback_until_a_version_can_be_bound() {
    let (rt, _dir) = runtime();
    let c = group(&[("a", true, 0, 1, 1), ("b", true, 0, 0, 1)]);
    let strategy = StrategyPlugin::resilient(&rt, "team", c.members.clone(), vec![], None);
    let why = strategy.health().await.expect_err("not loaded");
    assert_eq!(why.reason(), "PluginNotFound");
    assert_eq!(rt.metrics().faults.with_label_values(&["team", "strategy", "load"]).get(), 1, "counted once");
    for s in 0..3 {
        let pick = strategy.pick_off_worker(c.request(s, 0, vec![])).await;
        assert_eq!(pick.index, Some(s as u32 % 2), "round robin picks");
        assert!(pick.fault.is_some());
    }
    assert_eq!(rt.metrics().faults.with_label_values(&["team", "strategy", "load"]).get(), 1, "not once per pick");
    // The plugin arrives (failover: the member of priority 0, b): the group takes it up.
    let bytes = hangar_builtin_plugins::BUILTINS.iter().find(|b| b.name == "failover").unwrap().bytes;
    rt.install(rt.compile("team", bytes, Origin::Builtin).unwrap());
    let pick = strategy.pick_off_worker(c.request(0, 0, vec![])).await;
    assert_eq!((pick.index, pick.fault), (Some(1), None));
    assert!(strategy.health().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_faulting_is_benched_and_a_new_version_unbenches_it() {
    let (rt, _dir) = runtime();
    let bytes = |name: &str| hangar_builtin_plugins::BUILTINS.iter().find(|b| b.name == name).unwrap().bytes;
    rt.install(rt.compile("flaky", bytes("round-robin"), Origin::Builtin).unwrap());
    let c = group(&[("a", true, 0, 0, 1), ("b", true, 0, 0, 1)]);
    let strategy = StrategyPlugin::resilient(&rt, "flaky", c.members.clone(), vec![], None);
    assert!(strategy.health().await.is_ok());
    // A broken version (it cannot even be instantiated as a strategy): every pick faults.
    rt.install(rt.compile("flaky", bytes("configmap"), Origin::Builtin).unwrap());
    let counted = |fault: &str| rt.metrics().faults.with_label_values(&["flaky", "strategy", fault]).get();
    for s in 0..20 {
        let pick = strategy.pick_off_worker(c.request(s, 0, vec![])).await;
        assert!(pick.fault.is_some() && pick.index == Some(s as u32 % 2), "round robin picks instead");
    }
    assert_eq!(counted("trap"), u64::from(BENCH_AFTER), "the plugin was asked until benched");
    assert_eq!(counted("benched"), 20 - u64::from(BENCH_AFTER), "then its callers got the fallback at once");
    assert_eq!(rt.metrics().breaker.with_label_values(&["flaky"]).get(), 1);
    assert!(matches!(strategy.health().await, Err(PluginError::Faulted { fault: Fault::Benched, .. })));
    rt.install(rt.compile("flaky", bytes("failover"), Origin::Builtin).unwrap());
    assert_eq!(rt.metrics().breaker.with_label_values(&["flaky"]).get(), 0, "a new version starts clean");
    let pick = strategy.pick_off_worker(c.request(1, 0, vec![])).await;
    assert_eq!((pick.index, pick.fault), (Some(0), None), "failover: the member of priority 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_ranker_is_a_0_3_0_component_and_a_missing_one_falls_back() {
    use hangar_plugin_algorithms::search::{Candidate, field, tokenize};
    let (rt, _dir) = runtime();
    let version = rt.current("ranker").expect("the built-in ranker is installed");
    assert_eq!((version.world, version.abi.version()), (WorldKind::Ranker, RANKER_WIT_VERSION));
    let ranker = RankerPlugin::resilient(&rt, "ranker", vec![("synonyms".into(), "invoice=bill".into())]);
    let words = tokenize("pay a bill");
    let (terms, fault) = ranker.expand(words.clone()).await;
    assert!(fault.is_none(), "{fault:?}");
    assert!(terms.iter().any(|t| t.word == "invoic" && t.stands_for == 1), "the configured synonym: {terms:?}");
    let candidates = vec![
        Candidate { name: "a__pay_invoice".into(), lexical_score: 2.0, matched: vec![field::NAME, field::NAME] },
        Candidate { name: "b__refund".into(), lexical_score: 1.0, matched: vec![field::DESCRIPTION, 0] },
    ];
    let query = RankQuery { text: "pay a bill".into(), words: words.clone(), idf: vec![1.0, 2.0] };
    let (ranked, fault) = ranker.rank(query.clone(), candidates.clone()).await;
    assert!(fault.is_none());
    assert_eq!(ranked.iter().map(|r| r.0).collect::<Vec<_>>(), [0], "the refund covers too little of the query");
    // A ranker the runtime does not have: the built-in ranking answers, and says why.
    let missing = RankerPlugin::resilient(&rt, "no-such-ranker", vec![]);
    let (fallback, fault) = missing.rank(query, candidates).await;
    assert_eq!(fallback.iter().map(|r| r.0).collect::<Vec<_>>(), [0]);
    assert_eq!(fault.expect("not loaded").reason(), "PluginNotFound");
    // A strategy is no ranker.
    let strategy = hangar_builtin_plugins::BUILTINS.iter().find(|b| b.name == "round-robin").unwrap().bytes;
    rt.install(rt.compile("not-a-ranker", strategy, Origin::Builtin).unwrap());
    assert!(RankerPlugin::new(&rt, "not-a-ranker", vec![]).is_err());
}
