//! A circuit breaker: closed until `threshold` calls in a row fail, then open (calls are refused
//! at once) for `reset`, then half-open: one trial call decides whether it closes again or
//! reopens. The gateway keeps one per server (`spec.circuitBreaker`) and the plugin runtime one
//! per plugin (a plugin that keeps faulting is benched and its callers get the fallback at once).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of the `hangar_breaker_state` and `hangar_plugin_breaker_state` gauges.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial: bool },
}

pub struct CircuitBreaker {
    enabled: bool,
    threshold: u32,
    reset: Duration,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// `threshold` failures in a row open it (at least one); `reset` later one trial may go.
    pub fn new(enabled: bool, threshold: u32, reset: Duration) -> Self {
        Self { enabled, threshold: threshold.max(1), reset, inner: Mutex::new(Inner::Closed { failures: 0 }) }
    }

    /// Back to closed, as new (a plugin's fixed version was installed).
    pub fn reset(&self) {
        *self.inner.lock().unwrap() = Inner::Closed { failures: 0 };
    }

    /// May a call go ahead now? `Err(retry_after)` while open (or while a half-open trial runs).
    pub fn admit(&self) -> Result<(), Duration> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Result<(), Duration> {
        if !self.enabled {
            return Ok(());
        }
        let mut inner = self.inner.lock().unwrap();
        match *inner {
            Inner::Closed { .. } => Ok(()),
            Inner::Open { until } if now < until => Err(until - now),
            Inner::Open { .. } => {
                *inner = Inner::HalfOpen { trial: true };
                Ok(())
            }
            Inner::HalfOpen { trial: true } => Err(self.reset),
            Inner::HalfOpen { trial: false } => {
                *inner = Inner::HalfOpen { trial: true };
                Ok(())
            }
        }
    }

    /// The outcome of an admitted call (only failures to reach the server count, not tool errors).
    pub fn record(&self, success: bool) {
        self.record_at(success, Instant::now())
    }

    fn record_at(&self, success: bool, now: Instant) {
        let mut inner = self.inner.lock().unwrap();
        *inner = match (&*inner, success) {
            (_, true) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, false) if failures + 1 < self.threshold => {
                Inner::Closed { failures: failures + 1 }
            }
            (Inner::Open { until }, false) => Inner::Open { until: *until },
            (_, false) => Inner::Open { until: now + self.reset },
        };
    }

    /// An admitted call ended without a verdict on the server (it ran past its own call
    /// timeout, which a caller's arguments can cause): a half-open trial slot is given back,
    /// and nothing is counted.
    pub fn no_verdict(&self) {
        let mut inner = self.inner.lock().unwrap();
        if let Inner::HalfOpen { trial: true } = *inner {
            *inner = Inner::HalfOpen { trial: false };
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.inner.lock().unwrap() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, reset_secs: u64) -> CircuitBreaker {
        CircuitBreaker::new(true, threshold, Duration::from_secs(reset_secs))
    }

    #[test]
    fn opens_after_the_threshold_and_half_opens_after_the_reset_timeout() {
        let b = breaker(3, 10);
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(b.admit_at(t0).is_ok());
            b.record_at(false, t0);
        }
        assert_eq!(b.state(), BreakerState::Closed, "two failures of three");
        b.record_at(false, t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit_at(t0 + Duration::from_secs(4)), Err(Duration::from_secs(6)));
        assert!(b.admit_at(t0 + Duration::from_secs(10)).is_ok(), "one trial after the reset timeout");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.admit_at(t0 + Duration::from_secs(10)).is_err(), "only one trial at a time");
        b.record_at(false, t0 + Duration::from_secs(11));
        assert_eq!(b.state(), BreakerState::Open, "a failed trial reopens");
        assert!(b.admit_at(t0 + Duration::from_secs(21)).is_ok());
        b.record_at(true, t0 + Duration::from_secs(21));
        assert_eq!(b.state(), BreakerState::Closed, "a good trial closes");
    }

    #[test]
    fn a_call_without_a_verdict_counts_nothing_and_frees_the_trial() {
        let b = breaker(2, 10);
        let t0 = Instant::now();
        b.record_at(false, t0);
        b.no_verdict();
        b.record_at(false, t0);
        assert_eq!(b.state(), BreakerState::Open, "a call without a verdict does not reset the count");
        assert!(b.admit_at(t0 + Duration::from_secs(10)).is_ok());
        assert!(b.admit_at(t0 + Duration::from_secs(10)).is_err());
        b.no_verdict();
        assert!(b.admit_at(t0 + Duration::from_secs(10)).is_ok(), "the trial slot was given back");
    }

    #[test]
    fn a_success_resets_the_count_and_disabled_never_opens() {
        let b = breaker(2, 10);
        let t0 = Instant::now();
        b.record_at(false, t0);
        b.record_at(true, t0);
        b.record_at(false, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        let off = CircuitBreaker::new(false, 1, Duration::from_secs(1));
        off.record_at(false, t0);
        assert!(off.admit_at(t0).is_ok());
    }
}
