//! A configured use of one plugin by one resource: a pool of instances that were each handed
//! the resource's configuration, and the call path with its deadline, memory cap and fault
//! classification.

use std::{
    marker::PhantomData,
    sync::{
        Arc, Mutex,
        atomic::{AtomicPtr, Ordering},
    },
};

use tokio::sync::Semaphore;
use wasmtime::{Store, Trap};

use crate::{
    PluginError, PluginRuntime, PluginVersion, Slot,
    error::Fault,
    executor::{self, NotRun},
    health::Health,
    host::{BLOCKED, HostState, new_store},
    world::World,
};

/// Which version a handle calls.
enum Binding {
    /// Whatever version serves the name now (hot reload applies).
    Live(Arc<Slot>),
    /// Exactly this version (the resource pinned its digest).
    Pinned(Arc<PluginVersion>),
}

struct Instance<B> {
    /// The slot's generation when it was made: it is used only while that is still current.
    generation: u64,
    store: Store<HostState>,
    bindings: B,
    calls: u32,
}

/// An instance is replaced by a fresh one after this many calls, or once it holds more memory
/// than this, so a plugin that leaks a little on every call is reset before it reaches its cap.
const RECYCLE_AFTER_CALLS: u32 = 10_000;
const RECYCLE_ABOVE_BYTES: usize = 8 << 20;

/// Idle instances, configured alike. The one used last waits in `hot`, taken and returned with
/// one atomic swap each (the common case: one call of a handle at a time); the rest wait in
/// `idle`, behind a lock. Whether an instance's version is still the current one is checked
/// when it is taken (by the slot's generation).
struct Pool<B> {
    hot: HotSlot<B>,
    idle: Mutex<Vec<Box<Instance<B>>>>,
}

/// At most one boxed instance, without a lock.
struct HotSlot<B>(AtomicPtr<Instance<B>>);

impl<B> HotSlot<B> {
    fn take(&self) -> Option<Box<Instance<B>>> {
        let taken = self.0.swap(std::ptr::null_mut(), Ordering::Acquire);
        // SAFETY: a non-null pointer in the slot came from `Box::into_raw` in `put`, and the
        // swap gave it to this caller alone.
        (!taken.is_null()).then(|| unsafe { Box::from_raw(taken) })
    }

    /// Keeps `instance` if the slot is empty; otherwise hands it back.
    fn put(&self, instance: Box<Instance<B>>) -> Option<Box<Instance<B>>> {
        let raw = Box::into_raw(instance);
        match self.0.compare_exchange(std::ptr::null_mut(), raw, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => None,
            // SAFETY: `raw` was not stored, so this caller still owns it.
            Err(_) => Some(unsafe { Box::from_raw(raw) }),
        }
    }
}

impl<B> Drop for HotSlot<B> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

/// Most idle instances kept per handle; more are dropped after use.
const MAX_IDLE: usize = 16;

pub(crate) struct Handle<W: World> {
    runtime: PluginRuntime,
    name: String,
    binding: Binding,
    config: W::Config,
    pool: Pool<W::Bindings>,
    /// Shared by every use of this plugin name: how many of its calls may occupy the executor.
    permits: Arc<Semaphore>,
    /// Shared by every use of this plugin name: its breaker and what the log last said.
    health: Arc<Health>,
    _world: PhantomData<W>,
}

impl<W: World> Handle<W> {
    /// Finds `name`, checks its world and optional sha256 pin, and configures a first instance so
    /// that a bad configuration is refused now rather than on the first call.
    pub(crate) fn new(
        runtime: &PluginRuntime,
        name: &str,
        config: W::Config,
        pin: Option<&str>,
    ) -> Result<Self, PluginError> {
        let slot = runtime.slot(name)?;
        let version = slot
            .current
            .load_full()
            .ok_or_else(|| PluginError::NotFound { name: name.to_string(), available: String::new() })?;
        if version.world != W::KIND {
            return Err(PluginError::WrongWorld {
                name: name.to_string(),
                expected: W::KIND.as_str(),
                found: version.world.as_str(),
            });
        }
        let (permits, health) = (slot.permits.clone(), slot.health.clone());
        let binding = match pin {
            Some(pin) if pin != version.digest => {
                return Err(PluginError::DigestMismatch {
                    name: name.to_string(),
                    pinned: pin.to_string(),
                    found: version.digest.clone(),
                });
            }
            Some(_) => Binding::Pinned(version),
            None => Binding::Live(slot),
        };
        let handle = Self {
            runtime: runtime.clone(),
            name: name.to_string(),
            permits,
            health,
            binding,
            config,
            pool: Pool { hot: HotSlot(AtomicPtr::new(std::ptr::null_mut())), idle: Mutex::new(Vec::new()) },
            _world: PhantomData,
        };
        handle.call(|_, _| Ok(()))?;
        Ok(handle)
    }

    /// The version calls go to now.
    pub(crate) fn version(&self) -> Option<Arc<PluginVersion>> {
        match &self.binding {
            Binding::Live(slot) => slot.current.load_full(),
            Binding::Pinned(v) => Some(v.clone()),
        }
    }

    /// The slot's generation now (always 0 for a pinned version).
    fn generation(&self) -> u64 {
        match &self.binding {
            Binding::Live(slot) => slot.generation.load(Ordering::Acquire),
            Binding::Pinned(_) => 0,
        }
    }

    /// An idle instance of `generation`, if the pool has one. Finding one of an older generation
    /// (after a hot reload) empties the pool.
    fn take_idle(&self, generation: u64) -> Option<Box<Instance<W::Bindings>>> {
        let idle = self.pool.hot.take().or_else(|| self.pool.idle.lock().unwrap().pop())?;
        if idle.generation == generation {
            return Some(idle);
        }
        let stale = std::mem::take(&mut *self.pool.idle.lock().unwrap());
        drop((idle, stale));
        None
    }

    /// Puts `instance` back unless it is worn or enough are idle.
    fn put_back(&self, instance: Box<Instance<W::Bindings>>) {
        let worn =
            instance.calls >= RECYCLE_AFTER_CALLS || instance.store.data().limits.used_bytes > RECYCLE_ABOVE_BYTES;
        if worn {
            return;
        }
        if let Some(instance) = self.pool.hot.put(instance) {
            let mut idle = self.pool.idle.lock().unwrap();
            if idle.len() < MAX_IDLE {
                idle.push(instance);
            }
        }
    }

    fn instantiate(&self, generation: u64) -> Result<Box<Instance<W::Bindings>>, PluginError> {
        let version = self
            .version()
            .ok_or_else(|| PluginError::NotFound { name: self.name.clone(), available: String::new() })?;
        let inner = &self.runtime.inner;
        let (deadline, memory_bytes) = inner.config.limits(W::KIND);
        let mut store = new_store(&inner.engine, &inner.ticks, memory_bytes, deadline);
        let ticks = store.data_mut().clock.start();
        store.set_epoch_deadline(ticks);
        let mut bindings = W::instantiate(&mut store, &version).map_err(|e| self.fault(&store, e, None))?;
        let configured = W::configure(&mut store, &mut bindings, &self.config);
        let output = store.data_mut().new_output();
        match configured {
            Ok(Ok(())) => Ok(Box::new(Instance { generation, store, bindings, calls: 0 })),
            Ok(Err(message)) => Err(self.counted(Fault::Config, format!("refused its configuration: {message}"))),
            Err(e) => Err(self.fault(&store, e, output)),
        }
    }

    /// Runs `f` on a pooled instance under the deadline and memory cap. A failed instance is
    /// dropped (after a trap it cannot be entered again); a good one goes back to the pool.
    ///
    /// Called from inside an async runtime (a registration's `configure`, say), the call runs on
    /// a thread of its own: WASI's synchronous plumbing (a panic message written to stderr) would
    /// otherwise `block_on` inside the runtime and panic the worker.
    pub(crate) fn call<R: Send>(
        &self,
        f: impl FnOnce(&mut Store<HostState>, &W::Bindings) -> wasmtime::Result<R> + Send,
    ) -> Result<R, PluginError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.call_here(f);
        }
        std::thread::scope(|scope| {
            let joined = std::thread::Builder::new().name("hangar-plugin-call".into()).spawn_scoped(scope, || {
                executor::lower_priority();
                self.call_here(f)
            });
            match joined.map(|t| t.join()) {
                Ok(Ok(result)) => result,
                _ => Err(self.counted(Fault::Trap, "the plugin's call thread failed".into())),
            }
        })
    }

    fn call_here<R>(
        &self,
        f: impl FnOnce(&mut Store<HostState>, &W::Bindings) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let generation = self.generation();
        let mut instance = match self.take_idle(generation) {
            Some(i) => i,
            None => self.instantiate(generation)?,
        };
        let ticks = instance.store.data_mut().clock.start();
        instance.store.set_epoch_deadline(ticks);
        instance.store.data_mut().limits.hit = false;
        let result = f(&mut instance.store, &instance.bindings);
        let output = instance.store.data_mut().new_output();
        match result {
            Ok(r) => {
                if let Some(output) = &output {
                    tracing::info!(plugin = %self.name, "plugin output: {output:.2000}");
                }
                instance.calls += 1;
                self.put_back(instance);
                Ok(r)
            }
            Err(e) => Err(self.fault(&instance.store, e, output)),
        }
    }

    /// Runs `job` (which calls this plugin) on the plugin executor, never on the caller's async
    /// worker; waits for one of the plugin's permits at most its wall-clock cap.
    pub(crate) async fn offload<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, PluginError> {
        if let Err(retry_after) = self.health.admit() {
            // Not logged: the bench itself was, once.
            self.runtime
                .inner
                .metrics
                .faults
                .with_label_values(&[&self.name, W::KIND.as_str(), Fault::Benched.as_str()])
                .inc();
            return Err(PluginError::Faulted {
                name: self.name.clone(),
                fault: Fault::Benched,
                message: format!(
                    "benched after {} faults in a row; the next call tries it again in {:.1}s",
                    crate::BENCH_AFTER,
                    retry_after.as_secs_f64()
                ),
            });
        }
        let (deadline, _) = self.runtime.inner.config.limits(W::KIND);
        let builtin = self.version().is_some_and(|v| matches!(v.origin, crate::Origin::Builtin));
        let wait = match builtin {
            true => executor::BUILTIN_WAIT,
            false => deadline * crate::host::WALL_FACTOR,
        };
        match executor::run(&self.runtime.inner.executor, &self.permits, wait, builtin, job).await {
            Ok(r) => Ok(r),
            Err(NotRun::Busy(waited)) => Err(self.counted(
                Fault::Overloaded,
                format!("its calls were all busy for {waited:?} (at most {} at once)", executor::PERMITS_PER_PLUGIN),
            )),
            Err(NotRun::Stopped) => Err(self.counted(Fault::Trap, "the plugin executor stopped the call".into())),
        }
    }

    /// Names the failure, counts it and reports it (with what the plugin printed, e.g. its panic).
    fn fault(&self, store: &Store<HostState>, error: wasmtime::Error, output: Option<String>) -> PluginError {
        let (deadline, memory_bytes) = self.runtime.inner.config.limits(W::KIND);
        let (fault, message) = match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => (Fault::Timeout, format!("ran past its {deadline:?} deadline and was stopped")),
            _ if store.data().limits.hit => {
                (Fault::OutOfMemory, format!("tried to use more than its {} MiB memory cap", memory_bytes >> 20))
            }
            Some(Trap::StackOverflow) => (Fault::Trap, "overflowed its stack".to_string()),
            Some(trap) => (Fault::Trap, format!("trapped: {trap}")),
            None if format!("{error:#}").contains(BLOCKED) => (Fault::HostCall, format!("{error:#}")),
            None => (Fault::Trap, format!("{error:#}")),
        };
        let message = match output {
            Some(output) => format!("{message}; it printed: {:.500}", output),
            None => message,
        };
        self.counted(fault, message)
    }

    /// Counts a fault toward the metric and the plugin's breaker; the log names it when it is
    /// of a new kind, and when it benches the plugin.
    pub(crate) fn counted(&self, fault: Fault, message: String) -> PluginError {
        self.runtime.inner.metrics.faults.with_label_values(&[&self.name, W::KIND.as_str(), fault.as_str()]).inc();
        let error = PluginError::Faulted { name: self.name.clone(), fault, message };
        let faulted = self.health.failed(fault);
        if faulted.new_kind {
            self.runtime.report(&self.name, W::KIND, fault, error.to_string());
        }
        if faulted.benched {
            self.runtime.report(
                &self.name,
                W::KIND,
                fault,
                format!(
                    "plugin {:?} is benched for {:?} after {} faults in a row; its callers get the fallback until a trial call succeeds",
                    self.name,
                    crate::BENCH_FOR,
                    crate::BENCH_AFTER
                ),
            );
        }
        error
    }

    /// The plugin's answer was good (and checked): its breaker closes.
    pub(crate) fn succeeded(&self) {
        if self.health.succeeded() {
            tracing::info!(plugin = %self.name, world = W::KIND.as_str(), "plugin answers well again");
        }
    }

    /// Whether the plugin is benched now.
    pub(crate) fn benched(&self) -> bool {
        self.health.benched()
    }
}
