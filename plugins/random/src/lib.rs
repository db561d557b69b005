//! The `random` strategy: a uniformly random eligible member, from the host's random number.

wit_bindgen::generate!({ path: "../../wit", world: "strategy" });

hangar_plugin_algorithms::strategy_plugin!(|r, g| strategy::random(g, r.random));
