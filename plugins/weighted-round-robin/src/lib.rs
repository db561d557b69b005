//! The `weighted-round-robin` strategy: smooth weighted round robin by each member's weight.

wit_bindgen::generate!({ path: "../../wit", world: "strategy" });

thread_local! {
    // A memo of the schedule for the last weight vector: a pure function of the input, so
    // pooled instances stay interchangeable.
    static SCHEDULE: std::cell::RefCell<hangar_plugin_algorithms::strategy::WeightedSchedule> = Default::default();
}

hangar_plugin_algorithms::strategy_plugin!(|r, g| SCHEDULE.with_borrow_mut(|s| s.pick(g, r.sequence)));
