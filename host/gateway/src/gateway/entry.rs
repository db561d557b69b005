//! What is registered: a server (its backend, policy, breaker and health loop), a group (its
//! members and strategy), and the targets clients reach by name.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hangar_api::{MCPServerGroupSpec, MCPServerSpec, State};
use hangar_plugin_algorithms::{
    breaker::{BreakerState, CircuitBreaker},
    policy::{self as algorithms, CallerView, ToolPolicy},
};
use hangar_plugin_runtime::{Call, Caller, Decision, PolicyPlugin, RateLimit, StrategyPlugin};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::{
    metrics::GatewayMetrics,
    servers::{Backend, BackendEvent, BackendSpec, Era},
};

/// One MCP server behind the gateway.
pub struct ServerEntry {
    /// The namespace it was registered from; its name is exposed without it, so one name
    /// belongs to one namespace at a time (see [`RegisterError::Taken`]).
    pub namespace: String,
    pub name: String,
    pub spec: MCPServerSpec,
    /// What the backend was started from; a registration that changes neither this nor the
    /// spec leaves the running entry alone.
    pub(crate) backend_spec: BackendSpec,
    pub(crate) backend: Backend,
    pub(crate) policy: PolicyPlugin,
    /// The manifest's allowList, denyList and rateLimit, enforced by the host beside a custom
    /// policy plugin: a plugin may narrow them, never widen them. None with the default policy,
    /// which is exactly these rules.
    pub(crate) floor: Option<ToolPolicy>,
    /// The manifest's rules when `spec.tools.callers` is set: who may see and use the server's
    /// resources, templates, prompts and completions at all (a caller no entry matches: none).
    pub(crate) offerings: Option<ToolPolicy>,
    pub(crate) tools: RwLock<Vec<Value>>,
    pub(crate) in_flight: AtomicU32,
    pub(crate) failures: AtomicU32,
    pub(crate) latency_avg_us: AtomicU64,
    pub(crate) breaker: CircuitBreaker,
    /// Health checks failed in a row.
    pub(crate) health_failures: AtomicU32,
    /// When the last health check ran (reported to the operator for `status.lastHealthCheck`).
    pub(crate) last_health_check: Mutex<Option<Instant>>,
    /// The last start did not finish within startupTimeout.
    pub(crate) start_failed: AtomicBool,
    pub(crate) last_activity: Mutex<Instant>,
}

/// The `tool` label of calls for tools the server did not list.
pub const UNLISTED_TOOL: &str = "(unlisted)";

/// How long a backend may take to list its tools.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(60);

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

    /// The definitions of these of the server's tools, in the server's order.
    fn tools_named(&self, names: &[String]) -> Vec<Value> {
        let names: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        let tools = self.tools.read().unwrap();
        tools.iter().filter(|t| t["name"].as_str().is_some_and(|n| names.contains(n))).cloned().collect()
    }

    /// The names of the server's tools that its policy shows this caller (and the manifest's
    /// floor, with a custom policy); a search over thousands of tools asks this of every server,
    /// so no definition is copied.
    pub(crate) async fn visible_tool_names(&self, caller: &Caller) -> Vec<String> {
        let view = caller.view();
        let names: Vec<String> = self
            .tools
            .read()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .filter(|n| self.floor.as_ref().is_none_or(|f| f.visible(n, &view)))
            .map(str::to_string)
            .collect();
        self.policy.filter_tools_off_worker(names, caller.clone()).await.0
    }

    /// The policy's decision, within the manifest's floor: a denial there stands whatever the
    /// plugin says, and its rate limit is charged beside the plugin's.
    pub(crate) async fn decide(&self, call: Call) -> Decision {
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

    pub(crate) fn serving(&self) -> bool {
        self.state().serves() && self.breaker.state() != BreakerState::Open
    }

    /// Why `caller` may not see or use this server's resources, templates, prompts and
    /// completions (`spec.tools.callers` set and no entry matching), if so.
    pub(crate) fn offerings_refusal(&self, caller: &Caller) -> Option<String> {
        self.offerings.as_ref().and_then(|rules| rules.offerings_refusal(&caller.view()))
    }

    pub(crate) fn touch(&self) {
        *self.last_activity.lock().unwrap() = Instant::now();
    }

    /// Counts a request to the server as in flight until the guard is dropped, on every path
    /// (errors and cancellation included); the idle clock restarts at both ends.
    pub(crate) fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self)
    }

    /// One MCP health check: `ping` for handshake-era servers (the stateless revision has none),
    /// `tools/list` otherwise.
    pub(crate) async fn check_health(&self) -> bool {
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
pub(crate) struct InFlight<'a>(&'a ServerEntry);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// Per server, for as long as it exists: health checks every `healthCheck.interval`, idle stop
/// of an on-demand server after `idleTTL`, and its gauges.
pub(crate) async fn lifecycle(
    server: Weak<ServerEntry>,
    metrics: GatewayMetrics,
    events: broadcast::Sender<Value>,
    refresh: mpsc::UnboundedSender<BackendEvent>,
) {
    // None: check at the next chance (a server that just came up is checked at once, so its
    // status is Ready without waiting a whole interval for the first check).
    let mut last_check: Option<Instant> = None;
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
            last_check = None;
            if s.tools.read().unwrap().is_empty() {
                let method = "notifications/tools/list_changed".to_string();
                let _ = refresh.send(BackendEvent { server: s.name.clone(), method, params: Value::Null });
            }
        }
        was_live = live;
        let unreachable = s.backend.is_remote() && s.start_failed.load(Ordering::Relaxed);
        if spec.health_check.enabled
            && (live || unreachable)
            && last_check.is_none_or(|at| at.elapsed() >= spec.health_check.interval.as_std())
        {
            last_check = Some(Instant::now());
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

pub(crate) fn one() -> u32 {
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
    pub(crate) strategy: StrategyPlugin,
    pub(crate) sequence: AtomicU64,
}

impl GroupEntry {
    /// Whether the group's strategy plugin serves its picks: `{plugin, resolved, reason, message}`
    /// (the operator's `PluginResolved` condition). While it does not, the round-robin fallback
    /// picks and the group stays listed.
    pub(crate) async fn plugin_status(&self) -> Value {
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
pub(crate) enum Target {
    Server(Arc<ServerEntry>),
    Group(Arc<GroupEntry>, Vec<Arc<ServerEntry>>),
}

impl Target {
    pub(crate) fn name(&self) -> &str {
        match self {
            Target::Server(s) => &s.name,
            Target::Group(g, _) => &g.name,
        }
    }

    pub(crate) fn unprefixed(&self) -> bool {
        match self {
            Target::Server(s) => s.spec.unprefixed,
            Target::Group(g, _) => g.spec.unprefixed,
        }
    }

    pub(crate) fn servers(&self) -> &[Arc<ServerEntry>] {
        match self {
            Target::Server(s) => std::slice::from_ref(s),
            Target::Group(_, members) => members,
        }
    }

    /// The server that answers for the target outside tool calls: itself, or a group's first
    /// member that serves.
    pub(crate) fn serving(&self) -> Option<&Arc<ServerEntry>> {
        self.servers().iter().find(|s| s.serving())
    }

    /// The names of [`Self::tools`].
    pub(crate) async fn tool_names(&self, caller: &Caller) -> Vec<String> {
        self.listing_server(caller).await.map(|(_, names)| names).unwrap_or_default()
    }

    /// The first server of the target that shows this caller any tool, and their names.
    async fn listing_server(&self, caller: &Caller) -> Option<(&Arc<ServerEntry>, Vec<String>)> {
        for server in self.servers() {
            let names = server.visible_tool_names(caller).await;
            if !names.is_empty() {
                return Some((server, names));
            }
        }
        None
    }

    /// The properties a tool of this target mirrors into `Mcp-Param-*` headers (none when its
    /// declarations are invalid: such a tool is not listed).
    pub(crate) fn param_designations(&self, tool: &str) -> Vec<crate::param_headers::Designation> {
        let read = |s: &Arc<ServerEntry>| {
            let tools = s.tools.read().unwrap();
            tools.iter().find(|t| t["name"] == tool).map(|t| crate::param_headers::designations(&t["inputSchema"]))
        };
        self.servers().iter().find_map(read).and_then(Result::ok).unwrap_or_default()
    }

    /// The target's tools as its policy shows them; a group's members serve the same tools, so
    /// those of the first member that has any.
    pub(crate) async fn tools(&self, caller: &Caller) -> Vec<Value> {
        match self.listing_server(caller).await {
            Some((server, names)) => server.tools_named(&names),
            None => Vec::new(),
        }
    }
}
