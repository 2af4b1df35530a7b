//! Conversions into the standard library's error and value types: `?` on a manager call or a
//! completion in a function returning `io::Result`, and a result taken as the value it holds.
//!
//! ```
//! use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType};
//!
//! fn nop(m: &IoUringManager) -> std::io::Result<()> {
//!     let seq = m.submit(1, SyscallOpType::Nop)?;
//!     m.wait_completion(1, seq)?.into_result()?;
//!     Ok(())
//! }
//! nop(&IoUringManager::new()).unwrap();
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::entry::{SyscallCompletionEntry, SyscallCompletionStatus};
use super::error::{IoUringError, OpError, errno};
use super::result::{DirPage, FileStat, OpResult};
use super::{FixedBuf, LentBuf};

impl From<IoUringError> for io::Error {
    /// The kind that says what to do about it: a full ring is busy (take completions, then
    /// try again; not `WouldBlock`, which async code takes for "a wake-up will come"), a bad
    /// size, setting, ring or seq is invalid input, a destroyed ring is not connected, a wait
    /// ran out of time. The message is the error's.
    fn from(e: IoUringError) -> Self {
        let kind = match &e {
            IoUringError::SubmissionQueueFull { .. } | IoUringError::CompletionQueueFull { .. } => {
                io::ErrorKind::ResourceBusy
            }
            IoUringError::BatchTooLarge { .. }
            | IoUringError::InvalidConfig(_)
            | IoUringError::NoRing { .. }
            | IoUringError::UnknownSeq { .. } => io::ErrorKind::InvalidInput,
            IoUringError::RingDestroyed { .. } => io::ErrorKind::NotConnected,
            IoUringError::Timeout { .. } => io::ErrorKind::TimedOut,
            IoUringError::Backend(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

impl From<OpError> for io::Error {
    /// The operation's `errno`, as [`io::Error::from_raw_os_error`] keeps it (`raw_os_error()`
    /// gives it back; the kind follows from it).
    fn from(e: OpError) -> Self {
        io::Error::from_raw_os_error(e.errno())
    }
}

impl SyscallCompletionEntry {
    /// The result of a successful operation, or its `errno` as an [`io::Error`]
    /// ([`io::Error::from_raw_os_error`]; `ECANCELED` for a cancelled one).
    pub fn into_result(self) -> io::Result<OpResult> {
        match self.status {
            SyscallCompletionStatus::Success => Ok(self.result),
            SyscallCompletionStatus::Cancelled => Err(io::Error::from_raw_os_error(errno::ECANCELED)),
            SyscallCompletionStatus::Error(_) => Err(io::Error::from_raw_os_error(self.errno().unwrap_or(errno::EIO))),
        }
    }

    /// How an operation that carried the caller's buffer (`ReadInto`, `WriteFrom`) ended: the
    /// count it moved, or its `errno` as an [`io::Error`], and the buffer back, whatever the
    /// outcome ([`OpResult::Buf`]). The buffer is empty only where none came back: a backend
    /// that lost the operation (`EIO`), or a completion of another operation (then the error
    /// says what it held instead).
    pub fn into_buf(self) -> (io::Result<usize>, Vec<u8>) {
        let (moved, buf) = self.into_moved("the caller's buffer (Buf)", |result| match result {
            OpResult::Buf { count, buf } => Ok((count, buf)),
            got => Err(got),
        });
        (moved, buf.unwrap_or_default())
    }

    /// How a `ReadFixed` or `WriteFixed` ended: the count it moved, or its `errno` as an
    /// [`io::Error`], and its buffer back, whatever the outcome ([`OpResult::Fixed`]). `None`
    /// only where none came back (a backend that lost the operation: the buffer went back to its
    /// pool), or for a completion of another operation (then the error says what it held).
    pub fn into_fixed(self) -> (io::Result<usize>, Option<FixedBuf>) {
        self.into_moved("a registered buffer (Fixed)", |result| match result {
            OpResult::Fixed { count, buf } => Ok((count, buf)),
            got => Err(got),
        })
    }

    /// [`into_buf`](Self::into_buf) or [`into_fixed`](Self::into_fixed), whichever the
    /// operation carried.
    pub(crate) fn into_lent(self) -> (io::Result<usize>, Option<LentBuf>) {
        self.into_moved("the caller's buffer (Buf or Fixed)", |result| match result {
            OpResult::Buf { count, buf } => Ok((count, LentBuf::Vec(buf))),
            OpResult::Fixed { count, buf } => Ok((count, LentBuf::Fixed(buf))),
            got => Err(got),
        })
    }

    /// The count moved (or the operation's error) and the buffer `take` finds in the result
    /// (or, if it finds none, the error that says what was there, `expected` having been asked).
    fn into_moved<B>(
        self,
        expected: &'static str,
        take: impl FnOnce(OpResult) -> Result<(usize, B), OpResult>,
    ) -> (io::Result<usize>, Option<B>) {
        let errno = self.errno();
        let (count, buf) = match take(self.result) {
            Ok((count, buf)) => (Ok(count), Some(buf)),
            Err(got) => (Err(io::Error::from(UnexpectedResult { expected, got })), None),
        };
        let moved = match self.status {
            SyscallCompletionStatus::Success => count,
            _ => Err(io::Error::from_raw_os_error(errno.unwrap_or(errno::EIO))),
        };
        (moved, buf)
    }
}

/// A result that is not the value asked of it (`TryFrom<OpResult>`): the operation produced
/// another kind of result than the one converted to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} as the operation's result, got {got:?}")]
pub struct UnexpectedResult {
    /// What was asked for.
    pub expected: &'static str,
    /// What the operation produced.
    pub got: OpResult,
}

impl From<UnexpectedResult> for io::Error {
    fn from(e: UnexpectedResult) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// `TryFrom<OpResult>` for the value one variant holds.
macro_rules! result_value {
    ($($t:ty => $what:literal: $pat:pat => $value:expr),* $(,)?) => {$(
        impl TryFrom<OpResult> for $t {
            type Error = UnexpectedResult;
            fn try_from(result: OpResult) -> Result<Self, UnexpectedResult> {
                match result {
                    $pat => Ok($value),
                    got => Err(UnexpectedResult { expected: $what, got }),
                }
            }
        }
    )*};
}

result_value! {
    i32 => "a descriptor (Fd or Accepted)": OpResult::Fd(fd) | OpResult::Accepted { fd, .. } => fd,
    Vec<u8> => "bytes (Bytes or Datagram)": OpResult::Bytes(data) | OpResult::Datagram { data, .. } => data,
    usize => "a count (Count)": OpResult::Count(n) => n,
    u64 => "an offset (Offset)": OpResult::Offset(at) => at,
    SocketAddr => "an address (Addr)": OpResult::Addr(addr) => addr,
    FileStat => "metadata (Stat)": OpResult::Stat(st) => st,
    PathBuf => "a path (Path)": OpResult::Path(path) => path,
    DirPage => "a directory page (Dir)": OpResult::Dir(page) => page,
    Vec<Vec<u8>> => "buffers (Buffers)": OpResult::Buffers(bufs) => bufs,
    () => "nothing (None)": OpResult::None => (),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_convert_to_their_values_and_errors_keep_their_errno() {
        assert_eq!(i32::try_from(OpResult::Fd(7)), Ok(7));
        assert_eq!(usize::try_from(OpResult::Count(3)), Ok(3));
        let wrong = usize::try_from(OpResult::Fd(7)).unwrap_err();
        assert_eq!(wrong.got, OpResult::Fd(7));
        assert_eq!(io::Error::from(wrong).kind(), io::ErrorKind::InvalidData);
        let failed = SyscallCompletionEntry::from_outcome(1, 0, Err(OpError::new(errno::EACCES, "no")));
        assert_eq!(failed.into_result().unwrap_err().raw_os_error(), Some(errno::EACCES));
        let cancelled = SyscallCompletionEntry::cancelled(1, 0);
        assert_eq!(cancelled.into_result().unwrap_err().raw_os_error(), Some(errno::ECANCELED));
        let full = IoUringError::CompletionQueueFull { pid: 1, capacity: 4 };
        assert_eq!(io::Error::from(full).kind(), io::ErrorKind::ResourceBusy);
        assert_eq!(io::Error::from(OpError::timed_out()).kind(), io::ErrorKind::TimedOut);
    }
}
