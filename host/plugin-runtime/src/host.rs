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

/// The deadline of the call in progress. What counts is the CPU time the calling thread spends
/// in the plugin, so a call that was merely descheduled on a busy machine is not cut off; wall
/// time is capped too, at [`WALL_FACTOR`] times the deadline. Reading a thread's CPU clock is a
/// system call, so the hot path only notes the wall clock: the epoch callback, which runs only
/// for calls still going after a tick, takes a CPU-clock anchor at its first run and measures
/// CPU time from there. Before the anchor the plugin ran at most about one tick (a running
/// plugin meets the first tick's check at once), so up to [`PRE_ANCHOR`] of that wall time counts.
pub(crate) struct CallClock {
    deadline: Duration,
    wall_start: Instant,
    anchor: Option<(Instant, Duration)>,
}

const WALL_FACTOR: u32 = 20;
const PRE_ANCHOR: Duration = Duration::from_millis(2);

impl CallClock {
    /// Starts timing a call; returns the epoch ticks after which the first check runs.
    pub(crate) fn start(&mut self) -> u64 {
        self.wall_start = Instant::now();
        self.anchor = None;
        1
    }

    fn expired(&mut self) -> bool {
        let now = Instant::now();
        let (anchor_wall, anchor_cpu) = *self.anchor.get_or_insert_with(|| (now, thread_cpu_time()));
        let used =
            anchor_wall.duration_since(self.wall_start).min(PRE_ANCHOR) + thread_cpu_time().saturating_sub(anchor_cpu);
        used >= self.deadline || now.duration_since(self.wall_start) >= self.deadline * WALL_FACTOR
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
        clock: CallClock { deadline, wall_start: Instant::now(), anchor: None },
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_callback(|mut ctx| {
        Ok(if ctx.data_mut().clock.expired() { UpdateDeadline::Interrupt } else { UpdateDeadline::Continue(1) })
    });
    store
}
