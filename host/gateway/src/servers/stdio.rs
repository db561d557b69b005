//! A local server: a child process speaking MCP over stdin/stdout, supervised (restarted with
//! backoff, stopped when idle) and handshaken as it starts.

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

use super::{
    BackendError, BackendEvent, Era, Revision, discover, initialize_params,
    relay::{CallRelay, Relay, RelaySink, answer_unowned, client_answer, owner, relay_request},
    truncate,
};
use crate::{
    parse_budget,
    protocol::{self, RpcError, code},
};

/// Calls waiting for their answer; None once the process closed its output, so that a call
/// made in the moment between the exit and the supervisor noticing it fails at once instead of
/// waiting for an answer that cannot come.
pub(super) type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>>>>;

/// Where `notifications/progress` for a call go: the backend token Hangar chose → the client's
/// token and the call's relay.
/// Also the calls in flight with a relay: a stdio server's requests and log messages belong to
/// no request on the wire, so they go to the latest such call.
pub(super) type ProgressRoutes = Arc<Mutex<Routes>>;

#[derive(Default)]
pub(super) struct Routes {
    pub(super) by_token: HashMap<String, (Value, RelaySink)>,
    pub(super) calls: Vec<(u64, CallRelay)>,
}

pub(super) struct Live {
    /// Lines for the child's stdin, at most [`STDIN_QUEUE`] waiting (a child that stops reading,
    /// SIGSTOP say, makes calls fail at once instead of piling up).
    pub(super) stdin: mpsc::Sender<String>,
    pub(super) pending: Pending,
    pub(super) progress: ProgressRoutes,
    pub(super) era: Era,
}

/// Forgets a call when its future ends; if it ends before the answer (the client went away or
/// cancelled), tells the server with `notifications/cancelled`.
pub(super) struct InFlight<'a> {
    pub(super) id: u64,
    pub(super) live: &'a Live,
    pub(super) token: Option<String>,
    pub(super) answered: bool,
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
pub(super) const STDIN_QUEUE: usize = 256;

pub(super) struct StdioShared {
    pub(super) name: String,
    pub(super) next_id: AtomicU64,
    pub(super) live: watch::Sender<Option<Arc<Live>>>,
    /// Whether the process should run: false keeps (or makes) it stopped (Cold).
    pub(super) wanted: watch::Sender<bool>,
    pub(super) starts: AtomicU64,
    /// Kills the running process (a hung one); the supervisor starts a fresh one.
    pub(super) restart: tokio::sync::Notify,
}

pub struct StdioBackend {
    pub(super) shared: Arc<StdioShared>,
    pub(super) supervisor: JoinHandle<()>,
}

impl Drop for StdioBackend {
    fn drop(&mut self) {
        // Aborting the supervisor drops the child, which is killed (kill_on_drop).
        self.supervisor.abort();
    }
}

pub(super) const BACKOFF_FIRST: Duration = Duration::from_millis(200);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(30);
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

impl StdioBackend {
    pub(super) fn start(
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
    pub(super) async fn ready(&self, within: Duration) -> Result<Arc<Live>, BackendError> {
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

pub(super) async fn call(
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
pub(super) async fn supervise(
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
pub(super) const INHERITED_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

pub(super) async fn run_child(
    shared: &Arc<StdioShared>,
    command: &[String],
    env: &[(String, String)],
    dir: &PathBuf,
    events: &mpsc::UnboundedSender<BackendEvent>,
) -> anyhow::Result<std::process::ExitStatus> {
    let name = shared.name.clone();
    let mut child = spawn(command, env, dir)?;
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    tokio::spawn(log_stderr(name.clone(), stderr));
    let (stdin_tx, stdin_rx) = mpsc::channel::<String>(STDIN_QUEUE);
    tokio::spawn(write_stdin(stdin, stdin_rx));
    let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
    let progress: ProgressRoutes = Arc::default();
    let reader = tokio::spawn(read_stdout(
        name.clone(),
        stdout,
        pending.clone(),
        progress.clone(),
        stdin_tx.clone(),
        events.clone(),
    ));

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

/// Starts the process with piped stdio, a pod's environment and death with Hangar.
fn spawn(command: &[String], env: &[(String, String)], dir: &PathBuf) -> anyhow::Result<tokio::process::Child> {
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
    command
        .args(args)
        .envs(env.iter().cloned())
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {program:?} in {}: {e}", dir.display()))
}

/// The child's stderr → the log, under the server's name.
async fn log_stderr(name: String, stderr: tokio::process::ChildStderr) {
    use tokio_stream::StreamExt;
    let mut lines = lossy_lines(stderr);
    while let Some(line) = lines.next().await {
        match line {
            Ok(line) => tracing::info!(server = %name, "{}", truncate(&line, 4096)),
            Err(e) => tracing::warn!(server = %name, "stderr: {e}"),
        }
    }
}

/// Lines queued for the child → its stdin, until it stops reading.
async fn write_stdin(mut stdin: tokio::process::ChildStdin, mut lines: mpsc::Receiver<String>) {
    while let Some(mut line) = lines.recv().await {
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
}

/// The child's stdout, a JSON-RPC message a line, → the calls waiting and the relays. A line
/// over the cap is skipped (the codec discards up to its end); bytes that are not UTF-8 become
/// U+FFFD: neither wedges the server.
async fn read_stdout(
    name: String,
    stdout: tokio::process::ChildStdout,
    pending: Pending,
    progress: ProgressRoutes,
    stdin: mpsc::Sender<String>,
    events: mpsc::UnboundedSender<BackendEvent>,
) {
    use tokio_stream::StreamExt;
    let mut lines = lossy_lines(stdout);
    while let Some(line) = lines.next().await {
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
        dispatch(&name, message, &pending, &progress, &stdin, &events);
    }
    // The process closed stdout: fail every call still waiting, and every later one.
    pending.lock().unwrap().take();
}

/// Lines of a child's output as text: at most [`MAX_LINE_BYTES`] each (the rest of a longer
/// line is skipped and reported as an error item; reading goes on), invalid UTF-8 replaced.
pub(super) fn lossy_lines(
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

pub(super) fn finish(mut line: Vec<u8>, skipped: usize) -> Result<String, String> {
    if skipped > 0 {
        return Err(format!("a line longer than the {} MiB maximum was skipped", MAX_LINE_BYTES >> 20));
    }
    while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// `server/discover` first (again, once, when the server refused the version but lists the
/// stateless revision); anything but a modern answer falls back to `initialize`, with the
/// newest handshake version the server listed if it listed any.
pub(super) async fn handshake(shared: &StdioShared, live: &Live) -> Result<Era, BackendError> {
    let modern_meta = json!({"_meta": protocol::modern_meta()});
    let probe = || call(shared, live, "server/discover", modern_meta.clone(), None);
    // One process, one conversation: a dual-revision server is spoken to in the stateless one.
    let asked = match discover(probe).await? {
        Revision::Stateless { .. } => return Ok(Era::Modern),
        Revision::Handshake(asked) => asked,
    };
    let result = call(shared, live, "initialize", initialize_params(asked), None).await?;
    let version = result.get("protocolVersion").and_then(Value::as_str).unwrap_or(asked).to_string();
    let _ = live.stdin.try_send(protocol::notification("notifications/initialized", json!({})).to_string());
    Ok(Era::Handshake(version))
}

pub(super) fn dispatch(
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

/// Longest line read from a stdio backend (one JSON-RPC message).
pub(super) const MAX_LINE_BYTES: usize = 16 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    pub(super) async fn a_call_after_the_server_closed_its_output_fails_at_once() {
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

    #[tokio::test]
    pub(super) async fn child_output_is_read_as_bytes_a_bad_line_is_skipped_and_reading_goes_on() {
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
}
