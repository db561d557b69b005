//! The `weighted-round-robin` strategy: smooth weighted round robin by each member's weight.

wit_bindgen::generate!({ path: "../../wit", world: "strategy" });

use exports::hangar::plugins::load_balancer::{Candidate, Guest, PickRequest};
use hangar_plugin_algorithms::strategy;

hangar_plugin_algorithms::impl_member_for_wit_candidate!(Candidate);

thread_local! {
    // A memo of the schedule for the last weight vector: a pure function of the input, so
    // pooled instances stay interchangeable.
    static SCHEDULE: std::cell::RefCell<strategy::WeightedSchedule> = Default::default();
}

struct Plugin;

impl Guest for Plugin {
    fn configure(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn pick(request: PickRequest, candidates: Vec<Candidate>) -> Option<u32> {
        SCHEDULE
            .with_borrow_mut(|s| s.pick(&candidates, &request.tried, request.sequence))
            .map(|i| candidates[i as usize].index)
    }
}

export!(Plugin);
