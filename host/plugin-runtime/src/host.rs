//! The per-instance host state: an empty WASI context (no files, network, environment or
//! arguments; output discarded) and the memory cap.

use wasmtime::{ResourceLimiter, Store, component::ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: MemoryCap,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps linear memory and tables, and remembers whether the cap was hit so that the trap that
/// follows can be reported as out-of-memory.
pub(crate) struct MemoryCap {
    memory_bytes: usize,
    pub(crate) hit: bool,
}

const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_bytes;
        self.hit |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired <= MAX_TABLE_ELEMENTS;
        self.hit |= !allowed;
        Ok(allowed)
    }
}

pub(crate) fn new_store(engine: &wasmtime::Engine, memory_bytes: usize) -> Store<HostState> {
    let state = HostState {
        wasi: wasmtime_wasi::WasiCtxBuilder::new().build(),
        table: ResourceTable::new(),
        limits: MemoryCap { memory_bytes, hit: false },
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store
}
