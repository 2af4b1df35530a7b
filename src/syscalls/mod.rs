//! System calls of virtual processes: the general registry and executor, and the io_uring-style
//! rings for batched I/O.

pub mod iouring;
mod registry;

pub use iouring::{
    CompletionFuture, CompletionStream, DEFAULT_CQ_SIZE, DEFAULT_SQ_SIZE, DirEntry, DirPage, EntryKind, FileStat,
    FixedBuf, FixedBuffers, IntoSubmission, IoUringError, IoUringExecutor, IoUringHandler, IoUringManager,
    IoUringStats, LentBuf, MAX_DIR_PAGE, MAX_FIXED_BUFFERS, MAX_FIXED_SIZE, MAX_IOV, Multishot, OpError, OpResult,
    Percentiles, ProcessStats, RECV_BUFFERS, RECV_SHARES, SHOTS_WAITING, SyscallCompletionEntry, SyscallCompletionRing,
    SyscallCompletionStatus, SyscallOpType, SyscallSubmissionEntry, UnexpectedResult, errno, net_flags, open_flags,
};
pub use registry::{AsyncSyscallExecutor, Syscall, SyscallHandler, SyscallHandlerRegistry, SyscallResult};
