//! What tool search keeps between requests: its settings, the index over every tool (rebuilt
//! when a tool list changes), the ranker plugin, its metrics, and each caller's last results
//! (only to measure where the tool called next ranked; no request depends on them, so a search
//! and the call after it may land on different replicas).

use std::{
    collections::HashMap,
    str::FromStr,
    sync::{
        Arc, Mutex, OnceLock, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hangar_plugin_runtime::{PluginRuntime, RankerPlugin};
use hangar_tool_search::Index;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use serde_json::Value;

/// When `tools/list` offers search instead of the whole catalogue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Every tool is listed; no search tools (the default).
    #[default]
    Off,
    /// `search_tools`, `call_tool` and the pinned tools are listed, whatever the catalogue.
    On,
    /// As `on` for a caller who may see more than `max_tools` tools, else as `off` (the search
    /// tools can still be called).
    Auto,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Mode::Off),
            "on" => Ok(Mode::On),
            "auto" => Ok(Mode::Auto),
            other => Err(format!("tool search mode {other:?}: use off, on or auto")),
        }
    }
}

/// Tool search settings (`--tool-search*`, chart `core.toolSearch`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
    /// `auto` searches when a caller's catalogue has more tools than this.
    pub max_tools: usize,
    /// Tools (names as callers see them, globs allowed) listed beside the search tools.
    pub pinned: Vec<String>,
    /// The ranker plugin's name and configuration.
    pub ranker: String,
    pub ranker_config: Vec<(String, String)>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::Off,
            max_tools: 40,
            pinned: Vec::new(),
            ranker: hangar_builtin_plugins::DEFAULT_RANKER.to_string(),
            ranker_config: Vec::new(),
        }
    }
}

/// The names of Hangar's own search tools: a server's tool of one of these names keeps its
/// prefix while search is on, like any clash.
pub const SEARCH_TOOL: &str = "search_tools";
pub const CALL_TOOL: &str = "call_tool";

/// How long a caller's last results are kept to see whether it calls one of them.
const RESULTS_KEPT_FOR: Duration = Duration::from_secs(600);
/// Callers whose last results are kept at most (the oldest go first).
const MOST_CALLERS_KEPT: usize = 10_000;

/// The tools a caller may see, by the names it sees them under, and where each is in the index.
pub struct VisibleTools {
    pub index: Arc<Index>,
    pub names: Vec<String>,
    /// Parallel to `names`.
    pub ids: Vec<Option<u32>>,
    /// Per index entry: whether the caller may see it.
    pub seen: Vec<bool>,
    /// Index entry → its position in `names`.
    pub position: HashMap<u32, usize>,
}

impl VisibleTools {
    /// The definition of the `i`th visible tool, under the name the caller sees.
    pub fn definition(&self, i: usize) -> Option<Value> {
        let mut tool = self.index.doc(self.ids[i]?).tool.clone();
        tool["name"] = Value::String(self.names[i].clone());
        Some(tool)
    }
}

/// Visible tools with the catalogue generation and plugin installs they were decided at.
type DecidedVisible = (u64, u64, Arc<VisibleTools>);

/// Callers whose visible tools are kept at most (all are dropped when it is reached).
const MOST_CALLERS_SEEN: usize = 1024;

pub struct ToolSearch {
    settings: RwLock<Settings>,
    /// Bumped whenever a tool list changes; the index is rebuilt on the next search.
    generation: AtomicU64,
    index: Mutex<Option<(u64, Arc<Index>)>>,
    ranker: OnceLock<RankerPlugin>,
    last_results: Mutex<HashMap<String, (Instant, Vec<String>)>>,
    /// Per caller: its visible tools, with the catalogue generation and plugin installs they
    /// were decided at (the policies are pure functions of the caller, the tools and the plugin).
    visible: Mutex<HashMap<String, DecidedVisible>>,
    pub metrics: SearchMetrics,
}

impl ToolSearch {
    pub(crate) fn new(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            settings: RwLock::default(),
            generation: AtomicU64::new(1),
            index: Mutex::default(),
            ranker: OnceLock::new(),
            last_results: Mutex::default(),
            visible: Mutex::default(),
            metrics: SearchMetrics::new(registry)?,
        })
    }

    pub fn settings(&self) -> Settings {
        self.settings.read().unwrap().clone()
    }

    pub(crate) fn set(&self, settings: Settings) {
        *self.settings.write().unwrap() = settings;
    }

    pub(crate) fn enabled(&self) -> bool {
        self.settings.read().unwrap().mode != Mode::Off
    }

    pub(crate) fn catalogue_changed(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// The index of the current catalogue: the one built for it, or one built now by `build`.
    pub(crate) fn index(&self, build: impl FnOnce() -> Index) -> Arc<Index> {
        let generation = self.generation.load(Ordering::Relaxed);
        let mut cached = self.index.lock().unwrap();
        match &*cached {
            Some((built_for, index)) if *built_for == generation => index.clone(),
            _ => {
                let started = Instant::now();
                let index = Arc::new(build());
                tracing::debug!(tools = index.len(), took = ?started.elapsed(), "tool search index built");
                *cached = Some((generation, index.clone()));
                index
            }
        }
    }

    /// A caller's visible tools as decided at this catalogue and these plugins, if they were.
    pub(crate) fn visible_of(&self, caller: &str, installs: u64) -> Option<Arc<VisibleTools>> {
        let generation = self.generation.load(Ordering::Relaxed);
        let kept = self.visible.lock().unwrap();
        kept.get(caller).filter(|(g, i, _)| (*g, *i) == (generation, installs)).map(|(_, _, v)| v.clone())
    }

    /// Keeps a caller's visible tools, decided at `generation` and `installs`.
    pub(crate) fn keep_visible(&self, caller: String, generation: u64, installs: u64, visible: Arc<VisibleTools>) {
        let mut kept = self.visible.lock().unwrap();
        if kept.len() >= MOST_CALLERS_SEEN {
            kept.clear();
        }
        kept.insert(caller, (generation, installs, visible));
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub(crate) fn ranker(&self, plugins: &PluginRuntime) -> &RankerPlugin {
        self.ranker.get_or_init(|| {
            let settings = self.settings();
            RankerPlugin::resilient(plugins, &settings.ranker, settings.ranker_config)
        })
    }

    /// Keeps a caller's results, to see where the tool it calls next ranked.
    pub(crate) fn remember(&self, caller: String, names: Vec<String>) {
        let mut kept = self.last_results.lock().unwrap();
        if kept.len() >= MOST_CALLERS_KEPT {
            kept.retain(|_, (at, _)| at.elapsed() < RESULTS_KEPT_FOR);
            if kept.len() >= MOST_CALLERS_KEPT
                && let Some(oldest) = kept.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
            {
                kept.remove(&oldest);
            }
        }
        kept.insert(caller, (Instant::now(), names));
    }

    /// A caller called `tool`: counts where it ranked in the caller's last results, if it searched.
    pub(crate) fn called(&self, caller: &str, tool: &str) {
        let Some((at, names)) = self.last_results.lock().unwrap().remove(caller) else { return };
        if at.elapsed() >= RESULTS_KEPT_FOR {
            return;
        }
        match names.iter().position(|n| n == tool) {
            Some(i) => {
                self.metrics.next_call.with_label_values(&["in_results"]).inc();
                self.metrics.called_rank.observe((i + 1) as f64);
            }
            None => self.metrics.next_call.with_label_values(&["not_in_results"]).inc(),
        }
    }
}

#[derive(Clone)]
pub struct SearchMetrics {
    /// `hangar_tool_search_queries_total{outcome}`: found, empty (no tool fits), invalid.
    pub queries: IntCounterVec,
    /// `hangar_tool_search_duration_seconds`: a search from query to answer.
    pub duration: Histogram,
    /// `hangar_tool_search_called_rank`: the rank (1 = first) of the tool a caller called next
    /// among its last search's results: a recall proxy.
    pub called_rank: Histogram,
    /// `hangar_tool_search_next_calls_total{outcome}`: after a search, whether the next call's
    /// tool was among the results (in_results, not_in_results).
    pub next_call: IntCounterVec,
}

impl SearchMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let queries = IntCounterVec::new(
            Opts::new("hangar_tool_search_queries_total", "Tool searches by outcome: found, empty, invalid"),
            &["outcome"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new("hangar_tool_search_duration_seconds", "Time a tool search took")
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1]),
        )?;
        let called_rank = Histogram::with_opts(
            HistogramOpts::new(
                "hangar_tool_search_called_rank",
                "Rank of the tool called next among the caller's last search results (1 = first)",
            )
            .buckets(vec![1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0]),
        )?;
        let next_call = IntCounterVec::new(
            Opts::new(
                "hangar_tool_search_next_calls_total",
                "Calls after a search, by whether the tool was among its results",
            ),
            &["outcome"],
        )?;
        let metrics = Self { queries, duration, called_rank, next_call };
        hangar_telemetry::register(registry, metrics.collectors())?;
        Ok(metrics)
    }

    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.queries.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.called_rank.clone()),
            Box::new(self.next_call.clone()),
        ]
    }
}
