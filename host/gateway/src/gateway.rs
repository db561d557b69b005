//! The routing core: which servers and groups exist, their tools under one namespace
//! (`<server>__<tool>`), and the path of a `tools/call` through policy, rate limit, strategy,
//! failover and backend. No HTTP here; `http.rs` translates.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hangar_api::{MCPServerGroupSpec, MCPServerSpec, ServerMode, State, Transport};
use hangar_plugin_algorithms::{
    breaker::{BreakerState, CircuitBreaker},
    policy::{self as algorithms, CallerView, ToolPolicy},
};
use hangar_plugin_runtime::{
    Call, Caller, Decision, MemberInfo, MemberState, Origin, PickRequest, PluginRuntime, PolicyPlugin, RateLimit,
    StrategyPlugin, WorldKind,
};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

mod offerings;

use crate::{
    backend::{Backend, BackendError, BackendEvent, BackendSpec, Era},
    catalog,
    metrics::GatewayMetrics,
    protocol::{RpcError, code},
    ratelimit::RateLimiter,
};

/// Between a server's (or group's) name and a tool's name in the aggregated list.
pub const SEPARATOR: &str = "__";

/// One MCP server behind the gateway.
pub struct ServerEntry {
    /// The namespace it was registered from; its name is exposed without it, so one name
    /// belongs to one namespace at a time (see [`RegisterError::Taken`]).
    pub namespace: String,
    pub name: String,
    pub spec: MCPServerSpec,
    /// What the backend was started from; a registration that changes neither this nor the
    /// spec leaves the running entry alone.
    backend_spec: BackendSpec,
    backend: Backend,
    policy: PolicyPlugin,
    /// The manifest's allowList, denyList and rateLimit, enforced by the host beside a custom
    /// policy plugin: a plugin may narrow them, never widen them. None with the default policy,
    /// which is exactly these rules.
    floor: Option<ToolPolicy>,
    /// The manifest's rules when `spec.tools.callers` is set: who may see and use the server's
    /// resources, templates, prompts and completions at all (a caller no entry matches: none).
    offerings: Option<ToolPolicy>,
    tools: RwLock<Vec<Value>>,
    in_flight: AtomicU32,
    failures: AtomicU32,
    latency_avg_us: AtomicU64,
    breaker: CircuitBreaker,
    /// Health checks failed in a row.
    health_failures: AtomicU32,
    /// When the last health check ran (reported to the operator for `status.lastHealthCheck`).
    last_health_check: Mutex<Option<Instant>>,
    /// The last start did not finish within startupTimeout.
    start_failed: AtomicBool,
    last_activity: Mutex<Instant>,
}

/// An endpoint core may call: an absolute `http://` or `https://` URL with a host (no
/// `file://`, `gopher://`, ...). The message never repeats the URL, which may hold a credential.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    match reqwest::Url::parse(endpoint) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        Ok(url) if matches!(url.scheme(), "http" | "https") => Err("spec.endpoint: the URL names no host".into()),
        Ok(url) => {
            Err(format!("spec.endpoint: scheme {:?} is not allowed; use an http:// or https:// URL", url.scheme()))
        }
        Err(e) => Err(format!("spec.endpoint: not a URL ({e}); use an http:// or https:// URL")),
    }
}

/// Waits while members of a group are starting, until one serves: at most the longest of their
/// `startupTimeout`s. Whether one serves.
async fn first_started(members: &[Option<Arc<ServerEntry>>]) -> bool {
    let members: Vec<&Arc<ServerEntry>> = members.iter().flatten().collect();
    let starting = || members.iter().filter(|s| s.state() == State::Initializing);
    let Some(within) = starting().map(|s| s.spec.startup_timeout.as_std()).max() else { return false };
    tracing::debug!(within = ?within, "no member serves yet; waiting for one that is starting");
    let deadline = Instant::now() + within;
    loop {
        if members.iter().any(|s| s.serving()) {
            return true;
        }
        if starting().next().is_none() || Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `tool` label of calls for tools the server did not list.
pub const UNLISTED_TOOL: &str = "(unlisted)";

/// How long a backend may take to list its tools.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

impl ServerEntry {
    /// The guide's lifecycle state, from what the gateway sees of the server.
    pub fn state(&self) -> State {
        let live = self.backend.is_live();
        let threshold = self.spec.health_check.failure_threshold.max(1) as u32;
        let failures = self.health_failures.load(Ordering::Relaxed);
        if !live && self.start_failed.load(Ordering::Relaxed) {
            State::Dead
        } else if !self.backend.wanted() || (!live && self.spec.on_demand() && self.backend.is_remote()) {
            // A local process that is stopped, or (in a cluster) an on-demand server's Service
            // with nothing behind it yet.
            State::Cold
        } else if !live {
            State::Initializing
        } else if failures >= threshold {
            State::Dead
        } else if failures > 0 || self.breaker.state() != BreakerState::Closed {
            State::Degraded
        } else {
            State::Ready
        }
    }

    /// The server's tools that its policy shows this caller (and the manifest's floor, with a
    /// custom policy).
    async fn visible_tools(&self, caller: &Caller) -> Vec<Value> {
        let tools = self.tools.read().unwrap().clone();
        let view = caller.view();
        let names: Vec<String> = tools
            .iter()
            .filter_map(|t| t["name"].as_str())
            .filter(|n| self.floor.as_ref().is_none_or(|f| f.visible(n, &view)))
            .map(str::to_string)
            .collect();
        let (allowed, _) = self.policy.filter_tools_off_worker(names, caller.clone()).await;
        tools.into_iter().filter(|t| t["name"].as_str().is_some_and(|n| allowed.iter().any(|a| a == n))).collect()
    }

    /// The policy's decision, within the manifest's floor: a denial there stands whatever the
    /// plugin says, and its rate limit is charged beside the plugin's.
    async fn decide(&self, call: Call) -> Decision {
        let floor_buckets = match self.floor.as_ref().map(|f| f.check(&call.tool, &call.caller.view())) {
            Some(algorithms::Decision::Deny(why)) => return Decision::Deny(why),
            Some(algorithms::Decision::Allow(buckets)) => buckets,
            None => Vec::new(),
        };
        match self.policy.check_off_worker(call).await.0 {
            Decision::Allow(mut limits) => {
                limits.extend(floor_buckets.into_iter().map(|b| RateLimit {
                    key: format!("floor/{}", b.key),
                    requests_per_minute: b.requests_per_minute,
                    burst: b.burst,
                }));
                Decision::Allow(limits)
            }
            deny => deny,
        }
    }

    fn serving(&self) -> bool {
        self.state().serves() && self.breaker.state() != BreakerState::Open
    }

    /// Why `caller` may not see or use this server's resources, templates, prompts and
    /// completions (`spec.tools.callers` set and no entry matching), if so.
    fn offerings_refusal(&self, caller: &Caller) -> Option<String> {
        self.offerings.as_ref().and_then(|rules| rules.offerings_refusal(&caller.view()))
    }

    fn touch(&self) {
        *self.last_activity.lock().unwrap() = Instant::now();
    }

    /// Counts a request to the server as in flight until the guard is dropped, on every path
    /// (errors and cancellation included); the idle clock restarts at both ends.
    fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self)
    }

    /// One MCP health check: `ping` for handshake-era servers (the stateless revision has none),
    /// `tools/list` otherwise.
    async fn check_health(&self) -> bool {
        let timeout = self.spec.health_check.timeout.as_std();
        let method = match self.backend.era() {
            Some(Era::Handshake(_)) => "ping",
            _ => "tools/list",
        };
        let ok = self.backend.request(method, json!({}), timeout, timeout).await.is_ok();
        *self.last_health_check.lock().unwrap() = Some(Instant::now());
        if ok {
            self.health_failures.store(0, Ordering::Relaxed);
        } else {
            self.health_failures.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }
}

/// A request in flight at a server; see [`ServerEntry::begin`].
struct InFlight<'a>(&'a ServerEntry);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// Per server, for as long as it exists: health checks every `healthCheck.interval`, idle stop
/// of an on-demand server after `idleTTL`, and its gauges.
async fn lifecycle(
    server: Weak<ServerEntry>,
    metrics: GatewayMetrics,
    events: broadcast::Sender<Value>,
    refresh: mpsc::UnboundedSender<BackendEvent>,
) {
    let mut last_check = Instant::now();
    let mut last_state = None;
    let mut was_live = false;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(s) = server.upgrade() else { break };
        let spec = &s.spec;
        // Checked: a connected server, and a remote one that was unreachable (Dead), which is
        // tried again; when that one answers, its tools are listed as if it had announced a change.
        let live = s.backend.is_live();
        if live && !was_live {
            // Idle time counts from becoming ready, never from before or during a start; a
            // server that came up without its tools known (its first start was too slow) lists them now.
            s.touch();
            if s.tools.read().unwrap().is_empty() {
                let method = "notifications/tools/list_changed".to_string();
                let _ = refresh.send(BackendEvent { server: s.name.clone(), method, params: Value::Null });
            }
        }
        was_live = live;
        let unreachable = s.backend.is_remote() && s.start_failed.load(Ordering::Relaxed);
        if spec.health_check.enabled
            && (live || unreachable)
            && last_check.elapsed() >= spec.health_check.interval.as_std()
        {
            last_check = Instant::now();
            let ok = s.check_health().await;
            let failures = s.health_failures.load(Ordering::Relaxed);
            if !ok {
                tracing::warn!(server = %s.name, failures, "health check failed");
                // A local process that stopped answering (hung, stopped) is killed and started
                // again; a remote one is the cluster's to restart.
                // It stays Dead until the new process passes a check; if that one fails too, the
                // next restart comes after another failureThreshold checks (and the supervisor's backoff).
                let threshold = spec.health_check.failure_threshold.max(1) as u32;
                if failures % threshold == 0 && !s.backend.is_remote() {
                    tracing::warn!(server = %s.name, failures, "not answering its health checks; restarting it");
                    s.backend.restart();
                }
            } else if !live {
                tracing::info!(server = %s.name, "reachable again");
                let method = "notifications/tools/list_changed".to_string();
                let _ = refresh.send(BackendEvent { server: s.name.clone(), method, params: Value::Null });
            }
        }
        if spec.on_demand()
            && s.backend.wanted()
            && live
            && s.in_flight.load(Ordering::Relaxed) == 0
            && s.last_activity.lock().unwrap().elapsed() >= spec.idle_ttl.as_std()
        {
            tracing::info!(server = %s.name, "idle for {}; stopping (replicas: 0)", spec.idle_ttl);
            s.backend.set_wanted(false);
        }
        let state = s.state();
        if last_state != Some(state) {
            last_state = Some(state);
            let _ = events
                .send(json!({"type": "state", "namespace": s.namespace, "server": s.name, "state": state.as_str()}));
        }
        for st in State::ALL {
            metrics.server_state.with_label_values(&[&s.name, st.as_str()]).set((st == state) as i64);
        }
        metrics.breaker_state.with_label_values(&[&s.name]).set(s.breaker.state().gauge());
        metrics.starts.with_label_values(&[&s.name]).set(s.backend.starts() as i64);
    }
}

/// A member of a group, with what the strategy needs from its labels.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct GroupMember {
    pub name: String,
    /// `mcp-hangar.io/priority` (lower first in failover; default 0).
    #[serde(default)]
    pub priority: i32,
    /// `mcp-hangar.io/weight` (default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl GroupMember {
    /// From a member server's name and labels.
    pub fn from_labels(name: &str, labels: &BTreeMap<String, String>) -> Self {
        let number = |key| labels.get(key).and_then(|v: &String| v.parse().ok());
        GroupMember {
            name: name.to_string(),
            priority: number(hangar_api::labels::PRIORITY).unwrap_or(0),
            weight: number(hangar_api::labels::WEIGHT).map(|w: i32| w.max(0) as u32).unwrap_or(1),
        }
    }
}

/// A group: members chosen by a strategy plugin, tried again on another member per `failover`.
pub struct GroupEntry {
    pub namespace: String,
    pub name: String,
    pub spec: MCPServerGroupSpec,
    pub members: Vec<GroupMember>,
    strategy: StrategyPlugin,
    sequence: AtomicU64,
}

impl GroupEntry {
    /// Whether the group's strategy plugin serves its picks: `{plugin, resolved, reason, message}`
    /// (the operator's `PluginResolved` condition). While it does not, the round-robin fallback
    /// picks and the group stays listed.
    async fn plugin_status(&self) -> Value {
        let plugin = self.strategy.name();
        match self.strategy.health().await {
            Ok(()) => json!({"name": plugin, "resolved": true, "reason": "PluginLoaded",
                             "message": format!("strategy plugin {plugin:?} picks the members")}),
            Err(e) => json!({"name": plugin, "resolved": false, "reason": e.reason(),
                             "message": format!("{e}; round robin over the healthy members picks instead")}),
        }
    }
}

/// What a client reaches by name: a server, or a group (with its registered members).
#[derive(Clone)]
enum Target {
    Server(Arc<ServerEntry>),
    Group(Arc<GroupEntry>, Vec<Arc<ServerEntry>>),
}

impl Target {
    fn name(&self) -> &str {
        match self {
            Target::Server(s) => &s.name,
            Target::Group(g, _) => &g.name,
        }
    }

    fn unprefixed(&self) -> bool {
        match self {
            Target::Server(s) => s.spec.unprefixed,
            Target::Group(g, _) => g.spec.unprefixed,
        }
    }

    fn servers(&self) -> &[Arc<ServerEntry>] {
        match self {
            Target::Server(s) => std::slice::from_ref(s),
            Target::Group(_, members) => members,
        }
    }

    /// The server that answers for the target outside tool calls: itself, or a group's first
    /// member that serves.
    fn serving(&self) -> Option<&Arc<ServerEntry>> {
        self.servers().iter().find(|s| s.serving())
    }

    /// The target's tools as its policy shows them; a group's members serve the same tools, so
    /// those of the first member that has any.
    async fn tools(&self, caller: &Caller) -> Vec<Value> {
        for server in self.servers() {
            let tools = server.visible_tools(caller).await;
            if !tools.is_empty() {
                return tools;
            }
        }
        Vec::new()
    }
}

pub struct Gateway {
    /// Serve one server's tools under their own names (`hangar bridge`).
    pub unprefixed: bool,
    plugins: PluginRuntime,
    servers: RwLock<BTreeMap<String, Arc<ServerEntry>>>,
    groups: RwLock<BTreeMap<String, Arc<GroupEntry>>>,
    limiter: RateLimiter,
    pub metrics: GatewayMetrics,
    events: mpsc::UnboundedSender<BackendEvent>,
    /// Notifications for every client's GET stream (list changes).
    pub notices: broadcast::Sender<Value>,
    /// Notifications for one client's GET stream (resource updates it subscribed to).
    client_notices: Mutex<std::collections::HashMap<String, broadcast::Sender<Value>>>,
    /// Resource URI → the client sessions subscribed to it through this replica.
    subscriptions: Mutex<std::collections::HashMap<String, std::collections::BTreeSet<String>>>,
    /// What the operator follows (`GET /api/v1/events`): state changes and wake-ups.
    pub events_out: broadcast::Sender<Value>,
    client_sessions: crate::client_sessions::ClientSessions,
}

/// Who calls and how: the caller's identity for the policy, the session's group-member pin, and
/// where what the server sends toward the client during the call goes.
#[derive(Clone, Default)]
pub struct CallContext {
    /// Who calls: a verified token's identity, or the client's self-given name.
    pub caller: Caller,
    pub pin: Option<u64>,
    pub relay: Option<crate::backend::CallRelay>,
    /// The client's handshake session id: its backend sessions are opened on first use.
    pub session: Option<String>,
}

/// A `tools/call` that did not produce a tool result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Refused(RpcError),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl CallError {
    pub fn to_rpc(&self) -> RpcError {
        match self {
            CallError::Refused(e) => e.clone(),
            CallError::Backend(BackendError::Rpc(e)) => e.clone(),
            CallError::Backend(e) => unavailable(&e.to_string()),
        }
    }
}

/// Why a registration was not taken.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegisterError {
    #[error("{0}")]
    Invalid(String),
    /// Tools are exposed as `<name>__<tool>` without the namespace, so two namespaces cannot
    /// both have a server (or group) of one name in one core.
    #[error(
        "the name {name:?} is already registered from namespace {owner:?}; names are exposed without their namespace (as {name}{SEPARATOR}<tool>), so they must be unique across the namespaces one core serves: rename one of them"
    )]
    Taken { name: String, owner: String },
}

/// What a removal found.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    NotFound,
    /// The name exists, but registered from another namespace; it is left alone.
    OtherNamespace(String),
}

/// The MCP error for a request over its server's rate limit.
fn rate_limited(server: &str, exhausted: &crate::ratelimit::Exhausted) -> RpcError {
    RpcError::new(
        code::RATE_LIMITED,
        format!(
            "rate limit of server {server:?} reached (spec.tools.rateLimit); retry in {:.1}s",
            exhausted.retry_after.as_secs_f64()
        ),
    )
    .with_data(json!({"server": server, "retryAfterMs": exhausted.retry_after.as_millis() as u64}))
}

/// The one MCP error for "the server cannot serve now".
pub fn unavailable(why: &str) -> RpcError {
    RpcError::new(code::SERVER_UNAVAILABLE, format!("server unavailable: {why}"))
}

impl Gateway {
    pub fn new(plugins: PluginRuntime, registry: &prometheus::Registry) -> anyhow::Result<Arc<Self>> {
        Self::build(plugins, registry, false)
    }

    /// A gateway for exactly one server whose tools keep their names (`hangar bridge`).
    pub fn single(plugins: PluginRuntime, registry: &prometheus::Registry) -> anyhow::Result<Arc<Self>> {
        Self::build(plugins, registry, true)
    }

    fn build(plugins: PluginRuntime, registry: &prometheus::Registry, unprefixed: bool) -> anyhow::Result<Arc<Self>> {
        let (events, mut rx) = mpsc::unbounded_channel::<BackendEvent>();
        let gateway = Arc::new(Self {
            unprefixed,
            plugins,
            servers: RwLock::default(),
            groups: RwLock::default(),
            limiter: RateLimiter::default(),
            metrics: GatewayMetrics::new(registry)?,
            events,
            notices: broadcast::channel(16).0,
            client_notices: Mutex::default(),
            subscriptions: Mutex::default(),
            events_out: broadcast::channel(256).0,
            client_sessions: Default::default(),
        });
        let weak = Arc::downgrade(&gateway);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let Some(gateway) = weak.upgrade() else { break };
                gateway.on_backend_event(event).await;
            }
        });
        Ok(gateway)
    }

    /// Starts (or replaces) a server. `base_dir` resolves relative paths of local commands.
    pub fn upsert_server(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        spec: MCPServerSpec,
        base_dir: &Path,
    ) -> Result<(), RegisterError> {
        let backend = backend_spec(name, &spec, base_dir).map_err(RegisterError::Invalid)?;
        self.upsert_server_at(namespace, name, spec, backend)
    }

    /// Which namespace holds `name` among servers and groups, if any.
    fn owner_of(&self, name: &str) -> Option<String> {
        let server = self.servers.read().unwrap().get(name).map(|s| s.namespace.clone());
        server.or_else(|| self.groups.read().unwrap().get(name).map(|g| g.namespace.clone()))
    }

    /// Refuses names that are not DNS labels and names another namespace holds.
    fn claim(&self, namespace: &str, name: &str) -> Result<(), RegisterError> {
        for (what, value) in [("namespace", namespace), ("name", name)] {
            if !hangar_api::labels::is_dns_label(value) {
                return Err(RegisterError::Invalid(format!(
                    "{what}: {value:?} is not a DNS label (lowercase letters, digits and '-', at most 63 characters)"
                )));
            }
        }
        match self.owner_of(name) {
            Some(owner) if owner != namespace => Err(RegisterError::Taken { name: name.to_string(), owner }),
            _ => Ok(()),
        }
    }

    /// Starts (or replaces) a server reached through `backend` (in a cluster: its Service URL).
    pub fn upsert_server_at(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        spec: MCPServerSpec,
        backend: BackendSpec,
    ) -> Result<(), RegisterError> {
        self.claim(namespace, name)?;
        if let BackendSpec::Http { endpoint, .. } = &backend {
            check_endpoint(endpoint).map_err(RegisterError::Invalid)?;
        }
        // The operator registers every server on every reconcile: an unchanged registration must
        // not restart the backend, reset health, breaker and idle time, or re-list tools.
        if self.server(name).is_some_and(|s| s.spec == spec && s.backend_spec == backend) {
            return Ok(());
        }
        let tools = spec.tools.clone().unwrap_or_default();
        let mut config = vec![("server".to_string(), name.to_string())];
        config.extend(tools.allow_list.iter().map(|t| ("allow".to_string(), t.clone())));
        config.extend(tools.deny_list.iter().map(|t| ("deny".to_string(), t.clone())));
        if let Some(rl) = &tools.rate_limit {
            config.push(("requests-per-minute".into(), rl.requests_per_minute.to_string()));
            config.push(("burst".into(), rl.effective_burst().to_string()));
        }
        if !tools.callers.is_empty() {
            let rules = serde_json::to_string(&tools.callers).expect("caller rules serialize");
            config.push(("callers".into(), rules));
        }
        if let Some(key) = tools.policy_config.keys().find(|k| hangar_api::DERIVED_POLICY_KEYS.contains(&k.as_str())) {
            return Err(RegisterError::Invalid(format!(
                "spec.tools.policyConfig: key {key:?} is set by Hangar from the manifest: use allowList, denyList, rateLimit and callers"
            )));
        }
        let policy_name = tools.policy.as_deref().unwrap_or(hangar_builtin_plugins::DEFAULT_POLICY);
        // The floor is the manifest's own rules, before the plugin's extra settings join them.
        let floor = (policy_name != hangar_builtin_plugins::DEFAULT_POLICY)
            .then(|| ToolPolicy::from_config(&config))
            .transpose()
            .map_err(|e| RegisterError::Invalid(format!("spec.tools: {e}")))?;
        let offerings = (!tools.callers.is_empty())
            .then(|| ToolPolicy::from_config(&config))
            .transpose()
            .map_err(|e| RegisterError::Invalid(format!("spec.tools: {e}")))?;
        config.extend(tools.policy_config.iter().map(|(k, v)| (k.clone(), v.clone())));
        let pin = tools.policy_sha256.as_deref();
        // A built-in that refuses its configuration is the manifest's mistake: refused here,
        // naming it. A custom plugin may be fixed by a new file: kept, calls refused meanwhile.
        let policy = if self.is_builtin(policy_name, WorldKind::Policy) {
            PolicyPlugin::new(&self.plugins, policy_name, config, pin, tools.fail_open)
                .map_err(|e| RegisterError::Invalid(format!("spec.tools.policy: {e}")))?
        } else {
            PolicyPlugin::resilient(&self.plugins, policy_name, config, pin, tools.fail_open)
        };
        // An on-demand server is started once to learn its tools, then stopped: Cold.
        let entry = Arc::new(ServerEntry {
            namespace: namespace.to_string(),
            name: name.to_string(),
            backend: Backend::start(name, backend.clone(), self.events.clone(), true),
            backend_spec: backend,
            breaker: CircuitBreaker::new(
                spec.circuit_breaker.enabled,
                spec.circuit_breaker.failure_threshold.max(1) as u32,
                spec.circuit_breaker.reset_timeout.as_std(),
            ),
            spec,
            policy,
            floor,
            offerings,
            tools: RwLock::default(),
            in_flight: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            latency_avg_us: AtomicU64::new(0),
            health_failures: AtomicU32::new(0),
            last_health_check: Mutex::new(None),
            start_failed: AtomicBool::new(false),
            last_activity: Mutex::new(Instant::now()),
        });
        self.servers.write().unwrap().insert(name.to_string(), entry.clone());
        tokio::spawn(lifecycle(
            Arc::downgrade(&entry),
            self.metrics.clone(),
            self.events_out.clone(),
            self.events.clone(),
        ));
        let gateway = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            if entry.spec.on_demand() && entry.backend.is_remote() {
                // Learn the tools of a cold server in a cluster: ask for a wake-up once; idleTTL
                // scales it back to zero.
                let _ = gateway.events_out.send(json!({"type": "wake", "namespace": entry.namespace, "server": name}));
                entry.backend.wait_until_connected(entry.spec.startup_timeout.as_std()).await;
            }
            gateway.refresh_tools(&name).await;
            if entry.spec.on_demand() && entry.in_flight.load(Ordering::Relaxed) == 0 {
                entry.backend.set_wanted(false);
            }
        });
        Ok(())
    }

    /// Removes `namespace/name`; a server of that name from another namespace is left alone.
    pub fn remove_server(&self, namespace: &str, name: &str) -> Removal {
        let removal = remove_from(&mut self.servers.write().unwrap(), namespace, name, |s| &s.namespace);
        if removal == Removal::Removed {
            self.tools_changed();
        }
        removal
    }

    pub fn upsert_group(
        &self,
        namespace: &str,
        name: &str,
        spec: MCPServerGroupSpec,
        mut members: Vec<GroupMember>,
    ) -> Result<(), RegisterError> {
        self.claim(namespace, name)?;
        // One order on every replica: pinning picks by position.
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let unchanged = self.groups.read().unwrap().get(name).is_some_and(|g| g.spec == spec && g.members == members);
        if unchanged {
            return Ok(());
        }
        let plugin = hangar_builtin_plugins::strategy_plugin_name(&spec.strategy);
        let config = spec.strategy_config.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let infos = members
            .iter()
            .map(|m| MemberInfo { name: m.name.clone(), priority: m.priority, weight: m.weight })
            .collect();
        let pin = spec.strategy_sha256.as_deref();
        // As with policies: a built-in's refusal is the manifest's mistake; a custom plugin that
        // cannot serve leaves the group served by the round-robin fallback until it can.
        let strategy = if self.is_builtin(plugin, WorldKind::Strategy) {
            StrategyPlugin::new(&self.plugins, plugin, infos, config, pin)
                .map_err(|e| RegisterError::Invalid(format!("spec.strategy: {e}")))?
        } else {
            StrategyPlugin::resilient(&self.plugins, plugin, infos, config, pin)
        };
        let entry = GroupEntry {
            namespace: namespace.to_string(),
            name: name.to_string(),
            spec,
            members,
            strategy,
            sequence: AtomicU64::new(0),
        };
        self.groups.write().unwrap().insert(name.to_string(), Arc::new(entry));
        self.tools_changed();
        Ok(())
    }

    /// Whether `plugin` is a `world` plugin served by the version built into this binary.
    fn is_builtin(&self, plugin: &str, world: WorldKind) -> bool {
        self.plugins.current(plugin).is_some_and(|v| v.origin == Origin::Builtin && v.world == world)
    }

    pub fn remove_group(&self, namespace: &str, name: &str) -> Removal {
        let removal = remove_from(&mut self.groups.write().unwrap(), namespace, name, |g| &g.namespace);
        if removal == Removal::Removed {
            self.tools_changed();
        }
        removal
    }

    pub fn server(&self, name: &str) -> Option<Arc<ServerEntry>> {
        self.servers.read().unwrap().get(name).cloned()
    }

    /// The group that serves `server` as a member and does not expose its members, if any.
    fn hiding_group(&self, server: &ServerEntry) -> Option<String> {
        let groups = self.groups.read().unwrap();
        groups
            .values()
            .find(|g| {
                !g.spec.expose_members
                    && g.namespace == server.namespace
                    && g.members.iter().any(|m| m.name == server.name)
            })
            .map(|g| g.name.clone())
    }

    /// A member of `group`: the server of that name in the group's own namespace.
    fn member(&self, group: &GroupEntry, name: &str) -> Option<Arc<ServerEntry>> {
        self.server(name).filter(|s| s.namespace == group.namespace)
    }

    /// The session `client` holds at `server`, opened now if this is its first call there
    /// through this replica (handshake-era HTTP backends only; others, or a failure to open one
    /// within 5 s, fall back to the core's own session).
    async fn backend_session(&self, client: Option<&str>, server: &ServerEntry) -> Option<String> {
        let client = client.filter(|_| server.backend.is_remote())?;
        if let Some(held) = self.client_sessions.get(client, &server.name) {
            return Some(held);
        }
        let opened =
            tokio::time::timeout(Duration::from_secs(5), server.backend.open_session()).await.ok().flatten()?;
        let (kept, to_close) = self.client_sessions.insert(client, &server.name, opened);
        self.close_backend_sessions(to_close);
        self.count_backend_sessions(&server.name);
        Some(kept)
    }

    /// What a server said on its own: its tools changed (re-listed), its prompts or resources
    /// changed (every client hears), a resource changed (its subscribers hear).
    async fn on_backend_event(&self, event: BackendEvent) {
        match event.method.as_str() {
            "notifications/tools/list_changed" => self.refresh_tools(&event.server).await,
            "notifications/prompts/list_changed" | "notifications/resources/list_changed" => {
                let _ = self.notices.send(crate::protocol::notification(&event.method, json!({})));
            }
            "notifications/resources/updated" => {
                let Some(uri) = event.params.get("uri").and_then(Value::as_str) else { return };
                let subscribers = self.subscriptions.lock().unwrap().get(uri).cloned().unwrap_or_default();
                let notice = crate::protocol::notification(&event.method, json!({"uri": uri}));
                for client in subscribers {
                    self.notify_client(&client, notice.clone());
                }
            }
            _ => {}
        }
    }

    fn tools_changed(&self) {
        let _ = self.notices.send(crate::protocol::notification("notifications/tools/list_changed", json!({})));
    }

    /// A client's own notifications, for its GET stream (opened when it first listens).
    pub fn client_notices(&self, client: &str) -> broadcast::Receiver<Value> {
        let mut notices = self.client_notices.lock().unwrap();
        // Streams that were closed leave channels nobody listens to.
        notices.retain(|_, sender| sender.receiver_count() > 0);
        notices.entry(client.to_string()).or_insert_with(|| broadcast::channel(16).0).subscribe()
    }

    fn notify_client(&self, client: &str, notice: Value) {
        if let Some(sender) = self.client_notices.lock().unwrap().get(client) {
            let _ = sender.send(notice);
        }
    }

    /// Records (or drops) a client's subscription to a resource, once its server took it.
    fn subscribed(&self, client: Option<&str>, uri: &str, on: bool) {
        let Some(client) = client else { return };
        let mut subscriptions = self.subscriptions.lock().unwrap();
        if on {
            subscriptions.entry(uri.to_string()).or_default().insert(client.to_string());
        } else if let Some(clients) = subscriptions.get_mut(uri) {
            clients.remove(client);
            if clients.is_empty() {
                subscriptions.remove(uri);
            }
        }
    }

    /// Ends a client's session on this replica (its DELETE): closes its backend sessions.
    pub fn end_client_session(&self, client: &str) {
        self.client_notices.lock().unwrap().remove(client);
        self.subscriptions.lock().unwrap().retain(|_, clients| {
            clients.remove(client);
            !clients.is_empty()
        });
        let closed = self.client_sessions.end(client);
        self.close_backend_sessions(closed);
    }

    /// Whether the client ended this session here; its id is then refused.
    pub fn client_session_ended(&self, client: &str) -> bool {
        self.client_sessions.ended(client)
    }

    /// Closes backend sessions in the background (each bounded).
    fn close_backend_sessions(&self, sessions: crate::client_sessions::ToClose) {
        for (server, session) in sessions {
            self.count_backend_sessions(&server);
            let Some(entry) = self.server(&server) else { continue };
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), entry.backend.close_session(&session)).await;
            });
        }
    }

    fn count_backend_sessions(&self, server: &str) {
        let held = self.client_sessions.count(server) as i64;
        self.metrics.backend_sessions.with_label_values(&[server]).set(held);
    }

    /// Servers that are not up yet (neither Ready nor Cold), with their states; none when every
    /// server serves or waits to be started on demand.
    pub fn starting_servers(&self) -> Vec<(String, State)> {
        let servers = self.servers.read().unwrap().clone();
        servers
            .values()
            .map(|s| (s.name.clone(), s.state()))
            .filter(|(_, state)| !matches!(state, State::Ready | State::Cold))
            .collect()
    }

    /// What core reports per server (`GET /api/v1/servers`).
    pub fn server_status(&self) -> Vec<Value> {
        let servers = self.servers.read().unwrap().clone();
        servers
            .values()
            .map(|s| {
                let tools: Vec<Value> = s.tools.read().unwrap().iter().filter_map(|t| t.get("name").cloned()).collect();
                json!({
                    "namespace": s.namespace,
                    "name": s.name,
                    "state": s.state().as_str(),
                    "toolsCount": tools.len(),
                    "tools": tools,
                    "consecutiveFailures": s.health_failures.load(Ordering::Relaxed),
                    "breaker": format!("{:?}", s.breaker.state()),
                    "inFlight": s.in_flight.load(Ordering::Relaxed),
                    "idleSeconds": s.last_activity.lock().unwrap().elapsed().as_secs(),
                    "secondsSinceHealthCheck": s.last_health_check.lock().unwrap().map(|t| t.elapsed().as_secs()),
                    "starts": s.backend.starts(),
                })
            })
            .collect()
    }

    /// What core reports per group (`GET /api/v1/groups`): members, healthy count, state, and
    /// whether its strategy plugin serves.
    pub async fn group_status(&self) -> Vec<Value> {
        let groups = self.groups.read().unwrap().clone();
        let mut out = Vec::with_capacity(groups.len());
        for g in groups.values() {
            let members: Vec<(String, Option<State>)> =
                g.members.iter().map(|m| (m.name.clone(), self.member(g, &m.name).map(|s| s.state()))).collect();
            let healthy = members.iter().filter(|(_, st)| st.is_some_and(State::serves)).count();
            out.push(json!({
                "namespace": g.namespace,
                "name": g.name,
                "strategy": g.spec.strategy,
                "members": members.iter().map(|(n, st)| json!({"name": n, "state": st.map(State::as_str)})).collect::<Vec<_>>(),
                "healthyMembers": healthy,
                "state": g.spec.health_policy.group_state(healthy, members.len()).as_str(),
                "plugin": g.plugin_status().await,
            }));
        }
        out
    }

    /// The strategy plugin's state of group `namespace/name`, as [`GroupEntry::plugin_status`].
    pub async fn group_plugin_status(&self, namespace: &str, name: &str) -> Option<Value> {
        let group = self.groups.read().unwrap().get(name).filter(|g| g.namespace == namespace).cloned()?;
        Some(group.plugin_status().await)
    }

    pub fn server_names(&self) -> Vec<String> {
        self.servers.read().unwrap().keys().cloned().collect()
    }

    pub fn group_names(&self) -> Vec<String> {
        self.groups.read().unwrap().keys().cloned().collect()
    }

    /// Asks a server for its tools again (waiting for it to start) and publishes the change.
    pub async fn refresh_tools(&self, name: &str) {
        let Some(server) = self.server(name) else { return };
        let startup = server.spec.startup_timeout.as_std();
        // A listing is a request like a call: an on-demand server is not stopped under it.
        let listing = server.begin();
        let listed = server.backend.request("tools/list", json!({}), startup, CALL_TIMEOUT).await;
        drop(listing);
        match listed {
            Ok(result) => {
                let tools = result.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
                tracing::info!(server = name, tools = tools.len(), "tools listed");
                *server.tools.write().unwrap() = tools;
                server.start_failed.store(false, Ordering::Relaxed);
                self.tools_changed();
            }
            Err(e) => {
                tracing::warn!(server = name, error = %e, "listing tools failed");
                // Still not connected after startupTimeout (refused, or garbage instead of MCP).
                if !server.backend.is_live() {
                    server.start_failed.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    /// What clients see: every server not hidden inside a group, and every group.
    fn targets(&self) -> Vec<Target> {
        let servers = self.servers.read().unwrap().clone();
        let groups = self.groups.read().unwrap().clone();
        let hidden: Vec<(&String, &String)> = groups
            .values()
            .filter(|g| !g.spec.expose_members)
            .flat_map(|g| g.members.iter().map(move |m| (&g.namespace, &m.name)))
            .collect();
        let mut out: Vec<Target> = servers
            .values()
            .filter(|s| !hidden.contains(&(&s.namespace, &s.name)))
            .map(|s| Target::Server(s.clone()))
            .collect();
        out.extend(groups.into_values().map(|g| {
            let members = g.members.iter().filter_map(|m| self.member(&g, &m.name)).collect();
            Target::Group(g, members)
        }));
        out
    }

    fn unprefixed(&self, target: &Target) -> bool {
        self.unprefixed || target.unprefixed()
    }

    /// The target a client's name means, and the item's name there: `<target>__<item>`, or an
    /// item an unprefixed target lists as it is (`listed(target)` says which it lists).
    async fn resolve<F, Fut>(&self, kind: &str, qualified: &str, listed: F) -> Result<(Target, String), RpcError>
    where
        F: Fn(Target) -> Fut,
        Fut: std::future::Future<Output = Vec<Value>>,
    {
        if self.unprefixed {
            // The bridge's one server decides itself about every name (its policy says why not).
            let server = self.servers.read().unwrap().values().next().cloned();
            let server = server.ok_or_else(|| unavailable("no server configured"))?;
            return Ok((Target::Server(server), qualified.to_string()));
        }
        if let Some((name, item)) = qualified.split_once(SEPARATOR) {
            // Looked up by name: a call costs the same however many servers there are.
            let group = self.groups.read().unwrap().get(name).cloned();
            if let Some(group) = group {
                let members = group.members.iter().filter_map(|m| self.member(&group, &m.name)).collect();
                return Ok((Target::Group(group, members), item.to_string()));
            }
            let server = self.server(name);
            if let Some(server) = &server
                && self.hiding_group(server).is_none()
            {
                return Ok((Target::Server(server.clone()), item.to_string()));
            }
            if let Some(server) = server
                && let Some(group) = self.hiding_group(&server)
            {
                return Err(RpcError::new(
                    code::INVALID_PARAMS,
                    format!(
                        "unknown {kind} {qualified:?}: server {name:?} is a member of group {group:?}; call {group}{SEPARATOR}{item} (or set the group's spec.exposeMembers)"
                    ),
                ));
            }
        }
        let mut listing_it = Vec::new();
        for target in self.targets().into_iter().filter(|t| self.unprefixed(t)) {
            if listed(target.clone()).await.iter().any(|i| i["name"] == qualified) {
                listing_it.push(target);
            }
        }
        let names: Vec<&str> = listing_it.iter().map(Target::name).collect();
        let chosen = catalog::resolve_unprefixed(kind, qualified, &names)
            .map_err(|e| RpcError::new(code::INVALID_PARAMS, e))?
            .to_string();
        let target = listing_it.into_iter().find(|t| t.name() == chosen).expect("one of them");
        Ok((target, qualified.to_string()))
    }

    /// Tools and prompts of every target under the names clients use; clashes are logged.
    fn expose(&self, kind: &str, listings: Vec<(Target, Vec<Value>)>) -> Vec<Value> {
        let (items, clashes) = catalog::expose(
            listings
                .iter()
                .map(|(t, items)| catalog::Listing {
                    target: t.name(),
                    unprefixed: self.unprefixed(t),
                    items: items.clone(),
                })
                .collect(),
        );
        for (name, owners) in clashes {
            tracing::warn!(
                kind,
                name,
                targets = owners.join(", "),
                "unprefixed name clash: listed under each target's prefixed name only"
            );
        }
        items
    }

    /// Every tool a client may see: each server's (filtered by its policy) and each group's
    /// (once, under the group's name); servers inside a group are reached through the group.
    pub async fn list_tools(&self, ctx: &CallContext) -> Vec<Value> {
        let mut listings = Vec::new();
        for target in self.targets() {
            let tools = target.tools(&ctx.caller).await;
            listings.push((target, tools));
        }
        self.expose("tool", listings)
    }

    /// Routes `tools/call` for an aggregated tool name.
    pub async fn call_tool(&self, qualified: &str, arguments: Value, ctx: &CallContext) -> Result<Value, CallError> {
        let (target, tool) = self
            .resolve("tool", qualified, |t| async move { t.tools(&ctx.caller).await })
            .await
            .map_err(CallError::Refused)?;
        match target {
            Target::Group(group, _) => self.call_group(&group, &tool, arguments, ctx).await,
            Target::Server(server) => self.call_server(&server, &tool, arguments, ctx).await,
        }
    }

    async fn call_group(
        &self,
        group: &GroupEntry,
        tool: &str,
        arguments: Value,
        ctx: &CallContext,
    ) -> Result<Value, CallError> {
        let sequence = group.sequence.fetch_add(1, Ordering::Relaxed);
        let failover = &group.spec.failover;
        let attempts = if failover.enabled { 1 + failover.max_retries.max(0) as u32 } else { 1 };
        let mut tried: Vec<u32> = Vec::new();
        let mut last = None;
        for attempt in 0..attempts {
            // Every configured member has a place in the lists; one not registered yet is unhealthy.
            let servers: Vec<Option<Arc<ServerEntry>>> =
                group.members.iter().map(|m| self.member(group, &m.name)).collect();
            let mut healthy: Vec<bool> = servers.iter().map(|s| s.as_ref().is_some_and(|s| s.serving())).collect();
            // With no member serving but some still starting (the first start, or a restart
            // after a crash), the call waits for the first one ready, as a cold start would.
            if !healthy.contains(&true) && attempt == 0 && first_started(&servers).await {
                healthy = servers.iter().map(|s| s.as_ref().is_some_and(|s| s.serving())).collect();
            }
            // With no member serving, cold (on-demand) members may be started.
            if !healthy.contains(&true) {
                healthy = servers.iter().map(|s| s.as_ref().is_some_and(|s| s.state() == State::Cold)).collect();
            }
            // A session stays on the member its id points at while that member serves; the
            // choice is a pure function of the (signed) id, so every core replica makes it alike.
            let pinned =
                ctx.pin.filter(|_| attempt == 0 && !servers.is_empty()).map(|p| (p % servers.len() as u64) as u32);
            let index = match pinned.filter(|&i| healthy[i as usize]) {
                Some(i) => i,
                None => {
                    let states = servers.iter().zip(&healthy).enumerate().map(|(i, (s, &healthy))| MemberState {
                        healthy,
                        tried: tried.contains(&(i as u32)),
                        in_flight: s.as_ref().map_or(0, |s| s.in_flight.load(Ordering::Relaxed)),
                        latency_avg_us: s.as_ref().map_or(0, |s| s.latency_avg_us.load(Ordering::Relaxed)),
                        consecutive_failures: s.as_ref().map_or(0, |s| s.failures.load(Ordering::Relaxed)),
                    });
                    let request = PickRequest {
                        tool: tool.to_string(),
                        sequence,
                        random: rand::random(),
                        attempt,
                        members: states.collect(),
                    };
                    let pick = group.strategy.pick_off_worker(request).await;
                    let plugin = if pick.fault.is_some() { "round-robin (fallback)" } else { group.strategy.name() };
                    let Some(i) = pick.index else { break };
                    let member = &group.members[i as usize].name;
                    self.metrics.picks.with_label_values(&[&group.name, plugin, member]).inc();
                    tracing::debug!(group = %group.name, plugin, member = %member, tool, attempt, "member picked");
                    i
                }
            };
            // A pick is always of a healthy, so registered, member.
            let Some(member) = servers[index as usize].clone() else { break };
            tried.push(index);
            match self.call_server(&member, tool, arguments.clone(), ctx).await {
                Err(CallError::Backend(e)) if e.is_transient() => {
                    tracing::warn!(group = %group.name, member = %member.name, error = %e, "member failed; trying another");
                    last = Some(CallError::Backend(e));
                    tokio::time::sleep(failover.retry_delay.as_std()).await;
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| {
            CallError::Refused(unavailable(&format!("no healthy member in group {:?}", group.name)))
        }))
    }

    async fn call_server(
        &self,
        server: &ServerEntry,
        tool: &str,
        arguments: Value,
        ctx: &CallContext,
    ) -> Result<Value, CallError> {
        // Tool names come from clients: only listed ones become metric labels (a client naming
        // 50,000 tools must not grow /metrics); the rest count under one label.
        let listed = server.tools.read().unwrap().iter().any(|t| t["name"] == tool);
        let tool_label = if listed { tool } else { UNLISTED_TOOL };
        let labels = |outcome: &str| [server.name.clone(), tool_label.to_string(), outcome.to_string()];
        let call = Call {
            server: server.name.clone(),
            tool: tool.to_string(),
            caller: ctx.caller.clone(),
            argument_bytes: arguments.to_string().len() as u32,
        };
        let buckets = match server.decide(call).await {
            Decision::Deny(why) => {
                self.metrics.denied.with_label_values(&[&server.name, tool_label]).inc();
                self.metrics.calls.with_label_values(&labels("denied")).inc();
                return Err(CallError::Refused(
                    RpcError::new(code::DENIED, why).with_data(json!({"server": server.name, "tool": tool})),
                ));
            }
            Decision::Allow(buckets) => buckets,
        };
        let limits: Vec<(String, u32, u32)> =
            buckets.into_iter().map(|b| (b.key, b.requests_per_minute, b.burst)).collect();
        if let Err(exhausted) = self.limiter.take(&limits) {
            self.metrics.rate_limited.with_label_values(&[&server.name]).inc();
            self.metrics.calls.with_label_values(&labels("rate_limited")).inc();
            return Err(CallError::Refused(rate_limited(&server.name, &exhausted)));
        }
        if let Err(retry_after) = server.breaker.admit() {
            self.metrics.calls.with_label_values(&labels("breaker_open")).inc();
            return Err(CallError::Backend(BackendError::Unavailable(format!(
                "the circuit breaker of server {:?} is open after {} failed calls in a row; next try in {:.1}s",
                server.name,
                server.spec.circuit_breaker.failure_threshold,
                retry_after.as_secs_f64()
            ))));
        }
        // From here the call is in flight: a call held for a wake-up is activity too, or the
        // operator would see the server idle and scale it straight back to zero.
        let in_flight = server.begin();
        // A cluster's on-demand server that is not up is woken by every call, also after a start
        // that failed (Dead): its pod may have been slow, or was scaled away since.
        let asleep = server.spec.on_demand() && server.backend.is_remote() && !server.backend.is_live();
        if server.state() == State::Cold || asleep {
            let _ = self.events_out.send(json!({"type": "wake", "namespace": server.namespace, "server": server.name}));
            if server.backend.is_remote() {
                // The operator scales it up; hold the call until it answers, or startupTimeout.
                let startup = server.spec.startup_timeout.as_std();
                if !server.backend.wait_until_connected(startup).await {
                    server.start_failed.store(true, Ordering::Relaxed);
                    self.metrics.calls.with_label_values(&labels("error")).inc();
                    return Err(CallError::Backend(BackendError::NotReady(format!(
                        "server {} did not become ready within spec.startupTimeout ({startup:?}); see its pods",
                        server.name
                    ))));
                }
            }
        }
        let started = Instant::now();
        let startup = server.spec.startup_timeout.as_std();
        let mut params = json!({"name": tool, "arguments": arguments});
        if let Some(token) = ctx.relay.as_ref().and_then(|r| r.progress_token.clone()) {
            params["_meta"] = json!({"progressToken": token});
        }
        let result = server
            .backend
            .request_for(
                "tools/call",
                params,
                startup,
                server.spec.call_timeout.as_std(),
                ctx.relay.as_ref(),
                self.backend_session(ctx.session.as_deref(), server).await.as_deref(),
            )
            .await;
        drop(in_flight);
        match &result {
            Err(e) if e.is_server_down() => server.breaker.record(false),
            Err(BackendError::Timeout(_)) => server.breaker.no_verdict(),
            _ => server.breaker.record(true),
        }
        match &result {
            Err(BackendError::NotReady(_)) => server.start_failed.store(true, Ordering::Relaxed),
            // Only a server that is connected now has recovered.
            _ if server.backend.is_live() => server.start_failed.store(false, Ordering::Relaxed),
            _ => {}
        }
        let elapsed = started.elapsed();
        self.metrics.latency.with_label_values(&[&server.name]).observe(elapsed.as_secs_f64());
        let micros = elapsed.as_micros() as u64;
        let old = server.latency_avg_us.load(Ordering::Relaxed);
        server.latency_avg_us.store(if old == 0 { micros } else { (old * 7 + micros) / 8 }, Ordering::Relaxed);
        match result {
            Ok(result) => {
                server.failures.store(0, Ordering::Relaxed);
                let outcome = if result.get("isError") == Some(&Value::Bool(true)) { "tool_error" } else { "ok" };
                self.metrics.calls.with_label_values(&labels(outcome)).inc();
                Ok(result)
            }
            Err(e) => {
                if e.is_transient() {
                    server.failures.fetch_add(1, Ordering::Relaxed);
                }
                self.metrics.calls.with_label_values(&labels("error")).inc();
                Err(CallError::Backend(e))
            }
        }
    }
}

/// Removes `namespace/name` from `entries` only if that namespace registered it.
fn remove_from<T>(
    entries: &mut BTreeMap<String, Arc<T>>,
    namespace: &str,
    name: &str,
    namespace_of: impl Fn(&T) -> &String,
) -> Removal {
    match entries.get(name).map(|e| namespace_of(e).clone()) {
        None => Removal::NotFound,
        Some(owner) if owner != namespace => Removal::OtherNamespace(owner),
        Some(_) => {
            entries.remove(name);
            Removal::Removed
        }
    }
}

/// A remote server's headers, with values from Secrets found by `secret` (given the entry's
/// index), as HTTP headers marked sensitive; an unusable one is refused naming its entry of
/// `spec.headers` (never the value).
pub fn remote_headers(
    spec: &MCPServerSpec,
    secret: impl Fn(usize, &hangar_api::SecretKeyRef) -> Result<String, String>,
) -> Result<reqwest::header::HeaderMap, String> {
    use reqwest::header::{HeaderName, HeaderValue};
    let mut map = reqwest::header::HeaderMap::new();
    for (i, h) in spec.headers.iter().enumerate() {
        let value = match (&h.value, &h.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => secret(i, &from.secret_key_ref)?,
            (None, None) => return Err(format!("spec.headers[{i}]: set value or valueFrom")),
        };
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("spec.headers[{i}].name: {:?} is not an HTTP header name", h.name))?;
        let mut value = HeaderValue::from_str(value.trim_end_matches(['\r', '\n'])).map_err(|_| {
            format!(
                "spec.headers[{i}]: the value of {:?} is not a valid HTTP header value (printable ASCII, one line)",
                h.name
            )
        })?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// How to reach a server outside a cluster: a command runs locally over stdio; a remote
/// endpoint over HTTP. An image alone cannot run here.
fn backend_spec(name: &str, spec: &MCPServerSpec, base_dir: &Path) -> Result<BackendSpec, String> {
    match spec.mode {
        ServerMode::Remote => {
            let endpoint = spec.endpoint.clone().ok_or("spec.endpoint: required when mode is remote")?;
            // Outside a cluster a Secret's key comes from the environment.
            let headers = remote_headers(spec, |i, secret| {
                let var = secret.env_var();
                std::env::var(&var).map_err(|_| {
                    format!(
                        "spec.headers[{i}].valueFrom.secretKeyRef: `hangar run` reads Secret {:?} key {:?} from the environment variable {var}, which is not set",
                        secret.name, secret.key
                    )
                })
            })?;
            Ok(BackendSpec::Http { endpoint, headers })
        }
        ServerMode::Container if spec.command.is_empty() => Err(format!(
            "spec.command: server {name:?} has only an image, and `hangar run` starts no containers; give the command that runs it (with transport: stdio)"
        )),
        ServerMode::Container if spec.transport == Transport::StreamableHttp => Err(
            "spec.transport: `hangar run` starts local commands as stdio servers; set transport: stdio (or mode: remote with an endpoint)"
                .to_string(),
        ),
        ServerMode::Container => {
            let mut command = spec.command.clone();
            command.extend(spec.args.iter().cloned());
            let mut env = Vec::new();
            for var in &spec.env {
                match (&var.value, &var.value_from) {
                    (Some(v), _) => env.push((var.name.clone(), v.clone())),
                    (None, Some(_)) => {
                        return Err(format!(
                            "spec.env[{}].valueFrom: `hangar run` has no Secrets or ConfigMaps to read; give a value",
                            var.name
                        ));
                    }
                    (None, None) => env.push((var.name.clone(), String::new())),
                }
            }
            Ok(BackendSpec::Stdio { command, env, dir: base_dir.to_path_buf() })
        }
    }
}
