//! The operation vocabulary: what a process submits ([`SyscallOpType`] in a
//! [`SyscallSubmissionEntry`]), what it gets back ([`OpResult`] in a [`SyscallCompletionEntry`]),
//! why something failed ([`OpError`], [`IoUringError`], [`errno`]) and the flags it may pass
//! ([`open_flags`]).
//!
//! A leaf: every other module imports it, and it imports nothing of the crate, so the sandbox and
//! the process table can speak of operations without depending on the rings or the backends. Its
//! public names are re-exported by [`syscalls`](crate::syscalls), where users find them.

mod buf;
mod convert;
mod entry;
mod error;
pub mod net_flags;
pub mod open_flags;
mod ops;
mod result;

pub use buf::{FixedBuf, FixedBuffers, LentBuf, MAX_FIXED_BUFFERS, MAX_FIXED_SIZE};
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) use buf::{Pool, retired_pools};
pub use convert::UnexpectedResult;
pub use entry::{IntoSubmission, SyscallCompletionEntry, SyscallCompletionStatus, SyscallSubmissionEntry};
pub use error::{IoUringError, OpError, Result, errno};
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) use ops::Class;
pub(crate) use ops::{FALLOC_MODES, Family};
pub use ops::{MAX_DIR_PAGE, MAX_IOV, RECV_BUFFERS, RECV_SHARES, SyscallOpType};
pub use result::{DirEntry, DirPage, EntryKind, FileStat, OpResult};

/// A virtual process id: a tenant of the host, not an OS process.
pub type Pid = u32;
