//! The Streamable HTTP MCP endpoint (`POST/GET/DELETE /mcp`), `/metrics`, `/healthz`, `/readyz`.
//! Speaks the handshake revisions (initialize, `Mcp-Session-Id`) and the stateless revision
//! (`server/discover`, `_meta` on every request) on the same path.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hangar_plugin_runtime::Caller;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_stream::StreamExt;

use crate::{
    backend::{CallRelay, Relay},
    gateway::{CallContext, Gateway},
    parse_budget::{MAX_REQUEST_OBJECTS, MAX_REQUEST_VALUES, json_shape},
    protocol::{self, MODERN_VERSION, RpcError, code},
    session::{ClientCapabilities, SessionKeys},
};

/// Largest request body accepted unless configured otherwise (`--max-body-bytes`).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Where a client's answer to a server's request goes.
pub type ClientAnswer = tokio::sync::oneshot::Sender<Result<Value, RpcError>>;

pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub sessions: SessionKeys,
    pub registry: prometheus::Registry,
    /// The admin API's bearer key; None refuses every admin call.
    pub api_key: Option<String>,
    /// Requests of handshake sessions that `notifications/cancelled` can stop: (session, id).
    pub in_flight: Mutex<HashMap<(String, String), Arc<Notify>>>,
    /// Largest request body accepted; larger ones get 413 with a JSON-RPC error.
    pub max_body_bytes: usize,
    /// Servers' requests sent to clients, waiting for their answers: (session, id).
    pub client_requests: Mutex<HashMap<(String, String), ClientAnswer>>,
    /// 2026-07-28 clients' calls waiting for input, by Hangar's `requestState`.
    pub parked: Mutex<HashMap<String, Parked>>,
    /// 2025-11-25 clients' answer streams, resumable with `Last-Event-ID`.
    pub answer_streams: Arc<crate::answer_stream::AnswerStreams>,
    /// Which Origin and Host headers `/mcp` accepts (403 otherwise).
    pub origins: crate::origin::OriginPolicy,
    /// OAuth 2.1 protection of `/mcp` (`--auth-issuer`); None: open, callers unverified.
    pub auth: Option<Arc<hangar_auth::TokenVerifier>>,
    /// Serve `/metrics` and the admin API's `openapi.json` (both unauthenticated); off for
    /// those who want them closed (404).
    pub open_surface: bool,
}

impl AppState {
    pub fn new(
        gateway: Arc<Gateway>,
        sessions: SessionKeys,
        registry: prometheus::Registry,
        api_key: Option<String>,
    ) -> Self {
        Self {
            gateway,
            sessions,
            registry,
            api_key,
            in_flight: Mutex::default(),
            max_body_bytes: MAX_BODY_BYTES,
            origins: Default::default(),
            client_requests: Mutex::default(),
            parked: Mutex::default(),
            answer_streams: Arc::default(),
            auth: None,
            open_surface: true,
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let open_surface = state.open_surface;
    let router = Router::new()
        .route(
            "/mcp",
            get(get_mcp)
                .post(post_mcp)
                .delete(delete_mcp)
                .layer(axum::middleware::from_fn_with_state(state.clone(), check_token))
                .layer(axum::middleware::from_fn_with_state(state.clone(), check_origin)),
        )
        .route("/.well-known/oauth-protected-resource", get(resource_metadata))
        .route("/.well-known/oauth-protected-resource/{*path}", get(resource_metadata))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .merge(crate::admin::router());
    let router = if open_surface {
        router.route("/metrics", get(metrics)).merge(crate::admin::openapi_router())
    } else {
        router
    };
    // The limit is enforced in post_mcp, so that it answers with a JSON-RPC error.
    router.layer(DefaultBodyLimit::disable()).with_state(state)
}

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// DNS-rebinding protection before anything else of `/mcp` runs.
async fn check_origin(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match state.origins.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(why) => rpc_error(StatusCode::FORBIDDEN, &Value::Null, RpcError::new(code::INVALID_REQUEST, why)),
    }
}

/// The caller a request's access token proved, if `/mcp` is protected (as the policy sees it).
#[derive(Clone, Default)]
pub struct Verified(pub Option<Caller>);

impl Verified {
    /// The subject a session id must have been issued to (None without OAuth).
    fn subject(&self) -> Option<&str> {
        self.0.as_ref().map(|c| c.subject.as_str())
    }
}

impl AppState {
    /// Whether a handshake session id may be used by this request: genuine, not expired,
    /// issued to the request's verified subject, and not ended (DELETE) on this replica.
    fn session_usable(&self, id: &str, verified: &Verified) -> bool {
        self.sessions.verify(id, verified.subject()) && !self.gateway.client_session_ended(id)
    }
}

/// With `--auth-issuer`: every `/mcp` request carries a valid access token for this resource
/// (401 and the metadata's address otherwise; 403 without a required scope). The token stays
/// here: backends never see it.
async fn check_token(
    State(state): State<Arc<AppState>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(auth) = &state.auth else {
        request.extensions_mut().insert(Verified(None));
        return next.run(request).await;
    };
    let authorization = request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
    match auth.verify(authorization).await {
        Ok(identity) => {
            let caller = Caller {
                verified: true,
                subject: identity.subject,
                client_id: identity.client_id,
                scopes: identity.scopes,
                groups: identity.groups,
            };
            request.extensions_mut().insert(Verified(Some(caller)));
            next.run(request).await
        }
        Err(refusal) => {
            let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
            let challenge = auth.challenge(&refusal, host);
            let (error, description) = match &refusal {
                hangar_auth::Refusal::Missing => (
                    "invalid_request",
                    "this endpoint needs an OAuth access token: see the resource_metadata address in WWW-Authenticate"
                        .to_string(),
                ),
                hangar_auth::Refusal::Invalid(why) => ("invalid_token", why.clone()),
                hangar_auth::Refusal::InsufficientScope => (
                    "insufficient_scope",
                    format!("the token lacks a required scope: {}", auth.config().required_scopes.join(" ")),
                ),
            };
            tracing::debug!(error, description, "request refused by the access-token check");
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let mut response = json_response(status, json!({"error": error, "error_description": description}));
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
    }
}

/// RFC 9728 protected-resource metadata (no token needed to read it).
async fn resource_metadata(State(state): State<Arc<AppState>>) -> Response {
    match &state.auth {
        Some(auth) => json_response(StatusCode::OK, auth.resource_metadata()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn rpc_error(status: StatusCode, id: &Value, error: RpcError) -> Response {
    json_response(status, protocol::error_response(id, &error))
}

/// The handshake revisions' server-to-client stream: list changes (tools, prompts, resources)
/// for every client, and updates of the resources this client subscribed to.
async fn get_mcp(
    State(state): State<Arc<AppState>>,
    axum::Extension(verified): axum::Extension<Verified>,
    headers: HeaderMap,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio_stream::wrappers::BroadcastStream;
    match headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        Some(id) if state.session_usable(id, &verified) => {
            if let Some(resumed) = headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|last| state.answer_streams.resume(id, last))
            {
                return Sse::new(resumed.map(Ok::<_, std::convert::Infallible>)).into_response();
            }
            let everyone = BroadcastStream::new(state.gateway.notices.subscribe());
            let own = BroadcastStream::new(state.gateway.client_notices(id));
            let stream = everyone.merge(own).filter_map(|e| e.ok()).map(|notice| {
                Ok::<_, std::convert::Infallible>(Event::default().event("message").data(notice.to_string()))
            });
            Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
        }
        Some(_) => StatusCode::NOT_FOUND.into_response(),
        // The stateless revision has no standalone stream.
        None => (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST, DELETE")], "").into_response(),
    }
}

async fn delete_mcp(
    State(state): State<Arc<AppState>>,
    axum::Extension(verified): axum::Extension<Verified>,
    headers: HeaderMap,
) -> Response {
    match headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        Some(id) if state.session_usable(id, &verified) => {
            state.gateway.end_client_session(id);
            StatusCode::OK.into_response()
        }
        Some(_) => StatusCode::NOT_FOUND.into_response(),
        None => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = prometheus::TextEncoder::new().encode_to_string(&state.registry.gather()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The transport's rules on a POST's headers alone: the body's media type (415), what the client
/// accepts (406) and the protocol version it names (400): the refusal, if any. Absent headers
/// are not required.
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
    if let Some(version) = headers.get(VERSION_HEADER).map(|v| v.to_str().unwrap_or("?"))
        && !protocol::is_supported(version)
    {
        return Some(rpc_error(StatusCode::BAD_REQUEST, &Value::Null, RpcError::unsupported_version(version)));
    }
    None
}

async fn post_mcp(
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

/// One JSON-RPC message: a request, a notification, or a client's answer to a server's request.
async fn post_message(state: Arc<AppState>, headers: &HeaderMap, mut message: Value, verified: &Verified) -> Response {
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
    let Some(method) = object.get("method").and_then(Value::as_str).map(str::to_string) else {
        // The client's answer to a server's request relayed during one of its calls.
        let session = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let key = (session.to_string(), object.get("id").and_then(Value::as_str).unwrap_or_default().to_string());
        tracing::debug!(id = key.1, "a client's answer to a server's request");
        let Some(waiting) = state.client_requests.lock().unwrap().remove(&key) else {
            return rpc_error(
                StatusCode::NOT_FOUND,
                &null,
                RpcError::new(
                    code::INVALID_REQUEST,
                    "no request of this session with that id is waiting for an answer",
                ),
            );
        };
        let answer = match object.get("error") {
            Some(e) => Err(RpcError::from_json(e)),
            None => Ok(object.remove("result").unwrap_or_default()),
        };
        let _ = waiting.send(answer);
        return StatusCode::ACCEPTED.into_response();
    };
    let method = method.as_str();
    let Some(id) = object.get("id").cloned() else {
        // A notification in a session that is not (or no longer) genuine is refused like a request.
        if let Some(session) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
            && !state.session_usable(session, verified)
        {
            return rpc_error(
                StatusCode::NOT_FOUND,
                &null,
                RpcError::new(
                    code::SESSION_NOT_FOUND,
                    "unknown, expired, ended, forged or another caller's Mcp-Session-Id: initialize a new session",
                ),
            );
        }
        if method == "notifications/cancelled"
            && let Some(session) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
        {
            let request =
                object.get("params").and_then(|p| p.get("requestId")).map(Value::to_string).unwrap_or_default();
            if let Some(cancel) = state.in_flight.lock().unwrap().get(&(session.to_string(), request)) {
                cancel.notify_one();
            }
        }
        return StatusCode::ACCEPTED.into_response(); // notifications
    };
    if !(id.is_string() || id.is_i64() || id.is_u64()) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &null,
            RpcError::new(code::INVALID_REQUEST, "id must be a string or an integer"),
        );
    }
    // Taken, not copied: the arguments travel on as they are (no copy per request).
    let params = object.remove("params").unwrap_or_else(|| json!({}));

    if method == "initialize" {
        let requested = params.get("protocolVersion").and_then(Value::as_str);
        let version = protocol::negotiate_handshake(requested);
        // Backend sessions are opened on the client's first call to each server, not here.
        let declared = params.get("capabilities").cloned().unwrap_or_default();
        let session = state.sessions.issue(ClientCapabilities::from_declared(&declared), verified.subject());
        let result = json!({
            "protocolVersion": version,
            "capabilities": protocol::capabilities(false),
            "serverInfo": protocol::server_info(),
            "instructions": "Hangar: the tools of many MCP servers, named <server>__<tool>.",
        });
        let mut response = json_response(StatusCode::OK, protocol::response(&id, result));
        if let Ok(value) = HeaderValue::from_str(&session) {
            response.headers_mut().insert(SESSION_HEADER, value);
        }
        return response;
    }

    let modern = match protocol::requested_modern_version(&params) {
        Some(MODERN_VERSION) => true,
        Some(other) if protocol::HANDSHAKE_VERSIONS.contains(&other) => false,
        Some(other) => return rpc_error(StatusCode::OK, &id, RpcError::unsupported_version(other)),
        None if method == "server/discover" => true,
        None => false,
    };
    // The stateless revision names its version twice; they must agree.
    if modern
        && let (Some(header), Some(meta)) =
            (headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok()), protocol::requested_modern_version(&params))
        && header != meta
    {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &id,
            RpcError::new(
                code::INVALID_REQUEST,
                format!("MCP-Protocol-Version header {header:?} and _meta protocolVersion {meta:?} disagree"),
            ),
        );
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
    // Handshake requests need a genuine session that its client has not ended.
    let session = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).filter(|_| !modern);
    if !modern {
        let genuine = |s: &str| state.session_usable(s, verified);
        match session.map(genuine) {
            None => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    &id,
                    RpcError::new(
                        code::INVALID_REQUEST,
                        "missing Mcp-Session-Id: call initialize first, or send _meta with protocolVersion 2026-07-28",
                    ),
                );
            }
            Some(false) => {
                return rpc_error(
                    StatusCode::NOT_FOUND,
                    &id,
                    RpcError::new(
                        code::SESSION_NOT_FOUND,
                        "unknown, expired, ended, forged or another caller's Mcp-Session-Id: initialize a new session",
                    ),
                );
            }
            Some(true) => {}
        }
    }

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
    // Handshake sessions are pinned to a group member chosen from their (signed) id.
    let pin = session.map(session_pin);
    let session_owned = session.map(str::to_string);
    let owner = verified.subject().map(str::to_string);
    let mut ctx = CallContext { caller, pin, relay: None, session: session_owned.clone() };

    // A handshake client may cancel by `notifications/cancelled`; any client by going away
    // (which drops the call, and the backend hears `notifications/cancelled`).
    let cancel_key = session.map(|s| (s.to_string(), id.to_string()));
    let cancelled = Arc::new(Notify::new());
    if let Some(key) = &cancel_key {
        state.in_flight.lock().unwrap().insert(key.clone(), cancelled.clone());
    }
    let unregister = Unregister { state: state.clone(), key: cancel_key };
    let cancelled_error = || RpcError::new(code::REQUEST_CANCELLED, "request cancelled by the client");

    // What the server sends toward the client during the call (progress, log messages, its
    // requests) needs an event stream: answered as plain JSON unless some of it arrives first.
    let accepts_events =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    let (relay_tx, mut relay_rx) = mpsc::unbounded_channel::<Relay>();
    let capabilities = match session {
        Some(s) => state.sessions.capabilities(s),
        // A stateless client declares its capabilities on every request.
        None => ClientCapabilities::from_declared(
            params.get("_meta").and_then(|m| m.get(protocol::META_CLIENT_CAPABILITIES)).unwrap_or(&Value::Null),
        ),
    };
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
    let gateway = state.gateway.clone();
    let method = method.to_string();
    let mut call: CallFuture = Box::pin(async move {
        let outcome = dispatch(&gateway, &method, params, &ctx, modern).await;
        outcome.map(|result| finish(&method, result, modern))
    });
    let first = loop {
        tokio::select! {
            outcome = &mut call => {
                drop(unregister);
                return match outcome {
                    Ok(result) => json_response(StatusCode::OK, protocol::response(&id, result)),
                    Err(e) => rpc_error(StatusCode::OK, &id, e),
                };
            }
            _ = cancelled.notified() => return rpc_error(StatusCode::OK, &id, cancelled_error()),
            Some(relay) = relay_rx.recv() => match relay {
                Relay::Request { method, params, answer } if modern => {
                    match refusal(modern, session, capabilities, &method) {
                        Some(why) => {
                            let _ = answer.send(Err(RpcError::new(code::METHOD_NOT_FOUND, why)));
                        }
                        None => {
                            let parked = Parked { call, relays: relay_rx, answers: HashMap::new(), capabilities, owner: owner.clone() };
                            let result = park(&state, parked, &method, params, answer);
                            return json_response(StatusCode::OK, protocol::response(&id, result));
                        }
                    }
                }
                // A client that takes no event stream gets no notifications.
                Relay::Notification(_) if !accepts_events => {}
                relay => break relay,
            },
        }
    };

    // From the first relay on, answer as an event stream: what the server sends, then the answer.
    // What the client has not read yet is bounded: notifications beyond it are dropped (they
    // are advisory), requests and the answer wait for room.
    let (out_tx, out_rx) = mpsc::channel::<Value>(PROGRESS_QUEUE);
    let streams = state.answer_streams.clone();
    let resumable_session = session_owned
        .clone()
        .filter(|_| headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok()) == Some(protocol::LATEST_HANDSHAKE));
    tokio::spawn(async move {
        let _unregister = unregister;
        let mut client_requests = ClientRequests { state: state.clone(), session: session_owned, ids: Vec::new() };
        let mut pending = Some(first);
        let message = loop {
            if let Some(relay) = pending.take() {
                let sent = match relay {
                    Relay::Notification(n) => {
                        let _ = out_tx.try_send(n);
                        true
                    }
                    Relay::Request { method, params, answer }
                        if modern && refusal(modern, None, capabilities, &method).is_none() =>
                    {
                        // 2026-07-28: the answer ends the stream as `input_required`; the call waits.
                        let parked = Parked {
                            call,
                            relays: relay_rx,
                            answers: HashMap::new(),
                            capabilities,
                            owner: owner.clone(),
                        };
                        let result = park(&state, parked, &method, params, answer);
                        let _ = out_tx.send(protocol::response(&id, result)).await;
                        return;
                    }
                    Relay::Request { method, params, answer } => {
                        client_requests.send(&out_tx, modern, capabilities, &method, params, answer).await
                    }
                };
                if !sent {
                    return;
                }
                continue;
            }
            tokio::select! {
                biased;
                Some(relay) = relay_rx.recv() => pending = Some(relay),
                outcome = &mut call => break match outcome {
                    Ok(result) => protocol::response(&id, result),
                    Err(e) => protocol::error_response(&id, &e),
                },
                _ = cancelled.notified() => break protocol::error_response(&id, &cancelled_error()),
                // The client went away: dropping the call cancels it at the server.
                _ = out_tx.closed() => return,
            }
        };
        // What the server sent just before its answer goes out before the answer.
        while let Ok(relay) = relay_rx.try_recv() {
            if let Relay::Notification(n) = relay {
                let _ = out_tx.try_send(n);
            }
        }
        let _ = out_tx.send(message).await;
    });
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

/// A 2026-07-28 client's `subscriptions/listen`: an event stream that acknowledges the list
/// changes it asked for (resource subscriptions are not honored here: left out of the
/// acknowledgment, as the revision says), then carries them, each stamped with the request's id.
fn listen(state: &Arc<AppState>, id: &Value, params: &Value) -> Response {
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

/// Why a client cannot be asked a server's request, if it cannot.
fn refusal(modern: bool, session: Option<&str>, capabilities: ClientCapabilities, method: &str) -> Option<String> {
    if !capabilities.answers(method) {
        let when = if modern { "in _meta of its request" } else { "at initialize" };
        return Some(format!("the client did not declare the capability {method} needs ({when})"));
    }
    (!modern && session.is_none()).then(|| format!("{method} needs a client session to answer it"))
}

/// A call that is its own future, kept across a 2026-07-28 client's rounds.
type CallFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, RpcError>> + Send>>;

/// A stateless (2026-07-28) client's call waiting for the answers to its server's requests: it
/// got `input_required` with Hangar's `requestState`, and retries the call with that state and
/// `inputResponses`. The call is not polled meanwhile; dropping it (expiry) cancels it.
pub struct Parked {
    call: CallFuture,
    relays: mpsc::UnboundedReceiver<Relay>,
    answers: HashMap<String, ClientAnswer>,
    capabilities: ClientCapabilities,
    /// The verified subject that started the call: only it may resume it (None without OAuth).
    owner: Option<String>,
}

/// How `requestState` values of Hangar's own begin.
const PARKED_PREFIX: &str = "hangar.";
/// Calls waiting for their clients' input at once, and how long one waits.
const MAX_PARKED: usize = 10_000;
const PARKED_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Parks a call on a server's request: the `input_required` result the client gets.
fn park(state: &Arc<AppState>, mut parked: Parked, method: &str, params: Value, answer: ClientAnswer) -> Value {
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
async fn resume(state: &Arc<AppState>, id: &Value, token: &str, params: &Value, verified: &Verified) -> Response {
    // Another caller's token is answered as an unknown one, and leaves the call parked for its owner.
    let taken = {
        let mut parked = state.parked.lock().unwrap();
        match parked.get(token) {
            Some(p) if p.owner.as_deref() == verified.subject() => parked.remove(token),
            _ => None,
        }
    };
    let Some(mut parked) = taken else {
        return rpc_error(
            StatusCode::OK,
            id,
            RpcError::new(
                code::INVALID_PARAMS,
                "params.requestState: unknown or expired; call the tool again without it",
            ),
        );
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

/// The requests servers sent one client during one call: sent on the call's event stream under
/// ids of the gateway's own, answered by the client's POSTs, forgotten when the call ends.
struct ClientRequests {
    state: Arc<AppState>,
    session: Option<String>,
    ids: Vec<String>,
}

impl ClientRequests {
    /// Sends a server's request to the client, or answers the server at once when the client
    /// cannot answer it. False when the client has gone.
    async fn send(
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
const PROGRESS_QUEUE: usize = 64;

/// Removes a request from the cancellable set when its handling ends.
struct Unregister {
    state: Arc<AppState>,
    key: Option<(String, String)>,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            self.state.in_flight.lock().unwrap().remove(key);
        }
    }
}

/// A stable number from a session id: the same on every core replica.
fn session_pin(session: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(session.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

async fn dispatch(
    gateway: &Gateway,
    method: &str,
    mut params: Value,
    ctx: &CallContext,
    modern: bool,
) -> Result<Value, RpcError> {
    match method {
        "server/discover" => Ok(json!({
            "supportedVersions": [MODERN_VERSION],
            "capabilities": protocol::capabilities(true),
            "instructions": "Hangar: the tools of many MCP servers, named <server>__<tool>.",
            "_meta": {protocol::META_SERVER_INFO: protocol::server_info()},
        })),
        "ping" if !modern => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": gateway.list_tools(ctx).await})),
        "tools/call" => {
            let arguments = params.get_mut("arguments").map(Value::take).unwrap_or_else(|| json!({}));
            let name = params.get("name").and_then(Value::as_str).ok_or_else(|| {
                RpcError::new(code::INVALID_PARAMS, "params.name: required (the tool to call, as listed by tools/list)")
            })?;
            gateway.call_tool(name, arguments, ctx).await.map_err(|e| e.to_rpc())
        }
        "prompts/list" => Ok(gateway.list_prompts(ctx).await),
        "prompts/get" => gateway.get_prompt(params, ctx).await,
        "resources/list" => Ok(gateway.list_resources(ctx).await),
        "resources/templates/list" => Ok(gateway.list_resource_templates(ctx).await),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            gateway.resource_request(method, params, ctx).await
        }
        "completion/complete" => gateway.complete(params, ctx).await,
        "logging/setLevel" => gateway.set_log_level(params, ctx).await,
        other => {
            Err(RpcError::new(code::METHOD_NOT_FOUND, format!("method {other:?} is not offered by the Hangar gateway")))
        }
    }
}

/// Results of these methods are cacheable in the stateless revision, which then requires
/// `ttlMs` and `cacheScope`; the gateway's lists change as servers come and go: no caching.
const CACHEABLE: [&str; 5] =
    ["server/discover", "tools/list", "resources/list", "resources/templates/list", "prompts/list"];

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
            object.insert("resultType".into(), "complete".into());
            if CACHEABLE.contains(&method) {
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
