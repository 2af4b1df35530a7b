//! [`SmolBackend`]: operations on smol's executor and blocking pool.

use super::reactor::AsyncIo;
use std::sync::Arc;

use super::lanes::{Drainer, Lanes};
use super::{Backend, Batch, Capabilities, Task, net_ops, pool};

/// Runs operations the smol way: file operations on the `blocking` crate's thread pool
/// (`unblock`: a few tasks per process that each run its operations one after another, not a
/// task each), sockets on `async_io::Async`, tasks on smol's global executor, which runs on
/// threads of its own: the caller need not run smol (its thread count follows `SMOL_THREADS`,
/// default 1).
#[derive(Debug, Clone)]
pub struct SmolBackend {
    lanes: Arc<Lanes>,
}

impl SmolBackend {
    /// The smol backend.
    pub fn new() -> Self {
        SmolBackend { lanes: pool::file_lanes() }
    }
}

impl Default for SmolBackend {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `drainer` on the `blocking` crate's pool, and the task that goes on with its lane after
/// its turn at the back of the pool's queue.
fn drain(drainer: Drainer) {
    smol::unblock(move || {
        if let Some(next) = drainer.run() {
            drain(next);
        }
    })
    .detach();
}

impl Backend for SmolBackend {
    fn name(&self) -> &'static str {
        "smol"
    }

    fn capabilities(&self) -> Capabilities {
        pool::pool_window()
    }

    fn spawn(&self, task: Task) {
        smol::spawn(task).detach();
    }

    /// File operations go to their processes' lanes, drained on the blocking pool; socket
    /// operations whose answer is already there complete at once, the rest wait in a task on the
    /// executor.
    fn submit(&self, batch: Batch) {
        pool::start_in_lanes(
            batch,
            &self.lanes,
            |sub| {
                self.spawn(Box::pin(pool::run_waiting(sub, |op| async move { net_ops::execute(op, &AsyncIo).await })))
            },
            drain,
        );
    }
}
