//! The plugin worlds: how each is recognised in a component, instantiated, configured and
//! called. The strategy, policy and discovery worlds in the current WIT version (0.2.0) and in the
//! previous one (0.1.0); the ranker world, new in 0.3.0, in that. The host adapts 0.1.0:
//! a 0.1.0 strategy gets its members back as `candidate` records on every pick, a 0.1.0 policy
//! gets the caller's subject as its `caller` string.

use hangar_plugin_algorithms::strategy::{MemberInfo, MemberSet};
use wasmtime::Store;

use crate::{
    PluginVersion,
    bindings::{discovery, policy, ranker, strategy, v0_1_0},
    host::HostState,
};

/// A resource's configuration for a plugin (`types.config` in the WIT).
pub type PluginConfig = Vec<(String, String)>;

/// The WIT package version this host speaks; plugins are built against it.
pub const WIT_VERSION: &str = "0.2.0";

/// The WIT package version of the ranker world (new in it; the other worlds did not change).
pub const RANKER_WIT_VERSION: &str = "0.3.0";

/// The versions of `hangar:plugins` whose plugins this host loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Abi {
    /// `hangar:plugins@0.2.0`, the current one.
    Current,
    /// `hangar:plugins@0.1.0`, adapted call by call.
    V0_1_0,
    /// `hangar:plugins@0.3.0`: so far only its new `ranker` world is loaded.
    V0_3_0,
}

impl Abi {
    pub fn from_version(version: &str) -> Option<Self> {
        match version {
            WIT_VERSION => Some(Abi::Current),
            "0.1.0" => Some(Abi::V0_1_0),
            RANKER_WIT_VERSION => Some(Abi::V0_3_0),
            _ => None,
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Abi::Current => WIT_VERSION,
            Abi::V0_1_0 => "0.1.0",
            Abi::V0_3_0 => RANKER_WIT_VERSION,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorldKind {
    Strategy,
    Policy,
    Discovery,
    Ranker,
}

impl WorldKind {
    pub const ALL: [WorldKind; 4] = [WorldKind::Strategy, WorldKind::Policy, WorldKind::Discovery, WorldKind::Ranker];

    pub fn as_str(self) -> &'static str {
        match self {
            WorldKind::Strategy => "strategy",
            WorldKind::Policy => "policy",
            WorldKind::Discovery => "discovery",
            WorldKind::Ranker => "ranker",
        }
    }

    /// The interface the world exports, without version: `hangar:plugins/load-balancer`.
    pub fn export_interface(self) -> &'static str {
        match self {
            WorldKind::Strategy => "hangar:plugins/load-balancer",
            WorldKind::Policy => "hangar:plugins/tool-policy",
            WorldKind::Discovery => "hangar:plugins/source-parser",
            WorldKind::Ranker => "hangar:plugins/tool-ranker",
        }
    }

    /// The WIT versions in which the world exists: the ranker only from 0.3.0, the others up to 0.2.0.
    pub fn exists_in(self, abi: Abi) -> bool {
        (self == WorldKind::Ranker) == (abi == Abi::V0_3_0)
    }

    /// The newest WIT version of the world, to build a plugin against.
    pub fn wit_version(self) -> &'static str {
        if self == WorldKind::Ranker { RANKER_WIT_VERSION } else { WIT_VERSION }
    }
}

/// A world's generated bindings, as the generic instance pool uses them.
pub(crate) trait World: Send + Sync + 'static {
    const KIND: WorldKind;
    /// What a resource configures the plugin with.
    type Config: Clone + Send + Sync + 'static;
    type Bindings: Send + 'static;
    fn instantiate(store: &mut Store<HostState>, version: &PluginVersion) -> wasmtime::Result<Self::Bindings>;
    /// Hands the resource's configuration to a fresh instance.
    fn configure(
        store: &mut Store<HostState>,
        bindings: &mut Self::Bindings,
        config: &Self::Config,
    ) -> wasmtime::Result<Result<(), String>>;
}

/// A world asked for in a WIT version that does not have it ([`WorldKind::exists_in`] keeps
/// such components from loading, so this is a second line).
fn absent<T>(kind: WorldKind, abi: Abi) -> wasmtime::Result<T> {
    wasmtime::bail!("the {} world does not exist in hangar:plugins@{}", kind.as_str(), abi.version())
}

pub(crate) struct StrategyWorld;
pub(crate) struct PolicyWorld;
pub(crate) struct DiscoveryWorld;
pub(crate) struct RankerWorld;

/// A group's configuration of its strategy: its members (their fixed facts) and
/// `spec.strategyConfig`.
#[derive(Clone)]
pub struct StrategyConfig {
    pub members: Vec<MemberInfo>,
    pub config: PluginConfig,
}

pub(crate) enum StrategyBindings {
    /// With what the plugin's `configure` asked each pick to carry.
    Current(strategy::Strategy, strategy::PickInputs),
    V0_1_0(v0_1_0::strategy::Strategy),
}

/// One member's state at a pick, as the host knows it. The current WIT passes the plugin the
/// eligible set made from `healthy` and `tried`, and the numbers it asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberState {
    /// Ready or Degraded, circuit closed, registered.
    pub healthy: bool,
    /// Already tried (and failed) in this call.
    pub tried: bool,
    pub in_flight: u32,
    pub latency_avg_us: u64,
    /// Only 0.1.0 plugins see it (0.2.0 folds failures into health and latency).
    pub consecutive_failures: u32,
}

/// A pick as the gateway asks for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PickRequest {
    pub tool: String,
    pub sequence: u64,
    pub random: u64,
    pub attempt: u32,
    /// Parallel to the members the strategy was configured with.
    pub members: Vec<MemberState>,
}

impl World for StrategyWorld {
    const KIND: WorldKind = WorldKind::Strategy;
    type Config = StrategyConfig;
    type Bindings = StrategyBindings;
    fn instantiate(store: &mut Store<HostState>, version: &PluginVersion) -> wasmtime::Result<Self::Bindings> {
        Ok(match version.abi {
            Abi::Current => StrategyBindings::Current(
                strategy::StrategyPre::new(version.pre.clone())?.instantiate(store)?,
                strategy::PickInputs::empty(),
            ),
            Abi::V0_1_0 => {
                StrategyBindings::V0_1_0(v0_1_0::strategy::StrategyPre::new(version.pre.clone())?.instantiate(store)?)
            }
            Abi::V0_3_0 => return absent(Self::KIND, version.abi),
        })
    }
    fn configure(
        store: &mut Store<HostState>,
        b: &mut Self::Bindings,
        config: &StrategyConfig,
    ) -> wasmtime::Result<Result<(), String>> {
        match b {
            StrategyBindings::Current(b, inputs) => {
                let members: Vec<strategy::Member> = config
                    .members
                    .iter()
                    .map(|m| strategy::Member { name: m.name.clone(), priority: m.priority, weight: m.weight })
                    .collect();
                Ok(b.hangar_plugins_load_balancer().call_configure(store, &members, &config.config)?.map(|asked| {
                    *inputs = asked;
                }))
            }
            StrategyBindings::V0_1_0(b) => b.hangar_plugins_load_balancer().call_configure(store, &config.config),
        }
    }
}

impl StrategyBindings {
    /// What each pick carries besides the eligible members, as the WIT names it.
    pub(crate) fn asked(&self) -> Vec<&'static str> {
        use strategy::PickInputs as Asked;
        match self {
            StrategyBindings::Current(_, asked) => {
                [(Asked::TOOL, "tool"), (Asked::IN_FLIGHT, "in-flight"), (Asked::LATENCY, "latency")]
                    .into_iter()
                    .filter(|(flag, _)| asked.contains(*flag))
                    .map(|(_, name)| name)
                    .collect()
            }
            StrategyBindings::V0_1_0(_) => vec!["every member's full state (0.1.0)"],
        }
    }

    /// `eligible` is made from `request`'s states (it travels instead of them in the current WIT).
    pub(crate) fn pick(
        &self,
        store: &mut Store<HostState>,
        request: &PickRequest,
        eligible: &MemberSet,
        members: &[MemberInfo],
    ) -> wasmtime::Result<Option<u32>> {
        use strategy::PickInputs as Asked;
        match self {
            StrategyBindings::Current(b, asked) => {
                let states = &request.members[..members.len().min(request.members.len())];
                let wit = strategy::PickRequest {
                    sequence: request.sequence,
                    random: request.random,
                    attempt: request.attempt,
                    eligible: eligible.clone().into(),
                    tool: asked.contains(Asked::TOOL).then(|| request.tool.clone()),
                    in_flight: asked.contains(Asked::IN_FLIGHT).then(|| states.iter().map(|s| s.in_flight).collect()),
                    latency_avg_us: asked
                        .contains(Asked::LATENCY)
                        .then(|| states.iter().map(|s| s.latency_avg_us).collect()),
                };
                b.hangar_plugins_load_balancer().call_pick(store, &wit)
            }
            StrategyBindings::V0_1_0(b) => {
                let candidates: Vec<v0_1_0::strategy::Candidate> = members
                    .iter()
                    .zip(&request.members)
                    .enumerate()
                    .map(|(i, (m, s))| v0_1_0::strategy::Candidate {
                        index: i as u32,
                        name: m.name.clone(),
                        healthy: s.healthy,
                        in_flight: s.in_flight,
                        latency_avg_us: s.latency_avg_us,
                        consecutive_failures: s.consecutive_failures,
                        priority: m.priority,
                        weight: m.weight,
                    })
                    .collect();
                let tried = request.members.iter().enumerate().filter(|(_, s)| s.tried).map(|(i, _)| i as u32);
                let old = v0_1_0::strategy::PickRequest {
                    tool: request.tool.clone(),
                    sequence: request.sequence,
                    random: request.random,
                    attempt: request.attempt,
                    tried: tried.collect(),
                };
                b.hangar_plugins_load_balancer().call_pick(store, &old, &candidates)
            }
        }
    }
}

pub(crate) enum PolicyBindings {
    Current(policy::Policy),
    V0_1_0(v0_1_0::policy::Policy),
}

impl World for PolicyWorld {
    const KIND: WorldKind = WorldKind::Policy;
    type Config = PluginConfig;
    type Bindings = PolicyBindings;
    fn instantiate(store: &mut Store<HostState>, version: &PluginVersion) -> wasmtime::Result<Self::Bindings> {
        Ok(match version.abi {
            Abi::Current => PolicyBindings::Current(policy::PolicyPre::new(version.pre.clone())?.instantiate(store)?),
            Abi::V0_1_0 => {
                PolicyBindings::V0_1_0(v0_1_0::policy::PolicyPre::new(version.pre.clone())?.instantiate(store)?)
            }
            Abi::V0_3_0 => return absent(Self::KIND, version.abi),
        })
    }
    fn configure(
        store: &mut Store<HostState>,
        b: &mut Self::Bindings,
        config: &PluginConfig,
    ) -> wasmtime::Result<Result<(), String>> {
        match b {
            PolicyBindings::Current(b) => b.hangar_plugins_tool_policy().call_configure(store, config),
            PolicyBindings::V0_1_0(b) => b.hangar_plugins_tool_policy().call_configure(store, config),
        }
    }
}

impl PolicyBindings {
    pub(crate) fn check(
        &self,
        store: &mut Store<HostState>,
        call: &policy::Call,
    ) -> wasmtime::Result<policy::Decision> {
        match self {
            PolicyBindings::Current(b) => b.hangar_plugins_tool_policy().call_check(store, call),
            PolicyBindings::V0_1_0(b) => {
                let old = v0_1_0::policy::Call {
                    server: call.server.clone(),
                    tool: call.tool.clone(),
                    caller: call.caller.subject.clone(),
                    argument_bytes: call.argument_bytes,
                };
                Ok(match b.hangar_plugins_tool_policy().call_check(store, &old)? {
                    v0_1_0::policy::Decision::Deny(why) => policy::Decision::Deny(why),
                    v0_1_0::policy::Decision::Allow(limits) => policy::Decision::Allow(
                        limits
                            .into_iter()
                            .map(|l| policy::RateLimit {
                                key: l.key,
                                requests_per_minute: l.requests_per_minute,
                                burst: l.burst,
                            })
                            .collect(),
                    ),
                })
            }
        }
    }

    pub(crate) fn filter_tools(
        &self,
        store: &mut Store<HostState>,
        tools: &[String],
        caller: &policy::Caller,
    ) -> wasmtime::Result<Vec<String>> {
        match self {
            PolicyBindings::Current(b) => b.hangar_plugins_tool_policy().call_filter_tools(store, tools, caller),
            // 0.1.0 lists the same tools for every caller.
            PolicyBindings::V0_1_0(b) => b.hangar_plugins_tool_policy().call_filter_tools(store, tools),
        }
    }
}

pub(crate) enum DiscoveryBindings {
    Current(discovery::Discovery),
    V0_1_0(v0_1_0::discovery::Discovery),
}

impl World for DiscoveryWorld {
    const KIND: WorldKind = WorldKind::Discovery;
    type Config = ();
    type Bindings = DiscoveryBindings;
    fn instantiate(store: &mut Store<HostState>, version: &PluginVersion) -> wasmtime::Result<Self::Bindings> {
        Ok(match version.abi {
            Abi::Current => {
                DiscoveryBindings::Current(discovery::DiscoveryPre::new(version.pre.clone())?.instantiate(store)?)
            }
            Abi::V0_1_0 => DiscoveryBindings::V0_1_0(
                v0_1_0::discovery::DiscoveryPre::new(version.pre.clone())?.instantiate(store)?,
            ),
            Abi::V0_3_0 => return absent(Self::KIND, version.abi),
        })
    }
    fn configure(_: &mut Store<HostState>, _: &mut Self::Bindings, _: &()) -> wasmtime::Result<Result<(), String>> {
        Ok(Ok(()))
    }
}

impl DiscoveryBindings {
    pub(crate) fn parse(
        &self,
        store: &mut Store<HostState>,
        kind: discovery::SourceKind,
        documents: &[discovery::Document],
    ) -> wasmtime::Result<Result<Vec<discovery::ServerDefinition>, discovery::ParseError>> {
        match self {
            DiscoveryBindings::Current(b) => b.hangar_plugins_source_parser().call_parse(store, kind, documents),
            DiscoveryBindings::V0_1_0(b) => {
                use v0_1_0::discovery as old;
                let kind = match kind {
                    discovery::SourceKind::ConfigMap => old::SourceKind::ConfigMap,
                    discovery::SourceKind::Namespace => old::SourceKind::Namespace,
                };
                let documents: Vec<old::Document> = documents
                    .iter()
                    .map(|d| old::Document {
                        origin: d.origin.clone(),
                        namespace: d.namespace.clone(),
                        name: d.name.clone(),
                        key: d.key.clone(),
                        content: d.content.clone(),
                    })
                    .collect();
                Ok(b.hangar_plugins_source_parser()
                    .call_parse(store, kind, &documents)?
                    .map(|servers| {
                        servers
                            .into_iter()
                            .map(|s| discovery::ServerDefinition {
                                name: s.name,
                                namespace: s.namespace,
                                labels: s.labels,
                                spec_json: s.spec_json,
                            })
                            .collect()
                    })
                    .map_err(|e| discovery::ParseError { origin: e.origin, message: e.message }))
            }
        }
    }
}

/// The ranker's configuration is its `config` list.
impl World for RankerWorld {
    const KIND: WorldKind = WorldKind::Ranker;
    type Config = PluginConfig;
    type Bindings = ranker::Ranker;
    fn instantiate(store: &mut Store<HostState>, version: &PluginVersion) -> wasmtime::Result<Self::Bindings> {
        match version.abi {
            Abi::V0_3_0 => ranker::RankerPre::new(version.pre.clone())?.instantiate(store),
            abi => absent(Self::KIND, abi),
        }
    }
    fn configure(
        store: &mut Store<HostState>,
        b: &mut Self::Bindings,
        config: &PluginConfig,
    ) -> wasmtime::Result<Result<(), String>> {
        b.hangar_plugins_tool_ranker().call_configure(store, config)
    }
}
