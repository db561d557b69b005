//! The `failover` strategy: lowest priority first, then name; unhealthy and tried members skipped.

wit_bindgen::generate!({ path: "../../wit", world: "strategy" });

use exports::hangar::plugins::load_balancer::{Candidate, Guest, PickRequest};
use hangar_plugin_algorithms::strategy;

hangar_plugin_algorithms::impl_member_for_wit_candidate!(Candidate);

struct Plugin;

impl Guest for Plugin {
    fn configure(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn pick(request: PickRequest, candidates: Vec<Candidate>) -> Option<u32> {
        strategy::failover(&candidates, &request.tried).map(|i| candidates[i as usize].index)
    }
}

export!(Plugin);
