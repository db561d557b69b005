//! One JSON-RPC message from a client, in either revision, turned into a call of the gateway
//! and its answer (plain JSON, or an event stream once the server sends something first).

use std::{collections::HashMap, sync::Arc};

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use hangar_plugin_runtime::Caller;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_stream::StreamExt;

use super::{
    AppState, SESSION_HEADER, VERSION_HEADER, Verified, json_response,
    parked::{CallFuture, PARKED_PREFIX, Parked, UNKNOWN_STATE, park, refusal, resume},
    relay::{ClientRequests, PROGRESS_QUEUE, Unregister},
    rpc_error,
    session::{BOUND_STATE, ClientCapabilities},
    spans,
    subscriptions::listen,
};
use crate::{
    families::dispatch,
    gateway::CallContext,
    param_headers,
    protocol::{self, MODERN_VERSION, RpcError, code},
    servers::{CallRelay, Relay},
};

/// One JSON-RPC message: a request, a notification, or a client's answer to a server's request.
pub(super) async fn post_message(
    state: Arc<AppState>,
    headers: &HeaderMap,
    mut message: Value,
    verified: &Verified,
) -> Response {
    let null = Value::Null;
    let Some(object) = message.as_object_mut() else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &null,
            RpcError::new(
                code::INVALID_REQUEST,
                "a JSON-RPC message is an object (or, in 2025-03-26, an array of them)",
            ),
        );
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        let id = object.get("id").unwrap_or(&null);
        return rpc_error(StatusCode::BAD_REQUEST, id, RpcError::new(code::INVALID_REQUEST, "jsonrpc must be \"2.0\""));
    }
    let id = object.get("id").cloned();
    if id.is_none()
        && let Some(version) = headers.get(VERSION_HEADER).map(|v| v.to_str().unwrap_or("?"))
        && !protocol::is_supported(version)
    {
        return rpc_error(StatusCode::BAD_REQUEST, &null, RpcError::unsupported_version(version));
    }
    let Some(method) = object.get("method").and_then(Value::as_str).map(str::to_string) else {
        return answer_from_client(&state, headers, object);
    };
    let Some(id) = id else {
        return notification(&state, headers, &method, object, verified);
    };
    if !(id.is_string() || id.is_i64() || id.is_u64()) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &null,
            RpcError::new(code::INVALID_REQUEST, "id must be a string or an integer"),
        );
    }
    // Taken, not copied: the arguments travel on as they are (no copy per request).
    let mut params = object.remove("params").unwrap_or_else(|| json!({}));
    let modern = match revision(headers, &method, &params) {
        Ok(modern) => modern,
        Err((status, error)) => return rpc_error(status, &id, error),
    };
    if modern && REMOVED_IN_STATELESS.contains(&method.as_str()) {
        let why = format!("{method} is not part of {MODERN_VERSION} (removed with sessions); see server/discover");
        return rpc_error(StatusCode::NOT_FOUND, &id, RpcError::new(code::METHOD_NOT_FOUND, why));
    }
    if method == "initialize" {
        return initialize(&state, &id, &params, verified);
    }
    if modern && method == "subscriptions/listen" {
        return listen(&state, &id, &params);
    }
    // A 2026-07-28 client's retry of a call parked for its input.
    if modern
        && method == "tools/call"
        && let Some(token) = params.get("requestState").and_then(Value::as_str)
        && token.starts_with(PARKED_PREFIX)
    {
        return resume(&state, &id, token, &params, verified).await;
    }
    // A retry after a server's `input_required`: its state goes back to the server only from
    // the caller it was given to.
    if modern
        && let Some(bound) = params.get("requestState").and_then(Value::as_str)
        && bound.starts_with(BOUND_STATE)
    {
        let Some(server_state) = state.sessions.unbind_state(bound, verified.subject()).map(str::to_string) else {
            return rpc_error(StatusCode::OK, &id, RpcError::new(code::INVALID_PARAMS, UNKNOWN_STATE));
        };
        params["requestState"] = Value::String(server_state);
    }
    let session = match modern {
        true => None,
        false => match handshake_session(&state, headers, verified) {
            Ok(session) => Some(session),
            Err((status, error)) => return rpc_error(status, &id, error),
        },
    };
    let request = Request { id, method, params, session, modern };
    handle(state, headers, request, verified).await
}

/// The client's answer to a server's request relayed during one of its calls.
fn answer_from_client(state: &AppState, headers: &HeaderMap, object: &mut serde_json::Map<String, Value>) -> Response {
    let session = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let key = (session.to_string(), object.get("id").and_then(Value::as_str).unwrap_or_default().to_string());
    tracing::debug!(id = key.1, "a client's answer to a server's request");
    let Some(waiting) = state.client_requests.lock().unwrap().remove(&key) else {
        return rpc_error(
            StatusCode::NOT_FOUND,
            &Value::Null,
            RpcError::new(code::INVALID_REQUEST, "no request of this session with that id is waiting for an answer"),
        );
    };
    let answer = match object.get("error") {
        Some(e) => Err(RpcError::from_json(e)),
        None => Ok(object.remove("result").unwrap_or_default()),
    };
    let _ = waiting.send(answer);
    StatusCode::ACCEPTED.into_response()
}

/// A notification: `notifications/cancelled` stops a handshake session's request; the rest
/// need nothing of the gateway. One in a session that is not (or no longer) genuine is refused
/// like a request.
fn notification(
    state: &AppState,
    headers: &HeaderMap,
    method: &str,
    object: &serde_json::Map<String, Value>,
    verified: &Verified,
) -> Response {
    let session = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok());
    if let Some(session) = session
        && !state.session_usable(session, verified)
    {
        return rpc_error(StatusCode::NOT_FOUND, &Value::Null, session_not_found());
    }
    if method == "notifications/cancelled"
        && let Some(session) = session
    {
        let request = object.get("params").and_then(|p| p.get("requestId")).map(Value::to_string).unwrap_or_default();
        if let Some(cancel) = state.in_flight.lock().unwrap().get(&(session.to_string(), request)) {
            cancel.notify_one();
        }
    }
    StatusCode::ACCEPTED.into_response()
}

fn session_not_found() -> RpcError {
    RpcError::new(
        code::SESSION_NOT_FOUND,
        "unknown, expired, ended, forged or another caller's Mcp-Session-Id: initialize a new session",
    )
}

/// A request refused before it reaches the gateway: the HTTP status and the JSON-RPC error.
type Refused = (StatusCode, RpcError);

/// A handshake client's `initialize`: a signed session id bound to its caller. Backend sessions
/// are opened on the client's first call to each server, not here.
fn initialize(state: &AppState, id: &Value, params: &Value, verified: &Verified) -> Response {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let version = protocol::negotiate_handshake(requested);
    let declared = params.get("capabilities").cloned().unwrap_or_default();
    let session = state.sessions.issue(ClientCapabilities::from_declared(&declared), verified.subject());
    let result = json!({
        "protocolVersion": version,
        "capabilities": protocol::capabilities(false),
        "serverInfo": protocol::server_info(),
        "instructions": "Hangar: the tools of many MCP servers, named <server>__<tool>.",
    });
    let mut response = json_response(StatusCode::OK, protocol::response(id, result));
    if let Ok(value) = HeaderValue::from_str(&session) {
        response.headers_mut().insert(SESSION_HEADER, value);
    }
    response
}

/// Methods of the handshake revisions that 2026-07-28 removed: 404 and -32601 there.
const REMOVED_IN_STATELESS: [&str; 5] =
    ["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"];

/// Which revision a request speaks: true for the stateless one, false for a handshake session's.
/// Without a session, a request that names 2026-07-28 (or an unknown version) in its header or
/// `_meta` is stateless and held to its rules: `_meta` with protocolVersion and
/// clientCapabilities, the version, method and name headers agreeing with the body; refusals
/// are 400.
fn revision(headers: &HeaderMap, method: &str, params: &Value) -> Result<bool, Refused> {
    let header = headers.get(VERSION_HEADER).map(|v| v.to_str().unwrap_or("?"));
    if headers.contains_key(SESSION_HEADER) {
        return match header {
            Some(h) if !protocol::is_supported(h) => Err((StatusCode::BAD_REQUEST, RpcError::unsupported_version(h))),
            _ => Ok(false),
        };
    }
    let bad_request = |code, message: String| Err((StatusCode::BAD_REQUEST, RpcError::new(code, message)));
    let version = protocol::requested_modern_version(params);
    match (header, version) {
        // No version named anywhere: handshake traffic (missing its session), or a bare probe.
        (None, None) => return Ok(method == "server/discover"),
        (Some(h), None) if protocol::HANDSHAKE_VERSIONS.contains(&h) => return Ok(false),
        (Some(h), None) if h != MODERN_VERSION => {
            return Err((StatusCode::BAD_REQUEST, RpcError::unsupported_stateless_version(h)));
        }
        (Some(_), None) => return bad_request(code::INVALID_PARAMS, missing_meta(protocol::META_PROTOCOL_VERSION)),
        (None, Some(v)) => {
            return bad_request(
                code::HEADER_MISMATCH,
                format!("missing MCP-Protocol-Version header: a request naming {v:?} in _meta names it there too"),
            );
        }
        (Some(h), Some(v)) if h != v => {
            return bad_request(
                code::HEADER_MISMATCH,
                format!("MCP-Protocol-Version header {h:?} and _meta protocolVersion {v:?} disagree"),
            );
        }
        (_, Some(MODERN_VERSION)) => {}
        (_, Some(other)) => return Err((StatusCode::BAD_REQUEST, RpcError::unsupported_stateless_version(other))),
    }
    if params["_meta"].get(protocol::META_CLIENT_CAPABILITIES).is_none_or(Value::is_null) {
        return bad_request(code::INVALID_PARAMS, missing_meta(protocol::META_CLIENT_CAPABILITIES));
    }
    standard_headers(headers, method, params)?;
    Ok(true)
}

/// SEP-2243: a stateless request names its method in `Mcp-Method`, and the tool, prompt or URI
/// of `tools/call`, `prompts/get` and `resources/read` in `Mcp-Name`, so that what sits in front
/// can route without reading the body; both must agree with the body (values compared
/// case-sensitively after trimming whitespace, `=?base64?…?=` decoded).
fn standard_headers(headers: &HeaderMap, method: &str, params: &Value) -> Result<(), Refused> {
    let value = |name: &str| {
        headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).trim_matches([' ', '\t']).to_string())
    };
    let mismatch = |why: String| Err((StatusCode::BAD_REQUEST, RpcError::new(code::HEADER_MISMATCH, why)));
    let given = value("mcp-method");
    if given.as_deref() != Some(method) {
        return mismatch(format!("Mcp-Method header {given:?} does not name the body's method {method:?}"));
    }
    let Some(key) = protocol::named_param(method) else { return Ok(()) };
    let Some(named) = params.get(key).and_then(Value::as_str) else { return Ok(()) };
    let given = value("mcp-name").map(|v| decoded_header_value(&v));
    if given.as_deref() != Some(named) {
        return mismatch(format!("Mcp-Name header {given:?} does not name params.{key} {named:?}"));
    }
    Ok(())
}

/// A header value as sent: `=?base64?…?=` carries what is not printable ASCII.
fn decoded_header_value(value: &str) -> String {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let encoded = value.strip_prefix("=?base64?").and_then(|rest| rest.strip_suffix("?="));
    match encoded.and_then(|e| STANDARD.decode(e).ok()).and_then(|bytes| String::from_utf8(bytes).ok()) {
        Some(decoded) => decoded,
        None => value.to_string(),
    }
}

fn missing_meta(key: &str) -> String {
    format!("params._meta[{key:?}]: required in every {MODERN_VERSION} request without a session")
}

/// A handshake request's session: present, genuine, and not ended by its client.
fn handshake_session(state: &AppState, headers: &HeaderMap, verified: &Verified) -> Result<String, Refused> {
    match headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        None => Err((
            StatusCode::BAD_REQUEST,
            RpcError::new(
                code::INVALID_REQUEST,
                "missing Mcp-Session-Id: call initialize first, or send _meta with protocolVersion 2026-07-28",
            ),
        )),
        Some(session) if !state.session_usable(session, verified) => Err((StatusCode::NOT_FOUND, session_not_found())),
        Some(session) => Ok(session.to_string()),
    }
}

/// A request that reaches the gateway, in the client's revision.
struct Request {
    id: Value,
    method: String,
    params: Value,
    /// The handshake session (None in the stateless revision).
    session: Option<String>,
    modern: bool,
}

/// The call behind a request, and what it may relay toward the client while it runs.
struct Call {
    future: CallFuture,
    relays: mpsc::UnboundedReceiver<Relay>,
    capabilities: ClientCapabilities,
    cancelled: Arc<Notify>,
    /// Held for its Drop: the request leaves the cancellable set when the call ends.
    _unregister: Unregister,
    /// The verified subject that started the call (None without OAuth).
    owner: Option<String>,
    accepts_events: bool,
}

/// Starts the gateway's call for a request; answers it as plain JSON unless the server sends
/// something toward the client first, and then as an event stream.
async fn handle(state: Arc<AppState>, headers: &HeaderMap, mut request: Request, verified: &Verified) -> Response {
    let mut call = start_call(&state, headers, &mut request, verified);
    let id = &request.id;
    let first = loop {
        tokio::select! {
            outcome = &mut call.future => {
                // A server that streamed its notifications and answer at once: they were queued
                // while the call was polled, and go out before the answer, on an event stream.
                if call.accepts_events
                    && let Ok(relay) = call.relays.try_recv()
                {
                    call.future = Box::pin(std::future::ready(outcome));
                    break relay;
                }
                return match outcome {
                    Ok(result) => json_response(StatusCode::OK, protocol::response(id, result)),
                    Err(e) => rpc_error(error_status(request.modern, &e), id, e),
                };
            }
            _ = call.cancelled.notified() => return rpc_error(StatusCode::OK, id, cancelled_error()),
            Some(relay) = call.relays.recv() => match relay {
                Relay::Request { method, params, answer } if request.modern => {
                    match refusal(true, None, call.capabilities, &method) {
                        Some(why) => {
                            let _ = answer.send(Err(RpcError::new(code::METHOD_NOT_FOUND, why)));
                        }
                        None => {
                            let result = park(&state, call.parked(), &method, params, answer);
                            return json_response(StatusCode::OK, protocol::response(id, result));
                        }
                    }
                }
                // A client that takes no event stream gets no notifications.
                Relay::Notification(_) if !call.accepts_events => {}
                relay => break relay,
            },
        }
    };
    stream_answer(state, headers, request, call, first)
}

/// The HTTP status of an error answer: 200 in the handshake revisions; in 2026-07-28 an unknown
/// method is 404 and a capability the client did not declare 400, as its transport says.
fn error_status(modern: bool, error: &RpcError) -> StatusCode {
    match error.code {
        code::METHOD_NOT_FOUND if modern => StatusCode::NOT_FOUND,
        code::MISSING_CLIENT_CAPABILITY | code::HEADER_MISMATCH if modern => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

fn cancelled_error() -> RpcError {
    RpcError::new(code::REQUEST_CANCELLED, "request cancelled by the client")
}

impl Call {
    /// The call parked for a 2026-07-28 client's input.
    fn parked(self) -> Parked {
        Parked {
            call: self.future,
            relays: self.relays,
            answers: HashMap::new(),
            capabilities: self.capabilities,
            owner: self.owner,
        }
    }
}

/// Who calls and what of the client's request goes on with the call: the gateway's context for
/// it, and what the client can be asked.
fn call_context(
    state: &AppState,
    headers: &HeaderMap,
    request: &Request,
    verified: &Verified,
) -> (CallContext, ClientCapabilities) {
    let Request { method, params, session, modern, .. } = request;
    let caller = match &verified.0 {
        Some(caller) => caller.clone(),
        None => Caller::unverified(
            params
                .get("_meta")
                .and_then(|m| m.get(protocol::META_CLIENT_INFO))
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
    };
    let capabilities = match session {
        Some(s) => state.sessions.capabilities(s),
        // A stateless client declares its capabilities on every request.
        None => ClientCapabilities::from_declared(
            params.get("_meta").and_then(|m| m.get(protocol::META_CLIENT_CAPABILITIES)).unwrap_or(&Value::Null),
        ),
    };
    // A stateless client's answers to a server's `input_required` go back to that server.
    let input = match modern {
        true => ["inputResponses", "requestState"]
            .into_iter()
            .filter_map(|key| params.get(key).map(|v| (key.to_string(), v.clone())))
            .collect(),
        false => serde_json::Map::new(),
    };
    let param_headers = (*modern && method == "tools/call").then(|| {
        headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with(param_headers::PREFIX))
            .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect()
    });
    let ctx = CallContext {
        caller,
        // Handshake sessions are pinned to a group member chosen from their (signed) id.
        pin: session.as_deref().map(session_pin),
        relay: None,
        session: session.clone(),
        meta: forwarded_meta(params, session.is_some().then_some(capabilities)),
        stateless: *modern,
        input,
        param_headers,
    };
    (ctx, capabilities)
}

/// The gateway's call for a request: its context, where what the server sends during it goes,
/// and how it is cancelled.
fn start_call(state: &Arc<AppState>, headers: &HeaderMap, request: &mut Request, verified: &Verified) -> Call {
    let (mut ctx, capabilities) = call_context(state, headers, request, verified);
    let Request { id, method, params, session, modern } = request;
    let modern = *modern;

    // A handshake client may cancel by `notifications/cancelled`; any client by going away
    // (which drops the call, and the backend hears `notifications/cancelled`).
    let cancel_key = session.as_ref().map(|s| (s.clone(), id.to_string()));
    let cancelled = Arc::new(Notify::new());
    if let Some(key) = &cancel_key {
        state.in_flight.lock().unwrap().insert(key.clone(), cancelled.clone());
    }
    let unregister = Unregister { state: state.clone(), key: cancel_key };

    // What the server sends toward the client during the call (progress, log messages, its
    // requests) needs an event stream: answered as plain JSON unless some of it arrives first.
    let accepts_events =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    let (relay_tx, relays) = mpsc::unbounded_channel::<Relay>();
    let meta = params.get("_meta");
    let progress_token = meta.and_then(|m| m.get("progressToken")).cloned();
    // What may come back during the call: a stateless client hears only what it asked for
    // (progress by its token, log messages by its logLevel, requests by its capabilities).
    let relayed = match modern {
        true => {
            progress_token.is_some()
                || capabilities != ClientCapabilities::default()
                || meta.is_some_and(|m| m.get(protocol::META_LOG_LEVEL).is_some())
        }
        false => accepts_events,
    };
    if relayed && method == "tools/call" {
        ctx.relay = Some(CallRelay { progress_token, sink: relay_tx });
    }
    let owner = verified.subject().map(str::to_string);
    let span = spans::request(headers, method, id, params, modern);
    let (state, caller) = (state.clone(), owner.clone());
    // Taken, not copied: the arguments travel on as they are.
    let (method, params) = (method.clone(), std::mem::take(params));
    let future = async move {
        let began = std::time::Instant::now();
        let outcome = match (method.as_str(), modern) {
            ("server/discover", _) => Ok(discover()),
            ("ping", false) => Ok(json!({})),
            _ => dispatch(&state.gateway, &method, params, &ctx).await,
        };
        let error_type = spans::outcome(&tracing::Span::current(), &outcome);
        let labels = [crate::metrics::method_label(&method), error_type.as_str()];
        let trace_id = hangar_telemetry::trace_context::trace_id();
        state.gateway.metrics.server_operation.observe(&labels, began.elapsed().as_secs_f64(), trace_id.as_deref());
        let mut result = finish(&method, outcome?, modern);
        // A server's `requestState` reaches a stateless client bound to it (see `unbind_state`).
        if let Some(server_state) = result.get_mut("requestState")
            && let Some(raw) = server_state.as_str()
            && modern
        {
            *server_state = Value::String(state.sessions.bind_state(raw, caller.as_deref()));
        }
        Ok(result)
    };
    // The span lives as long as the call (across a stateless client's rounds, or a stream).
    let future: CallFuture = Box::pin(tracing::Instrument::instrument(future, span));
    Call { future, relays, capabilities, cancelled, _unregister: unregister, owner, accepts_events }
}

/// What of a request's `_meta` goes on to the server: all but the progress token (the server
/// gets one of Hangar's own); a handshake client's capabilities, declared at `initialize`, in
/// the stateless revision's key, for servers that speak it.
fn forwarded_meta(params: &Value, session: Option<ClientCapabilities>) -> serde_json::Map<String, Value> {
    let mut meta = params.get("_meta").and_then(Value::as_object).cloned().unwrap_or_default();
    meta.remove("progressToken");
    if let Some(capabilities) = session {
        meta.insert(protocol::META_CLIENT_CAPABILITIES.into(), capabilities.to_declared());
    }
    meta
}

/// From the first relay on, answers as an event stream: what the server sends, then the answer.
/// What the client has not read yet is bounded: notifications beyond it are dropped (they are
/// advisory), requests and the answer wait for room.
fn stream_answer(state: Arc<AppState>, headers: &HeaderMap, request: Request, call: Call, first: Relay) -> Response {
    let (out_tx, out_rx) = mpsc::channel::<Value>(PROGRESS_QUEUE);
    let streams = state.answer_streams.clone();
    let accepts_events = call.accepts_events;
    let resumable_session = request
        .session
        .clone()
        .filter(|_| headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok()) == Some(protocol::LATEST_HANDSHAKE));
    tokio::spawn(relay_until_answered(state, request, call, first, out_tx));
    // 2025-11-25 asks for event ids and a priming event, so that a dropped connection can resume.
    let out_rx = match (resumable_session, accepts_events) {
        (Some(session), true) => match streams.start(&session, out_rx) {
            Ok(events) => {
                return axum::response::sse::Sse::new(events.map(Ok::<_, std::convert::Infallible>)).into_response();
            }
            Err(out_rx) => out_rx,
        },
        _ => out_rx,
    };
    let events = tokio_stream::wrappers::ReceiverStream::new(out_rx).map(|m| {
        Ok::<_, std::convert::Infallible>(axum::response::sse::Event::default().event("message").data(m.to_string()))
    });
    axum::response::sse::Sse::new(events).into_response()
}

/// Sends what the server relays toward the client, then the call's answer, on `out`.
async fn relay_until_answered(
    state: Arc<AppState>,
    request: Request,
    mut call: Call,
    first: Relay,
    out: mpsc::Sender<Value>,
) {
    let Request { id, session, modern, .. } = request;
    let mut client_requests = ClientRequests { state: state.clone(), session, ids: Vec::new() };
    let mut pending = Some(first);
    let message = loop {
        if let Some(relay) = pending.take() {
            let sent = match relay {
                Relay::Notification(n) => {
                    let _ = out.try_send(n);
                    true
                }
                Relay::Request { method, params, answer }
                    if modern && refusal(modern, None, call.capabilities, &method).is_none() =>
                {
                    // 2026-07-28: the answer ends the stream as `input_required`; the call waits.
                    let result = park(&state, call.parked(), &method, params, answer);
                    let _ = out.send(protocol::response(&id, result)).await;
                    return;
                }
                Relay::Request { method, params, answer } => {
                    client_requests.send(&out, modern, call.capabilities, &method, params, answer).await
                }
            };
            if !sent {
                return;
            }
            continue;
        }
        tokio::select! {
            biased;
            Some(relay) = call.relays.recv() => pending = Some(relay),
            outcome = &mut call.future => break match outcome {
                Ok(result) => protocol::response(&id, result),
                Err(e) => protocol::error_response(&id, &e),
            },
            _ = call.cancelled.notified() => break protocol::error_response(&id, &cancelled_error()),
            // The client went away: dropping the call cancels it at the server.
            _ = out.closed() => return,
        }
    };
    // What the server sent just before its answer goes out before the answer.
    while let Ok(relay) = call.relays.try_recv() {
        if let Relay::Notification(n) = relay {
            let _ = out.try_send(n);
        }
    }
    let _ = out.send(message).await;
}

/// A stable number from a session id: the same on every core replica.
fn session_pin(session: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(session.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The stateless revision's `server/discover`: Hangar's own revision, capabilities and info.
fn discover() -> Value {
    json!({
        "supportedVersions": [MODERN_VERSION],
        "capabilities": protocol::capabilities(true),
        "instructions": "Hangar: the tools of many MCP servers, named <server>__<tool>.",
        "_meta": {protocol::META_SERVER_INFO: protocol::server_info()},
    })
}

/// Results of these methods are cacheable in the stateless revision, which then requires
/// `ttlMs` and `cacheScope`; the gateway's lists change as servers come and go: no caching.
const CACHEABLE: [&str; 6] =
    ["server/discover", "tools/list", "resources/list", "resources/templates/list", "prompts/list", "resources/read"];

/// Shapes a result for the client's revision: the stateless revision requires `resultType`
/// (and cache hints on lists); the handshake revisions know nothing of them or of a backend's
/// server info.
fn finish(method: &str, mut result: Value, modern: bool) -> Value {
    if let Some(object) = result.as_object_mut() {
        // A backend's server info must not pass for Hangar's; Hangar's own (discover) stays.
        if method != "server/discover"
            && let Some(Value::Object(meta)) = object.get_mut("_meta")
        {
            meta.remove(protocol::META_SERVER_INFO);
            if meta.is_empty() {
                object.remove("_meta");
            }
        }
        if modern {
            // A server's `input_required` goes back as it is: only a complete result is cached.
            let result_type = object.entry("resultType").or_insert_with(|| "complete".into());
            if result_type == "complete" && CACHEABLE.contains(&method) {
                object.insert("ttlMs".into(), 0.into());
                object.insert("cacheScope".into(), "private".into());
            }
        } else {
            for key in ["resultType", "ttlMs", "cacheScope"] {
                object.remove(key);
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (axum::http::HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn the_standard_headers_must_agree_with_the_body() {
        let call = json!({"name": "notes__add", "arguments": {}});
        let ok = |h: &[(&'static str, &str)]| standard_headers(&headers(h), "tools/call", &call).is_ok();
        assert!(ok(&[("mcp-method", "tools/call"), ("mcp-name", "notes__add")]));
        assert!(ok(&[("mcp-method", " tools/call\t"), ("mcp-name", "  notes__add  ")]), "whitespace is trimmed");
        assert!(ok(&[("mcp-method", "tools/call"), ("mcp-name", "=?base64?bm90ZXNfX2FkZA==?=")]), "base64 is decoded");
        assert!(!ok(&[("mcp-method", "tools/call")]), "a named tool needs Mcp-Name");
        assert!(!ok(&[("mcp-method", "TOOLS/CALL"), ("mcp-name", "notes__add")]), "values are case-sensitive");
        assert!(!ok(&[("mcp-method", "tools/call"), ("mcp-name", "notes__other")]));
        assert!(!ok(&[("mcp-name", "notes__add")]), "Mcp-Method is required");
        let refused = standard_headers(&headers(&[]), "tools/list", &json!({})).unwrap_err();
        assert_eq!((refused.0, refused.1.code), (StatusCode::BAD_REQUEST, code::HEADER_MISMATCH));
        assert!(standard_headers(&headers(&[("mcp-method", "tools/list")]), "tools/list", &json!({})).is_ok());
    }
}
