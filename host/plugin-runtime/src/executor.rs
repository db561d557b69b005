//! Where plugin calls run when the gateway makes them: a few threads of their own, never the
//! async runtime's workers. A plugin that burns its whole deadline, or reaches WASI's synchronous
//! plumbing (which would `block_on` inside the runtime and panic a worker), costs these threads
//! and its own callers, never `/healthz` or other servers' I/O. Each plugin may occupy at most
//! [`PERMITS_PER_PLUGIN`] of them at once, so one slow plugin cannot take them all. Users'
//! plugins run on threads below the async workers' priority: on a machine with few cores a plugin
//! that burns its whole deadline on every call must not take CPU time from the workers that serve
//! everyone. The built-in plugins (the host's own code, on every call's path) run on threads of
//! their own at the workers' priority, so a saturated machine does not starve the default policy
//! into refusing calls.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use tokio::sync::Semaphore;

type Job = Box<dyn FnOnce() + Send>;

/// Threads for users' plugin calls. More than the two cores: calls are short, and a slow plugin
/// must leave threads for the others.
pub(crate) const THREADS: usize = 4;
/// Threads for the built-in plugins' calls.
const BUILTIN_THREADS: usize = 2;
/// How long a built-in's caller may wait for one of its permits. Its calls are the host's own
/// and short, so a queue is a burst of calls (500 clients at once), not a stuck plugin: it is
/// served, not refused after a user plugin's wall-clock cap.
pub(crate) const BUILTIN_WAIT: Duration = Duration::from_secs(10);
/// Calls of one plugin running or queued at once; callers beyond it wait (asynchronously).
pub(crate) const PERMITS_PER_PLUGIN: usize = 2;

pub(crate) struct Executor {
    /// Users' plugins, at a lower priority.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// The built-in plugins, at the workers' priority.
    builtin_jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl Executor {
    pub(crate) fn new() -> Self {
        Self {
            jobs: Mutex::new(Some(threads("hangar-plugin", THREADS, true))),
            builtin_jobs: Mutex::new(Some(threads("hangar-builtin", BUILTIN_THREADS, false))),
        }
    }

    fn submit(&self, job: Job, builtin: bool) -> bool {
        let jobs = if builtin { &self.builtin_jobs } else { &self.jobs };
        jobs.lock().unwrap().as_ref().is_some_and(|tx| tx.send(job).is_ok())
    }

    /// Stops the threads once the queued jobs are done.
    pub(crate) fn shutdown(&self) {
        self.jobs.lock().unwrap().take();
        self.builtin_jobs.lock().unwrap().take();
    }
}

/// `count` threads named `name-N` taking jobs from the returned sender until it is dropped.
fn threads(name: &str, count: usize, lowered: bool) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for n in 0..count {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("{name}-{n}"))
            .spawn(move || {
                if lowered {
                    lower_priority();
                }
                loop {
                    let job = match rx.lock().unwrap().recv() {
                        Ok(job) => job,
                        Err(_) => break, // the runtime is gone
                    };
                    // A panic in host code around a call must not take the thread with it;
                    // the caller sees its channel closed and falls back.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })
            .expect("spawning a plugin thread");
    }
    tx
}

/// The nice value of plugin threads (the async workers keep 0): under contention the kernel
/// gives a thread at 10 about a tenth of the CPU time of one at 0.
const PLUGIN_NICE: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority (Linux: per thread). Best effort: raising
/// one's own nice value needs no privilege, and elsewhere it is a no-op.
pub(crate) fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, PLUGIN_NICE);
    }
}

/// Why an offloaded call did not run.
pub(crate) enum NotRun {
    /// All of the plugin's permits stayed taken for the whole wait.
    Busy(Duration),
    /// The executor is gone or the job died.
    Stopped,
}

/// Runs `job` on the executor (the built-ins' threads when `builtin`) once one of `permits` is
/// free (waiting at most `wait`).
pub(crate) async fn run<R: Send + 'static>(
    executor: &Executor,
    permits: &Arc<Semaphore>,
    wait: Duration,
    builtin: bool,
    job: impl FnOnce() -> R + Send + 'static,
) -> Result<R, NotRun> {
    let permit = match tokio::time::timeout(wait, permits.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        _ => return Err(NotRun::Busy(wait)),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let submitted = executor.submit(
        Box::new(move || {
            let result = job();
            drop(permit);
            let _ = tx.send(result);
        }),
        builtin,
    );
    if !submitted {
        return Err(NotRun::Stopped);
    }
    rx.await.map_err(|_| NotRun::Stopped)
}

pub(crate) fn permits() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(PERMITS_PER_PLUGIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's name and nice value.
    fn where_am_i() -> (String, i32) {
        let name = std::thread::current().name().unwrap_or_default().to_string();
        // SAFETY: a plain system call about the calling thread.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as libc::id_t) };
        (name, nice)
    }

    #[tokio::test]
    async fn users_plugins_run_below_the_workers_and_the_built_ins_beside_them() {
        let executor = Executor::new();
        let wait = Duration::from_secs(30);
        let permits = permits();
        let user = run(&executor, &permits, wait, false, where_am_i).await.ok().unwrap();
        let builtin = run(&executor, &permits, wait, true, where_am_i).await.ok().unwrap();
        assert!(user.0.starts_with("hangar-plugin-"), "{user:?}");
        assert!(builtin.0.starts_with("hangar-builtin-"), "{builtin:?}");
        if cfg!(target_os = "linux") {
            let own = where_am_i().1;
            assert_eq!(user.1, own + PLUGIN_NICE, "a user's plugin thread is lowered");
            assert_eq!(builtin.1, own, "a built-in's thread keeps the workers' priority");
        }
        executor.shutdown();
    }
}
