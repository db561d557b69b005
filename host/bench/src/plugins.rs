//! Plugin calls (the built-in strategies and policy as wasm components) against the same
//! algorithms compiled natively, call by call.

use std::time::{Duration, Instant};

use hangar_plugin_algorithms::{policy::ToolPolicy, strategy};
use hangar_plugin_runtime::{
    Call, Caller, MemberInfo, MemberState, Origin, PickRequest, PluginRuntime, PolicyPlugin, RuntimeConfig,
    StrategyPlugin,
};

use crate::{Figure, Scale, format_duration, percentiles};

const MEMBERS: u32 = 8;

/// A group of eight: fixed facts given once, state per call (some unhealthy, some busy).
fn members(n: u32) -> Vec<MemberInfo> {
    (0..n).map(|i| MemberInfo { name: format!("member-{i}"), priority: (i % 3) as i32, weight: 1 + i % 3 }).collect()
}

fn request(n: u32, sequence: u64) -> PickRequest {
    PickRequest {
        tool: "search".into(),
        sequence,
        random: sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        attempt: 0,
        members: (0..n)
            .map(|i| MemberState {
                healthy: i % 5 != 4,
                tried: false,
                in_flight: (i * 7) % 5,
                latency_avg_us: 300 + 10 * i as u64,
                consecutive_failures: 0,
            })
            .collect(),
    }
}

/// The native baseline decides from the same request as the plugin: the eligible set made from
/// the states, then the algorithm (in-flight counts read in place, where the plugin gets a copy).
fn native_pick<R>(
    members: &[MemberInfo],
    r: &PickRequest,
    in_flight: &[u32],
    algorithm: impl FnOnce(&strategy::View) -> R,
) -> R {
    let eligible = strategy::eligible(r.members.len(), |i| r.members[i].healthy, |i| r.members[i].tried);
    algorithm(&strategy::View { members, eligible: eligible.words(), in_flight })
}

/// Calls timed one at a time (the clock's ~30 ns is in both columns), after a warm-up.
const BLOCK: u64 = 200;

/// Times `calls` calls of the plugin and of its native baseline, in alternating blocks, so that
/// both see the same machine (a shared 2-core machine slows down and speeds up by 2x within
/// seconds; measured one after the other, the two columns could see different machines).
fn compare(
    calls: usize,
    mut plugin: impl FnMut(u64),
    mut native: impl FnMut(u64),
) -> ((Duration, Duration), (Duration, Duration)) {
    for s in 0..(calls / 20) as u64 {
        plugin(s);
        native(s);
    }
    let (mut plugin_times, mut native_times) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    let timed = |f: &mut dyn FnMut(u64), times: &mut Vec<Duration>, from: u64| {
        for s in from..from + BLOCK {
            let t = Instant::now();
            f(s);
            times.push(t.elapsed());
        }
    };
    for block in 0..(calls as u64).div_ceil(BLOCK) {
        timed(&mut plugin, &mut plugin_times, block * BLOCK);
        timed(&mut native, &mut native_times, block * BLOCK);
    }
    (percentiles(plugin_times), percentiles(native_times))
}

/// The plugin's p50 and p99 beside native, with the difference at p50 (the plugin's own cost).
fn figure(what: String, (wasm, native): ((Duration, Duration), (Duration, Duration))) -> Figure {
    let over = wasm.0.saturating_sub(native.0);
    Figure {
        what,
        measured: format!(
            "p50 {} / p99 {} (+{} over native)",
            format_duration(wasm.0),
            format_duration(wasm.1),
            format_duration(over)
        ),
        baseline_name: "native".into(),
        baseline: format!("p50 {} / p99 {}", format_duration(native.0), format_duration(native.1)),
        ratio: wasm.0.as_nanos() as f64 / (native.0.as_nanos() as f64).max(1.0),
    }
}

pub fn run(scale: &Scale) -> anyhow::Result<Vec<Figure>> {
    let cache = std::env::temp_dir().join("hangar-bench-cache");
    let runtime = PluginRuntime::new(
        RuntimeConfig { cache_dir: Some(cache), ..Default::default() },
        &prometheus::Registry::new(),
    )?;
    let m = members(MEMBERS);
    type Native = fn(&strategy::View, &PickRequest) -> Option<u32>;
    let natives: [(&str, Native); 4] = [
        ("round-robin", |g, r| strategy::round_robin(g, r.sequence)),
        ("least-connections", |g, r| strategy::least_connections(g, r.sequence)),
        ("random", |g, r| strategy::random(g, r.random)),
        ("failover", |g, _| strategy::failover(g)),
    ];
    let mut figures = Vec::new();
    // The plugin against the native algorithm, each from its own copy of the same request.
    let versus = |plugin: &StrategyPlugin,
                  members: &[MemberInfo],
                  native: &mut dyn FnMut(&strategy::View, &PickRequest) -> Option<u32>| {
        let n = members.len() as u32;
        let (mut plugin_request, mut native_request) = (request(n, 0), request(n, 0));
        let in_flight: Vec<u32> = native_request.members.iter().map(|s| s.in_flight).collect();
        compare(
            scale.plugin_calls,
            |s| {
                plugin_request.sequence = s;
                std::hint::black_box(plugin.try_pick(&plugin_request).unwrap());
            },
            |s| {
                native_request.sequence = s;
                let r = std::hint::black_box(&native_request);
                std::hint::black_box(native_pick(members, r, &in_flight, |g| native(g, r)));
            },
        )
    };
    for (name, mut native) in natives {
        let plugin = StrategyPlugin::new(&runtime, name, m.clone(), vec![], None)?;
        figures.push(figure(format!("pick, {name}, {MEMBERS} members (WIT 0.2.0)"), versus(&plugin, &m, &mut native)));
        if name == "round-robin" {
            // The same algorithm built against WIT 0.1.0: candidates as records on every pick,
            // through the host's adapter.
            let wasm = std::fs::read(hangar_tests::build_plugin("tests/plugins/strategy-0-1-0"))?;
            runtime.install(runtime.compile("round-robin-0-1-0", &wasm, Origin::Builtin)?);
            let old = StrategyPlugin::new(&runtime, "round-robin-0-1-0", m.clone(), vec![], None)?;
            let label = format!("pick, round-robin, {MEMBERS} members (WIT 0.1.0, adapted)");
            figures.push(figure(label, versus(&old, &m, &mut native)));
        }
    }
    // The fixed cost of entering a plugin at all: round robin over an empty group.
    let empty = StrategyPlugin::new(&runtime, "round-robin", vec![], vec![], None)?;
    let fixed = versus(&empty, &[], &mut |g, r| strategy::round_robin(g, r.sequence));
    figures.push(figure("pick, round-robin, empty group: the fixed cost of a plugin call".into(), fixed));
    let weighted = StrategyPlugin::new(&runtime, "weighted-round-robin", m.clone(), vec![], None)?;
    let mut schedule = strategy::WeightedSchedule::default();
    let times = versus(&weighted, &m, &mut |g, r| schedule.pick(g, r.sequence));
    figures.push(figure(format!("pick, weighted-round-robin, {MEMBERS} members (WIT 0.2.0)"), times));

    let config: Vec<(String, String)> = [
        ("server", "github-tools"),
        ("allow", "create_issue"),
        ("allow", "list_*"),
        ("deny", "list_secrets"),
        ("requests-per-minute", "30"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let plugin = PolicyPlugin::new(&runtime, "policy", config.clone(), None, false)?;
    let native = ToolPolicy::from_config(&config).map_err(anyhow::Error::msg)?;
    let call = Call {
        server: "github-tools".into(),
        tool: "list_issues".into(),
        caller: Caller::unverified("agent"),
        argument_bytes: 120,
    };
    let anyone = hangar_plugin_algorithms::policy::Caller { subject: "agent", ..Default::default() };
    let times = compare(
        scale.plugin_calls,
        |_| {
            std::hint::black_box(plugin.try_check(&call).unwrap());
        },
        |_| {
            std::hint::black_box(native.check(std::hint::black_box(&call.tool), &anyone));
        },
    );
    figures.push(figure("check, default policy (allowed, one bucket)".into(), times));
    Ok(figures)
}
