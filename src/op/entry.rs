//! The entries of a ring's queues: what a process submits, and what a finished operation
//! reports.

use std::time::Duration;

use super::Pid;
use super::error::{OpError, errno};
use super::ops::SyscallOpType;
use super::result::OpResult;

/// One operation submitted by a process, with a `user_data` value handed back in its
/// completion for correlation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallSubmissionEntry {
    /// The submitting process; must match the pid it is submitted to.
    pub pid: Pid,
    /// The operation.
    pub op: SyscallOpType,
    /// Returned unchanged in [`SyscallCompletionEntry::user_data`](super::SyscallCompletionEntry::user_data).
    pub user_data: u64,
    /// How long after its submission the operation may take: one not done by then is stopped
    /// as [`cancel`](crate::syscalls::IoUringManager::cancel) stops it, and completes with
    /// `ETIMEDOUT` instead of `Cancelled`. One that cannot be stopped any more (a file operation
    /// already running on a pool thread, as one already running in io_uring's workers) completes
    /// with its own outcome when it ends. `None` (the default): no deadline.
    pub deadline: Option<Duration>,
}

impl SyscallSubmissionEntry {
    /// A submission of `op` for `pid`, without a deadline.
    pub fn new(pid: Pid, op: SyscallOpType, user_data: u64) -> Self {
        SyscallSubmissionEntry { pid, op, user_data, deadline: None }
    }

    /// The same submission, with a [`deadline`](Self::deadline) of `within` after it is
    /// submitted.
    pub fn with_deadline(mut self, within: Duration) -> Self {
        self.deadline = Some(within);
        self
    }
}

/// What the manager's submit calls take for a pid: a whole [`SyscallSubmissionEntry`], or an
/// operation alone, submitted for that pid with `user_data` 0 and no deadline.
pub trait IntoSubmission {
    /// The entry, for `pid`.
    fn into_submission(self, pid: Pid) -> SyscallSubmissionEntry;
}

impl IntoSubmission for SyscallSubmissionEntry {
    /// The entry as it is (its pid must be `pid`, as the manager checks).
    fn into_submission(self, _pid: Pid) -> SyscallSubmissionEntry {
        self
    }
}

impl IntoSubmission for SyscallOpType {
    fn into_submission(self, pid: Pid) -> SyscallSubmissionEntry {
        SyscallSubmissionEntry::new(pid, self, 0)
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyscallCompletionStatus {
    /// It ran and succeeded; the result is in [`SyscallCompletionEntry::result`].
    Success,
    /// It failed or was refused; the text says what and why, [`SyscallCompletionEntry::errno`]
    /// gives the number.
    Error(String),
    /// It was cancelled before it could finish (by `cancel`, a dropped future, or
    /// `destroy_ring`).
    Cancelled,
}

impl SyscallCompletionStatus {
    /// Whether the operation succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, SyscallCompletionStatus::Success)
    }
    /// Whether the operation failed.
    pub fn is_error(&self) -> bool {
        matches!(self, SyscallCompletionStatus::Error(_))
    }
    /// Whether the operation was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, SyscallCompletionStatus::Cancelled)
    }
}

/// The completion of one operation: its sequence number, how it ended, what it produced, and
/// the submitter's `user_data`.
#[derive(Debug, Clone)]
pub struct SyscallCompletionEntry {
    /// The sequence number `submit` returned.
    pub seq: u64,
    /// How the operation ended.
    pub status: SyscallCompletionStatus,
    /// What it produced: [`OpResult::None`] unless it succeeded, but for an operation that
    /// carried the caller's buffer, which has it back in [`OpResult::Buf`] (or
    /// [`OpResult::Fixed`]) however it ended.
    pub result: OpResult,
    /// The value given to [`SyscallSubmissionEntry::new`](SyscallSubmissionEntry::new).
    pub user_data: u64,
    errno: i32,
    /// What its result counts against its process's buffer budget until it is taken (set by
    /// the ring when it delivers it; not part of what the completion says).
    held: usize,
}

impl PartialEq for SyscallCompletionEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.seq, &self.status, &self.result, self.user_data, self.errno)
            == (other.seq, &other.status, &other.result, other.user_data, other.errno)
    }
}

impl Eq for SyscallCompletionEntry {}

impl SyscallCompletionEntry {
    /// A completion from an operation's outcome. `ECANCELED` becomes `Cancelled`. A failure
    /// that gives the caller's buffer back has it in the result ([`OpResult::Buf`], count 0).
    pub fn from_outcome(seq: u64, user_data: u64, outcome: Result<OpResult, OpError>) -> Self {
        match outcome {
            Ok(result) => SyscallCompletionEntry {
                seq,
                status: SyscallCompletionStatus::Success,
                result,
                user_data,
                errno: 0,
                held: 0,
            },
            Err(mut e) => {
                let result = e.take_buffer().map_or(OpResult::None, |buf| buf.into_result(0));
                let status = if e.is_cancelled() {
                    SyscallCompletionStatus::Cancelled
                } else {
                    SyscallCompletionStatus::Error(e.message().to_owned())
                };
                SyscallCompletionEntry { seq, status, result, user_data, errno: e.errno(), held: 0 }
            }
        }
    }

    /// A `Cancelled` completion.
    pub fn cancelled(seq: u64, user_data: u64) -> Self {
        SyscallCompletionEntry {
            seq,
            status: SyscallCompletionStatus::Cancelled,
            result: OpResult::None,
            user_data,
            errno: errno::ECANCELED,
            held: 0,
        }
    }

    /// The `errno` of a failed operation (`ECANCELED` for a cancelled one); `None` on success.
    pub fn errno(&self) -> Option<i32> {
        (self.errno != 0).then_some(self.errno)
    }

    /// What it counts against its process's buffer budget until it is taken.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Counts `held` bytes against the budget for it: what its operation reserved, or what its
    /// result holds if that is less (a caller's buffer counts only for what the read grew it
    /// by, which its reservation bounds).
    pub(crate) fn hold(&mut self, reserved: usize) -> usize {
        self.held = reserved.min(self.result.held_bytes());
        self.held
    }
}
