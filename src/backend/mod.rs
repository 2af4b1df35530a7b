//! Backends: how operations execute.
//!
//! The core (rings, futures, streams, delivery rules) never names a runtime; it hands batches of
//! [`Submission`]s to a [`Backend`] and is told of each outcome. Which backends exist depends on
//! cargo features:
//!
//! | backend | feature | files | sockets |
//! |---|---|---|---|
//! | `UringBackend` | `uring` (default, Linux) | kernel io_uring, one `io_uring_enter` per batch | kernel io_uring (`ACCEPT`, `RECV`, ...) |
//! | `BlockingBackend` | `blocking` (default) | bounded thread pool | non-blocking, parked on async-io's reactor |
//! | `TokioBackend` | `tokio` | `spawn_blocking` | `tokio::io::unix::AsyncFd` |
//! | `SmolBackend` | `smol` | `blocking::unblock` | `async_io::Async` |
//!
//! [`IoUringManager::new`](crate::syscalls::IoUringManager::new) picks the best one compiled in;
//! the environment variable `AI_OS_KERNEL_BACKEND` forces one (see [`from_env`]).
//!
//! # Writing a backend
//!
//! Implement [`Backend::name`], [`Backend::execute`] (run one operation, return its outcome)
//! and [`Backend::spawn`] (drive a future to completion somewhere: a thread pool, a runtime).
//! The provided [`Backend::submit`] then runs each submission as its own task, races it against
//! cancellation, and completes it. A backend that can do better with a whole batch (io_uring
//! submits it with one system call) overrides `submit`, and [`Backend::submit_ring`] if it can
//! also keep one reference to the ring for a whole [`RingBatch`] of one ring's operations.
//!
//! ```
//! use std::sync::Arc;
//! use ai_os_kernel::backend::{Backend, OpOutcome, Operation, Task, file_ops};
//! use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType, SyscallSubmissionEntry};
//!
//! /// Answers `Nop` itself, runs file operations with blocking calls where it is asked to (it
//! /// refuses sockets), and drives each task on a thread of its own (a toy: a real backend
//! /// bounds its threads and waits for sockets on a reactor).
//! struct Threads;
//!
//! #[async_trait::async_trait]
//! impl Backend for Threads {
//!     fn name(&self) -> &'static str { "threads" }
//!     async fn execute(&self, op: Operation) -> OpOutcome {
//!         match op.op() {
//!             SyscallOpType::Nop => Ok(OpResult::None),
//!             _ => file_ops::execute_sync(op),
//!         }
//!     }
//!     fn spawn(&self, task: Task) {
//!         std::thread::spawn(move || futures::executor::block_on(task));
//!     }
//! }
//!
//! let manager = IoUringManager::with_backend(Arc::new(Threads));
//! let seq = manager.submit(1, SyscallSubmissionEntry::new(1, SyscallOpType::Nop, 7)).unwrap();
//! let done = manager.wait_completion(1, seq).unwrap();
//! assert!(done.status.is_success());
//! assert_eq!(manager.stats().backend, "threads");
//! ```

#[cfg(feature = "blocking")]
mod blocking;
pub mod file_ops;
pub mod net_ops;
mod operation;
#[cfg(any(feature = "blocking", feature = "smol"))]
mod reactor;
mod select;
#[cfg(feature = "smol")]
mod smol;
#[cfg(feature = "tokio")]
mod tokio;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub mod uring;

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) use operation::Freed;
pub(crate) use operation::release;
pub use operation::{Completer, Operation, RingBatch, Submission};
pub use select::{BACKEND_ENV, Choice, available, by_name, choose, from_env};

#[cfg(feature = "smol")]
pub use self::smol::SmolBackend;
#[cfg(feature = "tokio")]
pub use self::tokio::TokioBackend;
#[cfg(feature = "blocking")]
pub use blocking::BlockingBackend;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub use uring::UringBackend;

pub use crate::op::{OpError, errno};
use crate::op::{OpResult, SyscallOpType};
pub use crate::syscalls::iouring::cancel::CancelToken;

/// What executing one operation produced.
pub type OpOutcome = Result<OpResult, OpError>;

/// A future a backend drives to completion ([`Backend::spawn`]).
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a backend can do, for the executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// How many operations (those that wait on a peer excepted) the backend should be given at
    /// once; the rest wait in their rings' SQs, where the executor can be fair across processes.
    pub max_in_flight: usize,
    /// Whether [`Backend::submit`] takes a whole batch at once (one system call).
    pub batch_submit: bool,
    /// Whether the executor should hand one ring's batch over as a [`RingBatch`]
    /// ([`Backend::submit_ring`]), for a backend that keeps the ring once per batch; otherwise
    /// it makes the submissions itself (a `RingBatch` turned into them costs a vector more).
    pub ring_batches: bool,
}

impl Capabilities {
    /// Capabilities with the given in-flight window.
    pub fn new(max_in_flight: usize) -> Self {
        Capabilities { max_in_flight, batch_submit: false, ring_batches: false }
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::new(64)
    }
}

/// Executes operations for the manager. See the [module docs](self) for how to write one.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name, shown in [`IoUringStats::backend`](crate::syscalls::IoUringStats).
    fn name(&self) -> &'static str;

    /// What the backend can do.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Executes one operation against its process's descriptors and returns the outcome.
    ///
    /// For an operation that waits on a peer, dropping the returned future must stop it: that
    /// is how [`run`] cancels it. Other operations are awaited to their end; one that can stop
    /// early on its own should watch [`Operation::cancel_token`] and return
    /// [`OpError::cancelled`].
    async fn execute(&self, op: Operation) -> OpOutcome;

    /// Drives `task` to completion on the backend's threads or runtime.
    fn spawn(&self, task: Task);

    /// Starts a batch. The default runs each submission with [`run`] as a task of its own.
    fn submit(self: Arc<Self>, batch: Vec<Submission>) {
        for sub in batch {
            self.spawn(Box::pin(run(self.clone(), sub)));
        }
    }

    /// Starts a batch of one ring's operations. The default hands them to
    /// [`submit`](Self::submit) as submissions; a backend that can keep the ring once for the
    /// whole batch (io_uring) overrides it.
    fn submit_ring(self: Arc<Self>, batch: RingBatch) {
        self.submit(batch.into_submissions())
    }
}

/// How the readiness-based backends start a batch: a `Nop` completes at once, a socket operation (a `Read` or `Write` of a
/// socket included, see [`net_ops::runs_on_readiness`]) whose answer is already there completes on
/// this thread ([`net_ops::try_now`]), one that must wait runs as a task of `backend` (raced
/// against cancellation by [`run`]), and a file operation goes to `file`.
#[cfg(any(feature = "blocking", feature = "tokio", feature = "smol"))]
pub(crate) fn start_ready_first<B: Backend>(
    backend: &Arc<B>,
    batch: Vec<Submission>,
    mut file: impl FnMut(Submission),
) {
    for mut sub in batch {
        if matches!(sub.op(), SyscallOpType::Nop) {
            // Nothing to run: answered here, as io_uring answers it inside the enter, rather
            // than after a trip through a thread pool shared with every other process.
            let outcome = if sub.is_cancelled() { Err(OpError::cancelled()) } else { Ok(OpResult::None) };
            sub.complete(outcome);
            continue;
        }
        if !net_ops::runs_on_readiness(sub.op(), sub.process()) {
            file(sub);
            continue;
        }
        let rights = match sub.needs_rights() {
            Ok(rights) => rights,
            Err(e) => {
                sub.complete(Err(e));
                continue;
            }
        };
        if let Some(outcome) = net_ops::try_now(sub.op(), sub.process(), rights.as_deref(), || sub.is_cancelled()) {
            sub.complete(outcome);
        } else {
            // A `Read` or `Write` of a socket that must wait gives its place in the window back
            // now, as `run` would once the task starts (the executor starts what that lets in
            // after this batch, not inside it).
            if !sub.op().may_wait_on_peer() {
                sub.leave_window();
            }
            backend.spawn(Box::pin(run(backend.clone(), sub)));
        }
    }
}

/// The window of a backend that runs file operations on a thread pool of its runtime's (tokio's
/// `spawn_blocking`, smol's `unblock`), whose queue serves all processes first come, first
/// served: 32 per core (at most 256), so that the executor, which is fair across processes,
/// holds most of what the CPUs cannot run yet, rather than the pool's queue, which is not (a
/// quiet process's read waited behind a neighbour's 64 there with a window of 256: 0.5 to 1 ms
/// at p99 on 2 cores), while one process's share (a quarter: 16 on 2 cores) still keeps such a
/// pool, whose threads take tens of microseconds to wake, busy.
#[cfg(any(feature = "tokio", feature = "smol"))]
pub(crate) fn pool_window() -> Capabilities {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Capabilities::new((cores * 32).clamp(32, 256))
}

/// Runs a file operation to its end on the calling thread and completes it (skipped if it was
/// cancelled before it started): for a backend that starts file operations straight on its
/// blocking pool, without a task hop in between.
#[cfg(any(feature = "blocking", feature = "tokio", feature = "smol"))]
pub(crate) fn run_blocking(sub: Submission) {
    let (op, done) = sub.into_parts();
    let outcome = if op.is_cancelled() { Err(OpError::cancelled()) } else { file_ops::execute_sync(op) };
    done.complete(outcome);
}

/// Runs one submission on `backend`: skips it if already cancelled, awaits
/// [`Backend::execute`], and completes it.
///
/// Only an operation that waits on a peer (accept, connect, send, receive, a read or write of a
/// socket, which also gives back its place in the executor's window) is interrupted by a
/// cancellation: its future is dropped, which stops the wait. Any other operation runs to its
/// end and reports what really happened, as io_uring does for work already started: dropping
/// its future would not stop a system call already running on another thread, and would lose a
/// descriptor it opened. A waiting operation asked to stop is not tried again: woken for its
/// cancellation, it stops before its next attempt, so an accept cancelled before a connection
/// arrived never takes that connection off the queue only to have it discarded.
pub async fn run<B: Backend + ?Sized>(backend: Arc<B>, sub: Submission) {
    let (op, mut completer) = sub.into_parts();
    if op.is_cancelled() {
        return completer.complete(Err(OpError::cancelled()));
    }
    let waits = net_ops::may_wait_on_peer(op.op(), op.process());
    // A `Read` or `Write` of a socket waits on its peer as a `Recv` does, which the executor
    // could not tell when it counted it: it gives its place in the window back.
    if waits && !op.op().may_wait_on_peer() && completer.take_window() {
        release(completer.ring(), 1);
    }
    let cancel = waits.then(|| op.cancel_token());
    let mut exec = backend.execute(op);
    let outcome = poll_fn(|cx| {
        if let Some(cancel) = &cancel
            && cancel.poll_cancelled(cx).is_ready()
        {
            return Poll::Ready(Err(OpError::cancelled()));
        }
        exec.as_mut().poll(cx)
    })
    .await;
    drop(exec);
    completer.complete(outcome);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Waker};

    use super::*;
    use crate::op::SyscallOpType;
    use crate::syscalls::iouring::ring::test_support::ring;

    /// A backend whose operations wait once, then finish having "taken" something (as an accept
    /// takes a connection), counting how often they are tried.
    struct TakesOnSecondTry(AtomicUsize);

    #[async_trait::async_trait]
    impl Backend for TakesOnSecondTry {
        fn name(&self) -> &'static str {
            "takes-on-second-try"
        }

        async fn execute(&self, _op: Operation) -> OpOutcome {
            let mut tried = false;
            poll_fn(|_| {
                self.0.fetch_add(1, Ordering::SeqCst);
                if std::mem::replace(&mut tried, true) { Poll::Ready(Ok(OpResult::Count(1))) } else { Poll::Pending }
            })
            .await
        }

        fn spawn(&self, _task: Task) {}
    }

    /// A waiting operation cancelled before its task runs again is not tried again: an accept
    /// asked to stop never takes a connection that arrived meanwhile, only to discard it.
    #[test]
    fn a_cancelled_wait_is_not_tried_again() {
        let (r, _) = ring(1, 4, 4);
        let (seq, _) = r.submit(std::iter::once((SyscallOpType::Accept { sockfd: 3 }, 0)), false).unwrap();
        let mut out = Vec::new();
        r.dispatch(1, &mut out, |d, counted| Submission::new(&r, d, counted));
        let backend = Arc::new(TakesOnSecondTry(AtomicUsize::new(0)));
        let mut task = Box::pin(run(backend.clone(), out.pop().unwrap()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(backend.0.load(Ordering::SeqCst), 1, "tried once, waiting");
        r.cancel(seq).unwrap();
        assert!(task.as_mut().poll(&mut cx).is_ready());
        assert_eq!(backend.0.load(Ordering::SeqCst), 1, "tried again after its cancellation");
        let done = r.wait(seq, None).unwrap();
        assert!(done.status.is_cancelled(), "{:?}", done);
    }
}
