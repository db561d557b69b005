//! The stateless revision's `subscriptions/listen`.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use super::AppState;
use crate::protocol;

/// A 2026-07-28 client's `subscriptions/listen`: an event stream that acknowledges the list
/// changes it asked for (resource subscriptions are not honored here: left out of the
/// acknowledgment, as the revision says), then carries them, each stamped with the request's id.
pub(super) fn listen(state: &Arc<AppState>, id: &Value, params: &Value) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio_stream::wrappers::BroadcastStream;
    const KINDS: [(&str, &str); 3] = [
        ("toolsListChanged", "notifications/tools/list_changed"),
        ("promptsListChanged", "notifications/prompts/list_changed"),
        ("resourcesListChanged", "notifications/resources/list_changed"),
    ];
    let asked = params.get("notifications").cloned().unwrap_or_default();
    let honored: Vec<(&str, &str)> = KINDS.into_iter().filter(|(key, _)| asked[*key] == true).collect();
    let subscription = id.clone();
    let stamp = move |mut notice: Value| {
        notice["params"]["_meta"] = json!({protocol::META_SUBSCRIPTION_ID: subscription});
        notice
    };
    let ack_filter: serde_json::Map<String, Value> =
        honored.iter().map(|(k, _)| (k.to_string(), Value::Bool(true))).collect();
    let ack = stamp.clone()(protocol::notification(
        "notifications/subscriptions/acknowledged",
        json!({"notifications": ack_filter}),
    ));
    let wanted: Vec<&'static str> = honored.iter().map(|(_, method)| *method).collect();
    let changes = BroadcastStream::new(state.gateway.notices.subscribe())
        .filter_map(|n| n.ok())
        .filter(move |n| n["method"].as_str().is_some_and(|m| wanted.contains(&m)))
        .map(stamp);
    let stream = tokio_stream::once(ack)
        .chain(changes)
        .map(|m| Ok::<_, std::convert::Infallible>(Event::default().event("message").data(m.to_string())));
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
