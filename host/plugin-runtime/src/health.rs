//! How a plugin has been doing lately: a breaker that benches it after faults in a row (its
//! callers then get the fallback at once instead of waiting out its deadline every time), and
//! which fault the log last named, so a plugin that faults on every call is named once per kind
//! of fault, not once per call. One per plugin name, shared by every resource that uses it.

use std::{sync::Mutex, time::Duration};

use hangar_plugin_algorithms::breaker::{BreakerState, CircuitBreaker};
use prometheus::IntGauge;

use crate::error::Fault;

/// Faults in a row that bench a plugin.
pub const BENCH_AFTER: u32 = 5;
/// How long a benched plugin sits out before one trial call.
pub const BENCH_FOR: Duration = Duration::from_secs(30);

pub(crate) struct Health {
    breaker: CircuitBreaker,
    /// The fault the log named last since the plugin last answered well.
    logged: Mutex<Option<Fault>>,
    /// `hangar_plugin_breaker_state{plugin}`.
    gauge: IntGauge,
}

/// What a fault changed, for the log.
pub(crate) struct Faulted {
    /// A fault of another kind than the last one named (or the first since a good answer).
    pub new_kind: bool,
    /// This fault benched the plugin.
    pub benched: bool,
}

impl Health {
    pub(crate) fn new(gauge: IntGauge) -> Self {
        gauge.set(BreakerState::Closed.gauge());
        Self { breaker: CircuitBreaker::new(true, BENCH_AFTER, BENCH_FOR), logged: Mutex::new(None), gauge }
    }

    /// May a call go to the plugin now? `Err(retry_after)` while it is benched.
    pub(crate) fn admit(&self) -> Result<(), Duration> {
        let admitted = self.breaker.admit();
        self.gauge.set(self.breaker.state().gauge());
        admitted
    }

    pub(crate) fn failed(&self, fault: Fault) -> Faulted {
        let was_open = self.breaker.state() == BreakerState::Open;
        self.breaker.record(false);
        let state = self.breaker.state();
        self.gauge.set(state.gauge());
        let new_kind = self.logged.lock().unwrap().replace(fault) != Some(fault);
        Faulted { new_kind, benched: !was_open && state == BreakerState::Open }
    }

    /// The plugin answered well; true when it had been faulting (worth a line in the log).
    pub(crate) fn succeeded(&self) -> bool {
        self.breaker.record(true);
        self.gauge.set(BreakerState::Closed.gauge());
        self.logged.lock().unwrap().take().is_some()
    }

    pub(crate) fn benched(&self) -> bool {
        self.breaker.state() == BreakerState::Open
    }

    /// A new version was installed: it starts with a clean record.
    pub(crate) fn reset(&self) {
        self.breaker.reset();
        self.logged.lock().unwrap().take();
        self.gauge.set(BreakerState::Closed.gauge());
    }
}
