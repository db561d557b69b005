//! What Hangar tells operators about each call, apart from metrics: the W3C trace context it
//! continues from a client and passes on to servers (spans are plain `tracing` spans of the
//! target [`SPANS`]; the binary decides whether they are exported), and the audit log.
//! Builds without an exporter: only the `hangar` binary links the OTLP SDK. Metrics themselves
//! belong to each component; the one way they are registered is here ([`register`]).

pub mod audit;
#[cfg(feature = "export")]
pub mod export;
pub mod trace_context;

/// The `tracing` target of the spans that become OpenTelemetry spans. The human log leaves it
/// out, so with no exporter configured no subscriber wants them and they cost a relaxed load.
pub const SPANS: &str = "hangar_trace";

/// Registers a component's metrics, each struct listing its own (`collectors()`, also what the
/// generated metrics reference reads), so a metric is never registered without being listed.
pub fn register(
    registry: &prometheus::Registry,
    collectors: Vec<Box<dyn prometheus::core::Collector>>,
) -> prometheus::Result<()> {
    collectors.into_iter().try_for_each(|c| registry.register(c))
}

/// Marks a span as failed, with its `error.type` (the span must declare both fields).
pub fn failed(span: &tracing::Span, error_type: &str) {
    span.record("error.type", error_type);
    span.record("otel.status_code", "ERROR");
}
