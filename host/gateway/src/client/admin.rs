//! The admin API the operator drives (`/api/v1/...`): register and remove servers and groups,
//! read what core sees of them, follow state changes and wake-ups. Every call needs the bearer
//! API key; without a configured key every call is refused.

use std::{convert::Infallible, sync::Arc};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use hangar_api::{MCPServerGroupSpec, MCPServerSpec};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_stream::{StreamExt, wrappers::BroadcastStream};

use super::AppState;
use crate::{
    gateway::{GroupMember, RegisterError, Removal},
    servers::BackendSpec,
};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/servers", get(list_servers))
        .route("/api/v1/servers/{namespace}/{name}", axum::routing::put(put_server).delete(delete_server))
        .route("/api/v1/groups", get(list_groups))
        .route("/api/v1/groups/{namespace}/{name}", axum::routing::put(put_group).delete(delete_group))
        .route("/api/v1/events", get(events))
        .layer(axum::middleware::from_fn(audit_writes))
}

/// Every write (PUT, DELETE) goes into the audit log, accepted or refused, with the key's
/// fingerprint when the key was right.
async fn audit_writes(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().clone();
    if !hangar_telemetry::audit::enabled() || !matches!(method.as_str(), "PUT" | "DELETE") {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    let key = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(hangar_telemetry::audit::key_fingerprint);
    let response = next.run(request).await;
    let status = response.status();
    // /api/v1/{servers|groups}/{namespace}/{name}
    let mut parts = path.trim_start_matches("/api/v1/").splitn(3, '/');
    let (kind, object) = (parts.next().unwrap_or_default(), parts.collect::<Vec<_>>().join("/"));
    hangar_telemetry::audit::log(hangar_telemetry::audit::Record {
        event: "admin",
        decision: if status.is_success() { "accepted" } else { "refused" },
        reason: (!status.is_success()).then(|| format!("HTTP {status}")),
        admin_key: key.filter(|_| status != StatusCode::UNAUTHORIZED),
        request: Some(format!("{method} {path}")),
        server: (kind == "servers").then(|| object.clone()),
        group: (kind == "groups").then_some(object),
        ..Default::default()
    });
    response
}

/// The admin API's description, unauthenticated (served unless the surface is closed).
pub fn openapi_router() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/openapi.json", get(|| async { Json(openapi()) }))
}

/// An admin API refusal: a status and a message naming what to fix.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn problem(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

fn registered(namespace: &str, name: &str) -> Response {
    (StatusCode::OK, Json(json!({"registered": format!("{namespace}/{name}")}))).into_response()
}

fn removed(removal: Removal, kind: &str, namespace: &str, name: &str) -> Result<Response, ApiError> {
    match removal {
        Removal::Removed => Ok(StatusCode::NO_CONTENT.into_response()),
        Removal::NotFound => Err(problem(StatusCode::NOT_FOUND, format!("no {kind} {namespace}/{name}"))),
        Removal::OtherNamespace(owner) => Err(problem(
            StatusCode::NOT_FOUND,
            format!(
                "no {kind} {namespace}/{name} (the {kind} {name:?} here belongs to namespace {owner:?} and was left alone)"
            ),
        )),
    }
}

/// A refused registration: 409 when another namespace holds the name, 400 otherwise.
fn refused(error: RegisterError) -> ApiError {
    let status = match error {
        RegisterError::Taken { .. } => StatusCode::CONFLICT,
        RegisterError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    problem(status, error.to_string())
}

/// `Authorization: Bearer <key>`, compared by digest.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.api_key else {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "no API key is configured on this core: set HANGAR_API_KEY (or --api-key-file)",
        ));
    };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(key) if Sha256::digest(key.as_bytes()) == Sha256::digest(expected.as_bytes()) => Ok(()),
        Some(_) => Err(problem(StatusCode::UNAUTHORIZED, "wrong API key")),
        None => Err(problem(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <API key>")),
    }
}

/// Largest registration body; a server or group spec is a few KiB.
pub const ADMIN_BODY_BYTES: usize = 1 << 20;

/// Reads a JSON body of at most [`ADMIN_BODY_BYTES`] (only after the key was checked: nothing
/// of an unauthorised request is read) and parses it, naming the field that is wrong.
async fn parse<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let read = tokio::time::timeout(crate::listen::BODY_TIMEOUT, axum::body::to_bytes(body, ADMIN_BODY_BYTES));
    let body =
        read.await.map_err(|_| problem(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time"))?.map_err(
            |_| problem(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {ADMIN_BODY_BYTES} bytes")),
        )?;
    let mut de = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { format!("{path}: ") };
        problem(StatusCode::BAD_REQUEST, format!("{field}{}", e.inner()))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerRegistration {
    spec: MCPServerSpec,
    /// Where core reaches the server (its Service URL); defaults to `spec.endpoint`.
    #[serde(default)]
    endpoint: Option<String>,
    /// The values of `spec.headers` that come from Secrets, by Secret name and key (the operator
    /// reads them, so core needs no Secret rights). Kept in memory only, never shown.
    #[serde(default)]
    secrets: Vec<SecretValue>,
    /// A cluster server's ready pods (`http://IP:PORT/PATH`, from its Service's EndpointSlices):
    /// core keeps each session on the pod that opened it. Absent or empty: the endpoint.
    #[serde(default)]
    pods: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretValue {
    name: String,
    key: String,
    value: String,
}

async fn put_server(
    State(state): State<Arc<AppState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let registration: ServerRegistration = parse(body).await?;
    let endpoint = registration.endpoint.or_else(|| registration.spec.endpoint.clone()).ok_or_else(|| {
        problem(
            StatusCode::BAD_REQUEST,
            "endpoint: required (the server's Service URL, or spec.endpoint for remote servers)",
        )
    })?;
    for (i, pod) in registration.pods.iter().enumerate() {
        crate::servers::check_endpoint(pod).map_err(|e| {
            problem(StatusCode::BAD_REQUEST, format!("pods[{i}]: {}", e.trim_start_matches("spec.endpoint: ")))
        })?;
    }
    let secrets = &registration.secrets;
    let headers = crate::servers::remote_headers(&registration.spec, |i, wanted| {
        secrets.iter().find(|s| s.name == wanted.name && s.key == wanted.key).map(|s| s.value.clone()).ok_or_else(|| {
            format!(
                "spec.headers[{i}].valueFrom.secretKeyRef: no value for Secret {:?} key {:?} in the registration (the operator reads it; does the Secret exist in {namespace}?)",
                wanted.name, wanted.key
            )
        })
    })
    .map_err(|e| problem(StatusCode::BAD_REQUEST, e))?;
    state
        .gateway
        .upsert_server_at(&namespace, &name, registration.spec, BackendSpec::Http { endpoint, headers })
        .map_err(refused)?;
    if let Some(server) = state.gateway.server(&name) {
        server.backend.set_pods(&registration.pods);
    }
    Ok(registered(&namespace, &name))
}

async fn delete_server(
    State(state): State<Arc<AppState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    removed(state.gateway.remove_server(&namespace, &name), "server", &namespace, &name)
}

async fn list_servers(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    Ok(Json(json!({"servers": state.gateway.server_status()})).into_response())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MemberRef {
    Name(String),
    Member(GroupMember),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupRegistration {
    spec: MCPServerGroupSpec,
    /// Member servers, resolved by the operator from the selector: names, or
    /// `{name, priority, weight}` from their labels.
    members: Vec<MemberRef>,
}

async fn put_group(
    State(state): State<Arc<AppState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let registration: GroupRegistration = parse(body).await?;
    state
        .gateway
        .upsert_group(
            &namespace,
            &name,
            registration.spec,
            registration
                .members
                .into_iter()
                .map(|m| match m {
                    MemberRef::Name(name) => GroupMember { name, priority: 0, weight: 1 },
                    MemberRef::Member(m) => m,
                })
                .collect(),
        )
        .map_err(refused)?;
    // The operator shows this as the group's PluginResolved condition.
    let plugin = state.gateway.group_plugin_status(&namespace, &name).await;
    Ok((StatusCode::OK, Json(json!({"registered": format!("{namespace}/{name}"), "plugin": plugin}))).into_response())
}

async fn delete_group(
    State(state): State<Arc<AppState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    removed(state.gateway.remove_group(&namespace, &name), "group", &namespace, &name)
}

async fn list_groups(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    Ok(Json(json!({"groups": state.gateway.group_status().await})).into_response())
}

/// Server-Sent Events: `{"type":"state",...}` on every state change, `{"type":"wake",...}` when a
/// call arrives for a Cold server.
async fn events(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let stream = BroadcastStream::new(state.gateway.events_out.subscribe())
        .filter_map(|e| e.ok())
        .map(|e: Value| Ok::<_, Infallible>(Event::default().data(e.to_string())));
    Ok(Sse::new(state.gateway.until_stopping(stream)).keep_alive(KeepAlive::default()).into_response())
}

fn openapi() -> Value {
    let auth = json!([{"bearer": []}]);
    let ok = |d: &str| json!({"description": d});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Hangar core admin API", "version": env!("CARGO_PKG_VERSION")},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": auth,
        "paths": {
            "/api/v1/servers": {"get": {"summary": "Servers with state, tools, failures, activity", "responses": {"200": ok("servers"), "401": ok("no or wrong API key")}}},
            "/api/v1/servers/{namespace}/{name}": {
                "parameters": [{"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}}, {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "put": {"summary": "Register or update a server: {spec: MCPServer spec, endpoint: URL, secrets: the values spec.headers names}", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}, "endpoint": {"type": "string"}, "secrets": {"type": "array", "items": {"type": "object", "required": ["name", "key", "value"], "properties": {"name": {"type": "string"}, "key": {"type": "string"}, "value": {"type": "string"}}}}}}}}}, "responses": {"200": ok("registered"), "400": ok("invalid; the error names the field"), "401": ok("no or wrong API key"), "409": ok("the name is registered from another namespace")}},
                "delete": {"summary": "Remove a server", "responses": {"204": ok("removed"), "404": ok("unknown"), "401": ok("no or wrong API key")}}
            },
            "/api/v1/groups": {"get": {"summary": "Groups with members, healthy count, state, and plugin: whether the strategy plugin serves ({name, resolved, reason, message})", "responses": {"200": ok("groups"), "401": ok("no or wrong API key")}}},
            "/api/v1/groups/{namespace}/{name}": {
                "parameters": [{"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}}, {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "put": {"summary": "Register or update a group: {spec: MCPServerGroup spec, members: [name]}", "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["spec", "members"], "properties": {"spec": {"type": "object"}, "members": {"type": "array", "items": {"type": "string"}}}}}}}, "responses": {"200": ok("registered: {registered, plugin: {name, resolved, reason, message}}; a custom strategy that cannot serve leaves the group served by round robin"), "400": ok("invalid; the error names the field"), "401": ok("no or wrong API key"), "409": ok("the name is registered from another namespace")}},
                "delete": {"summary": "Remove a group", "responses": {"204": ok("removed"), "404": ok("unknown"), "401": ok("no or wrong API key")}}
            },
            "/api/v1/events": {"get": {"summary": "Server-Sent Events: state changes and wake-ups", "responses": {"200": ok("event stream"), "401": ok("no or wrong API key")}}}
        }
    })
}
