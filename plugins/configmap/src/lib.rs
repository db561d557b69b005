//! The `configmap` discovery parser: each document is a ConfigMap entry holding a map of entry
//! name → MCPServer spec (format in `hangar_plugin_algorithms::discovery`).

wit_bindgen::generate!({ path: "../../wit", world: "discovery" });

hangar_plugin_algorithms::discovery_plugin!(services: false);
