//! Runs Hangar's plugins: WebAssembly components implementing the `strategy`, `policy` and
//! `discovery` worlds of `wit/`. Components are compiled once per sha256 (cached on disk),
//! instantiated from an `InstancePre` into pools, and every call runs under an epoch deadline
//! and a memory cap. A plugin that traps, loops or over-allocates is cut off, counted, and the
//! caller falls back; the host never panics because of a plugin. Plugins are found by name among
//! the built-ins and in a watched directory, and replaced atomically when their file changes.
//!
//! No HTTP or Kubernetes types here: the gateway and operator translate to and from this API.

mod bindings;
mod cache;
mod error;
mod executor;
mod handle;
mod health;
mod host;
mod metrics;
mod plugin_use;
mod plugins;
mod world;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwapOption;
use wasmtime::{
    Config, Engine,
    component::{InstancePre, Linker},
};

pub use bindings::{
    discovery::{Document, ParseError, ServerDefinition, SourceKind},
    policy::{Call, Caller, Decision, RateLimit},
};
pub use cache::sha256_hex;
pub use error::{Fault, PluginError};
pub use hangar_plugin_algorithms::strategy::MemberInfo;
pub use health::{BENCH_AFTER, BENCH_FOR};
pub use metrics::PluginMetrics;
pub use plugins::{
    DiscoveryError, DiscoveryPlugin, Pick, PolicyPlugin, RankQuery, RankerPlugin, StrategyPlugin, round_robin_fallback,
};
pub use world::{Abi, MemberState, PickRequest, RANKER_WIT_VERSION, WIT_VERSION, WorldKind};

use crate::{cache::CompileCache, host::HostState};

/// A plugin's record in the audit log.
fn audit_plugin(decision: &'static str, plugin: &str, world: Option<WorldKind>, reason: Option<String>) {
    if hangar_telemetry::audit::enabled() {
        hangar_telemetry::audit::log(hangar_telemetry::audit::Record {
            event: "plugin",
            decision,
            reason,
            plugin: Some(plugin.to_string()),
            world: world.map(|w| w.as_str().to_string()),
            ..Default::default()
        });
    }
}

/// Limits and places; the defaults are the documented ones.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled artifacts are kept across restarts (None: memory only).
    pub cache_dir: Option<PathBuf>,
    /// Longest a single plugin call may run.
    pub deadline: Duration,
    /// Most linear memory one plugin instance may have.
    pub memory_limit_bytes: usize,
    /// Largest plugin file accepted.
    pub max_file_bytes: u64,
    /// Discovery is off the hot path and reads whole sources (10,000 entries in one ConfigMap):
    /// its calls get this deadline and memory cap instead.
    pub discovery_deadline: Duration,
    pub discovery_memory_limit_bytes: usize,
}

impl RuntimeConfig {
    /// The deadline and memory cap of one call into a plugin of `world`.
    pub(crate) fn limits(&self, world: WorldKind) -> (Duration, usize) {
        match world {
            WorldKind::Discovery => (self.discovery_deadline, self.discovery_memory_limit_bytes),
            _ => (self.deadline, self.memory_limit_bytes),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            deadline: Duration::from_millis(10),
            memory_limit_bytes: 16 << 20,
            max_file_bytes: 16 << 20,
            discovery_deadline: Duration::from_secs(2),
            discovery_memory_limit_bytes: 256 << 20,
        }
    }
}

/// `$XDG_CACHE_HOME/hangar/plugins`, else `~/.cache/hangar/plugins`.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("hangar").join("plugins"))
}

/// The epoch advances once per tick; deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Where a loaded plugin came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    File(PathBuf),
}

/// One loaded, compiled version of a plugin.
pub struct PluginVersion {
    pub name: String,
    /// sha256 of the component bytes, hex.
    pub digest: String,
    pub world: WorldKind,
    /// The WIT version it was built against.
    pub abi: Abi,
    pub origin: Origin,
    pub loaded_at: SystemTime,
    pub(crate) pre: InstancePre<HostState>,
}

/// A plugin name and whichever version currently serves it.
pub(crate) struct Slot {
    current: ArcSwapOption<PluginVersion>,
    /// How many versions were installed: a pooled instance made under another count is stale
    /// (cheaper to compare on every call than the version itself).
    pub(crate) generation: AtomicU64,
    /// How many calls of this plugin may occupy the executor at once.
    pub(crate) permits: Arc<tokio::sync::Semaphore>,
    /// Its breaker and what the log last said of it.
    pub(crate) health: Arc<health::Health>,
}

/// Something that happened to a plugin that an operator should hear about.
#[derive(Clone, Debug)]
pub struct Report {
    pub plugin: String,
    pub message: String,
    pub at: SystemTime,
}

/// A row of `hangar plugin list`.
#[derive(Clone, Debug)]
pub struct PluginInfo {
    pub name: String,
    pub world: WorldKind,
    pub digest: String,
    pub origin: Origin,
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    pub(crate) ticks: host::TickClock,
    linker: Linker<HostState>,
    cache: CompileCache,
    pub(crate) config: RuntimeConfig,
    pub(crate) metrics: PluginMetrics,
    slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    /// What each plugin file looked like when it was last read, so that a directory pass skips
    /// files that did not change without reading and hashing them again.
    stamps: Mutex<BTreeMap<PathBuf, FileStamp>>,
    reports: Mutex<Vec<Report>>,
    /// Versions installed so far, of any name: a resource whose plugin could not be bound tries
    /// again when this moves.
    pub(crate) installs: AtomicU64,
    stop: Arc<AtomicBool>,
    pub(crate) executor: executor::Executor,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.executor.shutdown();
    }
}

/// The plugin runtime; cheap to clone and share.
#[derive(Clone)]
pub struct PluginRuntime {
    pub(crate) inner: Arc<Inner>,
}

const MAX_REPORTS: usize = 200;

impl PluginRuntime {
    /// A runtime with the built-in plugins loaded; metrics go into `registry`.
    pub fn new(config: RuntimeConfig, registry: &prometheus::Registry) -> anyhow::Result<Self> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true).epoch_interruption(true).max_wasm_stack(512 << 10);
        let engine = Engine::new(&wasm)?;
        let mut linker = Linker::new(&engine);
        // Rust guests import wasi:cli and wasi:io for std's plumbing even when they do no I/O;
        // they get an empty context (see host.rs).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        host::forbid_blocking(&mut linker)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticks = host::TickClock::new();
        spawn_epoch_ticker(engine.clone(), ticks.clone(), stop.clone());
        let runtime = Self {
            inner: Arc::new(Inner {
                cache: CompileCache::new(&engine, config.cache_dir.clone()),
                engine,
                ticks,
                linker,
                config,
                metrics: PluginMetrics::new(registry)?,
                slots: RwLock::new(BTreeMap::new()),
                stamps: Mutex::new(BTreeMap::new()),
                reports: Mutex::new(Vec::new()),
                installs: AtomicU64::new(0),
                stop,
                executor: executor::Executor::new(),
            }),
        };
        for builtin in hangar_builtin_plugins::BUILTINS {
            let version = runtime.compile(builtin.name, builtin.bytes, Origin::Builtin)?;
            runtime.install(version);
        }
        Ok(runtime)
    }

    pub fn metrics(&self) -> &PluginMetrics {
        &self.inner.metrics
    }

    /// Compiles (or fetches from the cache) and checks one component; does not install it.
    pub fn compile(&self, name: &str, bytes: &[u8], origin: Origin) -> Result<Arc<PluginVersion>, PluginError> {
        let load_error = |message: String| PluginError::Load { name: name.to_string(), message };
        let digest = sha256_hex(bytes);
        let inner = &self.inner;
        let component = inner
            .cache
            .component(&inner.engine, &digest, bytes, &inner.metrics)
            .map_err(|e| load_error(format!("not a valid WebAssembly component: {e:#}")))?;
        let (world, abi) = world_of(name, &component, &inner.engine)?;
        let pre = inner.linker.instantiate_pre(&component).map_err(|e| {
            load_error(format!(
                "{e:#}; plugins may import only what Rust's std needs from WASI (wasi:cli, wasi:io, wasi:clocks, wasi:random, wasi:filesystem with nothing opened)"
            ))
        })?;
        Ok(Arc::new(PluginVersion {
            name: name.to_string(),
            digest,
            world,
            abi,
            origin,
            loaded_at: SystemTime::now(),
            pre,
        }))
    }

    /// Makes `version` the one serving its name (atomically; calls in flight finish on the old).
    pub fn install(&self, version: Arc<PluginVersion>) {
        let mut slots = self.inner.slots.write().unwrap();
        let metrics = &self.inner.metrics;
        let slot = slots.entry(version.name.clone()).or_insert_with(|| {
            Arc::new(Slot {
                current: ArcSwapOption::empty(),
                generation: AtomicU64::new(0),
                permits: executor::permits(),
                health: Arc::new(health::Health::new(metrics.breaker.with_label_values(&[&version.name]))),
            })
        });
        slot.current.store(Some(version));
        slot.generation.fetch_add(1, Ordering::Release);
        slot.health.reset();
        self.inner.installs.fetch_add(1, Ordering::Release);
    }

    /// How many versions were installed so far (of any plugin): what was decided with plugins
    /// before may be decided otherwise once it changes.
    pub fn installs(&self) -> u64 {
        self.inner.installs.load(Ordering::Acquire)
    }

    /// Counts a fault of a plugin that could not be bound (no handle to count it), and names it
    /// in the log.
    pub(crate) fn unbound(&self, world: WorldKind, error: &PluginError) {
        self.inner.metrics.faults.with_label_values(&[plugin_label(error), world.as_str(), Fault::Load.as_str()]).inc();
        self.report(plugin_label(error), world, Fault::Load, error.to_string());
    }

    /// The version serving `name` now.
    pub fn current(&self, name: &str) -> Option<Arc<PluginVersion>> {
        self.inner.slots.read().unwrap().get(name).and_then(|s| s.current.load_full())
    }

    pub(crate) fn slot(&self, name: &str) -> Result<Arc<Slot>, PluginError> {
        let slots = self.inner.slots.read().unwrap();
        slots.get(name).cloned().ok_or_else(|| PluginError::NotFound {
            name: name.to_string(),
            available: slots.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    pub fn list(&self) -> Vec<PluginInfo> {
        let slots = self.inner.slots.read().unwrap();
        slots
            .values()
            .filter_map(|s| s.current.load_full())
            .map(|v| PluginInfo {
                name: v.name.clone(),
                world: v.world,
                digest: v.digest.clone(),
                origin: v.origin.clone(),
            })
            .collect()
    }

    /// Recent reports (load failures, refused reloads, faults), oldest first.
    pub fn reports(&self) -> Vec<Report> {
        self.inner.reports.lock().unwrap().clone()
    }

    pub(crate) fn report(&self, plugin: &str, world: WorldKind, fault: Fault, message: String) {
        tracing::warn!(plugin, world = world.as_str(), fault = fault.as_str(), "{message}");
        audit_plugin("fault", plugin, Some(world), Some(format!("{}: {message}", fault.as_str())));
        self.keep_report(plugin, message);
    }

    /// A problem with the plugin directory or a file in it (no world or fault yet).
    fn report_file(&self, plugin: &str, message: String) {
        tracing::warn!(plugin, "{message}");
        self.keep_report(plugin, message);
    }

    fn keep_report(&self, plugin: &str, message: String) {
        let mut reports = self.inner.reports.lock().unwrap();
        if reports.len() >= MAX_REPORTS {
            reports.remove(0);
        }
        reports.push(Report { plugin: plugin.to_string(), message, at: SystemTime::now() });
    }

    /// Loads every `NAME.wasm` in `dir` whose content changed; a file that fails keeps the old
    /// version serving and is reported. Returns the names (re)loaded.
    pub fn load_dir(&self, dir: &Path) -> Vec<String> {
        let mut loaded = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.report_file("*", format!("plugin directory {}: {e}; loaded plugins keep serving", dir.display()));
                return loaded;
            }
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for path in files {
            let Some(name) = plugin_name(&path) else { continue };
            match self.load_file(&name, &path) {
                Ok(true) => loaded.push(name),
                Ok(false) => {}
                Err(e) => {
                    self.inner.metrics.reloads.with_label_values(&[&name, "error"]).inc();
                    audit_plugin("refused", &name, None, Some(e.to_string()));
                    self.report_file(&name, format!("{}: {e}; the previous version keeps serving", path.display()));
                }
            }
        }
        loaded
    }

    /// Loads one file as plugin `name`; Ok(false) when its content is already serving (or it is
    /// the same file, unchanged, that was refused before).
    fn load_file(&self, name: &str, path: &Path) -> Result<bool, PluginError> {
        let load_error = |message: String| PluginError::Load { name: name.to_string(), message };
        let metadata = std::fs::metadata(path).map_err(|e| load_error(e.to_string()))?;
        let stamp = FileStamp::of(&metadata);
        let mut stamps = self.inner.stamps.lock().unwrap();
        if stamps.get(path) == Some(&stamp) {
            return Ok(false);
        }
        stamps.insert(path.to_path_buf(), stamp);
        drop(stamps);
        // Opening a FIFO or a device would wedge the watcher (or read forever).
        if !metadata.is_file() {
            return Err(load_error("not a regular file; only .wasm files are read".into()));
        }
        let limit = self.inner.config.max_file_bytes;
        let size = metadata.len();
        if size > limit {
            return Err(load_error(format!(
                "{size} bytes is over the {} byte limit for plugins",
                self.inner.config.max_file_bytes
            )));
        }
        // The size said by metadata is not trusted (a link to /dev/zero says 0): the read is capped.
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::fs::File::open(path).map_err(|e| load_error(e.to_string()))?, limit + 1),
            &mut bytes,
        )
        .map_err(|e| load_error(e.to_string()))?;
        if bytes.len() as u64 > limit {
            return Err(load_error(format!("more than the {limit} byte limit for plugins")));
        }
        let previous = self.current(name);
        if previous.as_ref().is_some_and(|p| p.digest == sha256_hex(&bytes)) {
            return Ok(false);
        }
        let version = self.compile(name, &bytes, Origin::File(path.to_path_buf()))?;
        if let Some(previous) = previous
            && previous.world != version.world
        {
            return Err(PluginError::WrongWorld {
                name: name.to_string(),
                expected: previous.world.as_str(),
                found: version.world.as_str(),
            });
        }
        tracing::info!(
            plugin = name,
            digest = %version.digest,
            world = version.world.as_str(),
            wit = version.abi.version(),
            "plugin loaded"
        );
        audit_plugin("loaded", name, Some(version.world), Some(format!("sha256 {}", version.digest)));
        self.install(version);
        self.inner.metrics.reloads.with_label_values(&[name, "ok"]).inc();
        Ok(true)
    }

    /// Loads `dir` now and again whenever something in it changes, until the guard is dropped.
    /// Compiling happens on the watcher's thread, never on a caller's.
    pub fn watch_dir(&self, dir: &Path) -> notify::Result<WatchGuard> {
        use notify::Watcher;
        self.load_dir(dir);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Errors are passed on too: a re-read then reports what is wrong with the folder.
            if event.as_ref().is_ok_and(is_change) || event.is_err() {
                let _ = tx.send(());
            }
        })?;
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        let runtime = Arc::downgrade(&self.inner);
        let dir = dir.to_path_buf();
        std::thread::Builder::new().name("hangar-plugin-watch".into()).spawn(move || {
            // Compiling a plugin takes a core for a while: not at the workers' expense.
            executor::lower_priority();
            while rx.recv().is_ok() {
                // Let a burst of events (a ConfigMap update swaps several links) settle.
                std::thread::sleep(Duration::from_millis(20));
                while rx.try_recv().is_ok() {}
                let Some(inner) = runtime.upgrade() else { break };
                PluginRuntime { inner }.load_dir(&dir);
            }
        })?;
        Ok(WatchGuard { _watcher: watcher })
    }
}

/// Whether a file-system event is a change worth reacting to: created, written (and closed),
/// renamed or removed. Opening and reading — which every reload does to the watched files
/// itself — and metadata updates are not, so a watcher never triggers itself.
pub fn is_change(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    match event.kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// A file's identity and version as the file system tells them: inode, size and modification
/// time (a ConfigMap update or a rename swaps the inode; an edit in place moves the mtime).
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self { inode: metadata.ino(), len: metadata.len(), modified: metadata.modified().ok() }
    }
}

/// Keeps a plugin directory watched; dropping it stops the watching.
pub struct WatchGuard {
    _watcher: notify::RecommendedWatcher,
}

/// The plugin an error is about (its `plugin` label).
fn plugin_label(error: &PluginError) -> &str {
    match error {
        PluginError::NotFound { name, .. }
        | PluginError::WrongWorld { name, .. }
        | PluginError::NoWorld { name, .. }
        | PluginError::IncompatibleVersion { name, .. }
        | PluginError::DigestMismatch { name, .. }
        | PluginError::Load { name, .. }
        | PluginError::Faulted { name, .. } => name,
    }
}

/// `round-robin.wasm` → `round-robin`; hidden files (ConfigMap internals) are not plugins.
fn plugin_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    if file.starts_with('.') || path.extension()? != "wasm" {
        return None;
    }
    Some(path.file_stem()?.to_str()?.to_string())
}

/// Which world a component implements, and against which WIT version, from what it exports.
fn world_of(
    name: &str,
    component: &wasmtime::component::Component,
    engine: &Engine,
) -> Result<(WorldKind, Abi), PluginError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    for kind in WorldKind::ALL {
        let interface = kind.export_interface();
        if let Some(export) = exports.iter().find(|e| e.split('@').next() == Some(interface)) {
            let version = export.split_once('@').map(|(_, v)| v).unwrap_or("");
            return match Abi::from_version(version).filter(|abi| kind.exists_in(*abi)) {
                Some(abi) => Ok((kind, abi)),
                None => Err(PluginError::IncompatibleVersion {
                    name: name.to_string(),
                    found: format!("hangar:plugins@{version}"),
                    expected: kind.wit_version(),
                }),
            };
        }
    }
    Err(PluginError::NoWorld {
        name: name.to_string(),
        exports: if exports.is_empty() { "nothing".into() } else { exports.join(", ") },
    })
}

fn spawn_epoch_ticker(engine: Engine, ticks: host::TickClock, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("hangar-plugin-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                ticks.tick();
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch thread");
}

#[cfg(test)]
mod tests;
