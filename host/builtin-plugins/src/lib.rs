//! Hangar's built-in plugins (round-robin, least-connections, random, failover,
//! weighted-round-robin, policy, configmap, namespace, ranker) as WebAssembly component bytes. They are
//! built from `plugins/` by this crate's build script and loaded through the same runtime path
//! as a user's plugin.

/// One embedded plugin.
#[derive(Clone, Copy, Debug)]
pub struct Builtin {
    /// The name resources use to refer to it.
    pub name: &'static str,
    /// The WIT world it implements: `strategy`, `policy`, `discovery` or `ranker`.
    pub world: &'static str,
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The plugin a group's `strategy` names: the guide's names map to the built-ins; anything else
/// is taken as a plugin's own name.
pub fn strategy_plugin_name(strategy: &str) -> &str {
    match strategy {
        "RoundRobin" => "round-robin",
        "LeastConnections" => "least-connections",
        "Random" => "random",
        "Failover" => "failover",
        "WeightedRoundRobin" => "weighted-round-robin",
        other => other,
    }
}

/// The default tool policy's name.
pub const DEFAULT_POLICY: &str = "policy";

/// The default tool-search ranker's name.
pub const DEFAULT_RANKER: &str = "ranker";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_is_an_embedded_component() {
        assert_eq!(BUILTINS.len(), 9);
        for b in BUILTINS {
            // Component binary: magic, then layer 1 (component) version 0x0d.
            assert_eq!(&b.bytes[..4], b"\0asm", "{}", b.name);
            assert_eq!(&b.bytes[4..8], &[0x0d, 0x00, 0x01, 0x00], "{} is a component, not a core module", b.name);
        }
    }

    #[test]
    fn guide_strategy_names_map_to_builtins() {
        for s in ["RoundRobin", "LeastConnections", "Random", "Failover"] {
            let name = strategy_plugin_name(s);
            assert!(BUILTINS.iter().any(|b| b.name == name && b.world == "strategy"), "{s}");
        }
        assert_eq!(strategy_plugin_name("my-custom"), "my-custom");
    }
}
