//! Load-balancing strategies over candidates described by the host. Every function is pure: the
//! per-group sequence number and the random number come from the host.

/// What a strategy may read of one candidate (the WIT `candidate` record, or a native mirror).
pub trait Member {
    fn healthy(&self) -> bool;
    fn in_flight(&self) -> u32;
    fn priority(&self) -> i32;
    fn weight(&self) -> u32;
    fn name(&self) -> &str;
}

/// The members a call may go to: healthy ones not yet tried in this call; when every healthy
/// member has been tried and only one exists, that one (a retry never repeats a member unless it
/// is the only one).
pub fn eligible<M: Member>(candidates: &[M], tried: &[u32]) -> impl Iterator<Item = usize> + Clone {
    let fresh = candidates.iter().enumerate().any(|(i, c)| c.healthy() && !tried.contains(&(i as u32)));
    let healthy = candidates.iter().filter(|c| c.healthy()).count();
    let allow_tried = !fresh && healthy == 1;
    candidates
        .iter()
        .enumerate()
        .filter(move |(i, c)| c.healthy() && (allow_tried || !tried.contains(&(*i as u32))))
        .map(|(i, _)| i)
}

fn nth<I: Iterator<Item = usize> + Clone>(mut eligible: I, n: u64) -> Option<u32> {
    let count = eligible.clone().count() as u64;
    if count == 0 {
        return None;
    }
    eligible.nth((n % count) as usize).map(|i| i as u32)
}

/// Cycles through eligible members in order: call `sequence` goes to member `sequence mod n`.
pub fn round_robin<M: Member>(candidates: &[M], tried: &[u32], sequence: u64) -> Option<u32> {
    nth(eligible(candidates, tried), sequence)
}

/// A uniformly random eligible member, from the host's random number.
pub fn random<M: Member>(candidates: &[M], tried: &[u32], random: u64) -> Option<u32> {
    nth(eligible(candidates, tried), random)
}

/// The eligible member with the fewest calls in flight; ties go round robin by `sequence`.
pub fn least_connections<M: Member>(candidates: &[M], tried: &[u32], sequence: u64) -> Option<u32> {
    let min = eligible(candidates, tried).map(|i| candidates[i].in_flight()).min()?;
    nth(eligible(candidates, tried).filter(|&i| candidates[i].in_flight() == min), sequence)
}

/// The eligible member with the lowest priority, then the lowest name.
pub fn failover<M: Member>(candidates: &[M], tried: &[u32]) -> Option<u32> {
    eligible(candidates, tried)
        .min_by(|&a, &b| {
            let (a, b) = (&candidates[a], &candidates[b]);
            a.priority().cmp(&b.priority()).then_with(|| a.name().cmp(b.name()))
        })
        .map(|i| i as u32)
}

/// Smooth weighted round robin (as nginx): over one period of `sum(weights)` calls each member
/// is picked `weight` times, spread out. The schedule is a pure function of the weights, so it
/// is computed once per weight vector and indexed by `sequence`.
#[derive(Default)]
pub struct WeightedSchedule {
    weights: Vec<u32>,
    schedule: Vec<u32>,
}

/// No member's weight counts above this, so one schedule stays small.
pub const MAX_WEIGHT: u32 = 1000;

impl WeightedSchedule {
    pub fn pick<M: Member>(&mut self, candidates: &[M], tried: &[u32], sequence: u64) -> Option<u32> {
        let weights: Vec<u32> = candidates.iter().map(|c| c.weight().min(MAX_WEIGHT)).collect();
        if weights != self.weights {
            self.schedule = smooth_schedule(&weights);
            self.weights = weights;
        }
        if self.schedule.is_empty() {
            return round_robin(candidates, tried, sequence);
        }
        let allowed: Vec<usize> = eligible(candidates, tried).collect();
        let len = self.schedule.len() as u64;
        // Walk the schedule from this call's slot to the first member that may serve.
        (0..len)
            .map(|step| self.schedule[((sequence + step) % len) as usize])
            .find(|m| allowed.contains(&(*m as usize)))
            .or_else(|| allowed.first().map(|&i| i as u32))
    }
}

/// One period of smooth weighted round robin for `weights` (members with weight 0 never appear).
pub fn smooth_schedule(weights: &[u32]) -> Vec<u32> {
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(weights) {
            *c += w as i64;
        }
        let best = (0..weights.len()).filter(|&i| weights[i] > 0).max_by_key(|&i| (current[i], std::cmp::Reverse(i)));
        let Some(best) = best else { break };
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

/// A native candidate, for the host's fallback and benchmarks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NativeCandidate {
    pub name: String,
    pub healthy: bool,
    pub in_flight: u32,
    pub priority: i32,
    pub weight: u32,
}

crate::impl_member!(NativeCandidate);

#[cfg(test)]
mod tests {
    use super::*;

    fn members(spec: &[(&str, bool, u32, i32, u32)]) -> Vec<NativeCandidate> {
        spec.iter()
            .map(|&(name, healthy, in_flight, priority, weight)| NativeCandidate {
                name: name.into(),
                healthy,
                in_flight,
                priority,
                weight,
            })
            .collect()
    }

    #[test]
    fn round_robin_cycles_over_healthy_members_only() {
        let m = members(&[("a", true, 0, 0, 1), ("b", false, 0, 0, 1), ("c", true, 0, 0, 1)]);
        let picks: Vec<_> = (0..6).map(|s| round_robin(&m, &[], s).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2, 0, 2]);
    }

    #[test]
    fn retries_skip_tried_members_unless_only_one_is_left() {
        let m = members(&[("a", true, 0, 0, 1), ("b", true, 0, 0, 1)]);
        assert_eq!(round_robin(&m, &[0], 0), Some(1));
        assert_eq!(round_robin(&m, &[0, 1], 0), None, "both tried: no repeat");
        let one = members(&[("a", true, 0, 0, 1), ("b", false, 0, 0, 1)]);
        assert_eq!(round_robin(&one, &[0], 7), Some(0), "the only healthy member may be retried");
    }

    #[test]
    fn nothing_healthy_picks_nothing() {
        let m = members(&[("a", false, 0, 0, 1)]);
        assert_eq!(round_robin(&m, &[], 0), None);
        assert_eq!(least_connections(&m, &[], 0), None);
        assert_eq!(failover(&m, &[]), None);
        assert_eq!(random(&m, &[], 5), None);
    }

    #[test]
    fn least_connections_takes_the_minimum_and_breaks_ties_by_sequence() {
        let m = members(&[("a", true, 3, 0, 1), ("b", true, 1, 0, 1), ("c", true, 1, 0, 1), ("d", false, 0, 0, 1)]);
        assert_eq!(least_connections(&m, &[], 0), Some(1));
        assert_eq!(least_connections(&m, &[], 1), Some(2));
        assert_eq!(least_connections(&m, &[1], 0), Some(2));
    }

    #[test]
    fn failover_prefers_low_priority_then_name() {
        let m = members(&[("zeta", true, 0, 0, 1), ("alpha", true, 0, 1, 1), ("beta", true, 0, 0, 1)]);
        assert_eq!(failover(&m, &[]), Some(2), "priority 0, and beta < zeta");
        assert_eq!(failover(&m, &[2]), Some(0));
        assert_eq!(failover(&m, &[2, 0]), Some(1));
    }

    #[test]
    fn smooth_schedule_spreads_picks_by_weight() {
        assert_eq!(smooth_schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_schedule(&[1, 0, 1]), [0, 2]);
    }

    #[test]
    fn weighted_round_robin_follows_weights_over_a_period() {
        let m = members(&[("a", true, 0, 0, 3), ("b", true, 0, 0, 1)]);
        let mut s = WeightedSchedule::default();
        let picks: Vec<_> = (0..8).map(|q| s.pick(&m, &[], q).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 6);
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 2);
    }
}

/// Implements [`Member`] for a type with the WIT `candidate` record's fields: each plugin's
/// generated record (local to its crate, so the impl is written there), the host's, and
/// [`NativeCandidate`].
#[macro_export]
macro_rules! impl_member {
    ($candidate:ty) => {
        impl $crate::strategy::Member for $candidate {
            fn healthy(&self) -> bool {
                self.healthy
            }
            fn in_flight(&self) -> u32 {
                self.in_flight
            }
            fn priority(&self) -> i32 {
                self.priority
            }
            fn weight(&self) -> u32 {
                self.weight
            }
            fn name(&self) -> &str {
                &self.name
            }
        }
    };
}

/// The whole `load-balancer` export of a strategy plugin over its generated WIT types:
/// `configure` accepts anything, `pick` runs `$pick(&request, &candidates) -> Option<position>`
/// and answers the candidate's `index`.
#[macro_export]
macro_rules! strategy_plugin {
    ($pick:expr) => {
        use exports::hangar::plugins::load_balancer::{Candidate, Guest, PickRequest};
        #[allow(unused_imports)]
        use $crate::strategy;

        $crate::impl_member!(Candidate);

        struct Plugin;

        impl Guest for Plugin {
            fn configure(_config: Vec<(String, String)>) -> Result<(), String> {
                Ok(())
            }

            fn pick(request: PickRequest, candidates: Vec<Candidate>) -> Option<u32> {
                let pick: fn(&PickRequest, &[Candidate]) -> Option<u32> = $pick;
                pick(&request, &candidates).map(|i| candidates[i as usize].index)
            }
        }

        export!(Plugin);
    };
}
