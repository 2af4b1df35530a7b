//! The io_uring-style rings: submission and completion queues per process, futures, streams,
//! the executor that feeds the backend, and the manager in front of it all.

pub(crate) mod cancel;
pub(crate) mod executor;
mod future;
mod handler;
#[cfg(all(test, ai_os_kernel_loom))]
mod loom_tests;
mod manager;
mod metrics;
mod multishot;
pub(crate) mod ring;
mod rings;
mod stats;
mod stream;
mod throttle;

pub use crate::op::{
    DirEntry, DirPage, EntryKind, FileStat, FixedBuf, FixedBuffers, IntoSubmission, IoUringError, LentBuf,
    MAX_DIR_PAGE, MAX_FIXED_BUFFERS, MAX_FIXED_SIZE, MAX_IOV, OpError, OpResult, RECV_BUFFERS, RECV_SHARES, Result,
    SyscallCompletionEntry, SyscallCompletionStatus, SyscallOpType, SyscallSubmissionEntry, UnexpectedResult, errno,
    net_flags, open_flags,
};
pub use executor::IoUringExecutor;
pub use future::CompletionFuture;
pub use handler::IoUringHandler;
pub use manager::IoUringManager;
pub use metrics::{Percentiles, ProcessStats};
pub use multishot::Multishot;
pub use ring::{DEFAULT_CQ_SIZE, DEFAULT_SQ_SIZE, MAX_RING_SIZE, SHOTS_WAITING, SyscallCompletionRing};
pub use stats::IoUringStats;
pub use stream::CompletionStream;
