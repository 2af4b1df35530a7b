//! Waiting for completions: a blocking wait for one operation, a future's poll for its own, and
//! a stream's poll for the CQ's next, with the wakers the polls leave.

use std::task::{Context, Poll};
use std::time::Instant;

use super::slots::{Owner, Phase, Slot};
use super::{RingState, SyscallCompletionRing};
use crate::op::SyscallCompletionEntry;
use crate::op::{IoUringError, Result};

impl SyscallCompletionRing {
    /// A future polls for its completion.
    pub(crate) fn poll_owned(&self, seq: u64, cx: &mut Context<'_>) -> Poll<SyscallCompletionEntry> {
        self.poll_owned_locked(&mut self.lock(), seq, cx)
    }

    /// [`poll_owned`](Self::poll_owned) under the lock the caller holds.
    pub(super) fn poll_owned_locked(
        &self,
        s: &mut RingState,
        seq: u64,
        cx: &mut Context<'_>,
    ) -> Poll<SyscallCompletionEntry> {
        let Some(slot) = s.slots.get_mut(&seq) else {
            // Unreachable through the public API: a future's slot lives until the future takes it.
            return Poll::Ready(SyscallCompletionEntry::cancelled(seq, 0));
        };
        if matches!(slot.phase, Phase::Done) {
            let entry = s.take_done(seq, &mut self.clock());
            self.counters.retired(1, false);
            return Poll::Ready(entry);
        }
        match &mut slot.owner {
            Owner::Future(Some(w)) if w.will_wake(cx.waker()) => {}
            owner => *owner = Owner::Future(Some(cx.waker().clone())),
        }
        Poll::Pending
    }

    /// A key for a new stream's waker.
    pub(crate) fn new_stream_id(&self) -> u64 {
        let mut s = self.lock();
        s.next_stream_id += 1;
        s.next_stream_id
    }

    /// Forgets the waker of a dropped stream.
    pub(crate) fn forget_stream(&self, id: u64) {
        self.lock().stream_wakers.remove(&id);
    }

    /// Stream `id` polls for the next CQ completion; `None` once the ring is destroyed.
    pub(crate) fn poll_cq(&self, id: u64, cx: &mut Context<'_>) -> Poll<Option<SyscallCompletionEntry>> {
        let mut s = self.lock();
        if let Some(entry) = s.pop_cq(&mut self.clock()) {
            self.counters.retired(1, false);
            return Poll::Ready(Some(entry));
        }
        if s.destroyed {
            return Poll::Ready(None);
        }
        match s.stream_wakers.entry(id) {
            std::collections::hash_map::Entry::Occupied(w) if w.get().will_wake(cx.waker()) => {}
            std::collections::hash_map::Entry::Occupied(mut w) => {
                w.insert(cx.waker().clone());
            }
            std::collections::hash_map::Entry::Vacant(w) => {
                w.insert(cx.waker().clone());
            }
        }
        Poll::Pending
    }

    /// Blocks until `seq` completes and takes it, wherever it stands in the CQ.
    pub(crate) fn wait(&self, seq: u64, deadline: Option<Instant>) -> Result<SyscallCompletionEntry> {
        let pid = self.pid;
        let mut s = self.lock();
        loop {
            match s.slots.get(&seq) {
                Some(Slot { owner: Owner::Future(_) | Owner::Nobody, .. }) => {
                    return Err(IoUringError::UnknownSeq { pid, seq });
                }
                Some(_) => {}
                None if s.destroyed => return Err(IoUringError::RingDestroyed { pid }),
                // Completed: in the CQ, unless already taken.
                None => {
                    let Some(entry) = s.take_from_cq(seq, &mut self.clock()) else {
                        return Err(IoUringError::UnknownSeq { pid, seq });
                    };
                    self.counters.retired(1, false);
                    return Ok(entry);
                }
            }
            s.blocked_waiters += 1;
            s = match deadline {
                None => self.arrived.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        s.blocked_waiters -= 1;
                        return Err(IoUringError::Timeout { pid, seq });
                    }
                    self.arrived.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
            s.blocked_waiters -= 1;
        }
    }
}
