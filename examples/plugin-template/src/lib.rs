//! `lowest-latency`: a Hangar strategy plugin. Sends each call to the healthy member with the
//! lowest average latency that this call has not tried yet; ties go round robin by the call's
//! sequence number. Start your own strategy from this file.
//!
//! Plugins are pure: everything that changes between calls (health, in-flight counts,
//! latencies, a sequence number, a random number) arrives in the arguments.

wit_bindgen::generate!({ path: "wit", world: "strategy" });

use exports::hangar::plugins::load_balancer::{Candidate, Guest, PickRequest};

struct LowestLatency;

impl Guest for LowestLatency {
    /// Called once per group, with the group's configuration; nothing to configure here.
    fn configure(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn pick(request: PickRequest, candidates: Vec<Candidate>) -> Option<u32> {
        let eligible = |c: &&Candidate| c.healthy && !request.tried.contains(&c.index);
        let best = candidates.iter().filter(eligible).map(|c| c.latency_avg_us).min()?;
        let tied: Vec<&Candidate> = candidates.iter().filter(eligible).filter(|c| c.latency_avg_us == best).collect();
        Some(tied[(request.sequence % tied.len() as u64) as usize].index)
    }
}

export!(LowestLatency);
