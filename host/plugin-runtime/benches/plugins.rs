//! Plugin call cost against the same algorithm as native Rust, in one process:
//! `cargo bench -p hangar-plugin-runtime --bench plugins`. Prints p50/p99 per call and the
//! ratio and difference to the native baseline. Targets: plugin pick ≤ native + 300 ns at p50
//! with 8 candidates, p99 ≤ 1.5 µs.

use std::time::{Duration, Instant};

use hangar_plugin_algorithms::{policy::ToolPolicy, strategy};
use hangar_plugin_runtime::{Call, Candidate, PickRequest, PluginRuntime, PolicyPlugin, RuntimeConfig, StrategyPlugin};

const CALLS: usize = 50_000;
const WARMUP: usize = 2_000;

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

/// p50 and p99 of `f` timed call by call (the ~20 ns of the clock is in both columns).
fn measure(mut f: impl FnMut(u64)) -> (Duration, Duration) {
    for s in 0..WARMUP as u64 {
        f(s);
    }
    let mut times = Vec::with_capacity(CALLS);
    for s in 0..CALLS as u64 {
        let t = Instant::now();
        f(s);
        times.push(t.elapsed());
    }
    times.sort();
    (times[CALLS / 2], times[CALLS * 99 / 100])
}

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

fn row(what: &str, plugin: (Duration, Duration), native: (Duration, Duration)) {
    println!(
        "{what:<34} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>8.1}x {:>+9.0}",
        ns(plugin.0),
        ns(plugin.1),
        ns(native.0),
        ns(native.1),
        ns(plugin.0) / ns(native.0).max(1.0),
        ns(plugin.0) - ns(native.0)
    );
}

fn main() {
    let cache = std::env::temp_dir().join("hangar-bench-cache");
    let runtime = PluginRuntime::new(
        RuntimeConfig { cache_dir: Some(cache), ..Default::default() },
        &prometheus::Registry::new(),
    )
    .expect("runtime");
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "call (ns per call)", "wasm p50", "wasm p99", "nat p50", "nat p99", "ratio", "added"
    );
    for n in [2u32, 8, 64] {
        let c = candidates(n);
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
        for (name, native) in natives {
            let plugin = StrategyPlugin::new(&runtime, name, vec![], None).unwrap();
            let mut req = request(0);
            let wasm = measure(|s| {
                req.sequence = s;
                std::hint::black_box(plugin.try_pick(&req, &c).unwrap());
            });
            let mut req = request(0);
            let nat = measure(|s| {
                req.sequence = s;
                std::hint::black_box(native(std::hint::black_box(&c), &req));
            });
            row(&format!("pick {name} ({n} candidates)"), wasm, nat);
        }
        let plugin = StrategyPlugin::new(&runtime, "weighted-round-robin", vec![], None).unwrap();
        let mut req = request(0);
        let wasm = measure(|s| {
            req.sequence = s;
            std::hint::black_box(plugin.try_pick(&req, &c).unwrap());
        });
        let mut schedule = strategy::WeightedSchedule::default();
        let mut req = request(0);
        let nat = measure(|s| {
            req.sequence = s;
            std::hint::black_box(schedule.pick(std::hint::black_box(&c), &req.tried, req.sequence));
        });
        row(&format!("pick weighted-round-robin ({n} candidates)"), wasm, nat);
    }
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
    let plugin = PolicyPlugin::new(&runtime, "policy", config.clone(), None, false).unwrap();
    let native = ToolPolicy::from_config(&config).unwrap();
    let call =
        Call { server: "github-tools".into(), tool: "list_issues".into(), caller: "agent".into(), argument_bytes: 120 };
    let wasm = measure(|_| {
        std::hint::black_box(plugin.try_check(&call).unwrap());
    });
    let nat = measure(|_| {
        std::hint::black_box(native.check(std::hint::black_box(&call.tool)));
    });
    row("check policy (allowed, 1 bucket)", wasm, nat);
}
