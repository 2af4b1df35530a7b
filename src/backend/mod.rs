//! Backends: how operations execute.
//!
//! The core (rings, futures, streams, delivery rules) never names a runtime: its executor hands
//! a [`Backend`] one [`Batch`] at a time (runs of one ring's operations) through
//! [`Backend::submit`], the one door between the rings and execution, and the backend completes
//! each operation through its [`Submission`] (or [`Completer`]), and knows nothing else of rings.
//! Which backends exist depends on cargo features:
//!
//! | backend | feature | files | sockets |
//! |---|---|---|---|
//! | `UringBackend` | `uring` (default, Linux) | kernel io_uring, one `io_uring_enter` per batch (per executor tick for a thread with a [`drive`](Backend::drive) task) | kernel io_uring (`ACCEPT`, `RECV`, ...) |
//! | `BlockingBackend` | `blocking` (default) | bounded thread pool, a few threads per process at a time | non-blocking, parked on async-io's reactor |
//! | `TokioBackend` | `tokio` | `spawn_blocking`, a few tasks per process | `tokio::io::unix::AsyncFd` |
//! | `SmolBackend` | `smol` | `blocking::unblock`, a few tasks per process | `async_io::Async` |
//!
//! [`IoUringManager::new`](crate::syscalls::IoUringManager::new) picks the best one compiled in;
//! the environment variable `AI_OS_KERNEL_BACKEND` forces one (see [`from_env`]).
//!
//! What an operation needs to run is kept by its family: [`file_ops`] runs file operations with
//! blocking calls, [`net_ops`] the ones that wait on a peer with a backend's [`net_ops::Readiness`].
//!
//! # Writing a backend
//!
//! Implement [`Backend::name`], [`Backend::submit`] (start a batch: complete each operation
//! once, now or later, from any thread) and [`Backend::spawn`] (drive a future to completion
//! somewhere: a thread pool, a runtime). An operation that waits on a peer must stop when
//! cancelled: [`run_waiting`] races one against its cancellation. A wrapper (a test's fault
//! injector, say) takes the batch apart, acts on some operations itself and hands the rest to
//! the backend it wraps as a batch of their own.
//!
//! ```
//! use std::sync::Arc;
//! use ai_os_kernel::backend::{Backend, Batch, Task, file_ops};
//! use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType, SyscallSubmissionEntry};
//!
//! /// Answers `Nop` itself and runs every other operation with blocking calls on a thread of
//! /// its own (a toy: a real backend bounds its threads and waits for sockets on a reactor).
//! struct Threads;
//!
//! impl Backend for Threads {
//!     fn name(&self) -> &'static str { "threads" }
//!     fn submit(&self, batch: Batch) {
//!         for sub in batch.into_submissions() {
//!             if matches!(sub.op(), SyscallOpType::Nop) {
//!                 sub.complete(Ok(OpResult::None));
//!                 continue;
//!             }
//!             std::thread::spawn(move || {
//!                 let (op, done) = sub.into_parts();
//!                 done.complete(file_ops::execute_sync(op));
//!             });
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

mod batch;
#[cfg(feature = "blocking")]
mod blocking;
pub mod file_ops;
#[cfg(any(feature = "blocking", feature = "tokio", feature = "smol"))]
mod lanes;
pub mod net_ops;
#[cfg(any(feature = "blocking", feature = "tokio", feature = "smol"))]
mod pool;
#[cfg(any(feature = "blocking", feature = "smol"))]
mod reactor;
mod select;
#[cfg(feature = "smol")]
mod smol;
mod submission;
#[cfg(any(feature = "blocking", feature = "tokio", feature = "smol"))]
mod time_ops;
#[cfg(feature = "tokio")]
mod tokio;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub mod uring;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use batch::Batch;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) use batch::{Dispatched, Origin, Queued, Runs as BatchRuns};
#[cfg(any(feature = "blocking", feature = "tokio", feature = "smol"))]
pub use pool::run_waiting;
pub use select::{BACKEND_ENV, Choice, available, by_name, choose, from_env};
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) use submission::Freed;
pub use submission::{Completer, Operation, Submission};

#[cfg(feature = "smol")]
pub use self::smol::SmolBackend;
#[cfg(feature = "tokio")]
pub use self::tokio::TokioBackend;
#[cfg(feature = "blocking")]
pub use blocking::BlockingBackend;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub use uring::UringBackend;

use crate::op::OpResult;
pub use crate::op::{OpError, errno};
pub use crate::syscalls::iouring::cancel::CancelToken;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) use crate::syscalls::iouring::cancel::Stop;

/// The cores this process may run on (at least 1), asked of the system once: what the backends
/// size their pools, windows and kernel workers by.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// What executing one operation produced.
pub type OpOutcome = Result<OpResult, OpError>;

/// A future a backend drives to completion ([`Backend::spawn`]).
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A future that works on the thread that polls it ([`Backend::drive`]).
pub type LocalTask = Pin<Box<dyn Future<Output = ()> + 'static>>;

/// What a backend can do, for the executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// How many operations (those that wait on a peer excepted) the backend should be given at
    /// once; the rest wait in their rings' SQs, where the executor can be fair across processes.
    pub max_in_flight: usize,
}

impl Capabilities {
    /// Capabilities with the given in-flight window.
    pub fn new(max_in_flight: usize) -> Self {
        Capabilities { max_in_flight }
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::new(64)
    }
}

/// Executes operations for the manager: the one door between the rings and execution. See the
/// [module docs](self) for how to write one.
pub trait Backend: Send + Sync + 'static {
    /// A short name, shown in [`IoUringStats::backend`](crate::syscalls::IoUringStats).
    fn name(&self) -> &'static str;

    /// What the backend can do.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Starts a batch. Each of its operations must be completed exactly once, through its
    /// [`Submission`] (or the batch's own bulk path); one dropped unfinished completes with
    /// `EIO`. An operation that waits on a peer (see [`net_ops::may_wait_on_peer`]) must stop
    /// when it is cancelled; any other may run to its end.
    fn submit(&self, batch: Batch);

    /// Drives `task` to completion on the backend's threads or runtime.
    fn spawn(&self, task: Task);

    /// A task for the calling thread's local executor that does this backend's work for the
    /// operations this thread submits, on this thread, while it lives: one kernel entry per
    /// executor tick for all of them, completions taken without another thread in between.
    /// `None` (the default) where the backend has no such work, or the thread has such a task
    /// already. Never needed for correctness: without the task, or once it ends, every
    /// operation completes as it would have.
    fn drive(self: Arc<Self>) -> Option<LocalTask> {
        None
    }

    /// Runs `future` to completion on the calling thread, doing this backend's work for what
    /// the thread submits between its polls. The default polls it and parks the thread until
    /// its waker is called ([`park_until_ready`]); io_uring gives the thread a ring of its own
    /// and parks it in the kernel, in the enter that submits the tick's operations.
    fn run_here(self: Arc<Self>, future: Pin<&mut dyn Future<Output = ()>>) {
        park_until_ready(future);
    }
}

/// Polls `future` on this thread until it is ready, parking the thread while it waits. A wake
/// is a flag as well as an unpark: something inside a poll that parks the thread too (a nested
/// `park_until_ready`, a blocking receive) may take the unpark, never the flag.
pub fn park_until_ready(mut future: Pin<&mut dyn Future<Output = ()>>) {
    struct Unpark {
        thread: std::thread::Thread,
        woken: std::sync::atomic::AtomicBool,
    }
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.woken.store(true, std::sync::atomic::Ordering::SeqCst);
            self.thread.unpark();
        }
    }
    let unpark = Arc::new(Unpark { thread: std::thread::current(), woken: false.into() });
    let waker = std::task::Waker::from(unpark.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    while future.as_mut().poll(&mut cx).is_pending() {
        while !unpark.woken.swap(false, std::sync::atomic::Ordering::SeqCst) {
            std::thread::park();
        }
    }
}
