//! The per-instance host state: an empty WASI context (no files, network, environment or
//! arguments; output discarded) and the memory cap.

use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline, component::ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: MemoryCap,
    pub(crate) clock: CallClock,
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

/// The deadline of the call in progress. The epoch only wakes the check up; what counts is the
/// CPU time the calling thread spent, so a call that was merely descheduled on a busy machine is
/// not cut off. Wall time is capped too, at [`WALL_FACTOR`] times the deadline.
pub(crate) struct CallClock {
    deadline: Duration,
    cpu_start: Duration,
    wall_start: Instant,
}

const WALL_FACTOR: u32 = 20;

impl CallClock {
    /// Starts timing a call; returns the epoch ticks after which the first check runs.
    pub(crate) fn start(&mut self) -> u64 {
        self.cpu_start = thread_cpu_time();
        self.wall_start = Instant::now();
        (self.deadline.as_millis() as u64).max(1)
    }

    fn expired(&self) -> bool {
        thread_cpu_time().saturating_sub(self.cpu_start) >= self.deadline
            || self.wall_start.elapsed() >= self.deadline * WALL_FACTOR
    }
}

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only into `ts`, which lives for the call.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    if ok { Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32) } else { Duration::ZERO }
}

pub(crate) fn new_store(engine: &wasmtime::Engine, memory_bytes: usize, deadline: Duration) -> Store<HostState> {
    let state = HostState {
        wasi: wasmtime_wasi::WasiCtxBuilder::new().build(),
        table: ResourceTable::new(),
        limits: MemoryCap { memory_bytes, hit: false },
        clock: CallClock { deadline, cpu_start: Duration::ZERO, wall_start: Instant::now() },
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_callback(|ctx| {
        Ok(if ctx.data().clock.expired() { UpdateDeadline::Interrupt } else { UpdateDeadline::Continue(1) })
    });
    store
}
