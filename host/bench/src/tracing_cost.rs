//! What tracing costs the gateway: the CPU per `tools/call` it adds (through it minus direct,
//! one client) with no subscriber at all, with the product's subscriber and no exporter (tracing
//! off, the default), and with every call sampled and exported by OTLP/HTTP to a collector (a
//! process of its own) that discards what it gets.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hangar_telemetry::export::{Exporter, Protocol, Settings};

use crate::{Figure, Scale, format_duration, gateway};

/// A collector that takes OTLP/HTTP exports and drops them, counting the bytes (`GET
/// /received`): `hangar-bench --discarding-collector` serves it and prints its URL. A process of
/// its own, as a collector is: its CPU is not the gateway's.
pub fn discarding_collector() -> anyhow::Result<()> {
    use axum::{Router, body::Bytes, routing::get, routing::post};
    let received = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("http://{}", listener.local_addr()?);
        let counted = received.clone();
        let app = Router::new()
            .route(
                "/v1/traces",
                post(move |body: Bytes| {
                    counted.fetch_add(body.len() as u64, Ordering::Relaxed);
                    async { ([("content-type", "application/x-protobuf")], Bytes::new()) }
                }),
            )
            .route("/received", get(move || async move { received.load(Ordering::Relaxed).to_string() }));
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// The collector process, killed when dropped.
struct Collector {
    child: std::process::Child,
    url: String,
}

impl Collector {
    fn start() -> anyhow::Result<Collector> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .arg("--discarding-collector")
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        Ok(Collector { child, url: line.trim().to_string() })
    }

    fn received(&self) -> anyhow::Result<u64> {
        let body = reqwest::blocking::get(format!("{}/received", self.url))?.text()?;
        Ok(body.parse()?)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An echo server and a gateway in front of it, on a runtime whose threads all use `dispatch`.
struct Setup {
    runtime: tokio::runtime::Runtime,
    direct: String,
    via: String,
}

impl Setup {
    fn new(dispatch: tracing::Dispatch) -> anyhow::Result<Setup> {
        let for_workers = dispatch.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&for_workers)))
            .build()?;
        let (direct, via) = tracing::dispatcher::with_default(&dispatch, || {
            runtime.block_on(async {
                let (direct, via) = gateway::echo_and_gateway().await?;
                gateway::load(&direct, "echo", 1, 400).await;
                gateway::load(&via, "echo__echo", 1, 400).await;
                anyhow::Ok((direct, via))
            })
        })?;
        Ok(Setup { runtime, direct, via })
    }

    /// The gateway's CPU per call: through it minus direct, one client.
    fn added_cpu(&self, calls: usize) -> Duration {
        self.runtime.block_on(async {
            let d = gateway::load(&self.direct, "echo", 1, calls).await;
            let v = gateway::load(&self.via, "echo__echo", 1, calls).await;
            v.cpu_per_call.saturating_sub(d.cpu_per_call)
        })
    }
}

/// Medians of the added CPU of `a` and `b`, measured in turns (so that what else the machine
/// does weighs on both alike).
fn in_turns(a: &Setup, b: &Setup, scale: &Scale) -> (Duration, Duration) {
    let calls = scale.gateway_calls / 3;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..scale.repeats.max(3) * 2 {
        xs.push(a.added_cpu(calls));
        ys.push(b.added_cpu(calls));
    }
    xs.sort();
    ys.sort();
    (xs[xs.len() / 2], ys[ys.len() / 2])
}

pub fn run(scale: &Scale) -> anyhow::Result<Vec<Figure>> {
    let (none, off) = {
        let none = Setup::new(tracing::Dispatch::none())?;
        let off = Setup::new(hangar_telemetry::export::dispatch("info", false, None))?;
        in_turns(&none, &off, scale)
    };
    let collector = Collector::start()?;
    let endpoint = format!("{}/v1/traces", collector.url);
    let settings = Settings { protocol: Protocol::HttpProtobuf, endpoint: Some(endpoint), service: "bench".into() };
    let exporter = Exporter::start(&settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Measured beside tracing off again: with an exporting subscriber alive, the spans' call
    // sites ask each subscriber, so "off" here is what a process with both would pay.
    let (off_again, on) = {
        let off = Setup::new(hangar_telemetry::export::dispatch("info", false, None))?;
        let on = Setup::new(hangar_telemetry::export::dispatch("info", false, Some(&exporter)))?;
        in_turns(&off, &on, scale)
    };
    drop(exporter);
    let received = collector.received()?;
    anyhow::ensure!(received > 0, "the collector received no spans");
    Ok(vec![
        Figure {
            what: "CPU per call added by the gateway, tracing off (no OTLP endpoint; the default)".into(),
            measured: format_duration(off),
            baseline_name: "no subscriber at all".into(),
            baseline: format_duration(none),
            ratio: off.as_secs_f64() / none.as_secs_f64().max(1e-9),
        },
        Figure {
            what: "CPU per call added by the gateway, tracing on (every call sampled, exported by OTLP/HTTP to a collector process)".into(),
            measured: format_duration(on),
            baseline_name: "tracing off".into(),
            baseline: format_duration(off_again),
            ratio: on.as_secs_f64() / off_again.as_secs_f64().max(1e-9),
        },
    ])
}
