//! Prometheus metrics of the gateway.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, core::Collector};

/// A sampled trace that landed in a histogram bucket.
#[derive(Debug, Clone)]
pub struct Exemplar {
    pub trace_id: String,
    pub value: f64,
    /// Unix time, seconds.
    pub at: f64,
}

/// A latency histogram that keeps, per bucket, the last exemplar: the trace id of an observation
/// made inside an exported span (nothing is kept while tracing is off).
#[derive(Clone)]
pub struct TracedHistogram {
    pub vec: HistogramVec,
    name: String,
    label_names: Vec<String>,
    buckets: Vec<f64>,
    /// By the bucket's label set (`{server="a",le="0.5"}`); bounded by the labels' own bound.
    exemplars: Arc<Mutex<HashMap<String, Exemplar>>>,
}

impl TracedHistogram {
    fn new(opts: HistogramOpts, labels: &[&str]) -> prometheus::Result<Self> {
        let (name, buckets) = (opts.common_opts.name.clone(), opts.buckets.clone());
        Ok(Self {
            vec: HistogramVec::new(opts, labels)?,
            name,
            label_names: labels.iter().map(|l| l.to_string()).collect(),
            buckets,
            exemplars: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Observes `value`; `trace_id` (the current trace's, when spans are exported) becomes the
    /// bucket's exemplar.
    pub fn observe(&self, labels: &[&str], value: f64, trace_id: Option<&str>) {
        self.vec.with_label_values(labels).observe(value);
        let Some(trace_id) = trace_id else { return };
        let le = self.buckets.iter().copied().find(|&b| value <= b).unwrap_or(f64::INFINITY);
        let mut pairs: Vec<(String, String)> =
            self.label_names.iter().cloned().zip(labels.iter().map(|v| v.to_string())).collect();
        pairs.sort();
        let key = crate::openmetrics::label_set(pairs.into_iter(), Some(le));
        let at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default();
        self.exemplars.lock().unwrap().insert(key, Exemplar { trace_id: trace_id.to_string(), value, at });
    }
}

#[derive(Clone)]
pub struct GatewayMetrics {
    /// `hangar_calls_total{server, tool, outcome}`: outcome ok, tool_error, error, denied, rate_limited.
    pub calls: IntCounterVec,
    /// `hangar_call_duration_seconds{server}`.
    pub latency: TracedHistogram,
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
    pub server_operation: TracedHistogram,
    /// `mcp_client_operation_duration_seconds{mcp_method_name, server, error_type}`: each
    /// attempt at a server (Hangar as the client).
    pub client_operation: TracedHistogram,
}

impl GatewayMetrics {
    /// The last exemplar of a histogram bucket (`name` the histogram's, `key` its label set).
    pub fn exemplar(&self, name: &str, key: &str) -> Option<Exemplar> {
        [&self.latency, &self.server_operation, &self.client_operation]
            .into_iter()
            .find(|h| h.name == name)
            .and_then(|h| h.exemplars.lock().unwrap().get(key).cloned())
    }

    /// The histograms, as collectors (for tests that list what is exported).
    pub fn histograms(&self) -> [&dyn Collector; 3] {
        [&self.latency.vec, &self.server_operation.vec, &self.client_operation.vec]
    }
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
        let latency = TracedHistogram::new(
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
        let server_operation = TracedHistogram::new(
            HistogramOpts::new(
                "mcp_server_operation_duration_seconds",
                "MCP requests of clients, as Hangar answered them",
            )
            .buckets(OPERATION_BUCKETS.to_vec()),
            &["mcp_method_name", "error_type"],
        )?;
        let client_operation = TracedHistogram::new(
            HistogramOpts::new("mcp_client_operation_duration_seconds", "MCP requests Hangar sent to servers")
                .buckets(OPERATION_BUCKETS.to_vec()),
            &["mcp_method_name", "server", "error_type"],
        )?;
        let metrics = Self {
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
        };
        hangar_telemetry::register(registry, metrics.collectors())?;
        Ok(metrics)
    }

    /// Every metric, as registered (and as the metrics reference lists them).
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.calls.clone()),
            Box::new(self.latency.vec.clone()),
            Box::new(self.server_operation.vec.clone()),
            Box::new(self.client_operation.vec.clone()),
            Box::new(self.denied.clone()),
            Box::new(self.rate_limited.clone()),
            Box::new(self.server_state.clone()),
            Box::new(self.breaker_state.clone()),
            Box::new(self.starts.clone()),
            Box::new(self.cold_starts.clone()),
            Box::new(self.backend_sessions.clone()),
            Box::new(self.picks.clone()),
        ]
    }
}

/// Every metric core exports (the gateway's and tool search's; the plugin runtime has its own),
/// for the generated metrics reference.
pub fn core_collectors() -> prometheus::Result<Vec<Box<dyn Collector>>> {
    let registry = Registry::new();
    let mut all = GatewayMetrics::new(&registry)?.collectors();
    all.extend(crate::gateway::tool_search::SearchMetrics::new(&registry)?.collectors());
    Ok(all)
}
