//! Prometheus metrics of the gateway.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct GatewayMetrics {
    /// `hangar_calls_total{server, tool, outcome}`: outcome ok, tool_error, error, denied, rate_limited.
    pub calls: IntCounterVec,
    /// `hangar_call_duration_seconds{server}`.
    pub latency: HistogramVec,
    /// `hangar_denied_total{server, tool}`.
    pub denied: IntCounterVec,
    /// `hangar_rate_limited_total{server}`.
    pub rate_limited: IntCounterVec,
    /// `hangar_server_state{server, state}`: 1 for the current state, 0 for the others.
    pub server_state: IntGaugeVec,
    /// `hangar_breaker_state{server}`: 0 closed, 1 open, 2 half-open.
    pub breaker_state: IntGaugeVec,
    /// `hangar_server_starts{server}`: times the local process was started.
    pub starts: IntGaugeVec,
    /// `hangar_plugin_picks_total{group, plugin, member}`: which member a group's strategy chose
    /// (`plugin` is the fallback's name when the plugin failed).
    pub picks: IntCounterVec,
    /// `hangar_backend_sessions{server}`: sessions held at a handshake-era HTTP backend for
    /// clients of this replica (opened on a client's first call, closed with its session).
    pub backend_sessions: IntGaugeVec,
    /// `hangar_cold_starts_total{server}`: wake-ups asked for a server scaled to zero (a call
    /// held for it, or core learning its tools).
    pub cold_starts: IntCounterVec,
    /// `mcp_server_operation_duration_seconds{mcp_method_name, error_type}`: each client request,
    /// after OpenTelemetry's MCP conventions (Hangar as the server).
    pub server_operation: HistogramVec,
    /// `mcp_client_operation_duration_seconds{mcp_method_name, server, error_type}`: each
    /// attempt at a server (Hangar as the client).
    pub client_operation: HistogramVec,
}

/// OpenTelemetry's advised buckets for MCP operation durations.
const OPERATION_BUCKETS: [f64; 14] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// Method names as label values: the methods of either revision, else `other` (clients name
/// methods; unknown ones must not grow /metrics).
pub fn method_label(method: &str) -> &str {
    const KNOWN: [&str; 18] = [
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "logging/setLevel",
        "subscriptions/listen",
        "tasks/get",
        "tasks/result",
        "tasks/cancel",
    ];
    if KNOWN.contains(&method) { method } else { "other" }
}

impl GatewayMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let calls = IntCounterVec::new(
            Opts::new("hangar_calls_total", "tools/call by server, tool and outcome"),
            &["server", "tool", "outcome"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("hangar_call_duration_seconds", "Time a backend took to answer tools/call")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["server"],
        )?;
        let denied =
            IntCounterVec::new(Opts::new("hangar_denied_total", "Calls the tool policy refused"), &["server", "tool"])?;
        let rate_limited =
            IntCounterVec::new(Opts::new("hangar_rate_limited_total", "Calls refused by a rate limit"), &["server"])?;
        let server_state = IntGaugeVec::new(
            Opts::new("hangar_server_state", "Server state: 1 for the current one"),
            &["server", "state"],
        )?;
        let breaker_state = IntGaugeVec::new(
            Opts::new("hangar_breaker_state", "Circuit breaker: 0 closed, 1 open, 2 half-open"),
            &["server"],
        )?;
        let starts = IntGaugeVec::new(
            Opts::new("hangar_server_starts", "Times a local server process was started"),
            &["server"],
        )?;
        let picks = IntCounterVec::new(
            Opts::new("hangar_plugin_picks_total", "Members chosen by group strategies"),
            &["group", "plugin", "member"],
        )?;
        let backend_sessions = IntGaugeVec::new(
            Opts::new("hangar_backend_sessions", "Sessions held at HTTP backends for this replica's clients"),
            &["server"],
        )?;
        let cold_starts = IntCounterVec::new(
            Opts::new("hangar_cold_starts_total", "Wake-ups asked for servers scaled to zero"),
            &["server"],
        )?;
        let server_operation = HistogramVec::new(
            HistogramOpts::new(
                "mcp_server_operation_duration_seconds",
                "MCP requests of clients, as Hangar answered them",
            )
            .buckets(OPERATION_BUCKETS.to_vec()),
            &["mcp_method_name", "error_type"],
        )?;
        let client_operation = HistogramVec::new(
            HistogramOpts::new("mcp_client_operation_duration_seconds", "MCP requests Hangar sent to servers")
                .buckets(OPERATION_BUCKETS.to_vec()),
            &["mcp_method_name", "server", "error_type"],
        )?;
        registry.register(Box::new(cold_starts.clone()))?;
        registry.register(Box::new(server_operation.clone()))?;
        registry.register(Box::new(client_operation.clone()))?;
        registry.register(Box::new(backend_sessions.clone()))?;
        registry.register(Box::new(picks.clone()))?;
        registry.register(Box::new(server_state.clone()))?;
        registry.register(Box::new(breaker_state.clone()))?;
        registry.register(Box::new(starts.clone()))?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(denied.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        Ok(Self {
            calls,
            latency,
            denied,
            rate_limited,
            server_state,
            breaker_state,
            starts,
            picks,
            backend_sessions,
            cold_starts,
            server_operation,
            client_operation,
        })
    }
}
