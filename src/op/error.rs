//! Errors: why a call on the manager was refused, and why an operation failed.

use std::fmt;
use std::io;

use super::{LentBuf, Pid};

/// Why the manager refused a call. An accepted operation never fails this way: its failure is
/// an `Error` completion (see [`OpError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // each variant's docs describe its fields
#[non_exhaustive]
pub enum IoUringError {
    /// The ring's submission queue holds `capacity` operations not yet started; nothing was
    /// enqueued. Reap or wait, then try again.
    #[error("submission queue of pid {pid} is full ({capacity} operations queued); nothing was enqueued")]
    SubmissionQueueFull { pid: Pid, capacity: usize },
    /// `capacity` operations of the ring are outstanding (queued, running, or completed and not
    /// yet taken); nothing was enqueued. Take completions, then try again.
    #[error(
        "completion queue of pid {pid} is full ({capacity} operations outstanding); nothing was enqueued, take completions first"
    )]
    CompletionQueueFull { pid: Pid, capacity: usize },
    /// A batch of `len` operations can never fit a ring of `capacity`.
    #[error("batch of {len} operations can never fit the ring of pid {pid} (capacity {capacity})")]
    BatchTooLarge { pid: Pid, len: usize, capacity: usize },
    /// The process has no ring.
    #[error("pid {pid} has no ring")]
    NoRing { pid: Pid },
    /// The sequence number was never issued, was already taken, or is owned by a future.
    #[error(
        "pid {pid} has no completion to take for seq {seq}: never issued, already taken, or owned by a CompletionFuture"
    )]
    UnknownSeq { pid: Pid, seq: u64 },
    /// The ring was destroyed while the call waited, or before it.
    #[error("the ring of pid {pid} was destroyed")]
    RingDestroyed { pid: Pid },
    /// `wait_completion_timeout` ran out of time; the operation is still outstanding.
    #[error("timed out waiting for seq {seq} of pid {pid}; the operation is still outstanding")]
    Timeout { pid: Pid, seq: u64 },
    /// A size, a name or a setting is not acceptable; the text says which and why.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The backend could not be set up or failed as a whole.
    #[error("backend failure: {0}")]
    Backend(String),
}

/// Convenience alias for the manager's results.
pub type Result<T, E = IoUringError> = std::result::Result<T, E>;

/// Why one operation failed: an `errno` and a message saying what was refused and why.
///
/// Backends return it; the manager turns it into a
/// [`SyscallCompletionStatus::Error`](super::SyscallCompletionStatus::Error) completion whose
/// [`errno()`](super::SyscallCompletionEntry::errno) is [`OpError::errno`]. `ECANCELED` turns
/// into `Cancelled` instead.
#[derive(Clone, PartialEq, Eq)]
pub struct OpError {
    errno: i32,
    message: String,
    /// The caller's buffer of the operation that failed, given back with its completion (see
    /// [`OpResult::Buf`](super::OpResult::Buf)).
    buf: Option<LentBuf>,
}

impl OpError {
    /// An error with the system's text for `errno`.
    pub fn from_errno(errno: i32) -> Self {
        OpError { errno, message: io::Error::from_raw_os_error(errno).to_string(), buf: None }
    }

    /// An error with its own explanation; the errno's name and number are appended.
    pub fn new(errno: i32, why: impl fmt::Display) -> Self {
        let sys = io::Error::from_raw_os_error(errno);
        OpError { errno, message: format!("{why} ({sys})"), buf: None }
    }

    /// The operation was cancelled (`ECANCELED`).
    pub fn cancelled() -> Self {
        OpError::new(errno::ECANCELED, "operation cancelled")
    }

    /// The operation's deadline passed before it completed (`ETIMEDOUT`).
    pub fn timed_out() -> Self {
        OpError::new(errno::ETIMEDOUT, "the operation's deadline passed")
    }

    /// The `errno` value (Linux numbering).
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether this error reports a cancellation.
    pub fn is_cancelled(&self) -> bool {
        self.errno == errno::ECANCELED
    }

    /// The same error, giving the caller's buffer of the operation back with it (`None`: the
    /// operation carried none): its completion has it in [`OpResult::Buf`](super::OpResult::Buf).
    /// For a backend that ends a `ReadInto` or `WriteFrom` with an error
    /// ([`Submission::take_buffer`](crate::backend::Submission::take_buffer) takes the buffer
    /// out of it).
    pub fn giving_back<B: Into<LentBuf>>(mut self, buf: Option<B>) -> Self {
        if let Some(buf) = buf {
            self.buf = Some(buf.into());
        }
        self
    }

    /// The caller's buffer it gives back, taken out of it.
    pub(crate) fn take_buffer(&mut self) -> Option<LentBuf> {
        self.buf.take()
    }
}

impl fmt::Debug for OpError {
    /// The errno and message, and the length of a buffer given back (not its bytes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("OpError");
        d.field("errno", &self.errno).field("message", &self.message);
        if let Some(buf) = &self.buf {
            d.field("buffer_len", &buf.len());
        }
        d.finish()
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OpError {}

impl From<io::Error> for OpError {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => OpError { errno, message: e.to_string(), buf: None },
            None => OpError { errno: errno::EIO, message: e.to_string(), buf: None },
        }
    }
}

impl From<rustix::io::Errno> for OpError {
    fn from(e: rustix::io::Errno) -> Self {
        OpError::from_errno(e.raw_os_error())
    }
}

/// The errno values this crate reports itself, so callers and backends need no `libc`.
pub mod errno {
    use rustix::io::Errno;

    /// Permission denied: every refusal by a [`Policy`](crate::sandbox::Policy).
    pub const EACCES: i32 = Errno::ACCESS.raw_os_error();
    /// Bad descriptor: not open in this process.
    pub const EBADF: i32 = Errno::BADF.raw_os_error();
    /// Invalid argument.
    pub const EINVAL: i32 = Errno::INVAL.raw_os_error();
    /// Operation cancelled.
    pub const ECANCELED: i32 = Errno::CANCELED.raw_os_error();
    /// I/O error: also what a backend that lost or panicked on an operation reports.
    pub const EIO: i32 = Errno::IO.raw_os_error();
    /// Too many open descriptors for the process's policy.
    pub const EMFILE: i32 = Errno::MFILE.raw_os_error();
    /// Not implemented by this backend.
    pub const ENOSYS: i32 = Errno::NOSYS.raw_os_error();
    /// Not a socket.
    pub const ENOTSOCK: i32 = Errno::NOTSOCK.raw_os_error();
    /// Not connected (a `PeerAddr` of a socket without a peer).
    pub const ENOTCONN: i32 = Errno::NOTCONN.raw_os_error();
    /// Address family not supported.
    pub const EAFNOSUPPORT: i32 = Errno::AFNOSUPPORT.raw_os_error();
    /// Value too large (an offset past `i64::MAX`).
    pub const EOVERFLOW: i32 = Errno::OVERFLOW.raw_os_error();
    /// Interrupted system call.
    pub const EINTR: i32 = Errno::INTR.raw_os_error();
    /// Try again: the resource is temporarily unavailable.
    pub const EAGAIN: i32 = Errno::AGAIN.raw_os_error();
    /// No space left on the device.
    pub const ENOSPC: i32 = Errno::NOSPC.raw_os_error();
    /// An operation's deadline passed.
    pub const ETIMEDOUT: i32 = Errno::TIMEDOUT.raw_os_error();
}
