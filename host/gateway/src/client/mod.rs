//! The client edge: the Streamable HTTP MCP endpoint (`POST/GET/DELETE /mcp`), `/metrics`,
//! `/healthz`, `/readyz`. Speaks the handshake revisions (initialize, `Mcp-Session-Id`) and the
//! stateless revision (`server/discover`, `_meta` on every request) on the same path, and turns
//! either into one call of the gateway; only this module and `servers` know revisions.

pub mod admin;
pub mod answer_stream;
mod message;
pub mod origin;
mod parked;
mod post;
mod relay;
pub mod session;
mod spans;
mod subscriptions;

pub use parked::Parked;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hangar_plugin_runtime::Caller;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_stream::StreamExt;

use crate::{
    gateway::Gateway,
    protocol::{self, RpcError, code},
};
use post::post_mcp;
use session::SessionKeys;

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
    pub answer_streams: Arc<answer_stream::AnswerStreams>,
    /// Which Origin and Host headers `/mcp` accepts (403 otherwise).
    pub origins: origin::OriginPolicy,
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
        .merge(admin::router());
    let router =
        if open_surface { router.route("/metrics", get(metrics)).merge(admin::openapi_router()) } else { router };
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
            Sse::new(state.gateway.until_stopping(stream)).keep_alive(KeepAlive::default()).into_response()
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

/// Prometheus's text format, or OpenMetrics (with exemplars) to a scraper that asks for it.
async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let families = state.registry.gather();
    if crate::openmetrics::wanted(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())) {
        let text = crate::openmetrics::encode(&families, Some(&state.gateway.metrics));
        return ([(header::CONTENT_TYPE, crate::openmetrics::CONTENT_TYPE)], text).into_response();
    }
    let text = prometheus::TextEncoder::new().encode_to_string(&families).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
