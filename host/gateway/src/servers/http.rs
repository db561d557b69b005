//! A remote server: a Streamable HTTP endpoint, its sessions (one per client for handshake
//! servers), answers as JSON or as event streams (resumed when the server closes them) and its
//! standalone stream.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    BackendError, BackendEvent, Era, Revision, discover, initialize_params,
    relay::{Answerer, CallRelay, EventSink, owner, relay_from_server},
    sse::{event_end, parse_event},
    truncate, with_era_meta,
};
use crate::{
    param_headers::{self, Designation},
    parse_budget,
    protocol::{self, MODERN_VERSION, RpcError, code},
};

/// Reads a session's standalone stream until it ends, relaying to the latest call in flight.
pub(super) async fn follow_session_stream(
    mut response: reqwest::Response,
    stream: std::sync::Weak<SessionStream>,
    answer_server: Answerer,
    events: EventSink,
    headers: reqwest::header::HeaderMap,
) {
    let mut buffer: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.extend_from_slice(&chunk);
        if buffer.len() > MAX_ANSWER_BYTES {
            break;
        }
        while let Some((end, skip)) = event_end(&buffer) {
            let event = parse_event(&String::from_utf8_lossy(&buffer[..end]));
            buffer.drain(..end + skip);
            let Some(stream) = stream.upgrade() else { return };
            let latest = owner(&stream.calls.lock().unwrap(), stream.shared);
            if let Some(message) = event.message {
                relay_from_server(&answer_server, &events, &headers, latest.as_ref(), message);
            }
        }
    }
    if let Some(stream) = stream.upgrade() {
        stream.ended.store(true, Ordering::Relaxed);
    }
}

pub(super) struct HttpState {
    /// The revision the core's own requests use.
    pub(super) era: Era,
    pub(super) session: Option<String>,
    /// Whether a stateless server also speaks a handshake revision: handshake clients then get
    /// sessions of their own in it, so their conversation with it is theirs (the server's
    /// requests, subscriptions), as if they spoke to it directly.
    pub(super) also: AlsoHandshake,
}

/// A handshake revision beside the stateless one. `server/discover` lists stateless revisions
/// only (the handshake is negotiated by `initialize`), so unless it lists one, the first
/// handshake client's session is the probe.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum AlsoHandshake {
    Unknown,
    Speaks(String),
    No,
}

impl HttpState {
    /// The revision of a handshake client's own session here.
    pub(super) fn client_era(&self) -> Era {
        match (&self.era, &self.also) {
            (Era::Modern, AlsoHandshake::Speaks(version)) => Era::Handshake(version.clone()),
            (era, _) => era.clone(),
        }
    }
}

pub struct HttpBackend {
    pub(super) name: String,
    pub(super) endpoint: String,
    /// The endpoint parsed once (checked at registration), not on every request.
    pub(super) url: reqwest::Url,
    pub(super) client: reqwest::Client,
    pub(super) next_id: AtomicU64,
    pub(super) state: Mutex<Option<HttpState>>,
    pub(super) connecting: tokio::sync::Mutex<()>,
    /// Standalone streams of clients' backend sessions, opened for clients that answer requests.
    pub(super) streams: Mutex<HashMap<String, Arc<SessionStream>>>,
    pub(super) events: EventSink,
    /// Sends the server the answers to its requests (built once: every stream shares it).
    pub(super) answer_server: Answerer,
    /// Tool → the arguments its calls mirror into `Mcp-Param-*` headers, from the server's
    /// tools/list (the stateless revision's custom headers); shared by a server's pods, since a
    /// call may go to another pod than the one that listed the tools.
    pub(super) param_headers: Arc<Mutex<HashMap<String, Vec<Designation>>>>,
}

impl HttpBackend {
    pub(super) fn new(
        name: &str,
        endpoint: String,
        headers: reqwest::header::HeaderMap,
        events: mpsc::UnboundedSender<BackendEvent>,
    ) -> Self {
        // A backend's redirect could point core anywhere (an SSRF read): never followed. The
        // server's own headers (checked at registration) go with every request; a client's
        // token never does (the spec forbids token passthrough).
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is compiled in");
        Self::reaching(endpoint, name.to_string(), client, Arc::default(), (name.to_string(), events))
    }

    /// The same server at another address (another of its pods): the same headers, the same
    /// learned tools, sessions of its own.
    pub(super) fn at(&self, endpoint: String) -> Self {
        Self::reaching(
            endpoint,
            self.name.clone(),
            self.client.clone(),
            self.param_headers.clone(),
            self.events.clone(),
        )
    }

    fn reaching(
        endpoint: String,
        name: String,
        client: reqwest::Client,
        param_headers: Arc<Mutex<HashMap<String, Vec<Designation>>>>,
        events: EventSink,
    ) -> Self {
        Self {
            answer_server: answerer(client.clone(), endpoint.clone(), name.clone()),
            // Never fails for a registered endpoint; an unparsable one fails each request instead.
            url: reqwest::Url::parse(&endpoint)
                .unwrap_or_else(|_| reqwest::Url::parse("http://invalid.invalid/").expect("a URL")),
            name,
            endpoint,
            client,
            next_id: AtomicU64::new(1),
            state: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            streams: Mutex::default(),
            param_headers,
            events,
        }
    }

    /// One request, in the client's own backend session when it has one, else the core's.
    pub(super) async fn request(
        &self,
        method: &str,
        params: Value,
        own: Option<&str>,
        relay: Option<&CallRelay>,
    ) -> Result<Value, BackendError> {
        self.connect().await?;
        let (era, shared, own_era) = {
            let state = self.state.lock().unwrap();
            let s = state.as_ref().expect("connected");
            (s.era.clone(), s.session.clone(), s.client_era())
        };
        if let Some(own) = own {
            let _listening = self.listen(method, own, false, &own_era, relay).await;
            match self.post(method, with_era_meta(&own_era, params.clone()), &own_era, Some(own), relay).await {
                Err(BackendError::SessionLost(_)) => {
                    tracing::warn!(server = %self.name, "the client's backend session has expired; using the core's own");
                }
                other => return other.map(|(v, _)| v),
            }
        }
        let session = shared;
        let _listening = match &session {
            Some(session) => self.listen(method, session, true, &era, relay).await,
            None => None,
        };
        match self.post(method, with_era_meta(&era, params.clone()), &era, session.as_deref(), relay).await {
            // The server forgot our session (restart): connect again once.
            Err(BackendError::SessionLost(_)) => {
                *self.state.lock().unwrap() = None;
                self.connect().await?;
                let (era, session) = {
                    let state = self.state.lock().unwrap();
                    let s = state.as_ref().expect("connected");
                    (s.era.clone(), s.session.clone())
                };
                self.post(method, with_era_meta(&era, params), &era, session.as_deref(), relay).await.map(|(v, _)| v)
            }
            other => other.map(|(v, _)| v),
        }
    }

    pub(super) async fn connect(&self) -> Result<(), BackendError> {
        if self.state.lock().unwrap().is_some() {
            return Ok(());
        }
        let _guard = self.connecting.lock().await;
        if self.state.lock().unwrap().is_some() {
            return Ok(());
        }
        let modern_meta = json!({"_meta": protocol::modern_meta()});
        let probe =
            || async { self.post("server/discover", modern_meta.clone(), &Era::Modern, None, None).await.map(|r| r.0) };
        let state = match discover(probe).await {
            Ok(Revision::Stateless { also }) => HttpState {
                era: Era::Modern,
                session: None,
                also: also.map_or(AlsoHandshake::Unknown, |v| AlsoHandshake::Speaks(v.into())),
            },
            // Anything else (an error, an old server's 4xx, no modern version) → the handshake.
            other => {
                let asked = match other {
                    Ok(Revision::Handshake(version)) => version,
                    _ => protocol::LATEST_HANDSHAKE,
                };
                let handshake = Era::Handshake(asked.into());
                let (result, session) =
                    self.post("initialize", initialize_params(asked), &handshake, None, None).await?;
                let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or(asked).to_string();
                let era = Era::Handshake(version);
                self.notify("notifications/initialized", &era, session.as_deref()).await;
                HttpState { era, session, also: AlsoHandshake::No }
            }
        };
        *self.state.lock().unwrap() = Some(state);
        Ok(())
    }

    /// Streamable HTTP headers; the stateless revision routes on `Mcp-Method` and `Mcp-Name`
    /// (which must match the body).
    pub(super) fn headers(
        &self,
        method: &str,
        params: &Value,
        era: &Era,
        session: Option<&str>,
    ) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("accept", reqwest::header::HeaderValue::from_static("application/json, text/event-stream"));
        let version = match era {
            Era::Modern => MODERN_VERSION.to_string(),
            Era::Handshake(v) => v.clone(),
        };
        if method != "initialize"
            && let Ok(v) = version.parse()
        {
            h.insert("mcp-protocol-version", v);
        }
        if let Ok(m) = method.parse() {
            h.insert("mcp-method", m);
        }
        let name = protocol::named_param(method).and_then(|key| params.get(key));
        if let Some(n) = name.and_then(Value::as_str).and_then(|n| n.parse().ok()) {
            h.insert("mcp-name", n);
        }
        if let Some(s) = session.and_then(|s| s.parse().ok()) {
            h.insert("mcp-session-id", s);
        }
        // The trace context `_meta` carries, as W3C headers too (for servers traced at HTTP).
        if let Some(meta) = params.get("_meta") {
            for key in hangar_telemetry::trace_context::KEYS {
                if let Some(v) = meta.get(key).and_then(Value::as_str).and_then(|v| v.parse().ok()) {
                    h.insert(key, v);
                }
            }
        }
        if method == "tools/call"
            && *era == Era::Modern
            && let Some(tool) = params.get("name").and_then(Value::as_str)
            && let Some(designations) = self.param_headers.lock().unwrap().get(tool)
        {
            for (name, value) in param_headers::headers(designations, &params["arguments"]) {
                if let (Ok(name), Ok(value)) =
                    (reqwest::header::HeaderName::try_from(name), reqwest::header::HeaderValue::try_from(value))
                {
                    h.insert(name, value);
                }
            }
        }
        h
    }

    /// Keeps which arguments each listed tool mirrors into headers.
    fn learn_param_headers(&self, listed: &Value) {
        let Some(tools) = listed.get("tools").and_then(Value::as_array) else { return };
        let mut known = self.param_headers.lock().unwrap();
        for tool in tools {
            let (Some(name), Ok(designations)) =
                (tool["name"].as_str(), param_headers::designations(&tool["inputSchema"]))
            else {
                continue;
            };
            match designations.is_empty() {
                true => known.remove(name),
                false => known.insert(name.to_string(), designations),
            };
        }
    }

    pub(super) async fn notify(&self, method: &str, era: &Era, session: Option<&str>) {
        let body = protocol::notification(method, json!({}));
        let _ = self
            .client
            .post(self.url.clone())
            .headers(self.headers(method, &body["params"], era, session))
            .json(&body)
            .send()
            .await;
    }

    /// POSTs one request; returns the result and any session id the response set. An event
    /// stream is read as it comes: what the server sends toward the client goes to `relay`, and
    /// a stream that ends before the answer is resumed (`Last-Event-ID`) as the server asks.
    pub(super) async fn post(
        &self,
        method: &str,
        params: Value,
        era: &Era,
        session: Option<&str>,
        relay: Option<&CallRelay>,
    ) -> Result<(Value, Option<String>), BackendError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let headers = self.headers(method, &params, era, session);
        let body = protocol::request(id, method, params);
        // The endpoint stays out of the message: it goes to clients, and a URL may carry a
        // credential (`user:pass@`, `?token=`).
        let unavailable = |e: String| BackendError::Unavailable(format!("server {} unavailable: {e}", self.name));
        let response = self.client.post(self.url.clone()).headers(headers.clone()).json(&body).send().await.map_err(
            |e| match e.is_connect() {
                true => BackendError::Unreached(format!("server {} unavailable: {}", self.name, without_url(e))),
                false => unavailable(without_url(e)),
            },
        )?;
        let status = response.status();
        let new_session = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        let (message, text) = if is_event_stream(&response) && status.is_success() {
            let answering = Answering { backend: self, id, relay, headers: &headers };
            (answering.read(response).await.map_err(unavailable)?, String::new())
        } else {
            let text = read_capped(response, MAX_ANSWER_BYTES).await.map_err(unavailable)?;
            // Servers answer an unknown session with 404 (the spec) or 400 naming the session.
            if session.is_some()
                && (status == reqwest::StatusCode::NOT_FOUND
                    || (status == reqwest::StatusCode::BAD_REQUEST && text.to_ascii_lowercase().contains("session")))
            {
                return Err(BackendError::SessionLost(format!(
                    "server {}: HTTP {status}: session not found",
                    self.name
                )));
            }
            match parse_budget::answer(&text) {
                Ok(message) => (Some(message), text),
                // Too large to relay: the server's answer, refused (no other member would differ).
                Err(why @ (parse_budget::Unrelayed::TooLarge(..) | parse_budget::Unrelayed::Busy)) => {
                    return Err(BackendError::Rpc(RpcError::new(
                        code::INTERNAL_ERROR,
                        format!("server {}: {why}", self.name),
                    )));
                }
                Err(parse_budget::Unrelayed::NotJson(_)) => (None, text),
            }
        };
        match message {
            Some(m) if m.get("error").is_some() => Err(BackendError::Rpc(RpcError::from_json(&m["error"]))),
            Some(mut m) if status.is_success() => {
                let result = m.get_mut("result").map(Value::take).unwrap_or(Value::Null);
                if method == "tools/list" {
                    self.learn_param_headers(&result);
                }
                Ok((result, new_session))
            }
            _ if status.is_server_error() || status == reqwest::StatusCode::NOT_FOUND => {
                Err(unavailable(format!("HTTP {status}")))
            }
            _ => {
                // What the backend said goes to the log only: a client must not read a
                // backend's (or whatever it redirects to) body through an error.
                tracing::warn!(server = %self.name, %status, "not a JSON-RPC answer: {}", truncate(&text, 200));
                Err(unavailable(format!("HTTP {status}, not a JSON-RPC answer (core's log has its start)")))
            }
        }
    }
}

/// An HTTP error's text without its URL, which may carry a credential (`user:pass@`,
/// `?token=`) and goes to clients and the log.
pub(super) fn without_url(error: reqwest::Error) -> String {
    error.without_url().to_string()
}

/// Sends a server the answers to its requests (JSON-RPC responses, in `headers`' session), each
/// in a task of its own; usable after the backend is gone.
pub(super) fn answerer(client: reqwest::Client, endpoint: String, name: String) -> Answerer {
    Arc::new(move |mut headers: reqwest::header::HeaderMap, message: Value| {
        headers.remove("mcp-method");
        headers.remove("mcp-name");
        headers.insert("accept", "application/json, text/event-stream".parse().unwrap());
        let (client, endpoint, name) = (client.clone(), endpoint.clone(), name.clone());
        tokio::spawn(async move {
            match client.post(&endpoint).headers(headers).json(&message).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(server = %name, status = %r.status(), "the server refused the answer to its request")
                }
                Err(e) => {
                    tracing::warn!(server = %name, "could not answer the server's request: {}", without_url(e))
                }
            }
        });
    })
}

impl HttpBackend {
    /// Before a tool call: opens its session's standalone stream if it is not open (before the
    /// call goes out, or a request the server sends at once would be missed), and registers the
    /// call's relay there. A server's request with no call to take it is answered with an error
    /// at once, never left waiting. None when the server offers no such stream.
    pub(super) async fn listen(
        &self,
        method: &str,
        session: &str,
        shared: bool,
        era: &Era,
        relay: Option<&CallRelay>,
    ) -> Option<StreamCall> {
        if method != "tools/call" {
            return None;
        }
        let open = self.streams.lock().unwrap().get(session).cloned();
        let stream = match open {
            Some(stream) if !stream.ended.load(Ordering::Relaxed) => stream,
            // A server without standalone streams (405) is not asked again for this session.
            Some(stream) if !stream.offered => return None,
            _ => {
                let mut headers = self.headers("", &Value::Null, era, Some(session));
                headers.remove("mcp-method");
                headers.insert("accept", "text/event-stream".parse().unwrap());
                let get = self.client.get(self.url.clone()).headers(headers.clone()).send();
                let response = tokio::time::timeout(Duration::from_secs(5), get).await.ok()?.ok()?;
                let offered = response.status().is_success() && is_event_stream(&response);
                let stream = Arc::new(SessionStream {
                    calls: Mutex::default(),
                    next_call: AtomicU64::new(0),
                    ended: (!offered).into(),
                    offered,
                    shared,
                    task: Mutex::new(None),
                });
                if !offered {
                    tracing::debug!(server = %self.name, status = %response.status(), "no standalone stream");
                    self.streams.lock().unwrap().insert(session.to_string(), stream);
                    return None;
                }
                let task = tokio::spawn(follow_session_stream(
                    response,
                    Arc::downgrade(&stream),
                    self.answer_server.clone(),
                    self.events.clone(),
                    headers,
                ));
                *stream.task.lock().unwrap() = Some(task);
                self.streams.lock().unwrap().insert(session.to_string(), stream.clone());
                stream
            }
        };
        let relay = relay?;
        let id = stream.next_call.fetch_add(1, Ordering::Relaxed);
        stream.calls.lock().unwrap().push((id, relay.clone()));
        Some(StreamCall { stream, id })
    }
}

pub(super) fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"))
}

/// How often, at most, an answer's event stream is resumed after the server closed it.
pub(super) const MAX_RESUMPTIONS: u32 = 10;
/// The longest pause before resuming that a server's `retry:` may ask for.
pub(super) const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);
/// Reading the event stream that carries the answer to request `id`.
pub(super) struct Answering<'a> {
    pub(super) backend: &'a HttpBackend,
    pub(super) id: u64,
    pub(super) relay: Option<&'a CallRelay>,
    pub(super) headers: &'a reqwest::header::HeaderMap,
}

impl Answering<'_> {
    /// The answer, or None when the stream ended without it for good.
    pub(super) async fn read(&self, mut response: reqwest::Response) -> Result<Option<Value>, String> {
        let mut read = 0usize;
        let mut last_event_id: Option<String> = None;
        let mut retry = Duration::from_secs(1);
        for resumption in 0..=MAX_RESUMPTIONS {
            if resumption > 0 {
                let Some(last) = last_event_id.clone() else { return Ok(None) };
                tokio::time::sleep(retry.min(MAX_RETRY_WAIT)).await;
                let mut headers = self.headers.clone();
                headers.remove("mcp-method");
                headers.remove("mcp-name");
                headers.insert("accept", "text/event-stream".parse().unwrap());
                if let Ok(v) = last.parse() {
                    headers.insert("last-event-id", v);
                }
                response = self
                    .backend
                    .client
                    .get(&self.backend.endpoint)
                    .headers(headers)
                    .send()
                    .await
                    .map_err(without_url)?;
                if !response.status().is_success() || !is_event_stream(&response) {
                    return Err(format!("resuming the answer's stream: HTTP {}", response.status()));
                }
            }
            let mut buffer: Vec<u8> = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(without_url)? {
                read += chunk.len();
                if read > MAX_ANSWER_BYTES {
                    return Err(format!("the answer is larger than {} MiB", MAX_ANSWER_BYTES >> 20));
                }
                buffer.extend_from_slice(&chunk);
                while let Some((end, skip)) = event_end(&buffer) {
                    let event = String::from_utf8_lossy(&buffer[..end]).into_owned();
                    buffer.drain(..end + skip);
                    let event = parse_event(&event);
                    if let Some(id) = event.id {
                        last_event_id = Some(id);
                    }
                    if let Some(ms) = event.retry_ms {
                        retry = Duration::from_millis(ms);
                    }
                    if let Some(answer) = event.message.and_then(|m| self.take(m)) {
                        return Ok(Some(answer));
                    }
                }
            }
            let tail = parse_event(&String::from_utf8_lossy(&buffer));
            if let Some(answer) = tail.message.and_then(|m| self.take(m)) {
                return Ok(Some(answer));
            }
        }
        Ok(None)
    }

    /// The message if it is the answer; anything else is relayed toward the client (or, for a
    /// request nobody can answer, refused at once).
    pub(super) fn take(&self, message: Value) -> Option<Value> {
        if message.get("method").is_none() {
            return (message.get("id").and_then(Value::as_u64) == Some(self.id)).then_some(message);
        }
        // The answer goes in the call's session; the answerer drops the call's own headers.
        relay_from_server(&self.backend.answer_server, &self.backend.events, self.headers, self.relay, message);
        None
    }
}

/// A client's backend session's standalone stream (GET): servers send requests there that
/// belong to no request of ours (the TypeScript SDK's `server.request` from a tool does). They
/// go to the client's latest call in flight on that session.
pub(super) struct SessionStream {
    pub(super) calls: Mutex<Vec<(u64, CallRelay)>>,
    pub(super) next_call: AtomicU64,
    pub(super) ended: std::sync::atomic::AtomicBool,
    /// The server answered the GET with a stream (else it has none, and is not asked again).
    pub(super) offered: bool,
    /// The core's own session, which carries many clients' calls.
    pub(super) shared: bool,
    pub(super) task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for SessionStream {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }
}

/// A call registered on a session's standalone stream, until it ends.
pub(super) struct StreamCall {
    pub(super) stream: Arc<SessionStream>,
    pub(super) id: u64,
}

impl Drop for StreamCall {
    fn drop(&mut self) {
        self.stream.calls.lock().unwrap().retain(|(id, _)| *id != self.id);
    }
}

/// Largest answer read from an HTTP backend.
pub(super) const MAX_ANSWER_BYTES: usize = 16 << 20;

/// The body as text (invalid UTF-8 replaced), refusing more than `limit` bytes.
pub(super) async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(without_url)? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {} MiB", limit >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}
