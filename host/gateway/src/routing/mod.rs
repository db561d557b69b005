//! Routing: which target a client's name means (prefixes, unprefixed names, clashes) and the
//! path of a `tools/call` through policy, rate limit, strategy, failover, breaker and the
//! backend. Knows no protocol revision and no HTTP.

pub mod catalog;
mod offerings;

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use hangar_api::State;
use hangar_plugin_runtime::{Call, Caller, Decision, MemberState, PickRequest};
use hangar_telemetry::{SPANS, audit};
use serde_json::{Value, json};
use tracing::{Instrument, field::Empty};

use crate::{
    gateway::{
        CallContext, CallError, Gateway, SEPARATOR, UNLISTED_TOOL,
        entry::{GroupEntry, ServerEntry, Target},
        tool_search, unavailable,
    },
    protocol::{RpcError, code},
    servers::BackendError,
};

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

/// The MCP error for a request over its server's rate limit.
pub(crate) fn rate_limited(server: &str, exhausted: &crate::gateway::ratelimit::Exhausted) -> RpcError {
    RpcError::new(
        code::RATE_LIMITED,
        format!(
            "rate limit of server {server:?} reached (spec.tools.rateLimit); retry in {:.1}s",
            exhausted.retry_after.as_secs_f64()
        ),
    )
    .with_data(json!({"server": server, "retryAfterMs": exhausted.retry_after.as_millis() as u64}))
}

impl Gateway {
    /// What clients see: every server not hidden inside a group, and every group.
    pub(crate) fn targets(&self) -> Vec<Target> {
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

    pub(crate) fn unprefixed(&self, target: &Target) -> bool {
        self.unprefixed || target.unprefixed()
    }

    /// The target a client's name means, and the item's name there: `<target>__<item>`, or an
    /// item an unprefixed target lists as it is (`listed(target)` says which it lists).
    pub(crate) async fn resolve<F, Fut>(
        &self,
        kind: &str,
        qualified: &str,
        listed: F,
    ) -> Result<(Target, String), RpcError>
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
    pub(crate) fn expose(&self, kind: &str, listings: Vec<(Target, Vec<Value>)>) -> Vec<Value> {
        let named: Vec<(&Target, Vec<&str>)> =
            listings.iter().map(|(t, items)| (t, items.iter().filter_map(|i| i["name"].as_str()).collect())).collect();
        let mut names = self.expose_names(kind, &named).into_iter();
        let mut out = Vec::new();
        for (_, items) in listings {
            for mut item in items.into_iter().filter(|i| i["name"].is_string()) {
                item["name"] = Value::String(names.next().expect("a name per item"));
                out.push(item);
            }
        }
        out
    }

    /// [`Self::expose`] of names alone: each target's item names as clients see them, in order.
    pub(crate) fn expose_names(&self, kind: &str, listings: &[(&Target, Vec<&str>)]) -> Vec<String> {
        let reserved: &[&str] = if kind == "tool" && self.tool_search.enabled() {
            &[tool_search::SEARCH_TOOL, tool_search::CALL_TOOL]
        } else {
            &[]
        };
        let listings: Vec<catalog::Listing> = listings
            .iter()
            .map(|(t, names)| catalog::Listing {
                target: t.name(),
                unprefixed: self.unprefixed(t),
                names: names.clone(),
            })
            .collect();
        let (names, clashes) = catalog::expose(&listings, reserved);
        for (name, owners) in clashes {
            tracing::warn!(
                kind,
                name,
                targets = owners.join(", "),
                "unprefixed name clash: listed under each target's prefixed name only"
            );
        }
        names
    }

    /// Every tool a client may see: each server's (filtered by its policy) and each group's
    /// (once, under the group's name); servers inside a group are reached through the group.
    pub async fn list_tools(&self, ctx: &CallContext) -> Vec<Value> {
        self.expose("tool", self.visible_listings(ctx).await)
    }

    /// Every tool of every target, whoever may see it, with the name of the target that lists it
    /// (what tool search indexes).
    pub(crate) fn catalogue(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for target in self.targets() {
            let tools = target.servers().iter().map(|s| s.tools.read().unwrap().clone()).find(|t| !t.is_empty());
            out.extend(tools.unwrap_or_default().into_iter().map(|t| (target.name().to_string(), t)));
        }
        out
    }

    /// Each target's tools that this caller may see, as the targets list them.
    pub(crate) async fn visible_listings(&self, ctx: &CallContext) -> Vec<(Target, Vec<Value>)> {
        let mut listings = Vec::new();
        for target in self.targets() {
            let tools = target.tools(&ctx.caller).await;
            listings.push((target, tools));
        }
        listings
    }

    /// The names of each target's tools that this caller may see (no definitions copied).
    pub(crate) async fn visible_names(&self, ctx: &CallContext) -> Vec<(Target, Vec<String>)> {
        let mut listings = Vec::new();
        for target in self.targets() {
            let names = target.tool_names(&ctx.caller).await;
            listings.push((target, names));
        }
        listings
    }

    /// Routes `tools/call` for an aggregated tool name.
    pub async fn call_tool(&self, qualified: &str, arguments: Value, ctx: &CallContext) -> Result<Value, CallError> {
        let (target, tool) = self
            .resolve("tool", qualified, |t| async move { t.tools(&ctx.caller).await })
            .await
            .map_err(CallError::Refused)?;
        if let Some(sent) = &ctx.param_headers {
            let designations = target.param_designations(&tool);
            crate::param_headers::check(&designations, &arguments, sent).map_err(|why| {
                CallError::Refused(
                    RpcError::new(code::HEADER_MISMATCH, format!("the request headers and body disagree: {why}"))
                        .with_data(json!({"tool": qualified})),
                )
            })?;
        }
        match target {
            Target::Group(group, _) => self.call_group(&group, &tool, arguments, ctx).await,
            Target::Server(server) => self.call_server(&server, None, &tool, arguments, ctx).await,
        }
    }

    pub(crate) async fn call_group(
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
            let healthy = eligible(&servers, attempt).await;
            // A session stays on the member its id points at while that member serves; the
            // choice is a pure function of the (signed) id, so every core replica makes it alike.
            let pinned =
                ctx.pin.filter(|_| attempt == 0 && !servers.is_empty()).map(|p| (p % servers.len() as u64) as u32);
            let index = match pinned.filter(|&i| healthy[i as usize]) {
                Some(i) => i,
                None => {
                    let members = member_states(&servers, &healthy, &tried);
                    let request =
                        PickRequest { tool: tool.to_string(), sequence, random: rand::random(), attempt, members };
                    let Some(i) = self.pick(group, tool, request).await else { break };
                    i
                }
            };
            // A pick is always of a healthy, so registered, member.
            let Some(member) = servers[index as usize].clone() else { break };
            tried.push(index);
            match self.call_server(&member, Some(&group.name), tool, arguments.clone(), ctx).await {
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

    /// The strategy's pick (its fallback's when it faults), counted, logged and traced.
    async fn pick(&self, group: &GroupEntry, tool: &str, request: PickRequest) -> Option<u32> {
        let attempt = request.attempt;
        let span = tracing::info_span!(
            target: SPANS,
            "pick",
            hangar.group = %group.name,
            hangar.attempt = attempt,
            hangar.plugin = Empty,
            hangar.member = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        let pick = group.strategy.pick_off_worker(request).instrument(span.clone()).await;
        let plugin = if pick.fault.is_some() { "round-robin (fallback)" } else { group.strategy.name() };
        span.record("hangar.plugin", plugin);
        if pick.fault.is_some() {
            hangar_telemetry::failed(&span, "plugin_fault");
        }
        let i = pick.index?;
        let member = &group.members[i as usize].name;
        span.record("hangar.member", member.as_str());
        self.metrics.picks.with_label_values(&[&group.name, plugin, member]).inc();
        tracing::debug!(group = %group.name, plugin, member = %member, tool, attempt, "member picked");
        Some(i)
    }

    /// One attempt of a call at one server (of `group`, when a group's member).
    pub(crate) async fn call_server(
        &self,
        server: &ServerEntry,
        group: Option<&str>,
        tool: &str,
        arguments: Value,
        ctx: &CallContext,
    ) -> Result<Value, CallError> {
        // Tool names come from clients: only listed ones become metric labels (a client naming
        // 50,000 tools must not grow /metrics); the rest count under one label.
        let listed = server.tools.read().unwrap().iter().any(|t| t["name"] == tool);
        let count = |outcome: &str| {
            let tool_label = if listed { tool } else { UNLISTED_TOOL };
            self.metrics.calls.with_label_values(&[&server.name, tool_label, outcome]).inc();
        };
        let digest = audit::arguments_digest(&arguments);
        let record_audit = |decision, outcome, reason: Option<String>, duration: Option<Duration>| {
            if !audit::enabled() {
                return;
            }
            audit::log(audit::Record {
                event: "tools/call",
                decision,
                outcome,
                reason,
                caller: Some(audit_caller(&ctx.caller)),
                server: Some(server.name.clone()),
                group: group.map(str::to_string),
                tool: Some(tool.to_string()),
                duration_ms: duration.map(|d| d.as_secs_f64() * 1000.0),
                arguments_sha256: digest.clone(),
                ..Default::default()
            })
        };
        let policy = tracing::info_span!(
            target: SPANS,
            "policy",
            hangar.server = %server.name,
            hangar.decision = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        let admitted = self.admit(server, tool, listed, &arguments, ctx).instrument(policy.clone()).await;
        if let Err((outcome, refusal)) = admitted {
            policy.record("hangar.decision", outcome);
            hangar_telemetry::failed(&policy, outcome);
            count(outcome);
            let decision = if outcome == "breaker_open" { "unavailable" } else { outcome };
            record_audit(decision, None, Some(refusal.to_rpc().message), None);
            return Err(refusal);
        }
        policy.record("hangar.decision", "allowed");
        drop(policy);
        // From here the call is in flight: a call held for a wake-up is activity too, or the
        // operator would see the server idle and scale it straight back to zero.
        let in_flight = server.begin();
        if let Err(e) = self.wake(server).await {
            count("error");
            record_audit("allowed", Some("error"), Some(e.to_string()), None);
            return Err(CallError::Backend(e));
        }
        let attempt = tracing::info_span!(
            target: SPANS,
            "attempt",
            otel.name = %format_args!("tools/call {tool}"),
            otel.kind = "client",
            otel.status_code = Empty,
            mcp.method.name = "tools/call",
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = tool,
            hangar.server = %server.name,
            error.type = Empty,
        );
        let started = Instant::now();
        let result = self.send(server, tool, arguments, ctx).instrument(attempt.clone()).await;
        drop(in_flight);
        record(server, &result);
        let elapsed = started.elapsed();
        let trace_id = hangar_telemetry::trace_context::trace_id();
        self.metrics.latency.observe(&[&server.name], elapsed.as_secs_f64(), trace_id.as_deref());
        let error_type = match &result {
            Ok(r) if r.get("isError") == Some(&Value::Bool(true)) => "tool_error".to_string(),
            Ok(_) => String::new(),
            Err(e) => error_label(e),
        };
        let labels = ["tools/call", server.name.as_str(), error_type.as_str()];
        self.metrics.client_operation.observe(&labels, elapsed.as_secs_f64(), trace_id.as_deref());
        let micros = elapsed.as_micros() as u64;
        let old = server.latency_avg_us.load(Ordering::Relaxed);
        server.latency_avg_us.store(if old == 0 { micros } else { (old * 7 + micros) / 8 }, Ordering::Relaxed);
        match result {
            Ok(result) => {
                server.failures.store(0, Ordering::Relaxed);
                let outcome = if result.get("isError") == Some(&Value::Bool(true)) { "tool_error" } else { "ok" };
                if outcome == "tool_error" {
                    hangar_telemetry::failed(&attempt, "tool_error");
                }
                count(outcome);
                record_audit("allowed", Some(outcome), None, Some(elapsed));
                Ok(result)
            }
            Err(e) => {
                if e.is_transient() {
                    server.failures.fetch_add(1, Ordering::Relaxed);
                }
                hangar_telemetry::failed(&attempt, &e.kind());
                count("error");
                record_audit("allowed", Some("error"), Some(e.to_string()), Some(elapsed));
                Err(CallError::Backend(e))
            }
        }
    }

    /// Whether the call may go to the server: its policy, its rate limit and its breaker; a
    /// refusal names the outcome it is counted as.
    async fn admit(
        &self,
        server: &ServerEntry,
        tool: &str,
        listed: bool,
        arguments: &Value,
        ctx: &CallContext,
    ) -> Result<(), (&'static str, CallError)> {
        let call = Call {
            server: server.name.clone(),
            tool: tool.to_string(),
            caller: ctx.caller.clone(),
            argument_bytes: arguments.to_string().len() as u32,
        };
        let buckets = match server.decide(call).await {
            Decision::Deny(why) => {
                let tool_label = if listed { tool } else { UNLISTED_TOOL };
                self.metrics.denied.with_label_values(&[&server.name, tool_label]).inc();
                let data = json!({"server": server.name, "tool": tool});
                return Err(("denied", CallError::Refused(RpcError::new(code::DENIED, why).with_data(data))));
            }
            Decision::Allow(buckets) => buckets,
        };
        let limits: Vec<(String, u32, u32)> =
            buckets.into_iter().map(|b| (b.key, b.requests_per_minute, b.burst)).collect();
        if let Err(exhausted) = self.limiter.take(&limits) {
            self.metrics.rate_limited.with_label_values(&[&server.name]).inc();
            return Err(("rate_limited", CallError::Refused(rate_limited(&server.name, &exhausted))));
        }
        if let Err(retry_after) = server.breaker.admit() {
            let why = format!(
                "the circuit breaker of server {:?} is open after {} failed calls in a row; next try in {:.1}s",
                server.name,
                server.spec.circuit_breaker.failure_threshold,
                retry_after.as_secs_f64()
            );
            return Err(("breaker_open", CallError::Backend(BackendError::Unavailable(why))));
        }
        Ok(())
    }

    /// Wakes a server that is not up: a cluster's on-demand server is woken by every call, also
    /// after a start that failed (Dead), since its pod may have been slow or was scaled away; the
    /// call is held until it answers, or `startupTimeout`. A local process starts on the call.
    async fn wake(&self, server: &ServerEntry) -> Result<(), BackendError> {
        let asleep = server.spec.on_demand() && server.backend.is_remote() && !server.backend.is_live();
        if server.state() != State::Cold && !asleep {
            return Ok(());
        }
        self.metrics.cold_starts.with_label_values(&[&server.name]).inc();
        let _ = self.events_out.send(json!({"type": "wake", "namespace": server.namespace, "server": server.name}));
        let startup = server.spec.startup_timeout.as_std();
        let span = tracing::info_span!(target: SPANS, "cold start", hangar.server = %server.name);
        if server.backend.is_remote() && !server.backend.wait_until_connected(startup).instrument(span).await {
            server.start_failed.store(true, Ordering::Relaxed);
            return Err(BackendError::NotReady(format!(
                "server {} did not become ready within spec.startupTimeout ({startup:?}); see its pods",
                server.name
            )));
        }
        Ok(())
    }

    /// The `tools/call` itself, in the client's backend session, with the client's `_meta` and
    /// (when it asked for progress) a progress token.
    async fn send(
        &self,
        server: &ServerEntry,
        tool: &str,
        arguments: Value,
        ctx: &CallContext,
    ) -> Result<Value, BackendError> {
        let mut meta = ctx.meta.clone();
        if let Some(token) = ctx.relay.as_ref().and_then(|r| r.progress_token.clone()) {
            meta.insert("progressToken".into(), token);
        }
        let mut params = json!({"name": tool, "arguments": arguments});
        if !meta.is_empty() {
            params["_meta"] = Value::Object(meta);
        }
        for (key, value) in &ctx.input {
            params[key.as_str()] = value.clone();
        }
        let session = self.backend_session(ctx.session.as_deref(), server).await;
        let (startup, timeout) = (server.spec.startup_timeout.as_std(), server.spec.call_timeout.as_std());
        server.backend.request_for("tools/call", params, startup, timeout, ctx.on_behalf(session.as_deref())).await
    }
}

/// A backend error as a label value: its kind, a JSON-RPC code of the spec's ranges, or `other`
/// (servers choose codes; any number must not grow /metrics).
fn error_label(e: &BackendError) -> String {
    match e {
        BackendError::Rpc(rpc) => crate::protocol::code_label(rpc.code),
        e => e.kind(),
    }
}

/// The caller as the audit log names it.
fn audit_caller(caller: &Caller) -> audit::Caller {
    audit::Caller {
        sub: caller.subject.clone(),
        client: caller.client_id.clone(),
        groups: caller.groups.clone(),
        verified: caller.verified,
    }
}

/// What a call's outcome says of its server: its breaker's verdict, and whether it is up.
fn record(server: &ServerEntry, result: &Result<Value, BackendError>) {
    match result {
        Err(e) if e.is_server_down() => server.breaker.record(false),
        Err(BackendError::Timeout(_)) => server.breaker.no_verdict(),
        _ => server.breaker.record(true),
    }
    match result {
        Err(BackendError::NotReady(_)) => server.start_failed.store(true, Ordering::Relaxed),
        // Only a server that is connected now has recovered.
        _ if server.backend.is_live() => server.start_failed.store(false, Ordering::Relaxed),
        _ => {}
    }
}

/// Which members may take an attempt: those serving; on the first attempt with none serving but
/// some still starting (a first start, or a restart after a crash), those serving once the first
/// is ready, as a cold start would wait; with none serving at all, the cold (on-demand) ones.
async fn eligible(servers: &[Option<Arc<ServerEntry>>], attempt: u32) -> Vec<bool> {
    let serving = || servers.iter().map(|s| s.as_ref().is_some_and(|s| s.serving())).collect::<Vec<bool>>();
    let mut healthy = serving();
    if !healthy.contains(&true) && attempt == 0 && first_started(servers).await {
        healthy = serving();
    }
    if !healthy.contains(&true) {
        healthy = servers.iter().map(|s| s.as_ref().is_some_and(|s| s.state() == State::Cold)).collect();
    }
    healthy
}

/// What the strategy sees of each member.
fn member_states(servers: &[Option<Arc<ServerEntry>>], healthy: &[bool], tried: &[u32]) -> Vec<MemberState> {
    servers
        .iter()
        .zip(healthy)
        .enumerate()
        .map(|(i, (s, &healthy))| MemberState {
            healthy,
            tried: tried.contains(&(i as u32)),
            in_flight: s.as_ref().map_or(0, |s| s.in_flight.load(Ordering::Relaxed)),
            latency_avg_us: s.as_ref().map_or(0, |s| s.latency_avg_us.load(Ordering::Relaxed)),
            consecutive_failures: s.as_ref().map_or(0, |s| s.failures.load(Ordering::Relaxed)),
        })
        .collect()
}
