//! Load-balancing strategies over candidates described by the host. Every function is pure: the
//! per-group sequence number and the random number come from the host.

/// A group member's fixed facts (the WIT `member` record), given once per configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberInfo {
    pub name: String,
    pub priority: i32,
    pub weight: u32,
}

/// Member indices as bits (the WIT `member-set`): member i is bit `i % 64` of word `i / 64`.
pub mod bits {
    /// Whether member `i` is in the set.
    pub fn contains(words: &[u64], i: usize) -> bool {
        words.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    /// How many members the set holds.
    pub fn count(words: &[u64]) -> u64 {
        words.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// The members in the set, lowest index first.
    pub fn iter(words: &[u64]) -> impl Iterator<Item = usize> + Clone + '_ {
        words.iter().enumerate().flat_map(|(n, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    n * 64 + bit
                })
            })
        })
    }

    /// The `n`-th member of the set (from 0), counting round: `n` is taken modulo the set's size.
    pub fn nth_round(words: &[u64], n: u64) -> Option<usize> {
        let count = count(words);
        if count == 0 {
            return None;
        }
        let mut k = n % count;
        for (i, &word) in words.iter().enumerate() {
            let ones = word.count_ones() as u64;
            if k < ones {
                return Some(i * 64 + nth_bit(word, k as u32));
            }
            k -= ones;
        }
        None
    }

    /// The position of the `k`-th set bit of `word` (which has more than `k`).
    fn nth_bit(mut word: u64, k: u32) -> usize {
        for _ in 0..k {
            word &= word - 1;
        }
        word.trailing_zeros() as usize
    }
}

/// A set of members as it travels in a pick (the WIT `member-set` variant): one word for a group
/// of up to 64 members (no list to copy into the plugin), a list of words beyond.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberSet {
    Word(u64),
    Words(Vec<u64>),
}

impl MemberSet {
    pub fn words(&self) -> &[u64] {
        match self {
            MemberSet::Word(w) => std::slice::from_ref(w),
            MemberSet::Words(words) => words,
        }
    }
}

/// The members a call may go to, from each member's health and whether this call tried it
/// already: healthy ones not yet tried; when every healthy member has been tried and only one
/// exists, that one (a retry never repeats a member unless it is the only one). The host
/// computes it; a strategy chooses within it.
pub fn eligible(n: usize, healthy: impl Fn(usize) -> bool, tried: impl Fn(usize) -> bool) -> MemberSet {
    // One pass per word: its healthy members, and those of them not tried yet.
    let word = |w: usize| {
        let (mut all, mut fresh) = (0u64, 0u64);
        for i in w * 64..n.min(w * 64 + 64) {
            if healthy(i) {
                all |= 1 << (i % 64);
                fresh |= u64::from(!tried(i)) << (i % 64);
            }
        }
        (all, fresh)
    };
    fn choose<T: AsRef<[u64]>>(all: T, fresh: T) -> T {
        if bits::count(fresh.as_ref()) == 0 && bits::count(all.as_ref()) == 1 { all } else { fresh }
    }
    if n <= 64 {
        // The common case, on every pick: no allocation.
        let (all, fresh) = word(0);
        let [set] = choose([all], [fresh]);
        return MemberSet::Word(set);
    }
    let (all, fresh): (Vec<u64>, Vec<u64>) = (0..n.div_ceil(64)).map(word).unzip();
    MemberSet::Words(choose(all, fresh))
}

/// The group as a strategy sees it for one pick: the members given in `configure`, the eligible
/// ones now, and the per-member numbers the strategy asked for (empty slices otherwise).
#[derive(Debug)]
pub struct View<'a> {
    pub members: &'a [MemberInfo],
    /// Bit words (see [`bits`]).
    pub eligible: &'a [u64],
    /// Calls in flight, parallel to `members`.
    pub in_flight: &'a [u32],
}

impl View<'_> {
    /// Eligible members, lowest index first (never one past the configured members).
    pub fn eligible(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        bits::iter(self.eligible).take_while(|&i| i < self.members.len())
    }

    fn in_flight(&self, i: usize) -> u32 {
        self.in_flight.get(i).copied().unwrap_or(0)
    }
}

fn nth<I: Iterator<Item = usize> + Clone>(mut eligible: I, n: u64) -> Option<u32> {
    let count = eligible.clone().count() as u64;
    if count == 0 {
        return None;
    }
    eligible.nth((n % count) as usize).map(|i| i as u32)
}

/// Cycles through eligible members in order: call `sequence` goes to member `sequence mod n`.
pub fn round_robin(group: &View, sequence: u64) -> Option<u32> {
    bits::nth_round(group.eligible, sequence).filter(|&i| i < group.members.len()).map(|i| i as u32)
}

/// A uniformly random eligible member, from the host's random number.
pub fn random(group: &View, random: u64) -> Option<u32> {
    round_robin(group, random)
}

/// The eligible member with the fewest calls in flight; ties go round robin by `sequence`.
pub fn least_connections(group: &View, sequence: u64) -> Option<u32> {
    let min = group.eligible().map(|i| group.in_flight(i)).min()?;
    nth(group.eligible().filter(|&i| group.in_flight(i) == min), sequence)
}

/// The eligible member with the lowest priority, then the lowest name.
pub fn failover(group: &View) -> Option<u32> {
    group
        .eligible()
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
    pub fn pick(&mut self, group: &View, sequence: u64) -> Option<u32> {
        let weights = group.members.iter().map(|m| m.weight.min(MAX_WEIGHT));
        if !weights.clone().eq(self.weights.iter().copied()) {
            self.weights = weights.collect();
            self.schedule = smooth_schedule(&self.weights);
        }
        if self.schedule.is_empty() {
            return round_robin(group, sequence);
        }
        let len = self.schedule.len() as u64;
        // Walk the schedule from this call's slot to the first member that may serve.
        (0..len)
            .map(|step| self.schedule[((sequence + step) % len) as usize])
            .find(|&m| bits::contains(group.eligible, m as usize))
            .or_else(|| group.eligible().next().map(|i| i as u32))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A group of (name, healthy, in flight, priority, weight) members, and the members this
    /// call tried already.
    struct Group {
        members: Vec<MemberInfo>,
        healthy: Vec<bool>,
        in_flight: Vec<u32>,
        eligible: MemberSet,
    }

    impl Group {
        fn view(&self) -> View<'_> {
            View { members: &self.members, eligible: self.eligible.words(), in_flight: &self.in_flight }
        }

        /// The same group with members `tried` marked as tried in this call.
        fn tried(&self, tried: &[usize]) -> Group {
            let eligible = eligible(self.members.len(), |i| self.healthy[i], |i| tried.contains(&i));
            Group {
                members: self.members.clone(),
                healthy: self.healthy.clone(),
                in_flight: self.in_flight.clone(),
                eligible,
            }
        }
    }

    fn members(spec: &[(&str, bool, u32, i32, u32)]) -> Group {
        let members = Group {
            members: spec
                .iter()
                .map(|&(name, _, _, priority, weight)| MemberInfo { name: name.into(), priority, weight })
                .collect(),
            healthy: spec.iter().map(|m| m.1).collect(),
            in_flight: spec.iter().map(|m| m.2).collect(),
            eligible: MemberSet::Word(0),
        };
        members.tried(&[])
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
    fn member_sets_beyond_64_members_use_one_word_per_64() {
        let set = eligible(130, |i| i % 3 == 0 || i == 129, |_| false);
        let MemberSet::Words(words) = &set else { panic!("130 members need words: {set:?}") };
        assert_eq!(words.len(), 3);
        let members: Vec<usize> = bits::iter(words).collect();
        assert_eq!(members, (0..130).filter(|i| i % 3 == 0 || *i == 129).collect::<Vec<_>>());
        assert_eq!(bits::count(words), members.len() as u64);
        assert!(bits::contains(words, 129) && !bits::contains(words, 128) && !bits::contains(words, 500));
        for (n, &m) in members.iter().enumerate() {
            assert_eq!(bits::nth_round(words, n as u64), Some(m));
            assert_eq!(bits::nth_round(words, (n + members.len()) as u64), Some(m), "counting round");
        }
        assert_eq!(eligible(64, |i| i == 63, |_| false), MemberSet::Word(1 << 63));
        assert_eq!(bits::nth_round(&[0, 0], 3), None);
    }

    #[test]
    fn eligibility_is_the_same_rule_for_small_and_large_groups() {
        for n in [8usize, 100] {
            let only = n - 3;
            let set = eligible(n, |i| i == only, |i| i == only);
            assert_eq!(bits::iter(set.words()).collect::<Vec<_>>(), [only], "n={n}: the only healthy one, tried");
            let set = eligible(n, |i| i % 2 == 0, |i| i == 0 || i == 2);
            assert_eq!(bits::count(set.words()), (n / 2 - 2) as u64, "n={n}: healthy and untried");
            let set = eligible(n, |i| i < 2, |i| i < 2);
            assert_eq!(bits::count(set.words()), 0, "n={n}: two healthy, both tried: none");
        }
    }

    #[test]
    fn a_set_wider_than_the_members_never_picks_past_them() {
        let m = members(&[("a", true, 0, 0, 1), ("b", true, 0, 0, 1)]);
        let view = View { members: &m.members, eligible: &[0b1100], in_flight: &[] };
        assert_eq!(round_robin(&view, 0), None);
        assert_eq!(failover(&view), None);
        assert_eq!(least_connections(&view, 0), None);
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

/// Converts [`MemberSet`] into a crate's generated WIT `member-set` variant (the host's
/// bindings) without copying a word.
#[macro_export]
macro_rules! impl_member_set {
    ($set:ty) => {
        impl From<$crate::strategy::MemberSet> for $set {
            fn from(set: $crate::strategy::MemberSet) -> Self {
                match set {
                    $crate::strategy::MemberSet::Word(word) => Self::Word(word),
                    $crate::strategy::MemberSet::Words(words) => Self::Words(words),
                }
            }
        }
    };
}

/// The whole `load-balancer` export of a strategy plugin over its generated WIT types:
/// `configure` keeps the members and asks for `inputs` (a `PickInputs` value; none if not
/// given), `pick` runs `$pick(&request, &view) -> Option<index>` where `view` is the group as
/// [`View`] describes it.
#[macro_export]
macro_rules! strategy_plugin {
    ($pick:expr) => {
        $crate::strategy_plugin!(inputs: PickInputs::empty(), $pick);
    };
    (inputs: $inputs:expr, $pick:expr) => {
        use exports::hangar::plugins::load_balancer::{Guest, Member, MemberSet, PickInputs, PickRequest};
        #[allow(unused_imports)]
        use $crate::strategy;

        thread_local! {
            // Never dropped (the instance's memory goes as a whole), so that reading it on every
            // pick is a plain static access, with no destructor registration to check.
            static MEMBERS: ::std::cell::RefCell<::std::mem::ManuallyDrop<Vec<$crate::strategy::MemberInfo>>> = const {
                ::std::cell::RefCell::new(::std::mem::ManuallyDrop::new(Vec::new()))
            };
        }

        struct Plugin;

        impl Guest for Plugin {
            fn configure(members: Vec<Member>, _config: Vec<(String, String)>) -> Result<PickInputs, String> {
                let members = members
                    .into_iter()
                    .map(|m| $crate::strategy::MemberInfo { name: m.name, priority: m.priority, weight: m.weight })
                    .collect();
                MEMBERS.with_borrow_mut(|m| **m = members);
                Ok($inputs)
            }

            fn pick(request: PickRequest) -> Option<u32> {
                let pick: fn(&PickRequest, &$crate::strategy::View) -> Option<u32> = $pick;
                let eligible = match &request.eligible {
                    MemberSet::Word(word) => ::std::slice::from_ref(word),
                    MemberSet::Words(words) => words.as_slice(),
                };
                let in_flight = request.in_flight.as_deref().unwrap_or_default();
                MEMBERS.with_borrow(|members| pick(&request, &$crate::strategy::View { members, eligible, in_flight }))
            }
        }

        export!(Plugin);
    };
}
