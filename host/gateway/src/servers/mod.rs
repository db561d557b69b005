//! The backend edge: connections to MCP servers, a local process speaking stdio (restarted
//! with backoff) or a remote Streamable HTTP endpoint. Both probe `server/discover` first and
//! fall back to the `initialize` handshake, so servers of either protocol generation sit behind
//! one gateway. Revision negotiation per server lives here and in its two transports; nothing
//! above this module knows how a server is reached.

mod endpoints;
mod http;
mod relay;
mod spec;
mod sse;
mod stdio;

pub use relay::{CallRelay, Relay, RelaySink};
pub use spec::{backend_spec, check_endpoint, remote_headers};

use endpoints::Endpoints;
use http::{AlsoHandshake, HttpBackend};
use relay::relay_request;
use stdio::{StdioBackend, call};

use std::{path::PathBuf, sync::atomic::Ordering, time::Duration};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::protocol::{self, MODERN_VERSION, RpcError, code};

/// How a backend was reached, as far as callers care.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Not running, not reachable, or the connection broke: another member may serve.
    #[error("{0}")]
    Unavailable(String),
    /// No connection could be made: the request never left, so another address may take it.
    #[error("{0}")]
    Unreached(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A (cold) server did not come up within its startup timeout.
    #[error("{0}")]
    NotReady(String),
    /// The HTTP server no longer knows the `Mcp-Session-Id` sent (it restarted, or expired it).
    #[error("{0}")]
    SessionLost(String),
    /// The server answered with a JSON-RPC error: its own answer, not a failure to reach it.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

impl BackendError {
    /// Its kind, as traces name it (`error.type`): a JSON-RPC error's code, else a word.
    pub fn kind(&self) -> String {
        match self {
            BackendError::Unavailable(_) | BackendError::Unreached(_) => "unavailable".into(),
            BackendError::Timeout(_) => "timeout".into(),
            BackendError::NotReady(_) => "not_ready".into(),
            BackendError::SessionLost(_) => "session_lost".into(),
            BackendError::Rpc(e) => e.code.to_string(),
        }
    }

    /// Whether trying another member could help (connection errors, timeouts, 5xx).
    pub fn is_transient(&self) -> bool {
        !matches!(self, BackendError::Rpc(_))
    }

    /// Whether every caller would meet it (the server is not reachable or not up), as opposed
    /// to a call that ran past its timeout, which one caller's arguments can cause: only these
    /// count toward the server's circuit breaker, so no client can open it for all.
    pub fn is_server_down(&self) -> bool {
        matches!(
            self,
            BackendError::Unavailable(_)
                | BackendError::Unreached(_)
                | BackendError::NotReady(_)
                | BackendError::SessionLost(_)
        )
    }
}

/// Which protocol generation the backend speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Era {
    Modern,
    Handshake(String),
}

/// What a gateway needs to start a backend.
#[derive(Clone, Debug, PartialEq)]
pub enum BackendSpec {
    /// A child process speaking MCP over stdin/stdout.
    Stdio { command: Vec<String>, env: Vec<(String, String)>, dir: PathBuf },
    /// A Streamable HTTP endpoint, and the headers (credentials) every request to it carries:
    /// their values are marked sensitive, so neither `Debug` nor the HTTP stack prints them.
    Http { endpoint: String, headers: reqwest::header::HeaderMap },
}

/// Something the backend said on its own (e.g. `notifications/tools/list_changed`).
#[derive(Clone, Debug)]
pub struct BackendEvent {
    pub server: String,
    pub method: String,
    pub params: Value,
}

/// The client a request is sent for, as the backend edge needs to know it.
#[derive(Clone, Copy, Default)]
pub struct OnBehalf<'a> {
    /// Where what the server sends toward the client during a call goes.
    pub relay: Option<&'a CallRelay>,
    /// The client's own backend session (a handshake client at a server that has them).
    pub session: Option<&'a str>,
    /// The client speaks the stateless revision: it answers `input_required` itself.
    pub stateless: bool,
}

pub enum Backend {
    Stdio(StdioBackend),
    Http(Box<Endpoints>),
}

impl Backend {
    /// Starts a backend; a local process only runs once `wanted` (now, or on the first call).
    pub fn start(name: &str, spec: BackendSpec, events: mpsc::UnboundedSender<BackendEvent>, wanted: bool) -> Self {
        match spec {
            BackendSpec::Stdio { command, env, dir } => {
                Backend::Stdio(StdioBackend::start(name, command, env, dir, events, wanted))
            }
            BackendSpec::Http { endpoint, headers } => {
                Backend::Http(Box::new(Endpoints::new(HttpBackend::new(name, endpoint, headers, events))))
            }
        }
    }

    /// Sends one request: waits at most `ready_within` for the server to be up (starting it if
    /// it is cold), then at most `answer_within` for the answer.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        ready_within: Duration,
        answer_within: Duration,
    ) -> Result<Value, BackendError> {
        self.request_for(method, params, ready_within, answer_within, OnBehalf::default()).await
    }

    /// [`Self::request`] on a client's behalf (see [`OnBehalf`]). Dropping the future cancels
    /// the call at the server.
    pub async fn request_for(
        &self,
        method: &str,
        params: Value,
        ready_within: Duration,
        answer_within: Duration,
        client: OnBehalf<'_>,
    ) -> Result<Value, BackendError> {
        let OnBehalf { relay, session, stateless } = client;
        // A 2026-07-28 server asks through `input_required` results. A stateless client answers
        // them itself: the result goes back as the server gave it (its keys, its requestState),
        // and the retry comes as a call of its own. For a handshake client, Hangar asks it as any
        // server would, and sends the call again with the answers.
        let again = (relay.is_some() && !stateless && self.speaks_modern()).then(|| params.clone());
        let mut result = self.request_once(method, params, ready_within, answer_within, relay, session).await?;
        for _ in 0..MAX_INPUT_ROUNDS {
            if stateless || result.get("resultType").and_then(Value::as_str) != Some("input_required") {
                return Ok(result);
            }
            let (Some(relay), Some(base)) = (relay, again.as_ref()) else { break };
            let mut responses = serde_json::Map::new();
            let requests = result.get("inputRequests").and_then(Value::as_object).cloned().unwrap_or_default();
            for (key, request) in requests {
                let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
                let params = request.get("params").filter(|p| p.is_object()).cloned().unwrap_or_else(|| json!({}));
                match relay_request(relay, method, params).await {
                    Ok(Ok(answer)) => responses.insert(key, answer),
                    Ok(Err(e)) => return Err(BackendError::Rpc(e)),
                    Err(_) => return Err(BackendError::Unavailable("the client's call ended".into())),
                };
            }
            let mut next = base.clone();
            if let Some(object) = next.as_object_mut() {
                object.insert("inputResponses".into(), Value::Object(responses));
                if let Some(state) = result.get("requestState") {
                    object.insert("requestState".into(), state.clone());
                }
            }
            result = self.request_once(method, next, ready_within, answer_within, Some(relay), session).await?;
        }
        if result.get("resultType").and_then(Value::as_str) == Some("input_required") {
            return Err(BackendError::Rpc(RpcError::new(
                code::INTERNAL_ERROR,
                format!("the server still needs input after {MAX_INPUT_ROUNDS} rounds, or no client can give it"),
            )));
        }
        Ok(result)
    }

    /// Whether the server speaks the stateless revision (or may: not connected yet).
    fn speaks_modern(&self) -> bool {
        matches!(self.era(), Some(Era::Modern) | None)
    }

    async fn request_once(
        &self,
        method: &str,
        params: Value,
        ready_within: Duration,
        answer_within: Duration,
        relay: Option<&CallRelay>,
        session: Option<&str>,
    ) -> Result<Value, BackendError> {
        // With traces exported, the server's spans join the client's trace under Hangar's: in
        // `_meta`, where 2026-07-28 carries trace context (and SDKs read it in every revision).
        let mut params = params;
        hangar_telemetry::trace_context::into_params(&mut params);
        match self {
            Backend::Stdio(b) => {
                let live = b.ready(ready_within).await?;
                let params = with_era_meta(&live.era, params);
                tokio::time::timeout(answer_within, call(&b.shared, &live, method, params, relay))
                    .await
                    .unwrap_or(Err(BackendError::Timeout(answer_within)))
            }
            Backend::Http(endpoints) => {
                // A client's own session is with the pod that opened it; other requests go to
                // each pod in turn (and a session whose pod has left, to one that remains).
                let (mut b, mut session) = match session.and_then(|s| endpoints.holder(s).map(|b| (b, s))) {
                    Some((b, s)) => (b, Some(s)),
                    None => (endpoints.next(), None),
                };
                // A pod that cannot be reached (it is going away) got nothing: the others may
                // take the request, each once, in the core's own session there.
                let mut tries = endpoints.len();
                loop {
                    let answer = async {
                        tokio::time::timeout(ready_within, b.connect()).await.unwrap_or_else(|_| {
                            Err(BackendError::NotReady(format!(
                                "server {} did not answer within spec.startupTimeout ({ready_within:?})",
                                b.name
                            )))
                        })?;
                        tokio::time::timeout(answer_within, b.request(method, params.clone(), session, relay))
                            .await
                            .unwrap_or(Err(BackendError::Timeout(answer_within)))
                    }
                    .await;
                    tries -= 1;
                    match answer {
                        Err(BackendError::Unreached(_)) if tries > 0 => {
                            (b, session) = (endpoints.next(), None);
                        }
                        answer => return answer,
                    }
                }
            }
        }
    }

    /// A session of its own at an HTTP server that speaks a handshake revision (only, or beside
    /// the stateless one), for one handshake client; None for other kinds.
    pub async fn open_session(&self) -> Option<String> {
        let Backend::Http(endpoints) = self else { return None };
        let b = endpoints.next();
        b.connect().await.ok()?;
        let (era, also) = b.state.lock().unwrap().as_ref().map(|s| (s.era.clone(), s.also.clone()))?;
        // The version the core's handshake settled on, the one a dual server listed, or (probing
        // a stateless server) Hangar's newest.
        let asked = match (&era, &also) {
            (Era::Handshake(version), _) | (Era::Modern, AlsoHandshake::Speaks(version)) => version.clone(),
            (Era::Modern, AlsoHandshake::Unknown) => protocol::LATEST_HANDSHAKE.to_string(),
            (Era::Modern, AlsoHandshake::No) => return None,
        };
        let handshake = Era::Handshake(asked.clone());
        let opened = b.post("initialize", initialize_params(&asked), &handshake, None, None).await;
        let session = match opened {
            Ok((result, Some(session))) => {
                let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or(&asked).to_string();
                if let Some(state) = b.state.lock().unwrap().as_mut()
                    && state.era == Era::Modern
                {
                    state.also = AlsoHandshake::Speaks(version);
                }
                session
            }
            // Not reached: ask again with the next client.
            Err(e) if e.is_transient() => return None,
            // Refused (or no session): a stateless server only.
            _ => {
                if let Some(state) = b.state.lock().unwrap().as_mut()
                    && state.also == AlsoHandshake::Unknown
                {
                    state.also = AlsoHandshake::No;
                }
                return None;
            }
        };
        let era = b.state.lock().unwrap().as_ref().map(http::HttpState::client_era)?;
        b.notify("notifications/initialized", &era, Some(&session)).await;
        endpoints.opened(&session, b.clone());
        Some(session)
    }

    /// Whether a session [`Self::open_session`] opened is still held (its pod still serves).
    pub fn holds(&self, session: &str) -> bool {
        match self {
            Backend::Http(endpoints) => endpoints.holder(session).is_some(),
            Backend::Stdio(_) => false,
        }
    }

    /// A cluster server's ready pods, as URLs (none: its registered endpoint, the Service).
    pub fn set_pods(&self, urls: &[String]) {
        if let Backend::Http(endpoints) = self {
            endpoints.set(urls);
        }
    }

    /// Where requests go: the pods' URLs, or the one endpoint (none for a local process).
    pub fn addresses(&self) -> Vec<String> {
        match self {
            Backend::Http(endpoints) => endpoints.urls(),
            Backend::Stdio(_) => Vec::new(),
        }
    }

    /// Ends a session [`Self::open_session`] opened (HTTP DELETE with its id); best effort.
    pub async fn close_session(&self, session: &str) {
        let Backend::Http(endpoints) = self else { return };
        let Some(b) = endpoints.closed(session) else { return };
        let Some(era) = b.state.lock().unwrap().as_ref().map(http::HttpState::client_era) else { return };
        b.streams.lock().unwrap().remove(session);
        let headers = b.headers("", &Value::Null, &era, Some(session));
        let _ = b.client.delete(&b.endpoint).headers(headers).send().await;
    }

    /// Whether this is an HTTP endpoint (not a local process).
    pub fn is_remote(&self) -> bool {
        matches!(self, Backend::Http(_))
    }

    /// Tries to connect to an HTTP endpoint until it answers or `within` passes (a cold server
    /// being started elsewhere); returns whether it answers.
    pub async fn wait_until_connected(&self, within: Duration) -> bool {
        let Backend::Http(endpoints) = self else { return self.is_live() };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let b = endpoints.any_connected();
            if matches!(tokio::time::timeout(left, b.connect()).await, Ok(Ok(()))) {
                return true;
            }
            if tokio::time::Instant::now() + Duration::from_millis(250) >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Whether the server answers now (a started and handshaken process; a connected endpoint).
    pub fn is_live(&self) -> bool {
        self.era().is_some()
    }

    /// Starts (true) or stops (false) a local process; remote endpoints are always "wanted".
    /// Kills a local process that hangs; its supervisor starts it again (with backoff).
    pub fn restart(&self) {
        if let Backend::Stdio(b) = self {
            b.shared.restart.notify_one();
        }
    }

    pub fn set_wanted(&self, wanted: bool) {
        if let Backend::Stdio(b) = self {
            b.shared.wanted.send_if_modified(|w| std::mem::replace(w, wanted) != wanted);
        }
    }

    pub fn wanted(&self) -> bool {
        match self {
            Backend::Stdio(b) => *b.shared.wanted.borrow(),
            Backend::Http(_) => true,
        }
    }

    /// How many times the process was started (0 for remote endpoints).
    pub fn starts(&self) -> u64 {
        match self {
            Backend::Stdio(b) => b.shared.starts.load(Ordering::Relaxed),
            Backend::Http(_) => 0,
        }
    }

    pub fn era(&self) -> Option<Era> {
        match self {
            Backend::Stdio(b) => b.shared.live.borrow().as_ref().map(|l| l.era.clone()),
            Backend::Http(endpoints) => endpoints.any_connected().state.lock().unwrap().as_ref().map(|s| s.era.clone()),
        }
    }
}

/// Shapes a request's `_meta` for the server's revision. A 2026-07-28 server gets the stateless
/// revision's keys: the version Hangar speaks to it, and the client's own capabilities and info
/// where the client gave them (Hangar's otherwise); a handshake server gets none of those keys.
/// Everything else of the client's `_meta` (trace context, say) passes as it is.
pub(super) fn with_era_meta(era: &Era, mut params: Value) -> Value {
    const STATELESS_KEYS: [&str; 4] = [
        protocol::META_PROTOCOL_VERSION,
        protocol::META_CLIENT_CAPABILITIES,
        protocol::META_CLIENT_INFO,
        protocol::META_LOG_LEVEL,
    ];
    match era {
        Era::Modern => {
            if !params.is_object() {
                params = json!({});
            }
            let meta = params.as_object_mut().unwrap().entry("_meta").or_insert_with(|| json!({}));
            if let (Some(meta), Value::Object(ours)) = (meta.as_object_mut(), &*protocol::MODERN_META) {
                for (k, v) in ours {
                    if !meta.contains_key(k) {
                        meta.insert(k.clone(), v.clone());
                    }
                }
                meta.insert(protocol::META_PROTOCOL_VERSION.into(), MODERN_VERSION.into());
            }
        }
        Era::Handshake(_) => {
            if let Some(object) = params.as_object_mut()
                && let Some(Value::Object(meta)) = object.get_mut("_meta")
            {
                meta.retain(|k, _| !STATELESS_KEYS.contains(&k.as_str()));
                if meta.is_empty() {
                    object.remove("_meta");
                }
            }
        }
    }
    params
}

/// Whether a `server/discover` result says the server speaks the stateless revision.
fn speaks_modern(discover: &Value) -> bool {
    discover.get("supportedVersions").and_then(Value::as_array).is_some_and(|v| v.iter().any(|v| v == MODERN_VERSION))
}

/// What a backend does after `server/discover` failed.
#[derive(Debug, PartialEq)]
enum AfterDiscover {
    /// The server refused the version (-32022) but lists the stateless revision among those it
    /// supports: ask again, once.
    DiscoverAgain,
    /// Initialize with this handshake version: the newest the server lists, or Hangar's newest.
    Initialize(&'static str),
}

fn after_failed_discover(error: &BackendError) -> AfterDiscover {
    if let BackendError::Rpc(e) = error
        && e.code == protocol::code::UNSUPPORTED_PROTOCOL_VERSION
    {
        let supported: Vec<&str> = e
            .data
            .as_ref()
            .and_then(|d| d.get("supported"))
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if supported.contains(&MODERN_VERSION) {
            return AfterDiscover::DiscoverAgain;
        }
        if let Some(version) = protocol::HANDSHAKE_VERSIONS.iter().rev().find(|v| supported.contains(v)) {
            return AfterDiscover::Initialize(version);
        }
    }
    AfterDiscover::Initialize(protocol::LATEST_HANDSHAKE)
}

/// What `server/discover` said a server speaks.
#[derive(Debug, PartialEq)]
pub(super) enum Revision {
    /// The stateless revision; `also` the newest handshake version it lists beside it (a
    /// dual-revision server), which handshake clients get a session of their own in.
    Stateless { also: Option<&'static str> },
    /// Only the handshake: initialize with this version.
    Handshake(&'static str),
}

/// The revision a server speaks, by `server/discover` (sent by `send`; again, once, when the
/// server refused the version but lists the stateless revision): the stateless one (and any
/// handshake version beside it), or the handshake version to initialize with (the newest the
/// server listed, else Hangar's newest); `Err` when the probe got no JSON-RPC answer at all.
pub(super) async fn discover<F, Fut>(send: F) -> Result<Revision, BackendError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Value, BackendError>>,
{
    let mut discovered = send().await;
    if let Err(e) = &discovered
        && after_failed_discover(e) == AfterDiscover::DiscoverAgain
    {
        discovered = send().await;
    }
    match discovered {
        Ok(result) if speaks_modern(&result) => Ok(Revision::Stateless { also: newest_handshake(&result) }),
        Ok(_) => Ok(Revision::Handshake(protocol::LATEST_HANDSHAKE)),
        Err(e @ BackendError::Rpc(_)) => Ok(Revision::Handshake(match after_failed_discover(&e) {
            AfterDiscover::Initialize(version) => version,
            AfterDiscover::DiscoverAgain => protocol::LATEST_HANDSHAKE,
        })),
        Err(e) => Err(e),
    }
}

/// The newest handshake version a `server/discover` result lists.
fn newest_handshake(discover: &Value) -> Option<&'static str> {
    let listed = discover.get("supportedVersions").and_then(Value::as_array)?;
    protocol::HANDSHAKE_VERSIONS.iter().rev().find(|v| listed.iter().any(|l| l == **v)).copied()
}

pub(super) fn initialize_params(version: &str) -> Value {
    json!({
        "protocolVersion": version,
        "capabilities": protocol::relayed_capabilities(),
        "clientInfo": protocol::server_info(),
    })
}

/// Rounds of `input_required` one call may take.
const MAX_INPUT_ROUNDS: usize = 10;

/// At most `max` bytes of `s`, cut on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        let text = format!("{}é and more", "a".repeat(199)); // 'é' spans bytes 199 and 200
        assert_eq!(truncate(&text, 200), "a".repeat(199));
        assert_eq!(truncate("short", 200), "short");
    }

    #[test]
    fn modern_backends_get_meta_on_every_request() {
        let p = with_era_meta(&Era::Modern, json!({"name": "t"}));
        assert_eq!(p["_meta"][protocol::META_PROTOCOL_VERSION], MODERN_VERSION);
        let p = with_era_meta(&Era::Handshake("2025-11-25".into()), json!({"name": "t"}));
        assert!(p.get("_meta").is_none());
    }

    #[test]
    fn the_clients_meta_reaches_the_server_in_its_revision() {
        let client = json!({"name": "t", "_meta": {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            protocol::META_PROTOCOL_VERSION: "2025-11-25",
            protocol::META_CLIENT_CAPABILITIES: {"elicitation": {}},
        }});
        let modern = with_era_meta(&Era::Modern, client.clone());
        assert_eq!(modern["_meta"]["traceparent"], client["_meta"]["traceparent"]);
        assert_eq!(modern["_meta"][protocol::META_CLIENT_CAPABILITIES], json!({"elicitation": {}}), "the client's");
        assert_eq!(modern["_meta"][protocol::META_PROTOCOL_VERSION], MODERN_VERSION);
        assert_eq!(modern["_meta"][protocol::META_CLIENT_INFO]["name"], "hangar");
        let handshake = with_era_meta(&Era::Handshake("2025-11-25".into()), client.clone());
        assert_eq!(handshake["_meta"], json!({"traceparent": client["_meta"]["traceparent"]}));
    }
}
