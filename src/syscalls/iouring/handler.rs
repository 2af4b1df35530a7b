//! [`IoUringHandler`]: the rings as a handler of the syscall registry.

use std::sync::Arc;

use super::manager::IoUringManager;
use crate::op::Pid;
use crate::op::SyscallSubmissionEntry;
use crate::syscalls::{Syscall, SyscallHandler, SyscallResult};

/// Handles [`Syscall::Io`] through an [`IoUringManager`], so I/O dispatched through a
/// [`SyscallHandlerRegistry`](crate::syscalls::SyscallHandlerRegistry) shares the rings'
/// processes and descriptors.
///
/// In blocking mode it awaits the completion and returns [`SyscallResult::Done`]; otherwise it
/// returns [`SyscallResult::Submitted`] at once and the completion goes to the process's CQ.
#[derive(Debug, Clone)]
pub struct IoUringHandler {
    manager: Arc<IoUringManager>,
    blocking_mode: bool,
}

impl IoUringHandler {
    /// A handler on `manager`; `blocking_mode` as above.
    pub fn new(manager: Arc<IoUringManager>, blocking_mode: bool) -> Self {
        IoUringHandler { manager, blocking_mode }
    }

    /// The manager.
    pub fn manager(&self) -> &Arc<IoUringManager> {
        &self.manager
    }
}

#[async_trait::async_trait]
impl SyscallHandler for IoUringHandler {
    async fn handle(&self, pid: Pid, call: &Syscall) -> Option<SyscallResult> {
        let Syscall::Io(op) = call else { return None };
        let entry = SyscallSubmissionEntry::new(pid, op.clone(), 0);
        Some(if self.blocking_mode {
            match self.manager.submit_async(pid, entry) {
                Ok(fut) => SyscallResult::Done(fut.await),
                Err(e) => SyscallResult::Error(e.to_string()),
            }
        } else {
            match self.manager.submit(pid, entry) {
                Ok(seq) => SyscallResult::Submitted(seq),
                Err(e) => SyscallResult::Error(e.to_string()),
            }
        })
    }
}
