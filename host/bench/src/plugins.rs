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

fn view<'a>(members: &'a [MemberInfo], r: &'a PickRequest) -> strategy::View<'a, MemberState> {
    strategy::View { members, states: &r.members }
}

/// Each call timed alone, after a warm-up (the ~20 ns of the clock is in both columns).
fn sample(calls: usize, mut f: impl FnMut(u64)) -> (Duration, Duration) {
    for s in 0..(calls / 20) as u64 {
        f(s);
    }
    let mut times = Vec::with_capacity(calls);
    for s in 0..calls as u64 {
        let t = Instant::now();
        f(s);
        times.push(t.elapsed());
    }
    percentiles(times)
}

fn figure(what: String, wasm: (Duration, Duration), native: (Duration, Duration)) -> Figure {
    Figure {
        what,
        measured: format!("p50 {} / p99 {}", format_duration(wasm.0), format_duration(wasm.1)),
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
    type Native = fn(&strategy::View<MemberState>, &PickRequest) -> Option<u32>;
    let natives: [(&str, Native); 4] = [
        ("round-robin", |g, r| strategy::round_robin(g, r.sequence)),
        ("least-connections", |g, r| strategy::least_connections(g, r.sequence)),
        ("random", |g, r| strategy::random(g, r.random)),
        ("failover", |g, _| strategy::failover(g)),
    ];
    let mut figures = Vec::new();
    let time_plugin = |plugin: &StrategyPlugin| {
        let mut req = request(MEMBERS, 0);
        sample(scale.plugin_calls, |s| {
            req.sequence = s;
            std::hint::black_box(plugin.try_pick(&req).unwrap());
        })
    };
    for (name, native) in natives {
        let wasm = time_plugin(&StrategyPlugin::new(&runtime, name, m.clone(), vec![], None)?);
        let mut req = request(MEMBERS, 0);
        let nat = sample(scale.plugin_calls, |s| {
            req.sequence = s;
            std::hint::black_box(native(&view(&m, std::hint::black_box(&req)), &req));
        });
        figures.push(figure(format!("pick, {name}, {MEMBERS} members (WIT 0.2.0)"), wasm, nat));
        if name == "round-robin" {
            // The same algorithm built against WIT 0.1.0: candidates as records on every pick,
            // through the host's adapter.
            let wasm = std::fs::read(hangar_tests::build_plugin("tests/plugins/strategy-0-1-0"))?;
            runtime.install(runtime.compile("round-robin-0-1-0", &wasm, Origin::Builtin)?);
            let old = time_plugin(&StrategyPlugin::new(&runtime, "round-robin-0-1-0", m.clone(), vec![], None)?);
            figures.push(figure(format!("pick, round-robin, {MEMBERS} members (WIT 0.1.0, adapted)"), old, nat));
        }
    }
    // The fixed cost of entering a plugin at all: round robin over an empty group (the request
    // still carries the tool name and an empty list, each an allocation call into the plugin).
    let empty = StrategyPlugin::new(&runtime, "round-robin", vec![], vec![], None)?;
    let mut req = request(0, 0);
    let fixed = sample(scale.plugin_calls, |s| {
        req.sequence = s;
        std::hint::black_box(empty.try_pick(&req).unwrap());
    });
    let mut req = request(0, 0);
    let nat = sample(scale.plugin_calls, |s| {
        req.sequence = s;
        std::hint::black_box(strategy::round_robin(&view(&[], std::hint::black_box(&req)), req.sequence));
    });
    figures.push(figure("pick, round-robin, empty group: the fixed cost of a plugin call".into(), fixed, nat));
    let wasm = time_plugin(&StrategyPlugin::new(&runtime, "weighted-round-robin", m.clone(), vec![], None)?);
    let mut schedule = strategy::WeightedSchedule::default();
    let mut req = request(MEMBERS, 0);
    let nat = sample(scale.plugin_calls, |s| {
        req.sequence = s;
        std::hint::black_box(schedule.pick(&view(&m, std::hint::black_box(&req)), req.sequence));
    });
    figures.push(figure(format!("pick, weighted-round-robin, {MEMBERS} members (WIT 0.2.0)"), wasm, nat));

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
    let wasm = sample(scale.plugin_calls, |_| {
        std::hint::black_box(plugin.try_check(&call).unwrap());
    });
    let nat = sample(scale.plugin_calls, |_| {
        std::hint::black_box(native.check(std::hint::black_box(&call.tool), &anyone));
    });
    figures.push(figure("check, default policy (allowed, one bucket)".into(), wasm, nat));
    Ok(figures)
}
