//! The `namespace` discovery parser: ConfigMaps labelled `mcp-hangar.io/providers` (documents
//! with a key) are read like the `configmap` parser; Services annotated
//! `mcp-hangar.io/mcp-server` (documents without a key) become remote servers.

wit_bindgen::generate!({ path: "../../wit", world: "discovery" });

hangar_plugin_algorithms::discovery_plugin!(services: true);
