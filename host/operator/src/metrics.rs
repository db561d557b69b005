//! The operator's Prometheus metrics, with exactly the guide's names and labels.

use hangar_api::State;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, core::Collector};

#[derive(Clone)]
pub struct Metrics {
    /// `mcp_operator_reconcile_total{kind, result}`.
    pub reconciles: IntCounterVec,
    /// `mcp_operator_reconcile_duration_seconds{kind}`.
    pub reconcile_duration: HistogramVec,
    /// `mcp_operator_provider_state{namespace, name, state}`: 1 for the current state, 0 for the others.
    pub provider_state: IntGaugeVec,
    /// `mcp_operator_provider_tools_count{namespace, name}`.
    pub tools_count: IntGaugeVec,
    /// `mcp_operator_provider_health_check_failures_total{namespace, name}`.
    pub health_check_failures: IntCounterVec,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            reconciles: IntCounterVec::new(
                Opts::new("mcp_operator_reconcile_total", "Total reconciliations"),
                &["kind", "result"],
            )?,
            reconcile_duration: HistogramVec::new(
                HistogramOpts::new("mcp_operator_reconcile_duration_seconds", "Reconciliation duration"),
                &["kind"],
            )?,
            provider_state: IntGaugeVec::new(
                Opts::new("mcp_operator_provider_state", "MCP server state (1 = active)"),
                &["namespace", "name", "state"],
            )?,
            tools_count: IntGaugeVec::new(
                Opts::new("mcp_operator_provider_tools_count", "Tools per MCP server"),
                &["namespace", "name"],
            )?,
            health_check_failures: IntCounterVec::new(
                Opts::new("mcp_operator_provider_health_check_failures_total", "Health check failures"),
                &["namespace", "name"],
            )?,
        };
        hangar_telemetry::register(registry, m.collectors())?;
        Ok(m)
    }

    /// Every metric, as registered (and as the metrics reference lists them).
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.reconciles.clone()),
            Box::new(self.reconcile_duration.clone()),
            Box::new(self.provider_state.clone()),
            Box::new(self.tools_count.clone()),
            Box::new(self.health_check_failures.clone()),
        ]
    }

    /// Sets the state gauges of one server: 1 for `state`, 0 for every other (the guide's
    /// alerts query `{state="Degraded"} == 1`).
    pub fn set_state(&self, namespace: &str, name: &str, state: State) {
        for s in State::ALL {
            self.provider_state.with_label_values(&[namespace, name, s.as_str()]).set((s == state) as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_alert_expressions_find_the_state() {
        let registry = Registry::new();
        let m = Metrics::new(&registry).unwrap();
        m.set_state("mcp-servers", "github-tools", State::Degraded);
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        assert!(
            text.contains(
                r#"mcp_operator_provider_state{name="github-tools",namespace="mcp-servers",state="Degraded"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"mcp_operator_provider_state{name="github-tools",namespace="mcp-servers",state="Ready"} 0"#
            )
        );
        m.set_state("mcp-servers", "github-tools", State::Dead);
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        assert!(text.contains(r#"state="Degraded"} 0"#) && text.contains(r#"state="Dead"} 1"#));
    }
}
