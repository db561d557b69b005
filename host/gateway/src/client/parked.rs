//! 2026-07-28 clients' calls waiting for their input (`input_required` and `requestState`).

use std::{collections::HashMap, sync::Arc};

use axum::{http::StatusCode, response::Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{AppState, ClientAnswer, Verified, json_response, rpc_error, session::ClientCapabilities};
use crate::{
    protocol::{self, RpcError, code},
    servers::Relay,
};

/// Why a client cannot be asked a server's request, if it cannot.
pub(super) fn refusal(
    modern: bool,
    session: Option<&str>,
    capabilities: ClientCapabilities,
    method: &str,
) -> Option<String> {
    if !capabilities.answers(method) {
        let when = if modern { "in _meta of its request" } else { "at initialize" };
        return Some(format!("the client did not declare the capability {method} needs ({when})"));
    }
    (!modern && session.is_none()).then(|| format!("{method} needs a client session to answer it"))
}

/// A call that is its own future, kept across a 2026-07-28 client's rounds.
pub(super) type CallFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, RpcError>> + Send>>;

/// A stateless (2026-07-28) client's call waiting for the answers to its server's requests: it
/// got `input_required` with Hangar's `requestState`, and retries the call with that state and
/// `inputResponses`. The call is not polled meanwhile; dropping it (expiry) cancels it.
pub struct Parked {
    pub(super) call: CallFuture,
    pub(super) relays: mpsc::UnboundedReceiver<Relay>,
    pub(super) answers: HashMap<String, ClientAnswer>,
    pub(super) capabilities: ClientCapabilities,
    /// The verified subject that started the call: only it may resume it (None without OAuth).
    pub(super) owner: Option<String>,
}

/// The answer to a `requestState` that is not this caller's to use (another's, expired, forged).
pub(super) const UNKNOWN_STATE: &str = "params.requestState: unknown or expired; call the tool again without it";

/// How `requestState` values of Hangar's own begin.
pub(super) const PARKED_PREFIX: &str = "hangar.";
/// Calls waiting for their clients' input at once, and how long one waits.
const MAX_PARKED: usize = 10_000;
const PARKED_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Parks a call on a server's request: the `input_required` result the client gets.
pub(super) fn park(
    state: &Arc<AppState>,
    mut parked: Parked,
    method: &str,
    params: Value,
    answer: ClientAnswer,
) -> Value {
    let key = format!("hangar-{:016x}", rand::random::<u64>());
    parked.answers.insert(key.clone(), answer);
    let token = format!("{PARKED_PREFIX}{:032x}", rand::random::<u128>());
    {
        let mut all = state.parked.lock().unwrap();
        if all.len() >= MAX_PARKED {
            // Dropping the call cancels it; its server hears the request was not answered.
            return json!({"resultType": "complete", "isError": true, "content": [{"type": "text",
                "text": format!("{MAX_PARKED} calls are waiting for their clients' input here; try again later")}]});
        }
        all.insert(token.clone(), parked);
    }
    let (waiting, expired) = (Arc::downgrade(state), token.clone());
    tokio::spawn(async move {
        tokio::time::sleep(PARKED_FOR).await;
        if let Some(state) = waiting.upgrade() {
            state.parked.lock().unwrap().remove(&expired);
        }
    });
    json!({
        "resultType": "input_required",
        "inputRequests": {key: {"method": method, "params": params}},
        "requestState": token,
    })
}

/// A 2026-07-28 client's retry of a parked call: its answers go to the server, and the call goes
/// on until its result, or the next request (another round).
pub(super) async fn resume(
    state: &Arc<AppState>,
    id: &Value,
    token: &str,
    params: &Value,
    verified: &Verified,
) -> Response {
    // Another caller's token is answered as an unknown one, and leaves the call parked for its owner.
    let taken = {
        let mut parked = state.parked.lock().unwrap();
        match parked.get(token) {
            Some(p) if p.owner.as_deref() == verified.subject() => parked.remove(token),
            _ => None,
        }
    };
    let Some(mut parked) = taken else {
        return rpc_error(StatusCode::OK, id, RpcError::new(code::INVALID_PARAMS, UNKNOWN_STATE));
    };
    let responses = params.get("inputResponses").and_then(Value::as_object);
    for (key, answer) in parked.answers.drain() {
        let _ = match responses.and_then(|r| r.get(&key)) {
            Some(response) => answer.send(Ok(response.clone())),
            None => answer
                .send(Err(RpcError::new(code::INVALID_PARAMS, format!("the client sent no inputResponses[{key:?}]")))),
        };
    }
    loop {
        tokio::select! {
            outcome = &mut parked.call => return match outcome {
                Ok(result) => json_response(StatusCode::OK, protocol::response(id, result)),
                Err(e) => rpc_error(StatusCode::OK, id, e),
            },
            Some(relay) = parked.relays.recv() => {
                if let Relay::Request { method, params, answer } = relay {
                    match refusal(true, None, parked.capabilities, &method) {
                        Some(why) => {
                            let _ = answer.send(Err(RpcError::new(code::METHOD_NOT_FOUND, why)));
                        }
                        None => {
                            let result = park(state, parked, &method, params, answer);
                            return json_response(StatusCode::OK, protocol::response(id, result));
                        }
                    }
                }
            }
        }
    }
}
