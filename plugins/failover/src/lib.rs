//! The `failover` strategy: lowest priority first, then name; unhealthy and tried members skipped.

wit_bindgen::generate!({ path: "../../wit", world: "strategy" });

hangar_plugin_algorithms::strategy_plugin!(|_, g| strategy::failover(g));
