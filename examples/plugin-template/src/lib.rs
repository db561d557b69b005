//! `lowest-latency`: a Hangar strategy plugin. Sends each call to the healthy member with the
//! lowest average latency that this call has not tried yet; ties go round robin by the call's
//! sequence number. Start your own strategy from this file.
//!
//! Plugins are pure: the group's members arrive once in `configure`; everything that changes
//! between calls (health, in-flight counts, latencies, a sequence number, a random number)
//! arrives in `pick`, as a list of member states parallel to the members.

wit_bindgen::generate!({ path: "wit", world: "strategy" });

use exports::hangar::plugins::load_balancer::{Guest, Member, MemberState, PickRequest};

struct LowestLatency;

impl Guest for LowestLatency {
    /// Called once per group (and when its members change) with the members and the group's
    /// `spec.strategyConfig`. This strategy needs neither: member i is simply index i in `pick`.
    fn configure(_members: Vec<Member>, _config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn pick(request: PickRequest) -> Option<u32> {
        let eligible: Vec<(u32, &MemberState)> =
            (0..).zip(&request.members).filter(|(_, m)| m.healthy && !m.tried).collect();
        let best = eligible.iter().map(|(_, m)| m.latency_avg_us).min()?;
        let tied: Vec<u32> = eligible.iter().filter(|(_, m)| m.latency_avg_us == best).map(|(i, _)| *i).collect();
        Some(tied[(request.sequence % tied.len() as u64) as usize])
    }
}

export!(LowestLatency);
