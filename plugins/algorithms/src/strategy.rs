//! Load-balancing strategies over candidates described by the host. Every function is pure: the
//! per-group sequence number and the random number come from the host.

/// A group member's fixed facts (the WIT `member` record), given once per configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberInfo {
    pub name: String,
    pub priority: i32,
    pub weight: u32,
}

/// What a strategy reads of a member's state in one pick (the WIT `member-state` record, or a
/// native mirror): [`impl_member_state!`](crate::impl_member_state) implements it for a type with
/// the record's fields.
pub trait MemberState {
    fn healthy(&self) -> bool;
    fn tried(&self) -> bool;
    fn in_flight(&self) -> u32;
}

/// The group as a strategy sees it for one call: the configured members and, parallel to them,
/// their state now. A list of states shorter than `members` cuts the group short: a member with
/// no state is not a candidate.
#[derive(Debug)]
pub struct View<'a, S> {
    pub members: &'a [MemberInfo],
    pub states: &'a [S],
}

impl<S> View<'_, S> {
    pub fn len(&self) -> usize {
        self.members.len().min(self.states.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The members a call may go to: healthy ones not yet tried in this call; when every healthy
/// member has been tried and only one exists, that one (a retry never repeats a member unless it
/// is the only one).
pub fn eligible<'a, S: MemberState>(group: &View<'a, S>) -> impl Iterator<Item = usize> + Clone + use<'a, S> {
    let states = &group.states[..group.len()];
    let fresh = states.iter().any(|s| s.healthy() && !s.tried());
    let allow_tried = !fresh && states.iter().filter(|s| s.healthy()).count() == 1;
    states.iter().enumerate().filter(move |(_, s)| s.healthy() && (allow_tried || !s.tried())).map(|(i, _)| i)
}

fn nth<I: Iterator<Item = usize> + Clone>(mut eligible: I, n: u64) -> Option<u32> {
    let count = eligible.clone().count() as u64;
    if count == 0 {
        return None;
    }
    eligible.nth((n % count) as usize).map(|i| i as u32)
}

/// Cycles through eligible members in order: call `sequence` goes to member `sequence mod n`.
pub fn round_robin<S: MemberState>(group: &View<S>, sequence: u64) -> Option<u32> {
    nth(eligible(group), sequence)
}

/// A uniformly random eligible member, from the host's random number.
pub fn random<S: MemberState>(group: &View<S>, random: u64) -> Option<u32> {
    nth(eligible(group), random)
}

/// The eligible member with the fewest calls in flight; ties go round robin by `sequence`.
pub fn least_connections<S: MemberState>(group: &View<S>, sequence: u64) -> Option<u32> {
    let min = eligible(group).map(|i| group.states[i].in_flight()).min()?;
    nth(eligible(group).filter(|&i| group.states[i].in_flight() == min), sequence)
}

/// The eligible member with the lowest priority, then the lowest name.
pub fn failover<S: MemberState>(group: &View<S>) -> Option<u32> {
    eligible(group)
        .min_by(|&a, &b| {
            let (a, b) = (&group.members[a], &group.members[b]);
            a.priority.cmp(&b.priority).then_with(|| a.name.cmp(&b.name))
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
    pub fn pick<S: MemberState>(&mut self, group: &View<S>, sequence: u64) -> Option<u32> {
        let weights = group.members[..group.len()].iter().map(|m| m.weight.min(MAX_WEIGHT));
        if !weights.clone().eq(self.weights.iter().copied()) {
            self.weights = weights.collect();
            self.schedule = smooth_schedule(&self.weights);
        }
        if self.schedule.is_empty() {
            return round_robin(group, sequence);
        }
        let allowed: Vec<usize> = eligible(group).collect();
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

/// A native member state, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NativeState {
    pub healthy: bool,
    pub tried: bool,
    pub in_flight: u32,
}

crate::impl_member_state!(NativeState);

#[cfg(test)]
mod tests {
    use super::*;

    /// A group of (name, healthy, in flight, priority, weight) members.
    struct Group {
        members: Vec<MemberInfo>,
        states: Vec<NativeState>,
    }

    impl Group {
        fn view(&self) -> View<'_, NativeState> {
            View { members: &self.members, states: &self.states }
        }

        /// The same group with members `tried` marked as tried in this call.
        fn tried(&self, tried: &[usize]) -> Group {
            let mut states = self.states.clone();
            for &i in tried {
                states[i].tried = true;
            }
            Group { members: self.members.clone(), states }
        }
    }

    fn members(spec: &[(&str, bool, u32, i32, u32)]) -> Group {
        Group {
            members: spec
                .iter()
                .map(|&(name, _, _, priority, weight)| MemberInfo { name: name.into(), priority, weight })
                .collect(),
            states: spec
                .iter()
                .map(|&(_, healthy, in_flight, _, _)| NativeState { healthy, tried: false, in_flight })
                .collect(),
        }
    }

    #[test]
    fn round_robin_cycles_over_healthy_members_only() {
        let m = members(&[("a", true, 0, 0, 1), ("b", false, 0, 0, 1), ("c", true, 0, 0, 1)]);
        let picks: Vec<_> = (0..6).map(|s| round_robin(&m.view(), s).unwrap()).collect();
        assert_eq!(picks, [0, 2, 0, 2, 0, 2]);
    }

    #[test]
    fn retries_skip_tried_members_unless_only_one_is_left() {
        let m = members(&[("a", true, 0, 0, 1), ("b", true, 0, 0, 1)]);
        assert_eq!(round_robin(&m.tried(&[0]).view(), 0), Some(1));
        assert_eq!(round_robin(&m.tried(&[0, 1]).view(), 0), None, "both tried: no repeat");
        let one = members(&[("a", true, 0, 0, 1), ("b", false, 0, 0, 1)]);
        assert_eq!(round_robin(&one.tried(&[0]).view(), 7), Some(0), "the only healthy member may be retried");
    }

    #[test]
    fn nothing_healthy_picks_nothing() {
        let m = members(&[("a", false, 0, 0, 1)]);
        assert_eq!(round_robin(&m.view(), 0), None);
        assert_eq!(least_connections(&m.view(), 0), None);
        assert_eq!(failover(&m.view()), None);
        assert_eq!(random(&m.view(), 5), None);
    }

    #[test]
    fn least_connections_takes_the_minimum_and_breaks_ties_by_sequence() {
        let m = members(&[("a", true, 3, 0, 1), ("b", true, 1, 0, 1), ("c", true, 1, 0, 1), ("d", false, 0, 0, 1)]);
        assert_eq!(least_connections(&m.view(), 0), Some(1));
        assert_eq!(least_connections(&m.view(), 1), Some(2));
        assert_eq!(least_connections(&m.tried(&[1]).view(), 0), Some(2));
    }

    #[test]
    fn failover_prefers_low_priority_then_name() {
        let m = members(&[("zeta", true, 0, 0, 1), ("alpha", true, 0, 1, 1), ("beta", true, 0, 0, 1)]);
        assert_eq!(failover(&m.view()), Some(2), "priority 0, and beta < zeta");
        assert_eq!(failover(&m.tried(&[2]).view()), Some(0));
        assert_eq!(failover(&m.tried(&[2, 0]).view()), Some(1));
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
        let picks: Vec<_> = (0..8).map(|q| s.pick(&m.view(), q).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 6);
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 2);
    }
}

/// Implements [`MemberState`] for a type with the WIT `member-state` record's fields: each
/// plugin's generated record (local to its crate, so the impl is written there), the host's, and
/// [`NativeState`].
#[macro_export]
macro_rules! impl_member_state {
    ($state:ty) => {
        impl $crate::strategy::MemberState for $state {
            fn healthy(&self) -> bool {
                self.healthy
            }
            fn tried(&self) -> bool {
                self.tried
            }
            fn in_flight(&self) -> u32 {
                self.in_flight
            }
        }
    };
}

/// The whole `load-balancer` export of a strategy plugin over its generated WIT types:
/// `configure` keeps the members, `pick` runs `$pick(&request, &view) -> Option<index>` where
/// `view` is the group as [`View`] describes it.
#[macro_export]
macro_rules! strategy_plugin {
    ($pick:expr) => {
        use exports::hangar::plugins::load_balancer::{Guest, Member, MemberState, PickRequest};
        #[allow(unused_imports)]
        use $crate::strategy;

        $crate::impl_member_state!(MemberState);

        thread_local! {
            static MEMBERS: ::std::cell::RefCell<Vec<$crate::strategy::MemberInfo>> = const {
                ::std::cell::RefCell::new(Vec::new())
            };
        }

        struct Plugin;

        impl Guest for Plugin {
            fn configure(members: Vec<Member>, _config: Vec<(String, String)>) -> Result<(), String> {
                let members = members
                    .into_iter()
                    .map(|m| $crate::strategy::MemberInfo { name: m.name, priority: m.priority, weight: m.weight })
                    .collect();
                MEMBERS.with_borrow_mut(|m| *m = members);
                Ok(())
            }

            fn pick(request: PickRequest) -> Option<u32> {
                let pick: fn(&PickRequest, &$crate::strategy::View<MemberState>) -> Option<u32> = $pick;
                MEMBERS.with_borrow(|members| {
                    pick(&request, &$crate::strategy::View { members, states: &request.members })
                })
            }
        }

        export!(Plugin);
    };
}
