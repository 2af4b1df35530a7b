//! The io_uring-style rings: submission and completion queues per process, futures, streams,
//! the executor that feeds the backend, and the manager in front of it all.

pub(crate) mod cancel;
mod completion;
pub(crate) mod error;
pub(crate) mod executor;
mod future;
mod handler;
#[cfg(all(test, ai_os_kernel_loom))]
mod loom_tests;
mod manager;
mod metrics;
pub(crate) mod op;
pub(crate) mod ring;
mod stats;
mod stream;
mod submission;
mod throttle;

pub use completion::{SyscallCompletionEntry, SyscallCompletionStatus};
pub use error::{IoUringError, OpError, Result, errno};
pub use executor::IoUringExecutor;
pub use future::CompletionFuture;
pub use handler::IoUringHandler;
pub use manager::IoUringManager;
pub use metrics::{Percentiles, ProcessStats};
pub use op::{OpResult, SyscallOpType, open_flags};
pub use ring::{DEFAULT_CQ_SIZE, DEFAULT_SQ_SIZE, MAX_RING_SIZE, SyscallCompletionRing};
pub use stats::IoUringStats;
pub use stream::CompletionStream;
pub use submission::SyscallSubmissionEntry;
