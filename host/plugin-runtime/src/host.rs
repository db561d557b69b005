//! The per-instance host state: an empty WASI context (no files, network, environment or
//! arguments; stdout and stderr into a small buffer the host logs; nothing that blocks) and the
//! limits of the instance as a whole.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline, component::ResourceTable};
use wasmtime_wasi::{
    WasiCtx, WasiCtxView, WasiView,
    cli::{IsTerminal, StdoutStream},
    p2::{OutputStream, Pollable, StreamResult, pipe::MemoryOutputPipe},
};

pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: MemoryCap,
    pub(crate) clock: CallClock,
    /// What the plugin wrote to stdout and stderr (a panic message, say), and how much of it the
    /// host has logged already.
    output: Output,
    output_logged: usize,
}

/// Most a plugin instance may write to stdout and stderr; a write past it traps the call.
pub(crate) const OUTPUT_BYTES: usize = 16 << 10;

impl HostState {
    /// Output written since the last look, for the log. Looking costs a flag read unless the
    /// plugin wrote something.
    pub(crate) fn new_output(&mut self) -> Option<String> {
        if !self.output.written.load(Ordering::Relaxed) {
            return None;
        }
        self.output.written.store(false, Ordering::Relaxed);
        let all = self.output.pipe.contents();
        let new = all.get(self.output_logged..).filter(|b| !b.is_empty())?;
        self.output_logged = all.len();
        Some(String::from_utf8_lossy(new).trim_end().to_string())
    }
}

/// The plugin's stdout and stderr: one bounded buffer, and a flag raised by every write.
#[derive(Clone)]
struct Output {
    pipe: MemoryOutputPipe,
    written: Arc<AtomicBool>,
}

impl IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Output {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only the async WASI path uses it, and the host links the synchronous one; a stream
        // handed out may be written, so raise the flag now.
        self.written.store(true, Ordering::Relaxed);
        self.pipe.async_stream()
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Output {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Output {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.written.store(true, Ordering::Relaxed);
        self.pipe.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.pipe.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.pipe.check_write()
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

/// Wall time as the epoch thread last saw it, advanced with every tick: a call notes its start
/// with an atomic load instead of reading the system clock. Calls start, and the epoch callback
/// runs, on the same tick-grained clock.
#[derive(Clone)]
pub(crate) struct TickClock {
    base: Instant,
    micros: Arc<AtomicU64>,
}

impl TickClock {
    pub(crate) fn new() -> Self {
        Self { base: Instant::now(), micros: Arc::new(AtomicU64::new(0)) }
    }

    /// Called by the epoch thread on every tick.
    pub(crate) fn tick(&self) {
        self.micros.store(self.base.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    fn now(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }
}

/// The deadline of the call in progress. What counts is the CPU time the calling thread spends
/// in the plugin, so a call that was merely descheduled on a busy machine is not cut off; wall
/// time is capped too, at [`WALL_FACTOR`] times the deadline. Reading a thread's CPU clock is a
/// system call and even the wall clock costs ~30 ns here, so the hot path only notes the tick
/// clock: the epoch callback, which runs only for calls still going after a tick, takes a
/// CPU-clock anchor at its first run and measures CPU time from there. The time before the
/// anchor (less than a tick, 1 ms, unless the epoch thread was late) is not counted: a tick
/// clock cannot tell it apart from the time between the last tick and the call's start.
pub(crate) struct CallClock {
    deadline: Duration,
    ticks: TickClock,
    wall_start: Duration,
    cpu_anchor: Option<Duration>,
}

pub(crate) const WALL_FACTOR: u32 = 20;

impl CallClock {
    /// Starts timing a call; returns the epoch ticks after which the first check runs.
    pub(crate) fn start(&mut self) -> u64 {
        self.wall_start = self.ticks.now();
        self.cpu_anchor = None;
        1
    }

    fn expired(&mut self) -> bool {
        let anchor = *self.cpu_anchor.get_or_insert_with(thread_cpu_time);
        thread_cpu_time().saturating_sub(anchor) >= self.deadline
            || self.ticks.now().saturating_sub(self.wall_start) >= self.deadline * WALL_FACTOR
    }
}

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only into `ts`, which lives for the call.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    if ok { Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32) } else { Duration::ZERO }
}

pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    ticks: &TickClock,
    memory_bytes: usize,
    deadline: Duration,
) -> Store<HostState> {
    let output = Output { pipe: MemoryOutputPipe::new(OUTPUT_BYTES), written: Arc::default() };
    let wasi = wasmtime_wasi::WasiCtxBuilder::new().stdout(output.clone()).stderr(output.clone()).build();
    let state = HostState {
        wasi,
        table: ResourceTable::new(),
        limits: MemoryCap { memory_bytes, used_bytes: 0, hit: false },
        clock: CallClock { deadline, ticks: ticks.clone(), wall_start: ticks.now(), cpu_anchor: None },
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
