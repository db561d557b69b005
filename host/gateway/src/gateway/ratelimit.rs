//! Token buckets, one per key a policy names; exact under concurrency (each take is atomic).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    updated: Instant,
}

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// A limit that was exhausted, and when a token will be back.
#[derive(Debug, PartialEq)]
pub struct Exhausted {
    pub key: String,
    pub retry_after: Duration,
}

impl RateLimiter {
    /// Takes one token from every bucket named, or none of them when any is empty.
    pub fn take(&self, limits: &[(String, u32, u32)]) -> Result<(), Exhausted> {
        self.take_at(limits, Instant::now())
    }

    fn take_at(&self, limits: &[(String, u32, u32)], now: Instant) -> Result<(), Exhausted> {
        let mut buckets = self.buckets.lock().unwrap();
        for (key, per_minute, burst) in limits {
            let capacity = (*burst).max(1) as f64;
            let per_second = (*per_minute).max(1) as f64 / 60.0;
            let b =
                buckets.entry(key.clone()).or_insert(Bucket { tokens: capacity, capacity, per_second, updated: now });
            // A changed limit applies from now on.
            b.capacity = capacity;
            b.per_second = per_second;
            b.tokens = (b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * per_second).min(capacity);
            b.updated = now;
            if b.tokens < 1.0 {
                let retry_after = Duration::from_secs_f64((1.0 - b.tokens) / per_second);
                return Err(Exhausted { key: key.clone(), retry_after });
            }
        }
        for (key, _, _) in limits {
            if let Some(b) = buckets.get_mut(key) {
                b.tokens -= 1.0;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        let lim = [("s".to_string(), 60, 3)];
        for _ in 0..3 {
            assert!(l.take_at(&lim, t0).is_ok());
        }
        let err = l.take_at(&lim, t0).unwrap_err();
        assert_eq!(err.key, "s");
        assert!(err.retry_after <= Duration::from_secs(1));
        assert!(l.take_at(&lim, t0 + Duration::from_millis(999)).is_err());
        assert!(l.take_at(&lim, t0 + Duration::from_secs(1)).is_ok(), "60/min refills one per second");
    }

    #[test]
    fn exact_under_concurrency() {
        let l = Arc::new(RateLimiter::default());
        let ok = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (l, ok) = (l.clone(), ok.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        if l.take(&[("k".into(), 1, 50)]).is_ok() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(ok.load(Ordering::Relaxed), 50, "exactly the burst, no more");
    }

    #[test]
    fn all_or_nothing_across_buckets() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        assert!(l.take_at(&[("a".into(), 1, 1)], t0).is_ok());
        assert!(l.take_at(&[("b".into(), 1, 1), ("a".into(), 1, 1)], t0).is_err());
        assert!(l.take_at(&[("b".into(), 1, 1)], t0).is_ok(), "b was not charged by the refused call");
    }
}
