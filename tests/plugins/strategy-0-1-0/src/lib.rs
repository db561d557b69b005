//! Round robin over healthy, untried candidates, written against `hangar:plugins@0.1.0`
//! (candidates as records on every pick).

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "strategy" });

use exports::hangar::plugins::load_balancer::{Candidate, Guest, PickRequest};

struct Plugin;

impl Guest for Plugin {
    fn configure(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn pick(request: PickRequest, candidates: Vec<Candidate>) -> Option<u32> {
        let fresh: Vec<&Candidate> =
            candidates.iter().filter(|c| c.healthy && !request.tried.contains(&c.index)).collect();
        let eligible = match fresh.is_empty() {
            // Every healthy member was tried: only a lone healthy member may be tried again.
            true => candidates.iter().filter(|c| c.healthy).collect::<Vec<_>>(),
            false => fresh,
        };
        if eligible.is_empty() || (eligible.len() > 1 && eligible.iter().all(|c| request.tried.contains(&c.index))) {
            return None;
        }
        Some(eligible[(request.sequence % eligible.len() as u64) as usize].index)
    }
}

export!(Plugin);
