//! [`BlockingBackend`]: a bounded pool of threads running blocking system calls.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;

use async_task::Runnable;
use crossbeam_channel::{Receiver, Sender};

use super::reactor::AsyncIo;
use std::sync::Arc;

use super::lanes::{Drainer, Lanes};
use super::{Backend, Batch, Capabilities, Task, net_ops, pool};

/// Runs file operations on a fixed pool of threads with ordinary blocking system calls, a
/// process's one after another on the threads that take its turn (at most half the pool at
/// once; a turn is 32 operations, then the other processes' work queued meanwhile runs first).
/// Socket operations use non-blocking sockets parked on async-io's reactor while they wait, so
/// an `Accept` nobody answers or a `Recv` on a silent peer holds no pool thread. It needs no
/// async runtime.
///
/// The pool has [`BlockingBackend::default_threads`] threads unless given a size; they start
/// with the backend and exit once it and every task it still runs are gone. A panic inside an
/// operation is caught: the operation completes with `EIO` and the thread goes on.
#[derive(Debug, Clone)]
pub struct BlockingBackend {
    queue: Sender<Runnable>,
    threads: usize,
    lanes: Arc<Lanes>,
}

impl BlockingBackend {
    /// A pool of [`default_threads`](Self::default_threads) threads.
    pub fn new() -> Self {
        Self::with_threads(Self::default_threads())
    }

    /// A pool of `n` threads (at least one: `0` is taken as `1`).
    pub fn with_threads(n: usize) -> Self {
        let threads = n.max(1);
        let (queue, jobs) = crossbeam_channel::unbounded();
        for i in 0..threads {
            let jobs = jobs.clone();
            let spawned = thread::Builder::new().name(format!("ai-os-kernel-blocking-{i}")).spawn(move || work(jobs));
            if let Err(e) = spawned {
                // Fewer threads still serve. With none at all, the queue disconnects and every
                // operation completes with EIO rather than waiting forever.
                tracing::error!(error = %e, "could not start blocking pool thread {i}");
            }
        }
        BlockingBackend { queue, threads, lanes: Lanes::new(threads.div_ceil(2), std::time::Duration::ZERO) }
    }

    /// Four threads per available core, at least 4 and at most 256: enough to keep the disk busy
    /// while some threads wait in `fsync`.
    pub fn default_threads() -> usize {
        let cores = super::cores();
        (cores * 4).clamp(4, 256)
    }

    /// The pool's size.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Default for BlockingBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn work(jobs: Receiver<Runnable>) {
    for job in jobs {
        if catch_unwind(AssertUnwindSafe(|| job.run())).is_err() {
            tracing::error!("an operation panicked on the blocking pool; it completed with EIO");
        }
    }
}

impl Backend for BlockingBackend {
    fn name(&self) -> &'static str {
        "blocking"
    }

    fn capabilities(&self) -> Capabilities {
        // Twice the threads: a worker that finishes finds its next operation already queued.
        Capabilities::new(self.threads * 2)
    }

    /// Socket operations whose answer is already there complete at once; file operations go to
    /// their processes' lanes, drained by tasks on the pool (each straight to its system call: it
    /// is known not to be a socket's, no second look at its descriptor); one that waits runs as
    /// a task on the pool, parked on async-io's reactor.
    fn submit(&self, batch: Batch) {
        pool::start_in_lanes(
            batch,
            &self.lanes,
            |sub| {
                self.spawn(Box::pin(pool::run_waiting(sub, |op| async move { net_ops::execute(op, &AsyncIo).await })))
            },
            |drainer| drain(&self.queue, drainer),
        );
    }

    fn spawn(&self, task: Task) {
        spawn_on(&self.queue, task);
    }
}

/// Runs `task` on the pool behind `queue`. A send fails only once every worker is gone; the
/// dropped task then completes its operations with EIO.
fn spawn_on(queue: &Sender<Runnable>, task: impl std::future::Future<Output = ()> + Send + 'static) {
    let queue = queue.clone();
    let (runnable, handle) = async_task::spawn(task, move |job| drop(queue.send(job)));
    runnable.schedule();
    handle.detach();
}

/// Runs `drainer` on the pool, and the task that goes on with its lane after its turn at the
/// back of the pool's queue, behind every other lane's and task.
fn drain(queue: &Sender<Runnable>, drainer: Drainer) {
    let again = queue.clone();
    spawn_on(queue, async move {
        if let Some(next) = drainer.run() {
            drain(&again, next);
        }
    });
}
