//! The three plugin worlds: how each is recognised in a component, instantiated and configured.

use wasmtime::{Store, component::InstancePre};

use crate::{
    bindings::{discovery, policy, strategy},
    host::HostState,
};

/// A resource's configuration for a plugin (`types.config` in the WIT).
pub type PluginConfig = Vec<(String, String)>;

/// The WIT package version this host speaks.
pub const WIT_VERSION: &str = "0.1.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorldKind {
    Strategy,
    Policy,
    Discovery,
}

impl WorldKind {
    pub const ALL: [WorldKind; 3] = [WorldKind::Strategy, WorldKind::Policy, WorldKind::Discovery];

    pub fn as_str(self) -> &'static str {
        match self {
            WorldKind::Strategy => "strategy",
            WorldKind::Policy => "policy",
            WorldKind::Discovery => "discovery",
        }
    }

    /// The interface the world exports, without version: `hangar:plugins/load-balancer`.
    pub fn export_interface(self) -> &'static str {
        match self {
            WorldKind::Strategy => "hangar:plugins/load-balancer",
            WorldKind::Policy => "hangar:plugins/tool-policy",
            WorldKind::Discovery => "hangar:plugins/source-parser",
        }
    }
}

/// A world's generated bindings, as the generic instance pool uses them.
pub(crate) trait World: Send + Sync + 'static {
    const KIND: WorldKind;
    type Bindings: Send + 'static;
    fn instantiate(store: &mut Store<HostState>, pre: &InstancePre<HostState>) -> wasmtime::Result<Self::Bindings>;
    /// Hands the resource's configuration to a fresh instance.
    fn configure(
        store: &mut Store<HostState>,
        bindings: &Self::Bindings,
        config: &PluginConfig,
    ) -> wasmtime::Result<Result<(), String>>;
}

pub(crate) struct StrategyWorld;
pub(crate) struct PolicyWorld;
pub(crate) struct DiscoveryWorld;

impl World for StrategyWorld {
    const KIND: WorldKind = WorldKind::Strategy;
    type Bindings = strategy::Strategy;
    fn instantiate(store: &mut Store<HostState>, pre: &InstancePre<HostState>) -> wasmtime::Result<Self::Bindings> {
        strategy::StrategyPre::new(pre.clone())?.instantiate(store)
    }
    fn configure(
        store: &mut Store<HostState>,
        b: &Self::Bindings,
        config: &PluginConfig,
    ) -> wasmtime::Result<Result<(), String>> {
        b.hangar_plugins_load_balancer().call_configure(store, config)
    }
}

impl World for PolicyWorld {
    const KIND: WorldKind = WorldKind::Policy;
    type Bindings = policy::Policy;
    fn instantiate(store: &mut Store<HostState>, pre: &InstancePre<HostState>) -> wasmtime::Result<Self::Bindings> {
        policy::PolicyPre::new(pre.clone())?.instantiate(store)
    }
    fn configure(
        store: &mut Store<HostState>,
        b: &Self::Bindings,
        config: &PluginConfig,
    ) -> wasmtime::Result<Result<(), String>> {
        b.hangar_plugins_tool_policy().call_configure(store, config)
    }
}

impl World for DiscoveryWorld {
    const KIND: WorldKind = WorldKind::Discovery;
    type Bindings = discovery::Discovery;
    fn instantiate(store: &mut Store<HostState>, pre: &InstancePre<HostState>) -> wasmtime::Result<Self::Bindings> {
        discovery::DiscoveryPre::new(pre.clone())?.instantiate(store)
    }
    fn configure(
        _: &mut Store<HostState>,
        _: &Self::Bindings,
        _: &PluginConfig,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(Ok(()))
    }
}
