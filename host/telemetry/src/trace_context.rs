//! W3C trace context (`traceparent`, `tracestate`) and baggage: read from a client's HTTP
//! headers or its request `_meta` (where MCP 2026-07-28 carries it), and written into what goes
//! to a server, so the server's spans join the client's trace under Hangar's.

use std::{collections::HashMap, sync::LazyLock};

use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapCompositePropagator, TextMapPropagator},
    trace::TraceContextExt,
};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use serde_json::{Map, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The keys of trace context, alike in headers and in `_meta`.
pub const KEYS: [&str; 3] = ["traceparent", "tracestate", "baggage"];

static PROPAGATOR: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![Box::new(TraceContextPropagator::new()), Box::new(BaggagePropagator::new())])
});

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct Meta<'a>(&'a Map<String, Value>);

impl Extractor for Meta<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct Carrier(HashMap<String, String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

/// The client's trace context: `_meta` when it holds a valid `traceparent` (the request's own),
/// else the HTTP headers; None when neither does.
pub fn from_client(headers: &http::HeaderMap, meta: Option<&Map<String, Value>>) -> Option<Context> {
    let valid = |cx: Context| cx.span().span_context().is_valid().then_some(cx);
    meta.and_then(|m| valid(PROPAGATOR.extract(&Meta(m)))).or_else(|| valid(PROPAGATOR.extract(&Headers(headers))))
}

/// Makes `span` continue the client's trace. Without an exporter the span is disabled and this
/// does nothing.
pub fn continue_client_trace(span: &tracing::Span, headers: &http::HeaderMap, meta: Option<&Map<String, Value>>) {
    if span.is_disabled() {
        return;
    }
    if let Some(parent) = from_client(headers, meta) {
        let _ = span.set_parent(parent);
    }
}

/// The current span's trace context as key/value pairs, or nothing when no span is exported
/// (then what the client sent passes on untouched).
pub fn current() -> Vec<(String, String)> {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return Vec::new();
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut carrier = Carrier(HashMap::new());
    PROPAGATOR.inject_context(&cx, &mut carrier);
    let mut pairs: Vec<(String, String)> = carrier.0.into_iter().collect();
    pairs.sort();
    pairs
}

/// Writes the current span's trace context into a request's `_meta`, replacing the client's
/// (the server's span is then a child of Hangar's attempt, itself in the client's trace).
pub fn into_meta(meta: &mut Map<String, Value>) {
    let pairs = current();
    if pairs.is_empty() {
        return;
    }
    for key in KEYS {
        meta.remove(key);
    }
    for (key, value) in pairs {
        meta.insert(key, Value::String(value));
    }
}

/// Writes the current span's trace context into a JSON-RPC request's `params._meta` (made when
/// missing); nothing when no span is exported.
pub fn into_params(params: &mut Value) {
    let Some(object) = params.as_object_mut() else { return };
    if tracing::Span::current().is_disabled() {
        return;
    }
    let meta = object.entry("_meta").or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        into_meta(meta);
    }
}

/// The current trace's id (32 hex digits), when a span is exported.
pub fn trace_id() -> Option<String> {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let context = cx.span().span_context().clone();
    context.is_valid().then(|| context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn meta_wins_over_headers_and_invalid_context_is_ignored() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", "00-11111111111111111111111111111111-2222222222222222-01".parse().unwrap());
        let mut meta = Map::new();
        meta.insert("traceparent".into(), PARENT.into());
        let cx = from_client(&headers, Some(&meta)).unwrap();
        assert_eq!(cx.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");

        meta.insert("traceparent".into(), "00-garbage".into());
        let cx = from_client(&headers, Some(&meta)).unwrap();
        assert_eq!(cx.span().span_context().trace_id().to_string(), "11111111111111111111111111111111");

        assert!(from_client(&http::HeaderMap::new(), Some(&meta)).is_none());
    }

    #[test]
    fn without_an_exported_span_the_clients_context_passes_on_untouched() {
        let mut meta = Map::new();
        meta.insert("traceparent".into(), PARENT.into());
        into_meta(&mut meta);
        assert_eq!(meta["traceparent"], PARENT);
        assert!(trace_id().is_none());
    }
}
