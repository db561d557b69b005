//! Hangar's performance report: `cargo run --release -p hangar-bench` measures every figure
//! beside its baseline in the same run and writes `docs/performance.md` and
//! `docs/latency-vs-concurrency.svg`. `--quick` runs fewer calls (for a smoke check);
//! `--out DIR` writes elsewhere; `--plugins-only` prints the plugin figures and writes nothing; `--auth-only` the token-check figures; `--gateway-only` measures the tools/call figures and puts their section in place; `--search-only` measures tool search and puts its section in place in the report; `--tracing-only` the tracing section. Every load loop is bounded in count and time.

mod auth;
mod cold_start;
mod gateway;
mod hot_reload;
mod operator;
mod plugins;
mod search;
mod tracing_cost;

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

/// One line of the report: a figure, its baseline, and how they compare.
pub struct Figure {
    pub what: String,
    pub measured: String,
    pub baseline_name: String,
    pub baseline: String,
    /// measured / baseline.
    pub ratio: f64,
}

/// p50 and p99 of a sample.
pub fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    if times.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    (times[times.len() / 2], times[(times.len() * 99 / 100).min(times.len() - 1)])
}

pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 10_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 10_000_000.0 {
        format!("{:.0} µs", ns / 1e3)
    } else {
        format!("{:.1} ms", ns / 1e6)
    }
}

/// Every allocation of this process is counted: a figure's allocations are the difference of
/// two readings (the gateway's per call: through it minus direct, the same load).
struct Counting;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations so far (allocs and reallocs) in this process.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// CPU time this process has used (user and system, all threads).
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Resident set size of this process now and at its peak, in MiB.
pub fn rss_mib() -> (f64, f64) {
    let mib = |field| hangar_tests::own_memory_kib(field) as f64 / 1024.0;
    (mib("VmRSS"), mib("VmHWM"))
}

pub struct Scale {
    /// Calls per latency sample (plugins) and per concurrency level (gateway).
    pub plugin_calls: usize,
    pub gateway_calls: usize,
    pub repeats: usize,
}

const GATEWAY_TITLE: &str = "`tools/call` through the gateway vs sent directly to the server";
const GATEWAY_PLOT: &str =
    "![p50 latency vs concurrent clients, direct and through the gateway](latency-vs-concurrency.svg)\n";

/// A section's figures as a table.
fn table(figures: &[Figure]) -> String {
    let mut md =
        String::from("| figure | measured | baseline | baseline value | ratio |\n| --- | --- | --- | --- | --- |\n");
    for f in figures {
        let _ =
            writeln!(md, "| {} | {} | {} | {} | {:.2}× |", f.what, f.measured, f.baseline_name, f.baseline, f.ratio);
    }
    md
}

const TRACING_TITLE: &str = "Tracing: CPU per call with traces off and on (100 % sampled)";

const SEARCH_TITLE: &str = "Tool search: quality beside plain BM25, speed and size over 10,000 tools";
/// Measured by `tests/cluster/bench.py` (a real API server and a real node, which need root and
/// the Go builds of the tests): kept as it is when this bench rewrites the report.
const CLUSTER_TITLE: &str = "Operator against a real API server and a real node";

/// `md` with the section titled `title` replaced by (or, if absent, followed by) `body`.
/// The body of a report's section, without its heading.
fn section_body(md: &str, title: &str) -> Option<String> {
    let heading = format!("## {title}\n\n");
    let start = md.find(&heading)? + heading.len();
    let rest = &md[start..];
    let end = rest.find("\n## ").or_else(|| rest.find("\nRSS at the end")).map_or(rest.len(), |e| e + 1);
    Some(rest[..end].trim_end().to_string() + "\n")
}

fn with_section(md: &str, title: &str, body: &str) -> String {
    let heading = format!("## {title}\n");
    let section = format!("{heading}\n{body}\n");
    match md.find(&heading) {
        Some(start) => {
            let rest = &md[start + heading.len()..];
            let end = rest
                .find("\n## ")
                .map(|e| start + heading.len() + e + 1)
                .or_else(|| rest.find("\nRSS at the end").map(|e| start + heading.len() + e + 1))
                .unwrap_or(md.len());
            format!("{}{section}{}", &md[..start], &md[end..])
        }
        None => match md.find("RSS at the end") {
            Some(at) => format!("{}{section}{}", &md[..at], &md[at..]),
            None => format!("{md}\n{section}"),
        },
    }
}

fn main() -> anyhow::Result<()> {
    // The exporter's batches, large and frequent enough that no span of a fast load is dropped
    // (a dropped span would not be exported, and its cost not counted).
    // SAFETY: set before this process starts any thread.
    unsafe {
        std::env::set_var("OTEL_BSP_MAX_QUEUE_SIZE", "262144");
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");
        std::env::set_var("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096");
    }
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--discarding-collector") {
        return tracing_cost::discarding_collector();
    }
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs"));
    let scale = if quick {
        Scale { plugin_calls: 2_000, gateway_calls: 1_000, repeats: 2 }
    } else {
        Scale { plugin_calls: 50_000, gateway_calls: 10_000, repeats: 5 }
    };
    let started = Instant::now();
    let (rss_start, _) = rss_mib();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    let mut sections = Vec::new();
    if args.iter().any(|a| a == "--auth-only") {
        for f in auth::run(&scale)? {
            println!("{}: {} ({} {}, {:.2}x)", f.what, f.measured, f.baseline_name, f.baseline, f.ratio);
        }
        return Ok(());
    }
    if args.iter().any(|a| a == "--search-only") {
        // The tool-search section alone: printed, and put in place in an existing report.
        let section = search::run(&scale, &runtime)?;
        print!("{section}");
        let report = out.join("performance.md");
        if let Ok(md) = std::fs::read_to_string(&report) {
            std::fs::write(&report, with_section(&md, SEARCH_TITLE, &section))?;
        }
        return Ok(());
    }
    if args.iter().any(|a| a == "--tracing-only") {
        // The tracing section alone: printed, and put in place in an existing report.
        let section = table(&tracing_cost::run(&scale)?);
        print!("{section}");
        let report = out.join("performance.md");
        if let Ok(md) = std::fs::read_to_string(&report) {
            std::fs::write(&report, with_section(&md, TRACING_TITLE, &section))?;
        }
        return Ok(());
    }
    if args.iter().any(|a| a == "--gateway-only") {
        // The tools/call section alone: printed, and put in place in an existing report.
        let (figures, curve) = runtime.block_on(gateway::run(&scale))?;
        let section = format!("{}\n{GATEWAY_PLOT}", table(&figures));
        print!("{section}");
        let report = out.join("performance.md");
        if let Ok(md) = std::fs::read_to_string(&report) {
            std::fs::write(&report, with_section(&md, GATEWAY_TITLE, &section))?;
            gateway::plot(&curve, &out.join("latency-vs-concurrency.svg"))?;
        }
        return Ok(());
    }
    eprintln!("== plugin calls vs native");
    sections.push(("Plugin calls vs the same algorithm in native Rust", plugins::run(&scale)?));
    if args.iter().any(|a| a == "--plugins-only") {
        // For a plugin author or a change to the plugin ABI: this section alone, printed only.
        for f in &sections[0].1 {
            println!("{}: {} ({} {}, {:.2}x)", f.what, f.measured, f.baseline_name, f.baseline, f.ratio);
        }
        return Ok(());
    }
    eprintln!("== access-token check");
    sections.push(("Access-token check per `/mcp` request (`--auth-issuer`)", auth::run(&scale)?));
    eprintln!("== gateway tools/call vs direct");
    let (figures, curve) = runtime.block_on(gateway::run(&scale))?;
    sections.push((GATEWAY_TITLE, figures));
    eprintln!("== tracing off and on");
    sections.push((TRACING_TITLE, tracing_cost::run(&scale)?));
    eprintln!("== cold start vs the backend's own start");
    sections
        .push(("Cold start (`replicas: 0`) vs the backend's own start", runtime.block_on(cold_start::run(&scale))?));
    eprintln!("== hot reload vs compiling");
    sections.push(("Hot reload of a plugin vs compiling it", hot_reload::run(&scale)?));
    eprintln!("== operator: 1,000 servers vs one");
    sections.push(("Operator: 1,000 MCPServers to steady state vs one reconcile", runtime.block_on(operator::run())?));
    let (rss_now, rss_peak) = rss_mib();
    sections.push((
        "Memory (this process: gateway, backends, plugin runtime and operator together)",
        vec![Figure {
            what: "peak RSS over the whole run".into(),
            measured: format!("{rss_peak:.1} MiB"),
            baseline_name: "RSS at start".into(),
            baseline: format!("{rss_start:.1} MiB"),
            ratio: rss_peak / rss_start.max(0.1),
        }],
    ));

    std::fs::create_dir_all(&out)?;
    gateway::plot(&curve, &out.join("latency-vs-concurrency.svg"))?;
    let mut md = String::from("# Performance\n\n");
    let _ = writeln!(
        md,
        "Generated by `cargo run --release -p hangar-bench` (this run: {}, {:.0} s, {} logical CPUs). Every \
         figure is beside a baseline measured in the same run on the same machine, and the ratio is \
         measured / baseline; load generator, gateway and backends share the machine.\n",
        if quick { "`--quick`" } else { "full" },
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    for (title, figures) in &sections {
        let _ = writeln!(md, "## {title}\n\n{}", table(figures));
        if *title == GATEWAY_TITLE {
            let _ = writeln!(md, "{GATEWAY_PLOT}");
        }
    }
    eprintln!("== tool search");
    let _ = write!(md, "## {SEARCH_TITLE}\n\n{}\n", search::run(&scale, &runtime)?);
    let _ = writeln!(md, "RSS at the end of the run: {rss_now:.1} MiB.");
    let report = out.join("performance.md");
    if let Some(kept) = std::fs::read_to_string(&report).ok().and_then(|old| section_body(&old, CLUSTER_TITLE)) {
        md = with_section(&md, CLUSTER_TITLE, &kept);
    }
    std::fs::write(&report, &md)?;
    print!("{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_in_place_and_read_back() {
        let md = "# P\n\n## A\n\nold a\n\n## B\n\nb\n\nRSS at the end of the run: 1 MiB.\n";
        let replaced = with_section(md, "A", "new a\n");
        assert_eq!(replaced, "# P\n\n## A\n\nnew a\n\n## B\n\nb\n\nRSS at the end of the run: 1 MiB.\n");
        assert_eq!(section_body(&replaced, "A").as_deref(), Some("new a\n"));
        assert_eq!(section_body(&replaced, "B").as_deref(), Some("b\n"));
        let added = with_section(md, "C", "c\n");
        assert!(added.ends_with("## C\n\nc\n\nRSS at the end of the run: 1 MiB.\n"), "{added}");
        assert_eq!(section_body(md, "C"), None);
    }
}
