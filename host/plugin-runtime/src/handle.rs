//! A configured use of one plugin by one resource: a pool of instances that were each handed
//! the resource's configuration, and the call path with its deadline, memory cap and fault
//! classification.

use std::{
    marker::PhantomData,
    sync::{Arc, Mutex},
};

use wasmtime::{Store, Trap};

use crate::{
    PluginError, PluginRuntime, PluginVersion, Slot,
    error::Fault,
    host::{HostState, new_store},
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
    store: Store<HostState>,
    bindings: B,
}

/// Instances of one version, all configured alike.
struct Pool<B> {
    version: Arc<PluginVersion>,
    idle: Mutex<Vec<Instance<B>>>,
}

/// Most idle instances kept per handle; more are dropped after use.
const MAX_IDLE: usize = 16;

pub(crate) struct Handle<W: World> {
    runtime: PluginRuntime,
    name: String,
    binding: Binding,
    config: Vec<(String, String)>,
    pool: Mutex<Option<Arc<Pool<W::Bindings>>>>,
    _world: PhantomData<W>,
}

impl<W: World> Handle<W> {
    /// Finds `name`, checks its world and optional sha256 pin, and configures a first instance so
    /// that a bad configuration is refused now rather than on the first call.
    pub(crate) fn new(
        runtime: &PluginRuntime,
        name: &str,
        config: Vec<(String, String)>,
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
            binding,
            config,
            pool: Mutex::new(None),
            _world: PhantomData,
        };
        handle.call(|_, _| Ok(()))?;
        Ok(handle)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The version calls go to now.
    pub(crate) fn version(&self) -> Option<Arc<PluginVersion>> {
        match &self.binding {
            Binding::Live(slot) => slot.current.load_full(),
            Binding::Pinned(v) => Some(v.clone()),
        }
    }

    fn pool(&self) -> Result<Arc<Pool<W::Bindings>>, PluginError> {
        let version = self
            .version()
            .ok_or_else(|| PluginError::NotFound { name: self.name.clone(), available: String::new() })?;
        let mut pool = self.pool.lock().unwrap();
        match pool.as_ref() {
            Some(p) if Arc::ptr_eq(&p.version, &version) => Ok(p.clone()),
            _ => {
                // A new version (hot reload): start a fresh pool; the old one is dropped when the
                // calls still using it finish.
                let fresh = Arc::new(Pool { version, idle: Mutex::new(Vec::new()) });
                *pool = Some(fresh.clone());
                Ok(fresh)
            }
        }
    }

    fn instantiate(&self, version: &PluginVersion) -> Result<Instance<W::Bindings>, PluginError> {
        let inner = &self.runtime.inner;
        let (deadline, memory_bytes) = inner.config.limits(W::KIND);
        let mut store = new_store(&inner.engine, memory_bytes, deadline);
        let ticks = store.data_mut().clock.start();
        store.set_epoch_deadline(ticks);
        let bindings = W::instantiate(&mut store, &version.pre).map_err(|e| self.fault(&store, e))?;
        match W::configure(&mut store, &bindings, &self.config) {
            Ok(Ok(())) => Ok(Instance { store, bindings }),
            Ok(Err(message)) => Err(self.counted(Fault::Config, format!("refused its configuration: {message}"))),
            Err(e) => Err(self.fault(&store, e)),
        }
    }

    /// Runs `f` on a pooled instance under the deadline and memory cap. A failed instance is
    /// dropped (after a trap it cannot be entered again); a good one goes back to the pool.
    pub(crate) fn call<R>(
        &self,
        f: impl FnOnce(&mut Store<HostState>, &W::Bindings) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let pool = self.pool()?;
        let idle = pool.idle.lock().unwrap().pop();
        let mut instance = match idle {
            Some(i) => i,
            None => self.instantiate(&pool.version)?,
        };
        let ticks = instance.store.data_mut().clock.start();
        instance.store.set_epoch_deadline(ticks);
        instance.store.data_mut().limits.hit = false;
        match f(&mut instance.store, &instance.bindings) {
            Ok(r) => {
                let mut idle = pool.idle.lock().unwrap();
                if idle.len() < MAX_IDLE {
                    idle.push(instance);
                }
                Ok(r)
            }
            Err(e) => Err(self.fault(&instance.store, e)),
        }
    }

    /// Names the failure, counts it and reports it.
    fn fault(&self, store: &Store<HostState>, error: wasmtime::Error) -> PluginError {
        let (deadline, memory_bytes) = self.runtime.inner.config.limits(W::KIND);
        let (fault, message) = match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => (Fault::Timeout, format!("ran past its {deadline:?} deadline and was stopped")),
            _ if store.data().limits.hit => {
                (Fault::OutOfMemory, format!("tried to use more than its {} MiB memory cap", memory_bytes >> 20))
            }
            Some(Trap::StackOverflow) => (Fault::Trap, "overflowed its stack".to_string()),
            Some(trap) => (Fault::Trap, format!("trapped: {trap}")),
            None => (Fault::Trap, format!("{error:#}")),
        };
        self.counted(fault, message)
    }

    pub(crate) fn counted(&self, fault: Fault, message: String) -> PluginError {
        self.runtime.inner.metrics.faults.with_label_values(&[&self.name, W::KIND.as_str(), fault.as_str()]).inc();
        let error = PluginError::Faulted { name: self.name.clone(), fault, message };
        self.runtime.report(&self.name, error.to_string());
        error
    }
}
