//! Submissions: what a process asks for.

use super::op::SyscallOpType;
use crate::Pid;

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
}

impl SyscallSubmissionEntry {
    /// A submission of `op` for `pid`.
    pub fn new(pid: Pid, op: SyscallOpType, user_data: u64) -> Self {
        SyscallSubmissionEntry { pid, op, user_data }
    }
}
