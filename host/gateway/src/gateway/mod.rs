//! The gateway: which servers and groups exist (registration, removal, status), the clients'
//! backend sessions and notifications. Routing a call is in `routing`; reaching a server in
//! `servers`; no HTTP here (`client` translates).

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hangar_api::{MCPServerGroupSpec, MCPServerSpec, State};
use hangar_plugin_algorithms::{breaker::CircuitBreaker, policy::ToolPolicy};
use hangar_plugin_runtime::{Caller, MemberInfo, Origin, PluginRuntime, PolicyPlugin, StrategyPlugin, WorldKind};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

pub mod client_sessions;
pub mod entry;
pub mod ratelimit;
pub mod tool_search;

use ratelimit::RateLimiter;

use entry::{CALL_TIMEOUT, lifecycle};
pub use entry::{GroupEntry, GroupMember, ServerEntry, UNLISTED_TOOL};

use crate::{
    metrics::GatewayMetrics,
    protocol::{RpcError, code},
    servers::{Backend, BackendError, BackendEvent, BackendSpec, backend_spec, check_endpoint},
};

/// Between a server's (or group's) name and a tool's name in the aggregated list.
pub const SEPARATOR: &str = "__";

pub struct Gateway {
    /// Serve one server's tools under their own names (`hangar bridge`).
    pub unprefixed: bool,
    pub(crate) plugins: PluginRuntime,
    pub(crate) servers: RwLock<BTreeMap<String, Arc<ServerEntry>>>,
    pub(crate) groups: RwLock<BTreeMap<String, Arc<GroupEntry>>>,
    pub(crate) limiter: RateLimiter,
    pub metrics: GatewayMetrics,
    pub(crate) events: mpsc::UnboundedSender<BackendEvent>,
    /// Notifications for every client's GET stream (list changes).
    pub notices: broadcast::Sender<Value>,
    /// Notifications for one client's GET stream (resource updates it subscribed to).
    pub(crate) client_notices: Mutex<std::collections::HashMap<String, broadcast::Sender<Value>>>,
    /// Resource URI → the client sessions subscribed to it through this replica.
    pub(crate) subscriptions: Mutex<std::collections::HashMap<String, std::collections::BTreeSet<String>>>,
    /// What the operator follows (`GET /api/v1/events`): state changes and wake-ups.
    pub events_out: broadcast::Sender<Value>,
    pub(crate) client_sessions: client_sessions::ClientSessions,
    /// Tool search's settings, index and ranker.
    pub tool_search: tool_search::ToolSearch,
    /// Set when the process begins to stop: streams that are no call end then.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// Who calls and how: the caller's identity for the policy, the session's group-member pin, and
/// where what the server sends toward the client during the call goes.
#[derive(Clone, Default)]
pub struct CallContext {
    /// Who calls: a verified token's identity, or the client's self-given name.
    pub caller: Caller,
    pub pin: Option<u64>,
    pub relay: Option<crate::servers::CallRelay>,
    /// The client's handshake session id: its backend sessions are opened on first use.
    pub session: Option<String>,
    /// The client's request `_meta` to pass on to the server (trace context, its capabilities);
    /// the backend edge shapes it for the server's revision.
    pub meta: serde_json::Map<String, Value>,
    /// The client speaks the stateless revision (2026-07-28).
    pub stateless: bool,
    /// A stateless client's retry after `input_required`: its `inputResponses` and the server's
    /// `requestState`, passed on with the call.
    pub input: serde_json::Map<String, Value>,
    /// A stateless client's `Mcp-Param-*` headers on a direct `tools/call` (lowercase name, value):
    /// checked against the tool's `x-mcp-header` declarations.
    pub param_headers: Option<Vec<(String, String)>>,
}

impl CallContext {
    /// The client as the backend edge needs it, with its backend `session` there.
    pub(crate) fn on_behalf<'a>(&'a self, session: Option<&'a str>) -> crate::servers::OnBehalf<'a> {
        crate::servers::OnBehalf { relay: self.relay.as_ref(), session, stateless: self.stateless }
    }
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

    pub(crate) fn build(
        plugins: PluginRuntime,
        registry: &prometheus::Registry,
        unprefixed: bool,
    ) -> anyhow::Result<Arc<Self>> {
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
            tool_search: tool_search::ToolSearch::new(registry)?,
            stopping: tokio::sync::watch::channel(false).0,
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

    /// Tool search's settings (`--tool-search*`); the ranker is bound on the first search.
    pub fn configure_tool_search(&self, settings: tool_search::Settings) {
        tracing::info!(mode = ?settings.mode, max_tools = settings.max_tools, pinned = ?settings.pinned, ranker = %settings.ranker, "tool search");
        self.tool_search.set(settings);
        self.tools_changed();
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
    pub(crate) fn owner_of(&self, name: &str) -> Option<String> {
        let server = self.servers.read().unwrap().get(name).map(|s| s.namespace.clone());
        server.or_else(|| self.groups.read().unwrap().get(name).map(|g| g.namespace.clone()))
    }

    /// Refuses names that are not DNS labels and names another namespace holds.
    pub(crate) fn claim(&self, namespace: &str, name: &str) -> Result<(), RegisterError> {
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
        let (policy, floor, offerings) = self.server_policy(name, &spec)?;
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
            // Busy until the tools are learned: idleTTL must not stop a pod still starting.
            let learning = entry.begin();
            if entry.spec.on_demand() && entry.backend.is_remote() {
                // Learn the tools of a cold server in a cluster: ask for a wake-up once; idleTTL
                // scales it back to zero.
                gateway.metrics.cold_starts.with_label_values(&[&name]).inc();
                let _ = gateway.events_out.send(json!({"type": "wake", "namespace": entry.namespace, "server": name}));
                entry.backend.wait_until_connected(entry.spec.startup_timeout.as_std()).await;
            }
            gateway.refresh_tools(&name).await;
            drop(learning);
            if entry.spec.on_demand() && entry.in_flight.load(Ordering::Relaxed) == 0 {
                entry.backend.set_wanted(false);
            }
        });
        Ok(())
    }

    /// A server's policy from its manifest (`spec.tools`): the plugin with its configuration,
    /// the floor a custom plugin cannot widen, and the rules for its other offerings.
    fn server_policy(
        &self,
        name: &str,
        spec: &MCPServerSpec,
    ) -> Result<(PolicyPlugin, Option<ToolPolicy>, Option<ToolPolicy>), RegisterError> {
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
        let rules = |wanted: bool| {
            wanted
                .then(|| ToolPolicy::from_config(&config))
                .transpose()
                .map_err(|e| RegisterError::Invalid(format!("spec.tools: {e}")))
        };
        // The floor is the manifest's own rules, before the plugin's extra settings join them.
        let floor = rules(policy_name != hangar_builtin_plugins::DEFAULT_POLICY)?;
        let offerings = rules(!tools.callers.is_empty())?;
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
        Ok((policy, floor, offerings))
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
    pub(crate) fn is_builtin(&self, plugin: &str, world: WorldKind) -> bool {
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
    pub(crate) fn hiding_group(&self, server: &ServerEntry) -> Option<String> {
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

    /// Ends every stream made with [`Self::until_stopping`]: the process is stopping.
    pub fn begin_stopping(&self) {
        self.stopping.send_replace(true);
    }

    /// `stream`, ended when the process begins to stop. For streams that are no call in flight
    /// (the operator's event stream, a session's standalone GET stream): a stop drains calls, and
    /// would otherwise wait its whole bound for streams that never end; their clients reconnect.
    pub fn until_stopping<S: futures_util::Stream>(
        &self,
        stream: S,
    ) -> impl futures_util::Stream<Item = S::Item> + use<S> {
        let mut stopping = self.stopping.subscribe();
        futures_util::StreamExt::take_until(stream, async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        })
    }

    /// A member of `group`: the server of that name in the group's own namespace.
    pub(crate) fn member(&self, group: &GroupEntry, name: &str) -> Option<Arc<ServerEntry>> {
        self.server(name).filter(|s| s.namespace == group.namespace)
    }

    /// The session `client` holds at `server`, opened now if this is its first call there
    /// through this replica (handshake-era HTTP backends only; others, or a failure to open one
    /// within 5 s, fall back to the core's own session).
    pub(crate) async fn backend_session(&self, client: Option<&str>, server: &ServerEntry) -> Option<String> {
        let client = client.filter(|_| server.backend.is_remote())?;
        if let Some(held) = self.client_sessions.get(client, &server.name) {
            if server.backend.holds(&held) {
                return Some(held);
            }
            // Its pod has left the server: a new session on a pod that remains.
            self.client_sessions.forget(client, &server.name, &held);
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
    pub(crate) async fn on_backend_event(&self, event: BackendEvent) {
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

    pub(crate) fn tools_changed(&self) {
        self.tool_search.catalogue_changed();
        let _ = self.notices.send(crate::protocol::notification("notifications/tools/list_changed", json!({})));
    }

    /// A client's own notifications, for its GET stream (opened when it first listens).
    pub fn client_notices(&self, client: &str) -> broadcast::Receiver<Value> {
        let mut notices = self.client_notices.lock().unwrap();
        // Streams that were closed leave channels nobody listens to.
        notices.retain(|_, sender| sender.receiver_count() > 0);
        notices.entry(client.to_string()).or_insert_with(|| broadcast::channel(16).0).subscribe()
    }

    pub(crate) fn notify_client(&self, client: &str, notice: Value) {
        if let Some(sender) = self.client_notices.lock().unwrap().get(client) {
            let _ = sender.send(notice);
        }
    }

    /// Records (or drops) a client's subscription to a resource, once its server took it.
    pub(crate) fn subscribed(&self, client: Option<&str>, uri: &str, on: bool) {
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
    pub(crate) fn close_backend_sessions(&self, sessions: client_sessions::ToClose) {
        for (server, session) in sessions {
            self.count_backend_sessions(&server);
            let Some(entry) = self.server(&server) else { continue };
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), entry.backend.close_session(&session)).await;
            });
        }
    }

    pub(crate) fn count_backend_sessions(&self, server: &str) {
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
                    // Not idle while a request waits (on a cold start, say), however long.
                    "idleSeconds": match s.in_flight.load(Ordering::Relaxed) {
                        0 => s.last_activity.lock().unwrap().elapsed().as_secs(),
                        _ => 0,
                    },
                    "secondsSinceHealthCheck": s.last_health_check.lock().unwrap().map(|t| t.elapsed().as_secs()),
                    "starts": s.backend.starts(),
                    "addresses": s.backend.addresses(),
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
                let mut tools = result.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
                // A tool whose x-mcp-header declarations are invalid cannot be called as the
                // revision says: clients must leave it out (SEP-2243).
                tools.retain(|tool| match crate::param_headers::designations(&tool["inputSchema"]) {
                    Ok(_) => true,
                    Err(why) => {
                        tracing::warn!(server = name, tool = %tool["name"], "tool left out: inputSchema.{why}");
                        false
                    }
                });
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
