//! The span of each request a client sends, after OpenTelemetry's conventions for MCP (a
//! server span named `{method} {target}`, `mcp.*`, `gen_ai.*`, `jsonrpc.request.id`,
//! `error.type`), continuing the client's trace. Spans of [`hangar_telemetry::SPANS`] exist
//! only while traces are exported; otherwise these are disabled spans and cost nothing.

use axum::http::HeaderMap;
use hangar_telemetry::{SPANS, trace_context};
use serde_json::Value;
use tracing::field::Empty;

use crate::protocol::{self, MODERN_VERSION, RpcError};

/// The request's span, its parent the client's trace context (`_meta` or headers).
pub(super) fn request(headers: &HeaderMap, method: &str, id: &Value, params: &Value, modern: bool) -> tracing::Span {
    let target = protocol::named_param(method).and_then(|key| params.get(key)).and_then(Value::as_str);
    let version = match modern {
        true => MODERN_VERSION,
        false => headers.get(super::VERSION_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default(),
    };
    let span = tracing::info_span!(
        target: SPANS,
        "mcp.request",
        otel.name = %format_args!("{method}{}{}", if target.is_some() { " " } else { "" }, target.unwrap_or_default()),
        otel.kind = "server",
        otel.status_code = Empty,
        mcp.method.name = method,
        mcp.protocol.version = version,
        mcp.session.id = Empty,
        jsonrpc.request.id = %id,
        gen_ai.operation.name = Empty,
        gen_ai.tool.name = Empty,
        gen_ai.prompt.name = Empty,
        mcp.resource.uri = Empty,
        error.type = Empty,
        rpc.response.status_code = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    // The session id lets its holder act in the session: a digest tells sessions apart.
    if let Some(session) = headers.get(super::SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        span.record("mcp.session.id", hangar_telemetry::audit::key_fingerprint(session));
    }
    match (method, target) {
        ("tools/call", Some(tool)) => {
            span.record("gen_ai.operation.name", "execute_tool");
            span.record("gen_ai.tool.name", tool);
        }
        ("prompts/get", Some(prompt)) => {
            span.record("gen_ai.prompt.name", prompt);
        }
        ("resources/read", Some(uri)) => {
            span.record("mcp.resource.uri", uri);
        }
        _ => {}
    }
    trace_context::continue_client_trace(&span, headers, params.get("_meta").and_then(Value::as_object));
    span
}

/// What the request came to, recorded on its span: returns its `error.type` (empty for a
/// success), a JSON-RPC code of the spec's ranges, `tool_error`, or `other`.
pub(super) fn outcome(span: &tracing::Span, outcome: &Result<Value, RpcError>) -> String {
    let error_type = match outcome {
        Err(e) => crate::protocol::code_label(e.code),
        Ok(result) if result.get("isError") == Some(&Value::Bool(true)) => "tool_error".to_string(),
        Ok(_) => return String::new(),
    };
    if !span.is_disabled() {
        hangar_telemetry::failed(span, &error_type);
        if let Err(e) = outcome {
            span.record("rpc.response.status_code", e.code.to_string());
        }
    }
    error_type
}
