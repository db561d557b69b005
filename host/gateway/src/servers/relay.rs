//! What a server sends toward a client during the client's call (progress, log messages, its
//! requests) and the answers that go back: the same for both transports.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::BackendEvent;
use crate::protocol::{self, RpcError, code};

/// Where a backend's own notifications go: (server name, the gateway's channel).
pub(super) type EventSink = (String, mpsc::UnboundedSender<BackendEvent>);

/// What a server sends toward the client during one of the client's calls.
#[derive(Debug)]
pub enum Relay {
    /// A notification for the client: progress (with the client's token) or a log message.
    Notification(Value),
    /// A request for the client (`sampling/createMessage`, `elicitation/create`, `roots/list`);
    /// the client's answer, or an error, goes back to the server.
    Request { method: String, params: Value, answer: oneshot::Sender<Result<Value, RpcError>> },
}

pub type RelaySink = mpsc::UnboundedSender<Relay>;

/// Where one call's relays go, and the client's progress token when it asked for progress.
#[derive(Clone, Debug)]
pub struct CallRelay {
    pub progress_token: Option<Value>,
    pub sink: RelaySink,
}

/// How long a server's request waits for the client's answer.
pub(super) const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// Sends the server answers to its requests (JSON-RPC responses, in the headers' session).
pub(super) type Answerer = Arc<dyn Fn(reqwest::header::HeaderMap, Value) + Send + Sync>;

/// A message a server sent toward a client: its requests go to the client's call (`relay`),
/// the answer back to the server; without a call to take it, the server is answered with an
/// error at once. Progress and log messages go to the call too.
pub(super) fn relay_from_server(
    answer_server: &Answerer,
    events: &EventSink,
    headers: &reqwest::header::HeaderMap,
    relay: Option<&CallRelay>,
    message: Value,
) {
    let Some(method) = message.get("method").and_then(Value::as_str).map(str::to_string) else { return };
    tracing::debug!(method, relayed = relay.is_some(), "a server's message toward the client");
    match message.get("id").cloned() {
        Some(server_id) => {
            let params = message.get("params").cloned().unwrap_or_else(|| json!({}));
            let Some(relay) = relay else {
                let why = "no call of a client that can answer it is waiting on this server";
                answer_server(headers.clone(), answer_unowned(&events.0, &server_id, &method, why));
                return;
            };
            let answered = relay_request(relay, &method, params);
            let (answer_server, headers) = (answer_server.clone(), headers.clone());
            tokio::spawn(async move {
                answer_server(headers, client_answer(server_id, &method, answered).await);
            });
        }
        None if method == "notifications/message" || method == "notifications/progress" => {
            if let Some(relay) = relay
                && (method == "notifications/message" || relay.progress_token.is_some())
            {
                let _ = relay.sink.send(Relay::Notification(message));
            }
        }
        // Anything else the server says on its own (list changes, resource updates) is core's.
        None => {
            let params = message.get("params").cloned().unwrap_or_default();
            let _ = events.1.send(BackendEvent { server: events.0.clone(), method, params });
        }
    }
}

/// Hangar's own answer to a server's request that belongs to no client call (`why`): a server
/// asking for roots as it starts gets the roots Hangar exposes (none), a ping is answered, and
/// anything else is refused naming why. Routine, so logged at debug only.
pub(super) fn answer_unowned(server: &str, id: &Value, method: &str, why: &str) -> Value {
    tracing::debug!(server, method, "a server's request outside any client call; answered by Hangar");
    match method {
        "roots/list" => protocol::response(id, json!({"roots": []})),
        "ping" => protocol::response(id, json!({})),
        _ => protocol::error_response(
            id,
            &RpcError::new(code::METHOD_NOT_FOUND, format!("{method} is not available here: {why}")),
        ),
    }
}

/// Hands a server's request to the client's call; the client's answer arrives on the receiver.
pub(super) fn relay_request(
    relay: &CallRelay,
    method: &str,
    params: Value,
) -> oneshot::Receiver<Result<Value, RpcError>> {
    let (answer, answered) = oneshot::channel();
    let _ = relay.sink.send(Relay::Request { method: method.to_string(), params, answer });
    answered
}

/// The JSON-RPC response to send the server for its request `server_id`: the client's answer,
/// or an error saying why there is none.
pub(super) async fn client_answer(
    server_id: Value,
    method: &str,
    answered: oneshot::Receiver<Result<Value, RpcError>>,
) -> Value {
    let error = |why: String| protocol::error_response(&server_id, &RpcError::new(code::INTERNAL_ERROR, why));
    match tokio::time::timeout(CLIENT_ANSWER_TIMEOUT, answered).await {
        Ok(Ok(Ok(result))) => protocol::response(&server_id, result),
        Ok(Ok(Err(e))) => protocol::error_response(&server_id, &e),
        Ok(Err(_)) => error(format!("the client's call ended before it answered {method}")),
        Err(_) => error(format!("the client did not answer {method} within {CLIENT_ANSWER_TIMEOUT:?}")),
    }
}

/// The call a message that names no request belongs to: the latest one of a client's own
/// session; in a session many clients share, only a lone call (with several, which client it
/// is for cannot be told, and guessing could hand one client's data to another).
pub(super) fn owner(calls: &[(u64, CallRelay)], shared: bool) -> Option<CallRelay> {
    match calls {
        [(_, only)] => Some(only.clone()),
        [.., (_, latest)] if !shared => Some(latest.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_naming_no_request_goes_to_a_call_only_when_its_owner_is_certain() {
        let relay = |n: u64| {
            let (sink, _) = mpsc::unbounded_channel();
            (n, CallRelay { progress_token: Some(Value::from(n)), sink })
        };
        let token = |r: Option<CallRelay>| r.and_then(|r| r.progress_token);
        assert_eq!(token(owner(&[], false)), None);
        assert_eq!(token(owner(&[relay(1)], true)), Some(Value::from(1)), "a lone call in a shared session");
        assert_eq!(token(owner(&[relay(1), relay(2)], false)), Some(Value::from(2)), "one client's latest call");
        assert_eq!(token(owner(&[relay(1), relay(2)], true)), None, "two clients' calls: nobody's");
    }
}
