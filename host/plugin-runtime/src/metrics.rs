//! Prometheus metrics of the plugin runtime.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, core::Collector};

#[derive(Clone)]
pub struct PluginMetrics {
    /// `hangar_plugin_faults_total{plugin, world, fault}`: calls cut off or refused; each fell back.
    pub faults: IntCounterVec,
    /// `hangar_plugin_compilations_total`: components compiled (not found in the cache).
    pub compilations: IntCounter,
    /// `hangar_plugin_reloads_total{plugin, result}`: hot reloads, `ok` or `error`.
    pub reloads: IntCounterVec,
    /// `hangar_plugin_breaker_state{plugin}`: 0 closed, 1 open (benched: callers get the
    /// fallback at once), 2 half-open (one trial call).
    pub breaker: IntGaugeVec,
}

impl PluginMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let faults = IntCounterVec::new(
            Opts::new(
                "hangar_plugin_faults_total",
                "Plugin calls that trapped, timed out, over-allocated, answered badly, could not be bound or were benched; each fell back",
            ),
            &["plugin", "world", "fault"],
        )?;
        let compilations = IntCounter::new(
            "hangar_plugin_compilations_total",
            "Plugin components compiled because no cached artifact existed",
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("hangar_plugin_reloads_total", "Plugin files (re)loaded from the plugin directory"),
            &["plugin", "result"],
        )?;
        let breaker = IntGaugeVec::new(
            Opts::new(
                "hangar_plugin_breaker_state",
                "A plugin's breaker: 0 closed, 1 open (benched after faults in a row), 2 half-open",
            ),
            &["plugin"],
        )?;
        let metrics = Self { faults, compilations, reloads, breaker };
        hangar_telemetry::register(registry, metrics.collectors())?;
        Ok(metrics)
    }

    /// Every metric, as registered (and as the metrics reference lists them).
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.faults.clone()),
            Box::new(self.breaker.clone()),
            Box::new(self.compilations.clone()),
            Box::new(self.reloads.clone()),
        ]
    }
}
