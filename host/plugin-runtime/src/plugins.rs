//! The typed faces of the worlds, each with the fallback DESIGN.md gives it: a strategy
//! that fails falls back to round robin over healthy members; a policy that fails denies (fails
//! closed) unless the resource says fail open; a discovery parser's failure is returned so the
//! source keeps its last good set; a ranker that fails is replaced by the built-in ranking.

use std::sync::Arc;

use hangar_plugin_algorithms::{
    search::{self, FieldBits},
    strategy::{self as algorithms, MemberSet, bits},
};

use crate::{
    Call, Caller, Decision, Document, MemberInfo, PickRequest, PluginError, PluginRuntime, PluginVersion,
    ServerDefinition, SourceKind,
    error::Fault,
    handle::Handle,
    plugin_use::PluginUse,
    world::{DiscoveryWorld, PolicyWorld, RankerWorld, StrategyConfig, StrategyWorld},
};

/// Bounds on answers that travel on: to a client (deny reasons), into the rate limiter, or into
/// the cluster (discovered servers become MCPServers).
pub const MAX_DENY_REASON_BYTES: usize = 4096;
pub const MAX_RATE_LIMITS: usize = 16;
pub const MAX_DISCOVERED_SERVERS: usize = 10_000;

/// A group's strategy; clones share one pool of instances.
#[derive(Clone)]
pub struct StrategyPlugin(Arc<PluginUse<StrategyWorld>>);

/// What a pick came to: the member, and the fault if the plugin failed and the fallback chose.
#[derive(Debug, PartialEq)]
pub struct Pick {
    pub index: Option<u32>,
    pub fault: Option<PluginError>,
}

impl StrategyPlugin {
    /// `members` are the group's, in the order every pick's lists follow. Fails when the plugin
    /// cannot be bound now.
    pub fn new(
        runtime: &PluginRuntime,
        name: &str,
        members: Vec<MemberInfo>,
        config: Vec<(String, String)>,
        pin: Option<&str>,
    ) -> Result<Self, PluginError> {
        PluginUse::new(runtime, name, StrategyConfig { members, config }, pin).map(|u| Self(Arc::new(u)))
    }

    /// As the gateway keeps a group's strategy: never fails. A plugin that cannot be bound (or
    /// whose `configure` faults) is named in the log and counted, the group's picks go to the
    /// round-robin fallback, and it is bound again once a new version is installed.
    pub fn resilient(
        runtime: &PluginRuntime,
        name: &str,
        members: Vec<MemberInfo>,
        config: Vec<(String, String)>,
        pin: Option<&str>,
    ) -> Self {
        Self(Arc::new(PluginUse::resilient(runtime, name, StrategyConfig { members, config }, pin)))
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    pub fn version(&self) -> Option<Arc<PluginVersion>> {
        self.0.handle().ok().and_then(|h| h.version())
    }

    /// Ok when the plugin is bound and not benched; else what is wrong (the group is served by
    /// the fallback meanwhile). Binds again first if a new version was installed.
    pub async fn health(&self) -> Result<(), PluginError> {
        self.0.rebind_off_worker().await;
        self.0.health()
    }

    /// The members given in `configure`; a pick's lists run parallel to them.
    pub fn members(&self) -> &[MemberInfo] {
        &self.0.config().members
    }

    /// What the plugin's `configure` asked each pick to carry besides the eligible members.
    pub fn asks_for(&self) -> Result<Vec<&'static str>, PluginError> {
        self.0.handle()?.call(|_, b| Ok(b.asked()))
    }

    /// The plugin's answer, checked: an index out of range, an unhealthy member, or a member
    /// already tried while others are left is a bad answer.
    pub fn try_pick(&self, request: &PickRequest) -> Result<Option<u32>, PluginError> {
        let handle = self.0.handle()?;
        let members = self.members();
        let eligible = eligible(members, request);
        let answer = handle.call(|store, b| b.pick(store, request, &eligible, members))?;
        let bad = |message: String| Err(handle.counted(Fault::BadAnswer, message));
        let checked = match answer {
            Some(i) if bits::contains(eligible.words(), i as usize) => Ok(Some(i)),
            None if bits::count(eligible.words()) > 0 => {
                bad("chose no member although a healthy, untried one was available".into())
            }
            None => Ok(None),
            Some(i) if i as usize >= members.len() => {
                bad(format!("chose member {i}, but there are only {}", members.len()))
            }
            Some(i) => bad(format!("chose member {i}, which is unhealthy or already tried")),
        };
        if checked.is_ok() {
            handle.succeeded();
        }
        checked
    }

    /// [`Self::try_pick`], falling back to round robin over healthy members when the plugin fails.
    pub fn pick(&self, request: &PickRequest) -> Pick {
        self.picked(self.try_pick(request), request)
    }

    /// [`Self::pick`] as the gateway makes it: on the plugin executor, never on an async worker.
    /// An unbound or benched plugin costs no trip to the executor.
    pub async fn pick_off_worker(&self, request: PickRequest) -> Pick {
        let request = Arc::new(request);
        let (plugin, job_request) = (self.clone(), request.clone());
        let answer = self.0.offload(move || plugin.try_pick(&job_request)).await;
        self.picked(answer.and_then(|r| r), &request)
    }

    fn picked(&self, answer: Result<Option<u32>, PluginError>, request: &PickRequest) -> Pick {
        match answer {
            Ok(index) => Pick { index, fault: None },
            Err(fault) => Pick { index: round_robin_fallback(self.members(), request), fault: Some(fault) },
        }
    }
}

/// The members `request` may go to (a member without a state is not one of them).
fn eligible(members: &[MemberInfo], request: &PickRequest) -> MemberSet {
    let states = &request.members[..members.len().min(request.members.len())];
    algorithms::eligible(states.len(), |i| states[i].healthy, |i| states[i].tried)
}

/// The safety net when a strategy plugin fails; the same algorithm as the round-robin plugin.
pub fn round_robin_fallback(members: &[MemberInfo], request: &PickRequest) -> Option<u32> {
    let eligible = eligible(members, request);
    algorithms::round_robin(&algorithms::View { members, eligible: eligible.words(), in_flight: &[] }, request.sequence)
}

/// A server's tool policy; clones share one pool of instances.
#[derive(Clone)]
pub struct PolicyPlugin {
    plugin: Arc<PluginUse<PolicyWorld>>,
    fail_open: bool,
}

impl PolicyPlugin {
    /// Fails when the plugin cannot be bound now.
    pub fn new(
        runtime: &PluginRuntime,
        name: &str,
        config: Vec<(String, String)>,
        pin: Option<&str>,
        fail_open: bool,
    ) -> Result<Self, PluginError> {
        Ok(Self { plugin: Arc::new(PluginUse::new(runtime, name, config, pin)?), fail_open })
    }

    /// As the gateway keeps a server's policy: never fails. While the plugin cannot be bound
    /// (named in the log and counted), the server's tools stay listed and its calls are refused
    /// naming why (or allowed, failing open); it is bound again once a new version is installed.
    pub fn resilient(
        runtime: &PluginRuntime,
        name: &str,
        config: Vec<(String, String)>,
        pin: Option<&str>,
        fail_open: bool,
    ) -> Self {
        Self { plugin: Arc::new(PluginUse::resilient(runtime, name, config, pin)), fail_open }
    }

    pub fn version(&self) -> Option<Arc<PluginVersion>> {
        self.plugin.handle().ok().and_then(|h| h.version())
    }

    /// Ok when the plugin is bound and not benched; else what is wrong.
    pub async fn health(&self) -> Result<(), PluginError> {
        self.plugin.rebind_off_worker().await;
        self.plugin.health()
    }

    /// The plugin's decision, checked: a deny reason goes to the client, so a huge one is a bad
    /// answer, not a message.
    pub fn try_check(&self, call: &Call) -> Result<Decision, PluginError> {
        let handle = self.plugin.handle()?;
        let checked = match handle.call(|store, b| b.check(store, call))? {
            Decision::Deny(reason) if reason.len() > MAX_DENY_REASON_BYTES => Err(handle.counted(
                Fault::BadAnswer,
                format!("a deny reason of {} bytes (at most {MAX_DENY_REASON_BYTES})", reason.len()),
            )),
            Decision::Allow(limits) if limits.len() > MAX_RATE_LIMITS => Err(handle.counted(
                Fault::BadAnswer,
                format!("{} rate limits for one call (at most {MAX_RATE_LIMITS})", limits.len()),
            )),
            decision => Ok(decision),
        };
        if checked.is_ok() {
            handle.succeeded();
        }
        checked
    }

    /// The decision; when the plugin fails, deny (or allow without limits if failing open).
    pub fn check(&self, call: &Call) -> (Decision, Option<PluginError>) {
        self.decided(self.try_check(call))
    }

    /// [`Self::check`] as the gateway makes it: on the plugin executor, never on an async worker.
    pub async fn check_off_worker(&self, call: Call) -> (Decision, Option<PluginError>) {
        let plugin = self.clone();
        self.decided(self.plugin.offload(move || plugin.try_check(&call)).await.and_then(|r| r))
    }

    fn decided(&self, answer: Result<Decision, PluginError>) -> (Decision, Option<PluginError>) {
        match answer {
            Ok(d) => (d, None),
            Err(e) if self.fail_open => (Decision::Allow(Vec::new()), Some(e)),
            Err(e) => {
                (Decision::Deny(format!("the tool policy failed, so the call is refused (fail closed): {e}")), Some(e))
            }
        }
    }

    /// [`Self::filter_tools`] as the gateway makes it: on the plugin executor. A plugin that
    /// cannot be bound hides nothing: the tools stay listed, and calls say why they are refused.
    pub async fn filter_tools_off_worker(
        &self,
        tools: Vec<String>,
        caller: Caller,
    ) -> (Vec<String>, Option<PluginError>) {
        self.plugin.rebind_off_worker().await;
        if let Err(e) = self.plugin.handle() {
            return (tools, Some(e));
        }
        let offered = Arc::new(tools);
        let (plugin, job_offered) = (self.clone(), offered.clone());
        match self.plugin.offload(move || plugin.filter_tools(job_offered.to_vec(), &caller)).await {
            Ok(answer) => answer,
            Err(e) if self.fail_open => (offered.to_vec(), Some(e)),
            Err(e) => (Vec::new(), Some(e)),
        }
    }

    /// The tools `tools/list` shows this caller; when the plugin fails, none (or all if failing open).
    pub fn filter_tools(&self, tools: Vec<String>, caller: &Caller) -> (Vec<String>, Option<PluginError>) {
        let handle = match self.plugin.handle() {
            Ok(handle) => handle,
            Err(e) => return (tools, Some(e)),
        };
        let answer = handle.call(|store, b| b.filter_tools(store, &tools, caller));
        // A policy may only hide tools, never invent them.
        let checked = answer.and_then(|visible| match visible.iter().find(|t| !tools.contains(t)) {
            Some(invented) => Err(handle.counted(
                Fault::BadAnswer,
                format!(
                    "answered {} tools of {} offered, among them {:.64?}, which was not offered",
                    visible.len(),
                    tools.len(),
                    invented
                ),
            )),
            None => Ok(visible),
        });
        match checked {
            Ok(visible) => {
                handle.succeeded();
                (visible, None)
            }
            Err(e) if self.fail_open => (tools, Some(e)),
            Err(e) => (Vec::new(), Some(e)),
        }
    }
}

/// A discovery source's parser.
pub struct DiscoveryPlugin(Handle<DiscoveryWorld>);

/// Why discovery produced nothing usable.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DiscoveryError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
}

impl DiscoveryPlugin {
    pub fn new(runtime: &PluginRuntime, name: &str, pin: Option<&str>) -> Result<Self, PluginError> {
        Handle::new(runtime, name, (), pin).map(Self)
    }

    pub fn parse(&self, kind: SourceKind, documents: &[Document]) -> Result<Vec<ServerDefinition>, DiscoveryError> {
        let servers = self
            .0
            .call(|store, b| b.parse(store, kind, documents))?
            .map_err(|e| DiscoveryError::Parse { origin: e.origin, message: e.message })?;
        if servers.len() > MAX_DISCOVERED_SERVERS {
            let message = format!("{} servers from one source (at most {MAX_DISCOVERED_SERVERS})", servers.len());
            return Err(self.0.counted(Fault::BadAnswer, message).into());
        }
        self.0.succeeded();
        Ok(servers)
    }
}

/// The tool-search ranker; clones share one pool of instances.
#[derive(Clone)]
pub struct RankerPlugin(Arc<PluginUse<RankerWorld>>);

/// A query as the ranker sees it: its text, content words and each word's rarity.
#[derive(Clone, Debug, Default)]
pub struct RankQuery {
    pub text: String,
    pub words: Vec<String>,
    pub idf: Vec<f32>,
}

impl RankerPlugin {
    /// Fails when the plugin cannot be bound now (`hangar plugin test`).
    pub fn new(runtime: &PluginRuntime, name: &str, config: Vec<(String, String)>) -> Result<Self, PluginError> {
        Ok(Self(Arc::new(PluginUse::new(runtime, name, config, None)?)))
    }

    /// As the gateway keeps it: never fails; while the plugin cannot be bound, or when it
    /// faults, the built-in ranking answers (the fault is logged and counted by the runtime).
    pub fn resilient(runtime: &PluginRuntime, name: &str, config: Vec<(String, String)>) -> Self {
        Self(Arc::new(PluginUse::resilient(runtime, name, config, None)))
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The terms to look up for the query's words, and the fault if the built-in ones stand in.
    pub async fn expand(&self, words: Vec<String>) -> (Vec<search::Term>, Option<PluginError>) {
        let (plugin, asked) = (self.clone(), words.clone());
        match self.0.offload(move || plugin.try_expand(&asked)).await.and_then(|r| r) {
            Ok(terms) => (terms, None),
            Err(e) => (search::DomainWords::default().expand(&words), Some(e)),
        }
    }

    /// The plugin's terms for the words, checked.
    pub fn try_expand(&self, words: &[String]) -> Result<Vec<search::Term>, PluginError> {
        let handle = self.0.handle()?;
        let terms = handle.call(|store, b| b.hangar_plugins_tool_ranker().call_expand(&mut *store, words))?;
        if terms.len() > search::MAX_TERMS || terms.iter().any(|t| t.stands_for as usize >= words.len()) {
            return Err(handle.counted(
                Fault::BadAnswer,
                format!(
                    "expanded {} words into {} terms (at most {}, each standing for one of the words)",
                    words.len(),
                    terms.len(),
                    search::MAX_TERMS
                ),
            ));
        }
        handle.succeeded();
        Ok(terms
            .into_iter()
            .map(|t| search::Term { word: t.word, stands_for: t.stands_for, weight: t.weight })
            .collect())
    }

    /// `(candidate index, score)` best first, only the candidates that fit; and the fault if the
    /// built-in ranking stands in.
    pub async fn rank(
        &self,
        query: RankQuery,
        candidates: Vec<search::Candidate>,
    ) -> (Vec<(u32, f32)>, Option<PluginError>) {
        let candidates = Arc::new(candidates);
        let (plugin, asked, job_candidates) = (self.clone(), query.clone(), candidates.clone());
        match self.0.offload(move || plugin.try_rank(&asked, &job_candidates)).await.and_then(|r| r) {
            Ok(ranked) => (ranked, None),
            Err(e) => {
                let words = search::DomainWords::default();
                (words.rank(&query.words, &query.idf, &candidates, &search::Tuning::default()), Some(e))
            }
        }
    }

    /// The plugin's ranking, checked.
    pub fn try_rank(
        &self,
        query: &RankQuery,
        candidates: &[search::Candidate],
    ) -> Result<Vec<(u32, f32)>, PluginError> {
        use crate::bindings::ranker as wit;
        let handle = self.0.handle()?;
        let wit_query = wit::Query { text: query.text.clone(), words: query.words.clone(), idf: query.idf.clone() };
        let wit_candidates: Vec<wit::Candidate> = candidates
            .iter()
            .map(|c| wit::Candidate {
                name: c.name.clone(),
                lexical_score: c.lexical_score,
                matched: c.matched.iter().map(|&b| wit::Fields::from_field_bits(b)).collect(),
            })
            .collect();
        let ranked = handle
            .call(|store, b| b.hangar_plugins_tool_ranker().call_rank(&mut *store, &wit_query, &wit_candidates))?;
        let mut seen = vec![false; candidates.len()];
        for r in &ranked {
            match seen.get_mut(r.candidate as usize) {
                Some(s) if !*s && r.score.is_finite() => *s = true,
                _ => {
                    return Err(handle.counted(
                        Fault::BadAnswer,
                        format!(
                            "ranked candidate {} of {} (each at most once, with a finite score)",
                            r.candidate,
                            candidates.len()
                        ),
                    ));
                }
            }
        }
        handle.succeeded();
        Ok(ranked.into_iter().map(|r| (r.candidate, r.score)).collect())
    }
}
