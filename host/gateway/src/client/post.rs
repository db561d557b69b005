//! A POST to `/mcp`: the transport's rules on headers and body, and batches.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use super::{AppState, VERSION_HEADER, Verified, json_response, message::post_message, rpc_error};
use crate::{
    parse_budget::{MAX_REQUEST_OBJECTS, MAX_REQUEST_VALUES, json_shape},
    protocol::{RpcError, code},
};

/// The transport's rules on a POST's headers alone: the body's media type (415), what the client
/// accepts (406): the refusal, if any. Absent headers are not required; the protocol version is
/// checked with the message, whose id its error must carry.
fn refused_post_headers(headers: &HeaderMap) -> Option<Response> {
    let text = |name| headers.get(name).map(|v: &HeaderValue| v.to_str().unwrap_or("?").to_ascii_lowercase());
    let refuse =
        |status, message: String| Some(rpc_error(status, &Value::Null, RpcError::new(code::INVALID_REQUEST, message)));
    if let Some(media) = text(header::CONTENT_TYPE)
        && media.split(';').next().map(str::trim) != Some("application/json")
    {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("Content-Type {media:?}: send application/json"));
    }
    if let Some(accept) = text(header::ACCEPT)
        && !["application/json", "text/event-stream", "*/*", "application/*", "text/*"]
            .iter()
            .any(|m| accept.contains(m))
    {
        return refuse(
            StatusCode::NOT_ACCEPTABLE,
            format!("Accept {accept:?}: answers are application/json or text/event-stream; accept both"),
        );
    }
    None
}

pub(super) async fn post_mcp(
    State(state): State<Arc<AppState>>,
    axum::Extension(verified): axum::Extension<Verified>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let null = Value::Null;
    if let Some(refused) = refused_post_headers(&headers) {
        return refused;
    }
    let limit = state.max_body_bytes;
    let read = tokio::time::timeout(crate::listen::BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await;
    let Ok(read) = read else {
        return rpc_error(
            StatusCode::REQUEST_TIMEOUT,
            &null,
            RpcError::new(
                code::INVALID_REQUEST,
                format!("the request body did not arrive within {:?}", crate::listen::BODY_TIMEOUT),
            ),
        );
    };
    let Ok(body) = read else {
        return rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &null,
            RpcError::new(
                code::INVALID_REQUEST,
                format!("request body over the {limit} byte limit (--max-body-bytes)"),
            ),
        );
    };
    // A parsed value takes many times its text (an empty object 32 bytes for 3 of text, one with
    // a key a map node): counted first, so that a 4 MiB body cannot become gigabytes, and a
    // large one waits for room in the budget all requests and answers share.
    let (values, objects) = json_shape(&body);
    if values > MAX_REQUEST_VALUES || objects > MAX_REQUEST_OBJECTS {
        return rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &null,
            RpcError::new(
                code::INVALID_REQUEST,
                format!(
                    "request has {values} JSON values and {objects} objects; at most {MAX_REQUEST_VALUES} values and {MAX_REQUEST_OBJECTS} objects"
                ),
            ),
        );
    }
    let _room = match crate::parse_budget::for_request(body.len(), values, objects).await {
        Ok(room) => room,
        Err(why) => {
            return rpc_error(StatusCode::SERVICE_UNAVAILABLE, &null, RpcError::new(code::INTERNAL_ERROR, why));
        }
    };
    let message: Value = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &null,
                RpcError::new(code::PARSE_ERROR, format!("invalid JSON: {e}")),
            );
        }
    };
    match message {
        Value::Array(batch) => post_batch(state, headers, batch, &verified).await,
        message => post_message(state, &headers, message, &verified).await,
    }
}

/// Most messages one batch may hold.
const MAX_BATCH: usize = 100;

/// A JSON-RPC batch, which 2024-11-05 and 2025-03-26 require and later revisions removed (their
/// clients send `MCP-Protocol-Version`, which says so). Each message is handled as if posted
/// alone with a plain JSON answer; the answers go back in one array.
async fn post_batch(state: Arc<AppState>, mut headers: HeaderMap, batch: Vec<Value>, verified: &Verified) -> Response {
    let version = headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok());
    if let Some(version) = version.filter(|v| !["2024-11-05", "2025-03-26"].contains(v)) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            RpcError::new(
                code::INVALID_REQUEST,
                format!("batches are part of 2024-11-05 and 2025-03-26 only, not {version}: send one message per POST"),
            ),
        );
    }
    if batch.is_empty() || batch.len() > MAX_BATCH {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            RpcError::new(
                code::INVALID_REQUEST,
                format!("a batch holds 1 to {MAX_BATCH} messages, not {}", batch.len()),
            ),
        );
    }
    if batch.iter().any(|m| m.get("method") == Some(&Value::from("initialize"))) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            RpcError::new(code::INVALID_REQUEST, "initialize must be sent alone, not in a batch"),
        );
    }
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let mut answers = Vec::new();
    for message in batch {
        let response = post_message(state.clone(), &headers, message, verified).await;
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default();
        if let Ok(answer) = serde_json::from_slice::<Value>(&body) {
            answers.push(answer);
        }
    }
    if answers.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    json_response(StatusCode::OK, Value::Array(answers))
}
