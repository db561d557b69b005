//! Plugin calls (the built-in strategies and policy as wasm components) against the same
//! algorithms compiled natively, call by call.

use std::time::{Duration, Instant};

use hangar_plugin_algorithms::{policy::ToolPolicy, strategy};
use hangar_plugin_runtime::{Call, Candidate, PickRequest, PluginRuntime, PolicyPlugin, RuntimeConfig, StrategyPlugin};

use crate::{Figure, Scale, format_duration, percentiles};

const CANDIDATES: u32 = 8;

fn candidates(n: u32) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            index: i,
            name: format!("member-{i}"),
            healthy: i % 5 != 4,
            in_flight: (i * 7) % 5,
            latency_avg_us: 300 + 10 * i as u64,
            consecutive_failures: 0,
            priority: (i % 3) as i32,
            weight: 1 + i % 3,
        })
        .collect()
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
    let c = candidates(CANDIDATES);
    let request = |s: u64| PickRequest {
        tool: "search".into(),
        sequence: s,
        random: s.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        attempt: 0,
        tried: vec![],
    };
    type Native = fn(&[Candidate], &PickRequest) -> Option<u32>;
    let natives: [(&str, Native); 4] = [
        ("round-robin", |c, r| strategy::round_robin(c, &r.tried, r.sequence)),
        ("least-connections", |c, r| strategy::least_connections(c, &r.tried, r.sequence)),
        ("random", |c, r| strategy::random(c, &r.tried, r.random)),
        ("failover", |c, r| strategy::failover(c, &r.tried)),
    ];
    let mut figures = Vec::new();
    for (name, native) in natives {
        let plugin = StrategyPlugin::new(&runtime, name, vec![], None)?;
        let mut req = request(0);
        let wasm = sample(scale.plugin_calls, |s| {
            req.sequence = s;
            std::hint::black_box(plugin.try_pick(&req, &c).unwrap());
        });
        let mut req = request(0);
        let nat = sample(scale.plugin_calls, |s| {
            req.sequence = s;
            std::hint::black_box(native(std::hint::black_box(&c), &req));
        });
        figures.push(figure(format!("pick, {name}, {CANDIDATES} candidates"), wasm, nat));
    }
    let plugin = StrategyPlugin::new(&runtime, "weighted-round-robin", vec![], None)?;
    let mut req = request(0);
    let wasm = sample(scale.plugin_calls, |s| {
        req.sequence = s;
        std::hint::black_box(plugin.try_pick(&req, &c).unwrap());
    });
    let mut schedule = strategy::WeightedSchedule::default();
    let mut req = request(0);
    let nat = sample(scale.plugin_calls, |s| {
        req.sequence = s;
        std::hint::black_box(schedule.pick(std::hint::black_box(&c), &req.tried, req.sequence));
    });
    figures.push(figure(format!("pick, weighted-round-robin, {CANDIDATES} candidates"), wasm, nat));

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
    let call =
        Call { server: "github-tools".into(), tool: "list_issues".into(), caller: "agent".into(), argument_bytes: 120 };
    let wasm = sample(scale.plugin_calls, |_| {
        std::hint::black_box(plugin.try_check(&call).unwrap());
    });
    let nat = sample(scale.plugin_calls, |_| {
        std::hint::black_box(native.check(std::hint::black_box(&call.tool)));
    });
    figures.push(figure("check, default policy (allowed, one bucket)".into(), wasm, nat));
    Ok(figures)
}
