//! The `round-robin` strategy: call `sequence` goes to eligible member `sequence mod n`.

wit_bindgen::generate!({ path: "../../wit", world: "strategy" });

hangar_plugin_algorithms::strategy_plugin!(|r, g| strategy::round_robin(g, r.sequence));
