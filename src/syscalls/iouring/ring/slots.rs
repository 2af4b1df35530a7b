//! The slot state machine: an operation's slot, its owner and phase, and the delivery of its
//! outcome to that owner (the CQ, a future, or nobody), with what a future does to its slot when
//! it is dropped or detached, and the rights a slot's operation was submitted with.

use std::sync::Arc;
use std::task::Waker;

use super::stop::Cancel;
use super::timing::Clock;
use super::{AfterUnlock, RingState, SyscallCompletionRing};
use crate::op::SyscallCompletionEntry;
use crate::op::SyscallOpType;
use crate::op::{OpError, OpResult};
use crate::sandbox::Sandbox;
use crate::syscalls::iouring::metrics::Stage;
use crate::syscalls::iouring::stats::Counters;
use rustc_hash::FxHashMap;

/// An operation's delivery state, from submission until its completion enters the CQ (or, for
/// a future's, until the future takes it).
pub(super) struct Slot {
    pub(super) user_data: u64,
    pub(super) owner: Owner,
    pub(super) phase: Phase,
    /// The bytes a read counts against the ring's buffer budget until it completes.
    pub(super) reserved: usize,
}

pub(super) enum Owner {
    Queue,
    Future(Option<Waker>),
    /// The future was dropped: the completion is discarded when it arrives.
    Nobody,
}

pub(super) enum Phase {
    /// In the SQ.
    Queued,
    /// Held until the operation before it in its linked chain succeeds (its op in `held`).
    Linked,
    Running(Cancel),
    /// Completed for a future; the completion is in `done`.
    Done,
}

impl SyscallCompletionRing {
    /// Delivers the outcome of a running operation to its owner.
    pub(crate) fn complete(&self, seq: u64, outcome: std::result::Result<OpResult, OpError>) {
        let after = self.complete_many(std::iter::once((seq, outcome)));
        self.after_unlock(after);
    }

    /// Delivers many outcomes under one lock. Returns the wake-ups (and closes) to do with
    /// [`after_unlock`](Self::after_unlock) once the caller holds no lock of its own: a woken task may come
    /// straight back for that lock.
    pub(crate) fn complete_many(
        &self,
        outcomes: impl Iterator<Item = (u64, std::result::Result<OpResult, OpError>)>,
    ) -> AfterUnlock {
        let mut s = self.lock();
        let mut after = AfterUnlock::default();
        let mut clock = self.clock();
        let queued = s.cq.len();
        for (seq, outcome) in outcomes {
            // Not delivered if the slot already ended (destroyed ring, cancelled future): nobody
            // will see this outcome, so a descriptor it created must not outlive it.
            if let Some(outcome) = s.deliver(seq, outcome, &mut clock, &self.counters, &mut after) {
                after.close_fds.extend(outcome.ok().and_then(|r| r.new_fd()));
            }
        }
        if s.cq.len() > queued {
            s.cq_arrived(&mut after);
        }
        after
    }

    /// A future was dropped before completing: its completion will be discarded, and the
    /// operation is cancelled if it can still be stopped.
    pub(crate) fn abandon(&self, seq: u64) {
        let mut s = self.lock();
        let mut after = AfterUnlock::default();
        let Some(slot) = s.slots.get_mut(&seq) else { return };
        match &mut slot.phase {
            Phase::Running(cancel) => {
                cancel.request(&mut after);
                slot.owner = Owner::Nobody;
                s.forget_shots(seq, &mut after);
            }
            Phase::Queued | Phase::Linked => {
                // Nobody is left to take its buffer back.
                drop(s.unqueue(seq));
                s.remove(seq);
                self.counters.retired(1, true);
                // What follows it in a chain never runs.
                if let Some(link) = s.links.remove(&seq) {
                    s.follow(link, false, &mut self.clock(), &self.counters, &mut after);
                }
            }
            Phase::Done => s.forget_done(seq, &self.counters, &mut after),
        }
        drop(s);
        self.after_unlock(after);
    }

    /// A future's operation goes on with nobody to take its completion, which is discarded
    /// when it arrives (a close a handle started and no longer waits for): unlike
    /// [`abandon`](Self::abandon), nothing is cancelled.
    pub(crate) fn discard(&self, seq: u64) {
        let mut s = self.lock();
        let mut after = AfterUnlock::default();
        let Some(slot) = s.slots.get_mut(&seq) else { return };
        match slot.phase {
            Phase::Queued | Phase::Linked | Phase::Running(_) => slot.owner = Owner::Nobody,
            Phase::Done => s.forget_done(seq, &self.counters, &mut after),
        }
        drop(s);
        self.after_unlock(after);
    }

    /// Hands a future's completion to the CQ instead.
    pub(crate) fn detach(&self, seq: u64) {
        let mut s = self.lock();
        if s.destroyed {
            // Nobody can take from a destroyed ring's CQ: the completion is discarded, as
            // destroying the ring did with every other one bound for the CQ.
            drop(s);
            return self.abandon(seq);
        }
        let mut after = AfterUnlock::default();
        let Some(slot) = s.slots.get_mut(&seq) else { return };
        slot.owner = Owner::Queue;
        if matches!(slot.phase, Phase::Done) {
            s.slots.remove(&seq);
            if let Some(entry) = s.done.remove(&seq) {
                s.push_cq(entry, &mut after);
            }
        }
        drop(s);
        self.after_unlock(after);
    }

    /// The rights operation `seq` was submitted with (see [`SyscallOpType::acts_with_rights`]);
    /// `ECANCELED` if it has already ended without its backend (its ring destroyed), or
    /// `EINVAL` for an operation that took none.
    pub(crate) fn rights(&self, seq: u64) -> std::result::Result<Arc<Sandbox>, OpError> {
        let s = self.lock();
        match s.slots.get(&seq) {
            Some(Slot { phase: Phase::Running(_) | Phase::Queued | Phase::Linked, .. }) => {
                s.rights.get(&seq).cloned().ok_or_else(|| {
                    OpError::new(crate::op::errno::EINVAL, "the operation was submitted without rights to act")
                })
            }
            _ => Err(OpError::cancelled()),
        }
    }

    /// [`rights`](Self::rights) of operation `seq` (`op`) if it needs them to run
    /// ([`SyscallOpType::acts_with_rights`]), `None` otherwise, without taking the lock.
    pub(crate) fn needed_rights(
        &self,
        op: &SyscallOpType,
        seq: u64,
    ) -> std::result::Result<Option<Arc<Sandbox>>, OpError> {
        op.acts_with_rights().then(|| self.rights(seq)).transpose()
    }
}

impl RingState {
    /// Ends a running (or, when cancelled, queued) slot with `outcome`, for its owner. Gives the
    /// outcome back if `seq` has no such slot. A completion put in the CQ wakes nobody yet: the
    /// caller calls [`cq_arrived`](Self::cq_arrived) once for its pass.
    pub(super) fn deliver(
        &mut self,
        seq: u64,
        outcome: std::result::Result<OpResult, OpError>,
        clock: &mut Clock,
        counters: &Counters,
        after: &mut AfterUnlock,
    ) -> Option<std::result::Result<OpResult, OpError>> {
        // One lookup, whichever way the slot ends.
        let std::collections::hash_map::Entry::Occupied(mut slot) = self.slots.entry(seq) else {
            return Some(outcome);
        };
        let outcome = match (&slot.get().phase, outcome) {
            (Phase::Done, outcome) => return Some(outcome),
            // Stopped for its deadline: it timed out (with the caller's buffer, if it has one).
            (Phase::Running(cancel), Err(mut e)) if cancel.timed_out() && e.is_cancelled() => {
                Err(OpError::timed_out().giving_back(e.take_buffer()))
            }
            (_, outcome) => outcome,
        };
        let link = if self.links.is_empty() { None } else { self.links.remove(&seq) };
        let goes_on = link.as_ref().is_some_and(|link| link.goes_on(&outcome));
        let mut entry = SyscallCompletionEntry::from_outcome(seq, slot.get().user_data, outcome);
        let metrics = &mut self.metrics;
        if let Some(now) = clock.at(seq)
            && let Some(times) = self.stamps.get_mut(&seq)
        {
            times[2] = now;
            metrics.record(Stage::Running, now.saturating_duration_since(times[1]));
        }
        metrics.completed += 1;
        metrics.failed += u64::from(entry.status.is_error());
        metrics.cancelled += u64::from(entry.status.is_cancelled());
        forget_rights(&mut self.rights, seq);
        // What the read reserved becomes what its result holds (no more), until taken.
        let reserved = std::mem::take(&mut slot.get_mut().reserved);
        self.buffered -= reserved;
        self.buffered += super::shots::waiting_bytes(&self.shots, seq);
        if !matches!(slot.get().owner, Owner::Nobody) {
            self.buffered += entry.hold(reserved);
        }
        match &mut slot.get_mut().owner {
            Owner::Nobody => {
                slot.remove();
                self.unstamp(seq);
                after.close_fds.extend(entry.result.new_fd());
                counters.retired(1, true);
            }
            Owner::Future(waker) => {
                after.wakers.extend(waker.take());
                slot.get_mut().phase = Phase::Done;
                self.done.insert(seq, entry);
            }
            Owner::Queue => {
                slot.remove();
                // Whoever waits is woken by the caller, once for its pass.
                self.cq.push_back(Some(entry));
            }
        }
        self.forget_deadline(seq);
        if let Some(link) = link {
            self.follow(link, goes_on, clock, counters, after);
        }
        None
    }

    /// Drops a future's completion nobody will take (its future dropped or given up): what it
    /// holds is given back, a descriptor it made closed.
    fn forget_done(&mut self, seq: u64, counters: &Counters, after: &mut AfterUnlock) {
        // Before the slot goes: its results' bytes are counted on their own once it is done.
        self.forget_shots(seq, after);
        self.remove(seq);
        if let Some(e) = self.done.remove(&seq) {
            self.buffered -= e.held();
            after.close_fds.extend(e.result.new_fd());
        }
        counters.retired(1, true);
    }

    /// Removes a slot that ends without being taken (and without a completion), giving back
    /// what it reserved.
    fn remove(&mut self, seq: u64) -> Option<Slot> {
        self.unstamp(seq);
        forget_rights(&mut self.rights, seq);
        self.forget_deadline(seq);
        let slot = self.slots.remove(&seq)?;
        self.buffered -= slot.reserved;
        Some(slot)
    }
}

/// Forgets the rights of operation `seq`, which has ended (a lookup only while any operation
/// has some).
fn forget_rights(rights: &mut FxHashMap<u64, Arc<Sandbox>>, seq: u64) {
    if !rights.is_empty() {
        rights.remove(&seq);
    }
}
