//! `lowest-latency`: a Hangar strategy plugin. Sends each call to the eligible member with the
//! lowest average latency; ties go round robin by the call's sequence number. Start your own
//! strategy from this file.
//!
//! Plugins are pure: the group's members arrive once in `configure`, which answers what each
//! pick should carry; everything that changes between calls (which members may serve, a
//! sequence number, a random number, and what was asked for: here latencies) arrives in `pick`.

wit_bindgen::generate!({ path: "wit", world: "strategy" });

use exports::hangar::plugins::load_balancer::{Guest, Member, MemberSet, PickInputs, PickRequest};

struct LowestLatency;

impl Guest for LowestLatency {
    /// Called once per group (and when its members change) with the members and the group's
    /// `spec.strategyConfig`. This strategy needs neither (member i is simply index i in `pick`),
    /// but reads each member's latency in every pick, so it asks for it.
    fn configure(_members: Vec<Member>, _config: Vec<(String, String)>) -> Result<PickInputs, String> {
        Ok(PickInputs::LATENCY)
    }

    fn pick(request: PickRequest) -> Option<u32> {
        let latency = request.latency_avg_us.unwrap_or_default();
        let eligible = eligible(&request.eligible).filter(|&i| i < latency.len());
        let best = eligible.clone().map(|i| latency[i]).min()?;
        let tied: Vec<usize> = eligible.filter(|&i| latency[i] == best).collect();
        Some(tied[(request.sequence % tied.len() as u64) as usize] as u32)
    }
}

/// The members in a set: member i is bit (i mod 64) of word (i / 64).
fn eligible(set: &MemberSet) -> impl Iterator<Item = usize> + Clone + '_ {
    let words = match set {
        MemberSet::Word(word) => std::slice::from_ref(word),
        MemberSet::Words(words) => words.as_slice(),
    };
    (0..words.len() * 64).filter(move |&i| words[i / 64] >> (i % 64) & 1 == 1)
}

export!(LowestLatency);
