//! What servers send toward a client during its call, on the call's event stream.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use super::{AppState, parked::refusal, session::ClientCapabilities};
use crate::protocol::{self, RpcError, code};

/// The requests servers sent one client during one call: sent on the call's event stream under
/// ids of the gateway's own, answered by the client's POSTs, forgotten when the call ends.
pub(super) struct ClientRequests {
    pub(super) state: Arc<AppState>,
    pub(super) session: Option<String>,
    pub(super) ids: Vec<String>,
}

impl ClientRequests {
    /// Sends a server's request to the client, or answers the server at once when the client
    /// cannot answer it. False when the client has gone.
    pub(super) async fn send(
        &mut self,
        out: &mpsc::Sender<Value>,
        modern: bool,
        capabilities: ClientCapabilities,
        method: &str,
        params: Value,
        answer: tokio::sync::oneshot::Sender<Result<Value, RpcError>>,
    ) -> bool {
        let refusal = refusal(modern, self.session.as_deref(), capabilities, method);
        tracing::debug!(method, refused = ?refusal, "a server's request for the client");
        if let Some(why) = refusal {
            let _ = answer.send(Err(RpcError::new(code::METHOD_NOT_FOUND, why)));
            return true;
        }
        let session = self.session.clone().unwrap_or_default();
        let id = format!("hangar-{}", rand::random::<u64>());
        self.state.client_requests.lock().unwrap().insert((session, id.clone()), answer);
        self.ids.push(id.clone());
        out.send(protocol::request_with_id(&Value::String(id), method, params)).await.is_ok()
    }
}

impl Drop for ClientRequests {
    fn drop(&mut self) {
        let session = self.session.clone().unwrap_or_default();
        let mut waiting = self.state.client_requests.lock().unwrap();
        for id in self.ids.drain(..) {
            waiting.remove(&(session.clone(), id));
        }
    }
}

/// Messages of one call's event stream a client may leave unread.
pub(super) const PROGRESS_QUEUE: usize = 64;

/// Removes a request from the cancellable set when its handling ends.
pub(super) struct Unregister {
    pub(super) state: Arc<AppState>,
    pub(super) key: Option<(String, String)>,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            self.state.in_flight.lock().unwrap().remove(key);
        }
    }
}
