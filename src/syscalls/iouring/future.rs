//! [`CompletionFuture`]: one operation's completion, owned by whoever awaits it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::future::FusedFuture;

use super::ring::SyscallCompletionRing;
use crate::op::SyscallCompletionEntry;

/// The completion of one operation submitted with
/// [`IoUringManager::submit_async`](super::IoUringManager::submit_async).
///
/// It owns its completion: the completion never appears in the ring's CQ. Dropping the future
/// before it completes cancels the operation (best effort: an operation the backend cannot stop
/// finishes anyway) and discards its completion, closing any descriptor it created. To keep the
/// operation going and collect its completion from the CQ instead, call
/// [`detach`](Self::detach).
///
/// It stores the task's `Waker` and is woken by whichever thread completes the work, so it runs
/// under any executor.
///
/// As with any `Future`, it must not be polled again once it returned `Ready`: doing so panics.
/// It implements [`FusedFuture`], so `select!`-style combinators know when it is done.
#[must_use = "dropping a CompletionFuture cancels its operation"]
#[derive(Debug)]
pub struct CompletionFuture {
    ring: Arc<SyscallCompletionRing>,
    seq: u64,
    /// Set once the completion was taken or handed to the CQ.
    finished: bool,
}

impl CompletionFuture {
    pub(crate) fn new(ring: Arc<SyscallCompletionRing>, seq: u64) -> Self {
        CompletionFuture { ring, seq, finished: false }
    }

    /// The operation's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The ring it belongs to.
    pub(crate) fn ring(&self) -> &Arc<SyscallCompletionRing> {
        &self.ring
    }

    /// Gives up ownership: the operation goes on and its completion goes to the ring's CQ, where
    /// `reap_completions`, `wait_completion(seq)` and the stream find it. Returns the sequence
    /// number.
    pub fn detach(mut self) -> u64 {
        if !self.finished {
            self.finished = true;
            self.ring.detach(self.seq);
        }
        self.seq
    }
}

impl CompletionFuture {
    /// Gives up the completion without stopping the operation: it runs on, and its completion
    /// is discarded (see [`SyscallCompletionRing::discard`]).
    pub(crate) fn discard(mut self) {
        if !self.finished {
            self.finished = true;
            self.ring.discard(self.seq);
        }
    }
}

impl Future for CompletionFuture {
    type Output = SyscallCompletionEntry;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SyscallCompletionEntry> {
        // Its completion was taken (or handed to the CQ): there is nothing left to give, and
        // making one up would report an operation that never happened.
        assert!(!self.finished, "CompletionFuture polled after it completed (or was detached)");
        let entry = std::task::ready!(self.ring.poll_owned(self.seq, cx));
        self.finished = true;
        Poll::Ready(entry)
    }
}

impl FusedFuture for CompletionFuture {
    fn is_terminated(&self) -> bool {
        self.finished
    }
}

impl Drop for CompletionFuture {
    fn drop(&mut self) {
        if !self.finished {
            self.ring.abandon(self.seq);
        }
    }
}
