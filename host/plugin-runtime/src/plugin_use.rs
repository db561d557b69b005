//! A resource's use of a plugin by name, kept whatever happens to the plugin: when it cannot be
//! bound (not loaded, another world, a pinned digest that does not match, a `configure` that
//! faults), the use remembers why, its calls get the world's fallback at once, and it tries to
//! bind again as soon as the runtime installs any new version — so a fixed plugin dropped into
//! the folder is taken up without the resource changing.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::{PluginError, PluginRuntime, handle::Handle, world::World};

pub(crate) struct PluginUse<W: World> {
    runtime: PluginRuntime,
    name: String,
    config: W::Config,
    pin: Option<String>,
    bound: ArcSwap<Bound<W>>,
    /// One bind attempt at a time.
    binding: Mutex<()>,
}

enum Bound<W: World> {
    Handle(Arc<Handle<W>>),
    /// Why it could not be bound, and how many versions the runtime had installed then.
    Unbound {
        error: PluginError,
        installs: u64,
    },
}

impl<W: World> PluginUse<W> {
    /// Binds now; an error is returned, not kept.
    pub(crate) fn new(
        runtime: &PluginRuntime,
        name: &str,
        config: W::Config,
        pin: Option<&str>,
    ) -> Result<Self, PluginError> {
        let handle = Handle::new(runtime, name, config.clone(), pin)?;
        Ok(Self::with(runtime, name, config, pin, Bound::Handle(Arc::new(handle))))
    }

    /// Binds now; an error is counted, logged and kept until a new version can be bound.
    pub(crate) fn resilient(runtime: &PluginRuntime, name: &str, config: W::Config, pin: Option<&str>) -> Self {
        let installs = runtime.installs();
        let bound = match Handle::new(runtime, name, config.clone(), pin) {
            Ok(handle) => Bound::Handle(Arc::new(handle)),
            Err(error) => {
                // A fault in `configure` was counted and logged by the handle that met it.
                if error.fault().is_none() {
                    runtime.unbound(W::KIND, &error);
                }
                Bound::Unbound { error, installs }
            }
        };
        Self::with(runtime, name, config, pin, bound)
    }

    fn with(runtime: &PluginRuntime, name: &str, config: W::Config, pin: Option<&str>, bound: Bound<W>) -> Self {
        Self {
            runtime: runtime.clone(),
            name: name.to_string(),
            config,
            pin: pin.map(str::to_string),
            bound: ArcSwap::from_pointee(bound),
            binding: Mutex::new(()),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn config(&self) -> &W::Config {
        &self.config
    }

    /// The handle calls go to, or why there is none.
    pub(crate) fn handle(&self) -> Result<Arc<Handle<W>>, PluginError> {
        match &**self.bound.load() {
            Bound::Handle(handle) => Ok(handle.clone()),
            Bound::Unbound { error, .. } => Err(error.clone()),
        }
    }

    /// Unbound, and a version was installed since the last try.
    fn may_bind_now(&self) -> bool {
        matches!(&**self.bound.load(), Bound::Unbound { installs, .. } if *installs != self.runtime.installs())
    }

    /// Tries to bind again if something was installed since the last try. Runs `configure`:
    /// call it off the async workers.
    pub(crate) fn rebind(&self) {
        let Ok(_one_at_a_time) = self.binding.try_lock() else { return };
        if !self.may_bind_now() {
            return;
        }
        let installs = self.runtime.installs();
        let bound = match Handle::new(&self.runtime, &self.name, self.config.clone(), self.pin.as_deref()) {
            Ok(handle) => {
                tracing::info!(plugin = %self.name, world = W::KIND.as_str(), "plugin bound; its fallback is no longer used");
                Bound::Handle(Arc::new(handle))
            }
            Err(error) => {
                if error.fault().is_none() {
                    self.runtime.unbound(W::KIND, &error);
                }
                Bound::Unbound { error, installs }
            }
        };
        self.bound.store(Arc::new(bound));
    }

    /// [`Self::rebind`] on a blocking thread, when there is anything to try.
    pub(crate) async fn rebind_off_worker(self: &Arc<Self>) {
        if self.may_bind_now() {
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.rebind()).await;
        }
    }

    /// Runs `job` on the plugin executor (see [`Handle::offload`]), binding first if it may; an
    /// unbound use answers its error at once.
    pub(crate) async fn offload<R: Send + 'static>(
        self: &Arc<Self>,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, PluginError> {
        self.rebind_off_worker().await;
        self.handle()?.offload(job).await
    }

    /// Whether it is bound and not benched; else why.
    pub(crate) fn health(&self) -> Result<(), PluginError> {
        let handle = self.handle()?;
        if handle.benched() {
            return Err(PluginError::Faulted {
                name: self.name.clone(),
                fault: crate::Fault::Benched,
                message: format!(
                    "benched after {} faults in a row; its callers get the fallback until a trial call succeeds",
                    crate::BENCH_AFTER
                ),
            });
        }
        Ok(())
    }
}
