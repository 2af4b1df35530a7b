//! [`SmolBackend`]: operations on smol's executor and blocking pool.

use super::reactor::AsyncIo;
use std::sync::Arc;

use super::{Backend, Capabilities, OpOutcome, Operation, Submission, Task, file_ops, net_ops};

/// Runs operations the smol way: file operations on the `blocking` crate's thread pool
/// (`unblock`), sockets on `async_io::Async`, tasks on smol's global executor, which runs on threads of its own: the caller
/// need not run smol (its thread count follows `SMOL_THREADS`, default 1).
#[derive(Debug, Clone, Default)]
pub struct SmolBackend {
    _private: (),
}

impl SmolBackend {
    /// The smol backend.
    pub fn new() -> Self {
        SmolBackend { _private: () }
    }
}

#[async_trait::async_trait]
impl Backend for SmolBackend {
    fn name(&self) -> &'static str {
        "smol"
    }

    fn capabilities(&self) -> Capabilities {
        super::pool_window()
    }

    async fn execute(&self, op: Operation) -> OpOutcome {
        if net_ops::runs_on_readiness(op.op(), op.process()) {
            net_ops::execute(op, &AsyncIo).await
        } else {
            smol::unblock(move || file_ops::execute_sync(op)).await
        }
    }

    fn spawn(&self, task: Task) {
        smol::spawn(task).detach();
    }

    /// File operations go straight to the blocking pool; socket operations whose answer is
    /// already there complete at once, the rest wait in a task on the executor.
    fn submit(self: Arc<Self>, batch: Vec<Submission>) {
        super::start_ready_first(&self, batch, |sub| smol::unblock(move || super::run_blocking(sub)).detach());
    }
}
