//! The log on stderr, and OpenTelemetry traces exported by OTLP when the standard variables ask
//! for them (`OTEL_EXPORTER_OTLP_ENDPOINT` or `…_TRACES_ENDPOINT`; `OTEL_EXPORTER_OTLP_PROTOCOL`
//! `grpc` or `http/protobuf`; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`); off otherwise, and then the spans of
//! [`hangar_telemetry::SPANS`] are not even created.

use anyhow::{Context, bail};
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{Layer, filter::Targets, layer::SubscriberExt, util::SubscriberInitExt};

/// Kept by `main` while the command runs: exports what is left when dropped.
pub struct Exporter {
    provider: SdkTracerProvider,
    /// The exporter's own runtime (one thread): spans leave whatever the command's runtime does.
    _runtime: tokio::runtime::Runtime,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("hangar: exporting the last spans failed: {e}");
        }
    }
}

/// The OTLP exporter the environment asks for, if any.
fn exporter(default_service: &str) -> anyhow::Result<Option<Exporter>> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v == "none")
        || (set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none())
    {
        return Ok(None);
    }
    if let Some(exporter) = set("OTEL_TRACES_EXPORTER").filter(|v| v != "otlp") {
        bail!("OTEL_TRACES_EXPORTER={exporter:?}: Hangar exports traces by OTLP only; set it to otlp or none");
    }
    for name in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
        if let Some(protocol) = set(name).filter(|p| p != "grpc" && p != "http/protobuf") {
            bail!("{name}={protocol:?}: use grpc or http/protobuf");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .context("starting the trace exporter's thread")?;
    let _entered = runtime.enter();
    let exporter = opentelemetry_otlp::SpanExporter::builder().build().context("the OTLP trace exporter")?;
    let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .build();
    let mut resource = Resource::builder();
    let named = set("OTEL_SERVICE_NAME").is_some()
        || set("OTEL_RESOURCE_ATTRIBUTES")
            .is_some_and(|a| a.split(',').any(|kv| kv.trim().starts_with("service.name=")));
    if !named {
        resource = resource.with_service_name(default_service.to_string());
    }
    let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource.build()).build();
    drop(_entered);
    Ok(Some(Exporter { provider, _runtime: runtime }))
}

/// Installs the log (human or JSON lines on stderr, at `level` unless RUST_LOG says) and, when
/// configured, the trace exporter. `service` names the process in traces unless the
/// environment does.
pub fn init(level: &str, json: bool, service: &str) -> anyhow::Result<Option<Exporter>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
        .add_directive(format!("{}=off", hangar_telemetry::SPANS).parse().expect("a valid directive"));
    // Colour only for a person at a terminal: a log file or a pipe gets plain text, and
    // NO_COLOR (any value) turns colour off everywhere.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = if json { fmt.json().with_filter(filter).boxed() } else { fmt.with_filter(filter).boxed() };
    let exporter = exporter(service)?;
    // Warnings and errors logged inside a span become its events.
    let traces = exporter.as_ref().map(|e| {
        tracing_opentelemetry::layer().with_tracer(e.provider.tracer("hangar")).with_filter(
            Targets::new()
                .with_target(hangar_telemetry::SPANS, tracing::Level::TRACE)
                .with_default(tracing::Level::WARN),
        )
    });
    tracing_subscriber::registry().with(fmt).with(traces).init();
    Ok(exporter)
}
