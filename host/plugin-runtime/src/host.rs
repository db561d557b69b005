//! The per-instance host state: an empty WASI context (no files, network, environment or
//! arguments; stdout and stderr into a small buffer the host logs; nothing that blocks) and the
//! limits of the instance as a whole.

use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline, component::ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView, p2::pipe::MemoryOutputPipe};

pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: MemoryCap,
    pub(crate) clock: CallClock,
    /// What the plugin wrote to stdout and stderr (a panic message, say), and how much of it the
    /// host has logged already.
    pub(crate) output: MemoryOutputPipe,
    pub(crate) output_logged: usize,
}

/// Most a plugin instance may write to stdout and stderr; a write past it traps the call.
pub(crate) const OUTPUT_BYTES: usize = 16 << 10;

impl HostState {
    /// Output written since the last look, for the log.
    pub(crate) fn new_output(&mut self) -> Option<String> {
        let all = self.output.contents();
        let new = all.get(self.output_logged..).filter(|b| !b.is_empty())?;
        self.output_logged = all.len();
        Some(String::from_utf8_lossy(new).trim_end().to_string())
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Caps what one instance holds: the bytes of all its linear memories and tables together (a
/// component may declare many), and how many of each it may create. Remembers whether a cap was
/// hit so that the trap that follows is reported as out-of-memory.
pub(crate) struct MemoryCap {
    memory_bytes: usize,
    /// Bytes of all memories, plus table elements at pointer size.
    pub(crate) used_bytes: usize,
    pub(crate) hit: bool,
}

/// Memories and tables one instance may create (a Rust component has one or two of each; the
/// preview1 adapter of `cargo component` adds one memory).
const MAX_MEMORIES: usize = 4;
const MAX_TABLES: usize = 8;
const TABLE_ELEMENT_BYTES: usize = 8;

impl MemoryCap {
    fn grow(&mut self, current: usize, desired: usize) -> bool {
        let after = self.used_bytes - current.min(self.used_bytes) + desired;
        let allowed = after <= self.memory_bytes;
        if allowed {
            self.used_bytes = after;
        }
        self.hit |= !allowed;
        allowed
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(self.grow(current * TABLE_ELEMENT_BYTES, desired * TABLE_ELEMENT_BYTES))
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn instances(&self) -> usize {
        // A component instantiates its core modules (and adapters) inside one store.
        32
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

pub(crate) const WALL_FACTOR: u32 = 20;
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
    let output = MemoryOutputPipe::new(OUTPUT_BYTES);
    let wasi = wasmtime_wasi::WasiCtxBuilder::new().stdout(output.clone()).stderr(output.clone()).build();
    let state = HostState {
        wasi,
        table: ResourceTable::new(),
        limits: MemoryCap { memory_bytes, used_bytes: 0, hit: false },
        clock: CallClock { deadline, wall_start: Instant::now(), anchor: None },
        output,
        output_logged: 0,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_callback(|mut ctx| {
        Ok(if ctx.data_mut().clock.expired() { UpdateDeadline::Interrupt } else { UpdateDeadline::Continue(1) })
    });
    store
}

/// What plugins may not do: wait. `poll` and `pollable.block` (behind `thread::sleep`, blocking
/// reads, timers) would hold the calling thread outside the deadline's reach; here they trap at
/// once, so the call ends in its fallback like any other fault.
pub(crate) fn forbid_blocking(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL_INTERFACE)?;
    for function in ["poll", "[method]pollable.block"] {
        poll.func_new(function, move |_, _, _, _| Err(wasmtime::format_err!("{BLOCKED}: {function}")))?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// The `wasi:io/poll` version wasmtime-wasi links (imports of older 0.2 versions resolve to it).
const POLL_INTERFACE: &str = "wasi:io/poll@0.2.12";
/// How a blocked call's trap begins, so that it is reported as a host-call fault.
pub(crate) const BLOCKED: &str = "plugins may not block (sleep, poll or wait)";
