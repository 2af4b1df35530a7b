//! The syscall registry: handlers asked in turn, and the general async executor in front of it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::iouring::SyscallCompletionEntry;
use super::iouring::SyscallOpType;
use crate::op::Pid;

/// A system call of a virtual process.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Syscall {
    /// An I/O operation, handled by [`IoUringHandler`](super::IoUringHandler) when registered.
    Io(SyscallOpType),
    /// The caller's pid. Built in: [`SyscallResult::Value`].
    GetPid,
    /// Suspends the calling task (not a thread) for a while. Built in: `Value(0)`.
    Sleep(Duration),
}

/// What a handled syscall returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyscallResult {
    /// The I/O operation completed.
    Done(SyscallCompletionEntry),
    /// The I/O operation was submitted; its completion goes to the CQ under this seq.
    Submitted(u64),
    /// A plain value.
    Value(i64),
    /// The call could not be handled; the text says why.
    Error(String),
}

/// Handles some syscalls.
#[async_trait::async_trait]
pub trait SyscallHandler: Send + Sync {
    /// Handles `call` for `pid`, or returns `None` if it is not this handler's.
    async fn handle(&self, pid: Pid, call: &Syscall) -> Option<SyscallResult>;
}

/// Handlers asked in the order they were registered; `GetPid` and `Sleep` are answered by a
/// built-in handler asked last.
#[derive(Default)]
pub struct SyscallHandlerRegistry {
    handlers: Vec<Box<dyn SyscallHandler>>,
}

impl std::fmt::Debug for SyscallHandlerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyscallHandlerRegistry").field("handlers", &self.handlers.len()).finish()
    }
}

impl SyscallHandlerRegistry {
    /// A registry with only the built-in handler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a handler, asked after those registered before it.
    pub fn register(&mut self, handler: Box<dyn SyscallHandler>) {
        self.handlers.push(handler);
    }

    /// Asks each handler in turn; the first answer wins.
    pub async fn dispatch(&self, pid: Pid, call: &Syscall) -> SyscallResult {
        for h in &self.handlers {
            if let Some(result) = h.handle(pid, call).await {
                return result;
            }
        }
        match call {
            Syscall::GetPid => SyscallResult::Value(i64::from(pid)),
            Syscall::Sleep(d) => {
                futures_timer::Delay::new(*d).await;
                SyscallResult::Value(0)
            }
            Syscall::Io(op) => {
                SyscallResult::Error(format!("no handler for {} (register an IoUringHandler)", op.name()))
            }
        }
    }
}

/// Runs any syscall asynchronously through a registry; works under any executor.
#[derive(Debug, Clone)]
pub struct AsyncSyscallExecutor {
    registry: Arc<SyscallHandlerRegistry>,
}

impl AsyncSyscallExecutor {
    /// An executor over `registry`.
    pub fn new(registry: Arc<SyscallHandlerRegistry>) -> Self {
        AsyncSyscallExecutor { registry }
    }

    /// Executes `call` for `pid`.
    pub fn execute(&self, pid: Pid, call: Syscall) -> impl Future<Output = SyscallResult> + Send + 'static {
        let registry = self.registry.clone();
        async move { registry.dispatch(pid, &call).await }
    }
}
