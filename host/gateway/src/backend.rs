//! Connections to MCP servers: a local process speaking stdio (restarted with backoff), or a
//! remote Streamable HTTP endpoint. Both probe `server/discover` first and fall back to the
//! `initialize` handshake, so servers of either protocol generation sit behind one gateway.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::AsyncWriteExt,
    process::Command,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use crate::{
    parse_budget,
    protocol::{self, MODERN_VERSION, RpcError, code},
};

/// How a backend was reached, as far as callers care.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Not running, not reachable, or the connection broke: another member may serve.
    #[error("{0}")]
    Unavailable(String),
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
    /// Whether trying another member could help (connection errors, timeouts, 5xx).
    pub fn is_transient(&self) -> bool {
        !matches!(self, BackendError::Rpc(_))
    }

    /// Whether every caller would meet it (the server is not reachable or not up), as opposed
    /// to a call that ran past its timeout, which one caller's arguments can cause: only these
    /// count toward the server's circuit breaker, so no client can open it for all.
    pub fn is_server_down(&self) -> bool {
        matches!(self, BackendError::Unavailable(_) | BackendError::NotReady(_) | BackendError::SessionLost(_))
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

/// Where a backend's own notifications go: (server name, the gateway's channel).
type EventSink = (String, mpsc::UnboundedSender<BackendEvent>);

pub enum Backend {
    Stdio(StdioBackend),
    Http(Box<HttpBackend>),
}

impl Backend {
    /// Starts a backend; a local process only runs once `wanted` (now, or on the first call).
    pub fn start(name: &str, spec: BackendSpec, events: mpsc::UnboundedSender<BackendEvent>, wanted: bool) -> Self {
        match spec {
            BackendSpec::Stdio { command, env, dir } => {
                Backend::Stdio(StdioBackend::start(name, command, env, dir, events, wanted))
            }
            BackendSpec::Http { endpoint, headers } => {
                Backend::Http(Box::new(HttpBackend::new(name, endpoint, headers, events)))
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
        self.request_for(method, params, ready_within, answer_within, None, None).await
    }

    /// [`Self::request`] on a client's behalf: what the server sends toward the client during
    /// the call goes to `relay`, in the client's backend `session` when it has one. Dropping the
    /// future cancels the call at the server.
    pub async fn request_for(
        &self,
        method: &str,
        params: Value,
        ready_within: Duration,
        answer_within: Duration,
        relay: Option<&CallRelay>,
        session: Option<&str>,
    ) -> Result<Value, BackendError> {
        // A 2026-07-28 server asks the client through `input_required` results: its requests go
        // to the client like any server's, and the call is sent again with the answers.
        let again = (relay.is_some() && self.speaks_modern()).then(|| params.clone());
        let mut result = self.request_once(method, params, ready_within, answer_within, relay, session).await?;
        for _ in 0..MAX_INPUT_ROUNDS {
            if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
                return Ok(result);
            }
            let (Some(relay), Some(base)) = (relay, again.as_ref()) else { break };
            let mut responses = serde_json::Map::new();
            let requests = result.get("inputRequests").and_then(Value::as_object).cloned().unwrap_or_default();
            for (key, request) in requests {
                let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
                let params = request.get("params").cloned().unwrap_or_default();
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
        match self {
            Backend::Stdio(b) => {
                let live = b.ready(ready_within).await?;
                let params = with_era_meta(&live.era, params);
                tokio::time::timeout(answer_within, call(&b.shared, &live, method, params, relay))
                    .await
                    .unwrap_or(Err(BackendError::Timeout(answer_within)))
            }
            Backend::Http(b) => {
                tokio::time::timeout(ready_within, b.connect()).await.unwrap_or_else(|_| {
                    Err(BackendError::NotReady(format!(
                        "server {} did not answer within spec.startupTimeout ({ready_within:?})",
                        b.name
                    )))
                })?;
                tokio::time::timeout(answer_within, b.request(method, params, session, relay))
                    .await
                    .unwrap_or(Err(BackendError::Timeout(answer_within)))
            }
        }
    }

    /// A session of its own at a handshake-era HTTP server, for one client; None for other kinds.
    pub async fn open_session(&self) -> Option<String> {
        let Backend::Http(b) = self else { return None };
        b.connect().await.ok()?;
        let era = b.state.lock().unwrap().as_ref().map(|s| s.era.clone())?;
        if era == Era::Modern {
            return None;
        }
        let (_, session) = b.post("initialize", initialize_params(), &era, None, None).await.ok()?;
        let session = session?;
        b.notify("notifications/initialized", &era, Some(&session)).await;
        Some(session)
    }

    /// Ends a session [`Self::open_session`] opened (HTTP DELETE with its id); best effort.
    pub async fn close_session(&self, session: &str) {
        let Backend::Http(b) = self else { return };
        let Some(era) = b.state.lock().unwrap().as_ref().map(|s| s.era.clone()) else { return };
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
        let Backend::Http(b) = self else { return self.is_live() };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
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
            Backend::Http(b) => b.state.lock().unwrap().as_ref().map(|s| s.era.clone()),
        }
    }
}

/// Puts the stateless revision's `_meta` into a request's params when the backend speaks it.
fn with_era_meta(era: &Era, mut params: Value) -> Value {
    if *era == Era::Modern {
        if !params.is_object() {
            params = json!({});
        }
        let meta = params.as_object_mut().unwrap().entry("_meta").or_insert_with(|| json!({}));
        if let (Some(meta), Value::Object(ours)) = (meta.as_object_mut(), protocol::modern_meta()) {
            for (k, v) in ours {
                meta.entry(k).or_insert(v);
            }
        }
    }
    params
}

/// Whether a `server/discover` result says the server speaks the stateless revision.
fn speaks_modern(discover: &Value) -> bool {
    discover.get("supportedVersions").and_then(Value::as_array).is_some_and(|v| v.iter().any(|v| v == MODERN_VERSION))
}

fn initialize_params() -> Value {
    json!({
        "protocolVersion": protocol::LATEST_HANDSHAKE,
        "capabilities": protocol::relayed_capabilities(),
        "clientInfo": protocol::server_info(),
    })
}

// ---------------------------------------------------------------------------------------------
// stdio

/// Calls waiting for their answer; None once the process closed its output, so that a call
/// made in the moment between the exit and the supervisor noticing it fails at once instead of
/// waiting for an answer that cannot come.
type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>>>>;

/// Where `notifications/progress` for a call go: the backend token Hangar chose → the client's
/// token and the call's relay.
/// Also the calls in flight with a relay: a stdio server's requests and log messages belong to
/// no request on the wire, so they go to the latest such call.
type ProgressRoutes = Arc<Mutex<Routes>>;

#[derive(Default)]
struct Routes {
    by_token: HashMap<String, (Value, RelaySink)>,
    calls: Vec<(u64, CallRelay)>,
}

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

/// Reads a session's standalone stream until it ends, relaying to the latest call in flight.
async fn follow_session_stream(
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

struct Live {
    /// Lines for the child's stdin, at most [`STDIN_QUEUE`] waiting (a child that stops reading,
    /// SIGSTOP say, makes calls fail at once instead of piling up).
    stdin: mpsc::Sender<String>,
    pending: Pending,
    progress: ProgressRoutes,
    era: Era,
}

/// Forgets a call when its future ends; if it ends before the answer (the client went away or
/// cancelled), tells the server with `notifications/cancelled`.
struct InFlight<'a> {
    id: u64,
    live: &'a Live,
    token: Option<String>,
    answered: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(calls) = self.live.pending.lock().unwrap().as_mut() {
            calls.remove(&self.id);
        }
        let mut routes = self.live.progress.lock().unwrap();
        if let Some(token) = &self.token {
            routes.by_token.remove(token);
        }
        routes.calls.retain(|(id, _)| *id != self.id);
        drop(routes);
        if !self.answered {
            let cancel = protocol::notification(
                "notifications/cancelled",
                json!({"requestId": self.id, "reason": "cancelled by the client"}),
            );
            let _ = self.live.stdin.try_send(cancel.to_string());
        }
    }
}

/// Requests (and notifications) waiting for a child to read them.
const STDIN_QUEUE: usize = 256;

struct StdioShared {
    name: String,
    next_id: AtomicU64,
    live: watch::Sender<Option<Arc<Live>>>,
    /// Whether the process should run: false keeps (or makes) it stopped (Cold).
    wanted: watch::Sender<bool>,
    starts: AtomicU64,
    /// Kills the running process (a hung one); the supervisor starts a fresh one.
    restart: tokio::sync::Notify,
}

pub struct StdioBackend {
    shared: Arc<StdioShared>,
    supervisor: JoinHandle<()>,
}

impl Drop for StdioBackend {
    fn drop(&mut self) {
        // Aborting the supervisor drops the child, which is killed (kill_on_drop).
        self.supervisor.abort();
    }
}

const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

impl StdioBackend {
    fn start(
        name: &str,
        command: Vec<String>,
        env: Vec<(String, String)>,
        dir: PathBuf,
        events: mpsc::UnboundedSender<BackendEvent>,
        wanted: bool,
    ) -> Self {
        let shared = Arc::new(StdioShared {
            name: name.to_string(),
            next_id: AtomicU64::new(1),
            live: watch::Sender::new(None),
            wanted: watch::Sender::new(wanted),
            starts: AtomicU64::new(0),
            restart: tokio::sync::Notify::new(),
        });
        let supervisor = tokio::spawn(supervise(shared.clone(), command, env, dir, events));
        Self { shared, supervisor }
    }

    /// The live connection, starting a cold process first; concurrent first calls share one
    /// start (there is one supervisor per server).
    async fn ready(&self, within: Duration) -> Result<Arc<Live>, BackendError> {
        if let Some(live) = self.shared.live.borrow().clone() {
            return Ok(live);
        }
        self.shared.wanted.send_if_modified(|w| !std::mem::replace(w, true));
        let mut live_rx = self.shared.live.subscribe();
        match tokio::time::timeout(within, live_rx.wait_for(Option::is_some)).await {
            Ok(Ok(live)) => Ok(live.clone().expect("waited for Some")),
            Ok(Err(_)) => Err(BackendError::Unavailable(format!("server {} stopped", self.shared.name))),
            Err(_) => Err(BackendError::NotReady(format!(
                "server {} did not become ready within spec.startupTimeout ({within:?}); see its log lines",
                self.shared.name
            ))),
        }
    }
}

async fn call(
    shared: &StdioShared,
    live: &Live,
    method: &str,
    mut params: Value,
    relay: Option<&CallRelay>,
) -> Result<Value, BackendError> {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    match live.pending.lock().unwrap().as_mut() {
        Some(calls) => calls.insert(id, tx),
        None => return Err(BackendError::Unavailable(format!("server {} exited", shared.name))),
    };
    let mut guard = InFlight { id, live, token: None, answered: false };
    if let Some(relay) = relay {
        live.progress.lock().unwrap().calls.push((id, relay.clone()));
    }
    if let Some(CallRelay { progress_token: Some(client_token), sink, .. }) = relay {
        let route = (client_token.clone(), sink.clone());
        // Client tokens may collide between clients; the server sees one of Hangar's own.
        let token = format!("hangar-{id}");
        if let Some(object) = params.as_object_mut() {
            let meta = object.entry("_meta").or_insert_with(|| json!({}));
            meta["progressToken"] = Value::String(token.clone());
        }
        live.progress.lock().unwrap().by_token.insert(token.clone(), route);
        guard.token = Some(token);
    }
    let line = protocol::request(id, method, params).to_string();
    match live.stdin.try_send(line) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            guard.answered = true;
            return Err(BackendError::Unavailable(format!(
                "server {} is not reading its input ({STDIN_QUEUE} requests waiting)",
                shared.name
            )));
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            guard.answered = true;
            return Err(BackendError::Unavailable(format!("server {} is not running", shared.name)));
        }
    }
    let outcome = rx.await;
    guard.answered = true;
    match outcome {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(e)) => Err(BackendError::Rpc(e)),
        Err(_) => Err(BackendError::Unavailable(format!("server {} exited during the call", shared.name))),
    }
}

/// Runs the child, restarting it with exponential backoff whenever it exits.
async fn supervise(
    shared: Arc<StdioShared>,
    command: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    events: mpsc::UnboundedSender<BackendEvent>,
) {
    let name = shared.name.clone();
    let mut backoff = BACKOFF_FIRST;
    let mut wanted = shared.wanted.subscribe();
    loop {
        if wanted.wait_for(|w| *w).await.is_err() {
            return;
        }
        let started = tokio::time::Instant::now();
        shared.starts.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            outcome = run_child(&shared, &command, &env, &dir, &events) => match outcome {
                Ok(status) => tracing::warn!(server = %name, %status, "server process exited"),
                Err(e) => tracing::warn!(server = %name, error = %e, "server process failed"),
            },
            // Stopped on purpose (idle): dropping run_child kills the process.
            _ = wanted.wait_for(|w| !*w) => {
                shared.live.send_replace(None);
                tracing::info!(server = %name, "server process stopped");
                backoff = BACKOFF_FIRST;
                continue;
            }
        }
        shared.live.send_replace(None);
        // A process that ran a while earns a fresh backoff.
        if started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_FIRST;
        }
        tracing::info!(server = %name, "restarting in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// What a local server inherits of Hangar's environment; the rest comes from its manifest.
const INHERITED_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

async fn run_child(
    shared: &Arc<StdioShared>,
    command: &[String],
    env: &[(String, String)],
    dir: &PathBuf,
    events: &mpsc::UnboundedSender<BackendEvent>,
) -> anyhow::Result<std::process::ExitStatus> {
    let name = shared.name.clone();
    let (program, args) = command.split_first().ok_or_else(|| anyhow::anyhow!("spec.command is empty"))?;
    let mut command = Command::new(program);
    // Like a pod: the server gets a few variables that say where and how to run, and what its
    // manifest gives — not Hangar's environment (HANGAR_API_KEY, cloud credentials, tokens).
    command.env_clear();
    for key in INHERITED_ENV {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    // The server dies with Hangar, even when Hangar is killed (SIGKILL leaves no time to stop
    // children, and a server that ignores the end of its stdin would live on).
    #[cfg(target_os = "linux")]
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        let parent = libc::getpid();
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // Hangar may have died before the line above: then nobody would signal.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = command
        .args(args)
        .envs(env.iter().cloned())
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {program:?} in {}: {e}", dir.display()))?;
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();

    use tokio_stream::StreamExt;
    // stderr → the log, under the server's name.
    let log_name = name.clone();
    tokio::spawn(async move {
        let mut lines = lossy_lines(stderr);
        while let Some(line) = lines.next().await {
            match line {
                Ok(line) => tracing::info!(server = %log_name, "{}", truncate(&line, 4096)),
                Err(e) => tracing::warn!(server = %log_name, "stderr: {e}"),
            }
        }
    });

    let (stdin_tx, mut stdin_rx) = mpsc::channel::<String>(STDIN_QUEUE);
    tokio::spawn(async move {
        while let Some(mut line) = stdin_rx.recv().await {
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    });

    let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
    let progress: ProgressRoutes = Arc::default();
    let reader = {
        let (pending, progress, stdin_tx, events, name) =
            (pending.clone(), progress.clone(), stdin_tx.clone(), events.clone(), name.clone());
        tokio::spawn(async move {
            let mut lines = lossy_lines(stdout);
            while let Some(line) = lines.next().await {
                // A line over the cap is skipped (the codec discards up to its end); bytes that
                // are not UTF-8 become U+FFFD: neither wedges the server.
                let line = match line {
                    Ok(line) => line,
                    Err(e) => {
                        tracing::warn!(server = %name, "skipping output: {e}");
                        continue;
                    }
                };
                let message = match parse_budget::answer(&line) {
                    Ok(message) => message,
                    Err(why) => {
                        tracing::warn!(server = %name, "ignoring a line ({why}): {}", truncate(&line, 200));
                        // An answer too large to relay fails its call now, not at its timeout.
                        if let Some(id) = parse_budget::answer_id(&line)
                            && let Some(tx) = pending.lock().unwrap().as_mut().and_then(|calls| calls.remove(&id))
                        {
                            let _ = tx.send(Err(RpcError::new(code::INTERNAL_ERROR, format!("server {name}: {why}"))));
                        }
                        continue;
                    }
                };
                dispatch(&name, message, &pending, &progress, &stdin_tx, &events);
            }
            // The process closed stdout: fail every call still waiting, and every later one.
            pending.lock().unwrap().take();
        })
    };

    let mut live = Live { stdin: stdin_tx, pending: pending.clone(), progress: progress.clone(), era: Era::Modern };
    let era = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(shared, &live)).await;
    match era {
        Ok(Ok(era)) => {
            tracing::info!(server = %name, ?era, "server ready");
            live.era = era;
            shared.live.send_replace(Some(Arc::new(live)));
        }
        Ok(Err(e)) => tracing::warn!(server = %name, error = %e, "handshake failed"),
        Err(_) => tracing::warn!(server = %name, "no handshake answer within {HANDSHAKE_TIMEOUT:?}"),
    }
    let status = tokio::select! {
        status = child.wait() => status?,
        _ = shared.restart.notified() => {
            tracing::warn!(server = %name, "not answering its health checks: killing it");
            child.kill().await?;
            child.wait().await?
        }
    };
    reader.abort();
    // The reader may be stopped before it read the end of the output: fail what still waits.
    pending.lock().unwrap().take();
    Ok(status)
}

/// Lines of a child's output as text: at most [`MAX_LINE_BYTES`] each (the rest of a longer
/// line is skipped and reported as an error item; reading goes on), invalid UTF-8 replaced.
fn lossy_lines(
    output: impl tokio::io::AsyncRead + Unpin,
) -> impl tokio_stream::Stream<Item = Result<String, String>> + Unpin {
    use tokio::io::AsyncBufReadExt;
    let reader = tokio::io::BufReader::new(output);
    Box::pin(futures_util::stream::unfold(reader, |mut reader| async move {
        let mut line = Vec::new();
        let mut skipped = 0usize;
        loop {
            let available = match reader.fill_buf().await {
                Ok(b) => b,
                Err(e) => return Some((Err(e.to_string()), reader)),
            };
            if available.is_empty() {
                // End of output; a last line without newline still counts.
                return (!line.is_empty() || skipped > 0).then(|| (finish(line, skipped), reader));
            }
            let (taken, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(line.len());
            let chunk = &available[..taken];
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            skipped += chunk.len().saturating_sub(room);
            reader.consume(taken);
            if done {
                return Some((finish(line, skipped), reader));
            }
        }
    }))
}

fn finish(mut line: Vec<u8>, skipped: usize) -> Result<String, String> {
    if skipped > 0 {
        return Err(format!("a line longer than the {} MiB maximum was skipped", MAX_LINE_BYTES >> 20));
    }
    while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// `server/discover` first; anything but a modern answer falls back to `initialize`.
async fn handshake(shared: &StdioShared, live: &Live) -> Result<Era, BackendError> {
    let discover = call(shared, live, "server/discover", json!({"_meta": protocol::modern_meta()}), None).await;
    match discover {
        Ok(result) if speaks_modern(&result) => return Ok(Era::Modern),
        Ok(_) | Err(BackendError::Rpc(_)) => {}
        Err(e) => return Err(e),
    }
    let result = call(shared, live, "initialize", initialize_params(), None).await?;
    let version =
        result.get("protocolVersion").and_then(Value::as_str).unwrap_or(protocol::LATEST_HANDSHAKE).to_string();
    let _ = live.stdin.try_send(protocol::notification("notifications/initialized", json!({})).to_string());
    Ok(Era::Handshake(version))
}

fn dispatch(
    name: &str,
    message: Value,
    pending: &Pending,
    progress: &ProgressRoutes,
    stdin: &mpsc::Sender<String>,
    events: &mpsc::UnboundedSender<BackendEvent>,
) {
    let method = message.get("method").and_then(Value::as_str);
    let id = message.get("id");
    match (method, id) {
        // A response to one of ours.
        (None, Some(id)) => {
            let Some(id) = id.as_u64() else { return };
            let Some(tx) = pending.lock().unwrap().as_mut().and_then(|calls| calls.remove(&id)) else { return };
            let outcome = match message.get("error") {
                Some(e) => Err(RpcError::from_json(e)),
                None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
            };
            let _ = tx.send(outcome);
        }
        // A request from the server (sampling, elicitation, roots): to the latest call's client.
        (Some(method), Some(id)) => {
            // A stdio process serves every client: only a lone call in flight can be its owner.
            let latest = owner(&progress.lock().unwrap().calls, true);
            let Some(relay) = latest else {
                let why = "not exactly one client call is waiting on this server";
                let _ = stdin.try_send(answer_unowned(name, id, method, why).to_string());
                return;
            };
            let answered = relay_request(&relay, method, message.get("params").cloned().unwrap_or_default());
            let (stdin, id, method) = (stdin.clone(), id.clone(), method.to_string());
            tokio::spawn(async move {
                let _ = stdin.send(client_answer(id, &method, answered).await.to_string()).await;
            });
        }
        (Some("notifications/message"), None) => {
            if let Some(relay) = owner(&progress.lock().unwrap().calls, true) {
                let _ = relay.sink.send(Relay::Notification(message.clone()));
            }
        }
        (Some("notifications/progress"), None) => {
            let token = message["params"]["progressToken"].as_str().unwrap_or_default();
            if let Some((client_token, sink)) = progress.lock().unwrap().by_token.get(token) {
                let mut params = message["params"].clone();
                params["progressToken"] = client_token.clone();
                let _ = sink.send(Relay::Notification(protocol::notification("notifications/progress", params)));
            }
        }
        (Some(method), None) => {
            let params = message.get("params").cloned().unwrap_or_default();
            let _ = events.send(BackendEvent { server: name.to_string(), method: method.to_string(), params });
        }
        (None, None) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Streamable HTTP

struct HttpState {
    era: Era,
    session: Option<String>,
}

pub struct HttpBackend {
    name: String,
    endpoint: String,
    client: reqwest::Client,
    next_id: AtomicU64,
    state: Mutex<Option<HttpState>>,
    connecting: tokio::sync::Mutex<()>,
    /// Standalone streams of clients' backend sessions, opened for clients that answer requests.
    streams: Mutex<HashMap<String, Arc<SessionStream>>>,
    events: EventSink,
    /// Sends the server the answers to its requests (built once: every stream shares it).
    answer_server: Answerer,
}

impl HttpBackend {
    fn new(
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
        Self {
            name: name.to_string(),
            answer_server: answerer(client.clone(), endpoint.clone(), name.to_string()),
            endpoint,
            client,
            next_id: AtomicU64::new(1),
            state: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            streams: Mutex::default(),
            events: (name.to_string(), events),
        }
    }

    /// One request, in the client's own backend session when it has one, else the core's.
    async fn request(
        &self,
        method: &str,
        params: Value,
        own: Option<&str>,
        relay: Option<&CallRelay>,
    ) -> Result<Value, BackendError> {
        self.connect().await?;
        let (era, shared) = {
            let state = self.state.lock().unwrap();
            let s = state.as_ref().expect("connected");
            (s.era.clone(), s.session.clone())
        };
        if let Some(own) = own {
            let _listening = self.listen(method, own, false, &era, relay).await;
            match self.post(method, with_era_meta(&era, params.clone()), &era, Some(own), relay).await {
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

    async fn connect(&self) -> Result<(), BackendError> {
        if self.state.lock().unwrap().is_some() {
            return Ok(());
        }
        let _guard = self.connecting.lock().await;
        if self.state.lock().unwrap().is_some() {
            return Ok(());
        }
        let discover =
            self.post("server/discover", json!({"_meta": protocol::modern_meta()}), &Era::Modern, None, None).await;
        let state = match discover {
            Ok((result, _)) if speaks_modern(&result) => HttpState { era: Era::Modern, session: None },
            // Anything else (an error, an old server's 4xx, no modern version) → the handshake.
            _ => {
                let handshake = Era::Handshake(protocol::LATEST_HANDSHAKE.into());
                let (result, session) = self.post("initialize", initialize_params(), &handshake, None, None).await?;
                let version = result
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(protocol::LATEST_HANDSHAKE)
                    .to_string();
                let era = Era::Handshake(version);
                self.notify("notifications/initialized", &era, session.as_deref()).await;
                HttpState { era, session }
            }
        };
        *self.state.lock().unwrap() = Some(state);
        Ok(())
    }

    /// Streamable HTTP headers; the stateless revision routes on `Mcp-Method` and `Mcp-Name`
    /// (which must match the body).
    fn headers(&self, method: &str, params: &Value, era: &Era, session: Option<&str>) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("accept", "application/json, text/event-stream".parse().unwrap());
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
        let name = match method {
            "tools/call" | "prompts/get" => params.get("name"),
            "resources/read" => params.get("uri"),
            _ => None,
        };
        if let Some(n) = name.and_then(Value::as_str).and_then(|n| n.parse().ok()) {
            h.insert("mcp-name", n);
        }
        if let Some(s) = session.and_then(|s| s.parse().ok()) {
            h.insert("mcp-session-id", s);
        }
        h
    }

    async fn notify(&self, method: &str, era: &Era, session: Option<&str>) {
        let body = protocol::notification(method, json!({}));
        let _ = self
            .client
            .post(&self.endpoint)
            .headers(self.headers(method, &body["params"], era, session))
            .json(&body)
            .send()
            .await;
    }

    /// POSTs one request; returns the result and any session id the response set. An event
    /// stream is read as it comes: what the server sends toward the client goes to `relay`, and
    /// a stream that ends before the answer is resumed (`Last-Event-ID`) as the server asks.
    async fn post(
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
        let response = self
            .client
            .post(&self.endpoint)
            .headers(headers.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| unavailable(without_url(e)))?;
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
            Some(m) if status.is_success() => Ok((m.get("result").cloned().unwrap_or(Value::Null), new_session)),
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
fn without_url(error: reqwest::Error) -> String {
    error.without_url().to_string()
}

/// Sends a server the answers to its requests (JSON-RPC responses, in `headers`' session), each
/// in a task of its own; usable after the backend is gone.
fn answerer(client: reqwest::Client, endpoint: String, name: String) -> Answerer {
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
    async fn listen(
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
                let get = self.client.get(&self.endpoint).headers(headers.clone()).send();
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

fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"))
}

/// Rounds of `input_required` one call may take.
const MAX_INPUT_ROUNDS: usize = 10;

/// How often, at most, an answer's event stream is resumed after the server closed it.
const MAX_RESUMPTIONS: u32 = 10;
/// The longest pause before resuming that a server's `retry:` may ask for.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);
/// How long a server's request waits for the client's answer.
const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// Reading the event stream that carries the answer to request `id`.
struct Answering<'a> {
    backend: &'a HttpBackend,
    id: u64,
    relay: Option<&'a CallRelay>,
    headers: &'a reqwest::header::HeaderMap,
}

impl Answering<'_> {
    /// The answer, or None when the stream ended without it for good.
    async fn read(&self, mut response: reqwest::Response) -> Result<Option<Value>, String> {
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
    fn take(&self, message: Value) -> Option<Value> {
        if message.get("method").is_none() {
            return (message.get("id").and_then(Value::as_u64) == Some(self.id)).then_some(message);
        }
        // The answer goes in the call's session; the answerer drops the call's own headers.
        relay_from_server(&self.backend.answer_server, &self.backend.events, self.headers, self.relay, message);
        None
    }
}

/// Sends the server answers to its requests (JSON-RPC responses, in the headers' session).
type Answerer = Arc<dyn Fn(reqwest::header::HeaderMap, Value) + Send + Sync>;

/// A message a server sent toward a client: its requests go to the client's call (`relay`),
/// the answer back to the server; without a call to take it, the server is answered with an
/// error at once. Progress and log messages go to the call too.
fn relay_from_server(
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
fn answer_unowned(server: &str, id: &Value, method: &str, why: &str) -> Value {
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
fn relay_request(relay: &CallRelay, method: &str, params: Value) -> oneshot::Receiver<Result<Value, RpcError>> {
    let (answer, answered) = oneshot::channel();
    let _ = relay.sink.send(Relay::Request { method: method.to_string(), params, answer });
    answered
}

/// The JSON-RPC response to send the server for its request `server_id`: the client's answer,
/// or an error saying why there is none.
async fn client_answer(server_id: Value, method: &str, answered: oneshot::Receiver<Result<Value, RpcError>>) -> Value {
    let error = |why: String| protocol::error_response(&server_id, &RpcError::new(code::INTERNAL_ERROR, why));
    match tokio::time::timeout(CLIENT_ANSWER_TIMEOUT, answered).await {
        Ok(Ok(Ok(result))) => protocol::response(&server_id, result),
        Ok(Ok(Err(e))) => protocol::error_response(&server_id, &e),
        Ok(Err(_)) => error(format!("the client's call ended before it answered {method}")),
        Err(_) => error(format!("the client did not answer {method} within {CLIENT_ANSWER_TIMEOUT:?}")),
    }
}

/// A client's backend session's standalone stream (GET): servers send requests there that
/// belong to no request of ours (the TypeScript SDK's `server.request` from a tool does). They
/// go to the client's latest call in flight on that session.
struct SessionStream {
    calls: Mutex<Vec<(u64, CallRelay)>>,
    next_call: AtomicU64,
    ended: std::sync::atomic::AtomicBool,
    /// The server answered the GET with a stream (else it has none, and is not asked again).
    offered: bool,
    /// The core's own session, which carries many clients' calls.
    shared: bool,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for SessionStream {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }
}

/// The call a message that names no request belongs to: the latest one of a client's own
/// session; in a session many clients share, only a lone call (with several, which client it
/// is for cannot be told, and guessing could hand one client's data to another).
fn owner(calls: &[(u64, CallRelay)], shared: bool) -> Option<CallRelay> {
    match calls {
        [(_, only)] => Some(only.clone()),
        [.., (_, latest)] if !shared => Some(latest.clone()),
        _ => None,
    }
}

/// A call registered on a session's standalone stream, until it ends.
struct StreamCall {
    stream: Arc<SessionStream>,
    id: u64,
}

impl Drop for StreamCall {
    fn drop(&mut self) {
        self.stream.calls.lock().unwrap().retain(|(id, _)| *id != self.id);
    }
}

/// Where the first complete event in `buffer` ends, and the length of the blank line after it.
fn event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// One Server-Sent Event: its id, its retry hint and its data as a JSON message.
#[derive(Debug, Default, PartialEq)]
struct SseEvent {
    id: Option<String>,
    retry_ms: Option<u64>,
    message: Option<Value>,
}

fn parse_event(event: &str) -> SseEvent {
    let mut parsed = SseEvent::default();
    let mut data: Vec<&str> = Vec::new();
    for line in event.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => data.push(value),
            "id" => parsed.id = Some(value.to_string()),
            "retry" => parsed.retry_ms = value.parse().ok(),
            _ => {}
        }
    }
    if !data.is_empty() {
        parsed.message = match parse_budget::answer(&data.join("\n")) {
            Ok(message) => Some(message),
            Err(why) => {
                tracing::warn!("skipping a server's event: {why}");
                None
            }
        };
    }
    parsed
}

/// Largest answer read from an HTTP backend.
const MAX_ANSWER_BYTES: usize = 16 << 20;
/// Longest line read from a stdio backend (one JSON-RPC message).
const MAX_LINE_BYTES: usize = 16 << 20;

/// The body as text (invalid UTF-8 replaced), refusing more than `limit` bytes.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(without_url)? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {} MiB", limit >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

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

    #[test]
    fn events_are_split_and_parsed_with_their_ids_and_retry_hints() {
        let body = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\nid: s::2\r\nretry: 5000\r\ndata:\r\n\r\n";
        let (end, skip) = event_end(body).unwrap();
        let first = parse_event(std::str::from_utf8(&body[..end]).unwrap());
        assert_eq!(first.message, Some(json!({"jsonrpc":"2.0","id":1,"result":{}})));
        let rest = &body[end + skip..];
        let (end, skip) = event_end(rest).unwrap();
        assert_eq!(end + skip, rest.len(), "a CRLF blank line ends the priming event");
        let priming = parse_event(std::str::from_utf8(&rest[..end]).unwrap());
        assert_eq!(priming, SseEvent { id: Some("s::2".into()), retry_ms: Some(5000), message: None });
    }

    #[tokio::test]
    async fn a_call_after_the_server_closed_its_output_fails_at_once() {
        let shared = StdioShared {
            name: "gone".into(),
            next_id: AtomicU64::new(1),
            live: watch::channel(None).0,
            wanted: watch::channel(true).0,
            starts: AtomicU64::new(1),
            restart: tokio::sync::Notify::new(),
        };
        let (stdin, _written) = mpsc::channel(1);
        // The reader saw the process close its output; the supervisor has not noticed yet.
        let live = Live { stdin, pending: Arc::new(Mutex::new(None)), progress: Arc::default(), era: Era::Modern };
        let answer = tokio::time::timeout(Duration::from_secs(5), call(&shared, &live, "tools/call", json!({}), None))
            .await
            .expect("answered at once, not after a call timeout");
        assert!(matches!(answer, Err(BackendError::Unavailable(m)) if m == "server gone exited"));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let text = format!("{}é and more", "a".repeat(199)); // 'é' spans bytes 199 and 200
        assert_eq!(truncate(&text, 200), "a".repeat(199));
        assert_eq!(truncate("short", 200), "short");
    }

    #[tokio::test]
    async fn child_output_is_read_as_bytes_a_bad_line_is_skipped_and_reading_goes_on() {
        use tokio_stream::StreamExt;
        let mut output = b"{\"a\":1}\n\xff\xfe not utf-8\n".to_vec();
        output.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        output.extend(b"\n{\"b\":2}\r\n");
        let lines: Vec<Result<String, String>> = lossy_lines(std::io::Cursor::new(output)).collect().await;
        assert_eq!(lines[0], Ok("{\"a\":1}".to_string()));
        assert_eq!(lines[1], Ok("\u{fffd}\u{fffd} not utf-8".to_string()));
        assert!(
            lines[2].as_ref().is_err_and(|e| e.contains("maximum was skipped")),
            "{:?}",
            lines[2].as_ref().map(|l| l.len())
        );
        assert_eq!(lines.last(), Some(&Ok("{\"b\":2}".to_string())), "the line after the long one is read");
    }

    #[test]
    fn modern_backends_get_meta_on_every_request() {
        let p = with_era_meta(&Era::Modern, json!({"name": "t"}));
        assert_eq!(p["_meta"][protocol::META_PROTOCOL_VERSION], MODERN_VERSION);
        let p = with_era_meta(&Era::Handshake("2025-11-25".into()), json!({"name": "t"}));
        assert!(p.get("_meta").is_none());
    }
}
