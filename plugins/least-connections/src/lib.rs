//! The `least-connections` strategy: fewest calls in flight; ties go round robin by sequence.

wit_bindgen::generate!({ path: "../../wit", world: "strategy" });

hangar_plugin_algorithms::strategy_plugin!(inputs: PickInputs::IN_FLIGHT, |r, g| strategy::least_connections(g, r.sequence));
