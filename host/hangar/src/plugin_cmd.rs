//! `hangar plugin test FILE.wasm` and `hangar plugin list`: what a plugin author and an operator
//! ask of a plugin before trusting it.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context;
use clap::Subcommand;
use hangar_plugin_runtime::{
    Call, Caller, Decision, DiscoveryPlugin, Document, MemberInfo, MemberState, Origin, PickRequest, PluginRuntime,
    PluginVersion, PolicyPlugin, RankQuery, RankerPlugin, RuntimeConfig, SourceKind, StrategyPlugin, WIT_VERSION,
    WorldKind,
};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Check a component against the WIT and run it on built-in scenarios.
    Test {
        file: PathBuf,
        /// Configuration passed to `configure`, as KEY=VALUE (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Calls per scenario for the timing.
        #[arg(long, default_value_t = 2000)]
        calls: u32,
        /// Tool names the calls use (repeatable): strategies see them in turn, policies are
        /// asked about each.
        #[arg(long = "tool", value_name = "NAME", default_values_t = ["create_issue".to_string(), "list_issues".to_string(), "delete_repo".to_string()])]
        tools: Vec<String>,
        /// Members of the group a strategy chooses from (named m0, m1, ...).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
        members: u32,
    },
    /// List the built-in plugins and those in a plugin directory; given a `hangar run` folder,
    /// also whether each group's strategy plugin serves (or round robin picks instead).
    List {
        /// A plugin directory (as mounted from the plugins ConfigMap), or a `hangar run` folder
        /// (its `plugins/` folder is read, and its groups are checked).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    let runtime = PluginRuntime::new(RuntimeConfig::default(), &prometheus::Registry::new())
        .context("starting the plugin runtime")?;
    match command {
        PluginCommand::Test { file, config, calls, tools, members } => {
            test(&runtime, &file, &config, Scenario { calls, tools, members })
        }
        PluginCommand::List { dir } => Ok(list(&runtime, dir.as_deref())),
    }
}

fn list(runtime: &PluginRuntime, dir: Option<&Path>) -> ExitCode {
    // A `hangar run` folder holds its plugins in `plugins/` beside the manifests.
    let run_folder = dir.filter(|d| d.join("plugins").is_dir());
    match (dir, run_folder) {
        (_, Some(folder)) => drop(runtime.load_dir(&folder.join("plugins"))),
        (Some(dir), None) => drop(runtime.load_dir(dir)),
        (None, None) => {}
    }
    println!("{:<24} {:<10} {:<14} ORIGIN", "NAME", "WORLD", "DIGEST");
    for p in runtime.list() {
        let origin = match &p.origin {
            Origin::Builtin => "built-in".to_string(),
            Origin::File(f) => f.display().to_string(),
        };
        println!("{:<24} {:<10} {:<14} {origin}", p.name, p.world.as_str(), &p.digest[..12]);
    }
    let unserved = run_folder.map_or(0, |folder| list_groups(runtime, folder));
    let reports = runtime.reports();
    for r in &reports {
        println!("error: {}: {}", r.plugin, r.message);
    }
    if reports.is_empty() && unserved == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Binds each group's strategy in `folder`'s manifests as `hangar run` does and says whether it
/// serves; returns how many do not (their groups are served by round robin).
fn list_groups(runtime: &PluginRuntime, folder: &Path) -> usize {
    let report = hangar_manifests::check_paths(&crate::run_cmd::manifest_files(folder));
    let mut servers = Vec::new();
    let mut groups = Vec::new();
    for (_, resource) in report.resources {
        match resource {
            hangar_manifests::Resource::Server(s) => servers.push(s),
            hangar_manifests::Resource::Group(g) => groups.push(g),
            hangar_manifests::Resource::Source(_) => {}
        }
    }
    if groups.is_empty() {
        return 0;
    }
    println!();
    println!("{:<24} {:<24} STRATEGY PLUGIN", "GROUP", "STRATEGY");
    let mut unserved = 0;
    for group in groups {
        let name = group.metadata.name.clone().unwrap_or_default();
        let members: Vec<MemberInfo> = servers
            .iter()
            .filter(|s| {
                let labels = s.metadata.labels.clone().unwrap_or_default();
                hangar_api::labels::selector_matches(&group.spec.selector, &labels)
            })
            .map(|s| {
                let labels = s.metadata.labels.clone().unwrap_or_default();
                let member = hangar_gateway::gateway::GroupMember::from_labels(
                    &s.metadata.name.clone().unwrap_or_default(),
                    &labels,
                );
                MemberInfo { name: member.name, priority: member.priority, weight: member.weight }
            })
            .collect();
        let plugin = hangar_builtin_plugins::strategy_plugin_name(&group.spec.strategy);
        let config = group.spec.strategy_config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let bound = StrategyPlugin::new(runtime, plugin, members, config, group.spec.strategy_sha256.as_deref());
        let state = match bound {
            Ok(_) => format!("{plugin}: serves"),
            Err(e) => {
                unserved += 1;
                format!("{plugin}: does not serve ({}): {e}; round robin picks instead", e.reason())
            }
        };
        println!("{name:<24} {:<24} {state}", group.spec.strategy);
    }
    unserved
}

/// What `plugin test` runs a plugin on.
struct Scenario {
    calls: u32,
    tools: Vec<String>,
    members: u32,
}

fn test(runtime: &PluginRuntime, file: &Path, config: &[String], scenario: Scenario) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin").to_string();
    let config: Vec<(String, String)> = config
        .iter()
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect::<Option<_>>()
        .context("--config takes KEY=VALUE")?;
    println!("plugin  {name} ({}, {} bytes)", file.display(), bytes.len());
    let version = match runtime.compile(&name, &bytes, Origin::File(file.to_path_buf())) {
        Ok(v) => v,
        Err(e) => {
            println!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("digest  sha256:{}", version.digest);
    println!("world   {} ({}@{})", version.world.as_str(), version.world.export_interface(), version.abi.version());
    if version.abi.version() != version.world.wit_version() {
        println!(
            "note    built against an older WIT; this Hangar adapts it (rebuild against hangar:plugins@{WIT_VERSION})"
        );
    }
    runtime.install(version.clone());
    let ok = match version.world {
        WorldKind::Strategy => test_strategy(runtime, &version, config, &scenario),
        WorldKind::Policy => test_policy(runtime, &version, config, &scenario.tools),
        WorldKind::Discovery => test_discovery(runtime, &version),
        WorldKind::Ranker => test_ranker(runtime, &version, config, scenario.calls),
    };
    println!("result: {}", if ok { "ok" } else { "FAILED" });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Member `i` of the test group: its fixed facts, given in `configure`.
fn member(i: u32) -> MemberInfo {
    MemberInfo { name: format!("m{i}"), priority: i as i32, weight: 1 + i % 2 }
}

fn test_strategy(
    runtime: &PluginRuntime,
    version: &PluginVersion,
    config: Vec<(String, String)>,
    setup: &Scenario,
) -> bool {
    let (calls, n) = (setup.calls, setup.members);
    let plugin = match StrategyPlugin::new(runtime, &version.name, (0..n).map(member).collect(), config, None) {
        Ok(p) => p,
        Err(e) => {
            println!("error: {e}");
            return false;
        }
    };
    // Each scenario: which members are healthy, and which were tried already.
    let scenarios: [(&str, Vec<bool>, Vec<u32>); 4] = [
        ("all healthy", vec![true; n as usize], vec![]),
        ("some unhealthy", (0..n).map(|i| i % 2 == 0).collect(), vec![]),
        ("none healthy", vec![false; n as usize], vec![]),
        ("retry after m0 failed", vec![true; n as usize], vec![0]),
    ];
    match plugin.asks_for() {
        Ok(asked) if asked.is_empty() => println!("asks for nothing but the eligible members"),
        Ok(asked) => println!("asks for {} in every pick", asked.join(", ")),
        Err(e) => {
            println!("error: {e}");
            return false;
        }
    }
    println!("members {n}; tools in turn: {}", setup.tools.join(", "));
    println!("{:<24} {:<34} {:>10} {:>10}", "SCENARIO", "PICKS (sequence 0..8)", "p50", "p99");
    let mut ok = true;
    for (scenario, healthy, tried) in scenarios {
        let request = |sequence: u64| PickRequest {
            tool: setup.tools[sequence as usize % setup.tools.len()].clone(),
            sequence,
            random: sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            attempt: tried.len() as u32,
            members: (0..n)
                .map(|i| MemberState {
                    healthy: healthy[i as usize],
                    tried: tried.contains(&i),
                    in_flight: i % 3,
                    latency_avg_us: 500 + 100 * i as u64,
                    consecutive_failures: if healthy[i as usize] { 0 } else { 3 },
                })
                .collect(),
        };
        let mut picks = Vec::new();
        for s in 0..8 {
            match plugin.try_pick(&request(s)) {
                Ok(Some(i)) => picks.push(format!("m{i}")),
                Ok(None) => picks.push("-".into()),
                Err(e) => {
                    println!("{scenario:<24} error: {e}");
                    ok = false;
                    break;
                }
            }
        }
        if picks.len() < 8 {
            continue;
        }
        let mut times = Vec::with_capacity(calls as usize);
        for s in 0..calls as u64 {
            let req = request(s);
            let started = Instant::now();
            let answer = plugin.try_pick(&req);
            times.push(started.elapsed());
            if let Err(e) = answer {
                println!("{scenario:<24} error during timing: {e}");
                ok = false;
                break;
            }
        }
        let (p50, p99) = percentiles(&mut times);
        println!("{scenario:<24} {:<34} {:>10} {:>10}", picks.join(" "), fmt(p50), fmt(p99));
    }
    ok
}

/// A few tools of real servers and queries in other words than theirs; each query's ranking is
/// printed with the time an expand and a rank took together.
fn test_ranker(runtime: &PluginRuntime, version: &PluginVersion, config: Vec<(String, String)>, calls: u32) -> bool {
    let plugin = match RankerPlugin::new(runtime, &version.name, config) {
        Ok(p) => p,
        Err(e) => {
            println!("error: {e}");
            return false;
        }
    };
    let tools = [
        ("filesystem", "read_text_file", "Read the complete contents of a file from the file system as text."),
        ("filesystem", "list_directory", "Get a detailed listing of all files and directories in a specified path."),
        ("github", "create_issue", "Create a new issue in a GitHub repository"),
        ("time", "get_current_time", "Get current time in a specific timezones"),
    ];
    let index = hangar_tool_search::Index::build(
        tools.iter().map(|(s, n, d)| (s.to_string(), serde_json::json!({"name": n, "description": d}))),
    );
    let visible = vec![true; index.len()];
    println!("{:<34} {:<44} {:>10} {:>10}", "QUERY", "RANKED", "p50", "p99");
    let mut ok = true;
    for text in ["show what is in a folder", "open a ticket for a bug", "what hour is it in Tokyo", "book a flight"] {
        let run = || {
            let rank = |words, idf, candidates: &[_]| {
                plugin.try_rank(&RankQuery { text: text.to_string(), words, idf }, candidates)
            };
            index.search(text, &visible, |words| plugin.try_expand(words), rank)
        };
        let ranked = match run() {
            Ok(r) => r,
            Err(e) => {
                println!("{text:<34} error: {e}");
                ok = false;
                continue;
            }
        };
        let mut times = Vec::with_capacity(calls as usize);
        for _ in 0..calls {
            let started = Instant::now();
            let _ = run();
            times.push(started.elapsed());
        }
        let (p50, p99) = percentiles(&mut times);
        let shown = if ranked.is_empty() { "(none fits)".to_string() } else { ranked.join(" ") };
        println!("{text:<34} {shown:<44} {:>10} {:>10}", fmt(p50), fmt(p99));
    }
    ok
}

fn test_policy(
    runtime: &PluginRuntime,
    version: &PluginVersion,
    config: Vec<(String, String)>,
    tools: &[String],
) -> bool {
    let plugin = match PolicyPlugin::new(runtime, &version.name, config, None, false) {
        Ok(p) => p,
        Err(e) => {
            println!("error: {e}");
            return false;
        }
    };
    let mut ok = true;
    for tool in tools {
        let call = Call {
            server: "example".into(),
            tool: tool.clone(),
            caller: Caller::unverified("tester"),
            argument_bytes: 64,
        };
        match plugin.try_check(&call) {
            Ok(Decision::Allow(buckets)) => println!("check {tool:<14} allow, buckets: {buckets:?}"),
            Ok(Decision::Deny(why)) => println!("check {tool:<14} deny: {why}"),
            Err(e) => {
                println!("check {tool:<14} error: {e}");
                ok = false;
            }
        }
    }
    let (visible, fault) = plugin.filter_tools(tools.to_vec(), &Caller::unverified("tester"));
    println!("filter-tools -> {visible:?}");
    ok && fault.is_none()
}

fn test_discovery(runtime: &PluginRuntime, version: &PluginVersion) -> bool {
    let plugin = match DiscoveryPlugin::new(runtime, &version.name, None) {
        Ok(p) => p,
        Err(e) => {
            println!("error: {e}");
            return false;
        }
    };
    let doc = Document {
        origin: "configmap/example/mcp-servers".into(),
        namespace: "example".into(),
        name: "mcp-servers".into(),
        key: "providers.yaml".into(),
        content: "math:\n  mode: remote\n  endpoint: http://math.example:8080/mcp\n".into(),
    };
    match plugin.parse(SourceKind::ConfigMap, &[doc]) {
        Ok(found) => {
            for d in found {
                println!("found {} {}", d.name, d.spec_json);
            }
            true
        }
        Err(e) => {
            println!("error: {e}");
            false
        }
    }
}

fn percentiles(times: &mut [Duration]) -> (Duration, Duration) {
    if times.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    times.sort();
    (times[times.len() / 2], times[(times.len() * 99 / 100).min(times.len() - 1)])
}

fn fmt(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}
