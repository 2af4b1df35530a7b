//! Deadlines: an operation not done by its deadline is stopped as `cancel` stops it and
//! completes with `ETIMEDOUT` (exactly once: the timer and the completion race under the
//! ring's lock). A queued or linked operation completes at once; a running one is asked to stop
//! and its `Cancelled` outcome becomes `ETIMEDOUT`; one that ends anyway reports its outcome.
//!
//! Each deadline is a task on the host's timer, taken back when its operation ends first, so
//! a tenant's deadlines hold the timer no longer than its operations are outstanding.

use std::time::Instant;

use super::slots::Phase;
use super::{AfterUnlock, RingState, SyscallCompletionRing};
use crate::op::OpError;
use crate::timer::timer;

impl SyscallCompletionRing {
    /// Gives operation `seq` the deadline `at`. Nothing if it already ended; no deadline (and
    /// a log) if the timer's thread cannot be made.
    pub(crate) fn set_deadline(&self, seq: u64, at: Instant) {
        let mut s = self.lock();
        if !s.slots.get(&seq).is_some_and(|slot| !matches!(slot.phase, Phase::Done)) {
            return;
        }
        let me = self.me.clone();
        match timer().at(at, move || {
            if let Some(ring) = me.upgrade() {
                ring.expire(seq);
            }
        }) {
            Ok(key) => {
                s.deadlines.insert(seq, key);
            }
            Err(e) => tracing::error!(error = %e, "could not start the timer thread: a deadline is not kept"),
        }
    }

    /// The deadline of `seq` passed (the timer's call).
    fn expire(&self, seq: u64) {
        let mut s = self.lock();
        if s.deadlines.remove(&seq).is_none() {
            return; // It ended meanwhile.
        }
        let mut after = AfterUnlock::default();
        let Some(slot) = s.slots.get_mut(&seq) else { return };
        match &mut slot.phase {
            Phase::Done => return,
            Phase::Running(cancel) => cancel.time_out(&mut after),
            Phase::Queued | Phase::Linked => {
                s.end_queued(seq, OpError::timed_out(), &mut self.clock(), &self.counters, &mut after);
            }
        }
        drop(s);
        self.after_unlock(after);
    }
}

impl RingState {
    /// Takes back the deadline of `seq`, which ended.
    pub(super) fn forget_deadline(&mut self, seq: u64) {
        if !self.deadlines.is_empty()
            && let Some(key) = self.deadlines.remove(&seq)
        {
            timer().cancel(key);
        }
    }

    /// Takes back every deadline (the ring is destroyed).
    pub(super) fn forget_deadlines(&mut self) {
        for (_, key) in self.deadlines.drain() {
            timer().cancel(key);
        }
    }
}
