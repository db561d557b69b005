//! The log on stderr, and OpenTelemetry traces exported by OTLP when the standard variables ask
//! for them (`OTEL_EXPORTER_OTLP_ENDPOINT` or `…_TRACES_ENDPOINT`; `OTEL_EXPORTER_OTLP_PROTOCOL`
//! `grpc` or `http/protobuf`; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`); off otherwise, and then the spans of
//! [`crate::SPANS`] are not even made. Only with the `export` feature: the `hangar` binary (and
//! its bench) link the OTLP SDK, the libraries do not.

use std::{fmt, sync::Arc};

use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{Layer, filter::Targets, layer::SubscriberExt};

/// Where spans go.
#[derive(Debug, Clone)]
pub struct Settings {
    pub protocol: Protocol,
    /// The collector's URL; None: from the OTLP variables.
    pub endpoint: Option<String>,
    /// The service name unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` give one.
    pub service: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// A setting Hangar cannot use, naming the variable and the fix.
#[derive(Debug)]
pub struct BadSetting(String);

impl fmt::Display for BadSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadSetting {}

fn variable(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Settings {
    /// What the environment asks for: None when no endpoint is set or tracing is turned off.
    pub fn from_env(default_service: &str) -> Result<Option<Settings>, BadSetting> {
        if variable("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || variable("OTEL_TRACES_EXPORTER").is_some_and(|v| v == "none")
            || (variable("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
                && variable("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none())
        {
            return Ok(None);
        }
        if let Some(exporter) = variable("OTEL_TRACES_EXPORTER").filter(|v| v != "otlp") {
            return Err(BadSetting(format!(
                "OTEL_TRACES_EXPORTER={exporter:?}: Hangar exports traces by OTLP only; set it to otlp or none"
            )));
        }
        let mut protocol = Protocol::HttpProtobuf;
        for name in ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] {
            match variable(name).as_deref() {
                None => {}
                Some("grpc") => protocol = Protocol::Grpc,
                Some("http/protobuf") => protocol = Protocol::HttpProtobuf,
                Some(other) => return Err(BadSetting(format!("{name}={other:?}: use grpc or http/protobuf"))),
            }
        }
        Ok(Some(Settings { protocol, endpoint: None, service: default_service.to_string() }))
    }
}

/// An OTLP exporter whose exports run on a Tokio runtime (hyper and tonic need one), awaited from
/// the batch processor's own thread.
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl opentelemetry_sdk::trace::SpanExporter for OnRuntime {
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        let inner = self.inner.clone();
        let export = self.runtime.spawn(async move { inner.export(batch).await });
        async move {
            export.await.unwrap_or_else(|e| Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(e.to_string())))
        }
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// The running exporter: exports what is left when dropped.
pub struct Exporter {
    provider: SdkTracerProvider,
    /// The exporter's own runtime (one thread): spans leave whatever the process's runtime does.
    _runtime: tokio::runtime::Runtime,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("hangar: exporting the last spans failed: {e}");
        }
    }
}

impl Exporter {
    pub fn start(settings: &Settings) -> Result<Exporter, BadSetting> {
        use opentelemetry_otlp::WithExportConfig;
        let bad = |what: &str, e: &dyn fmt::Display| BadSetting(format!("{what}: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|e| bad("starting the trace exporter's thread", &e))?;
        let entered = runtime.enter();
        let exporter = match (settings.protocol, &settings.endpoint) {
            (Protocol::Grpc, None) => opentelemetry_otlp::SpanExporter::builder().with_tonic().build(),
            (Protocol::Grpc, Some(url)) => {
                opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(url).build()
            }
            (Protocol::HttpProtobuf, None) => opentelemetry_otlp::SpanExporter::builder().with_http().build(),
            (Protocol::HttpProtobuf, Some(url)) => {
                opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(url).build()
            }
        }
        .map_err(|e| bad("the OTLP trace exporter", &e))?;
        // The SDK's batch processor keeps spans in a queue its thread drains every
        // OTEL_BSP_SCHEDULE_DELAY (no wake-up per span); the export itself runs on our runtime.
        let exporter = OnRuntime { inner: Arc::new(exporter), runtime: runtime.handle().clone() };
        let processor = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).build();
        let mut resource = Resource::builder();
        let named = variable("OTEL_SERVICE_NAME").is_some()
            || variable("OTEL_RESOURCE_ATTRIBUTES")
                .is_some_and(|a| a.split(',').any(|kv| kv.trim().starts_with("service.name=")));
        if !named {
            resource = resource.with_service_name(settings.service.clone());
        }
        let provider =
            SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource.build()).build();
        drop(entered);
        Ok(Exporter { provider, _runtime: runtime })
    }
}

/// The log (human or JSON lines on stderr, at `level` unless RUST_LOG says) and, with an
/// exporter, the spans of [`crate::SPANS`] (and warnings logged inside them, as span events).
pub fn dispatch(level: &str, json: bool, exporter: Option<&Exporter>) -> tracing::Dispatch {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
        .add_directive(format!("{}=off", crate::SPANS).parse().expect("a valid directive"));
    // Colour only for a person at a terminal: a log file or a pipe gets plain text, and
    // NO_COLOR (any value) turns colour off everywhere.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = if json { fmt.json().with_filter(filter).boxed() } else { fmt.with_filter(filter).boxed() };
    let traces = exporter.map(|e| {
        // Only what the conventions name: no source locations, thread ids or busy/idle times
        // (each a clock read or attributes on every span).
        tracing_opentelemetry::layer()
            .with_tracer(e.provider.tracer("hangar"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_target(false)
            .with_filter(
                Targets::new().with_target(crate::SPANS, tracing::Level::TRACE).with_default(tracing::Level::WARN),
            )
    });
    tracing::Dispatch::new(tracing_subscriber::registry().with(fmt).with(traces))
}

/// Installs [`dispatch`] for the process, the exporter when the environment configures one
/// (kept alive by what this returns).
pub fn init(level: &str, json: bool, service: &str) -> Result<Option<Exporter>, BadSetting> {
    let exporter = Settings::from_env(service)?.map(|s| Exporter::start(&s)).transpose()?;
    tracing::dispatcher::set_global_default(dispatch(level, json, exporter.as_ref()))
        .map_err(|e| BadSetting(format!("installing the log: {e}")))?;
    Ok(exporter)
}
