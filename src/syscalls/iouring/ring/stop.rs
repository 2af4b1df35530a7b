//! Stopping operations early: cancelling one (a queued or linked one completes `Cancelled` at
//! once, a running one is asked to stop, through its backend's token if it has one), and
//! destroying the ring.

use std::sync::{Arc, Weak};

use super::slots::{Owner, Phase};
use super::{AfterUnlock, RingState, SyscallCompletionRing};
use crate::op::SyscallCompletionEntry;
use crate::op::{IoUringError, OpError, Result};
use crate::syscalls::iouring::cancel::{CancelToken, Stop};

/// A running operation's cancellation: whether it was asked for, and the token of a backend
/// that watches for it. The token is made only when a backend asks for one (an operation that
/// waits, an io_uring request still in the kernel after its enter): most operations finish
/// without, and sharing a token with each would cost two atomic operations apiece.
#[derive(Default)]
pub(super) struct Cancel {
    requested: bool,
    /// Asked for by its deadline (see `deadline`): a `Cancelled` outcome is `ETIMEDOUT`.
    timed_out: bool,
    token: Option<Arc<CancelToken>>,
    /// The backend that stops it, and its key there (see [`Stop`]).
    stop: Option<(Weak<dyn Stop>, u64)>,
}

impl Cancel {
    /// Records its deadline's request: one cancelled before stays cancelled.
    pub(super) fn time_out(&mut self, after: &mut AfterUnlock) {
        if !self.requested {
            self.timed_out = true;
            self.request(after);
        }
    }

    /// Whether its deadline asked it to stop.
    pub(super) fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// Whether it was asked to stop.
    pub(super) fn is_requested(&self) -> bool {
        self.requested
    }

    /// Records the request; a backend's token is told once the ring's lock is released, as its
    /// hook (io_uring's `ASYNC_CANCEL`) may take other locks or ask the ring about the operation.
    pub(super) fn request(&mut self, after: &mut AfterUnlock) {
        self.requested = true;
        after.cancel.extend(self.token.clone());
        after.stops.extend(self.stop.take());
    }
}

impl SyscallCompletionRing {
    /// Cancels `seq`: a queued operation completes as `Cancelled` at once; a running one is
    /// asked to stop; a finished one is left as it is.
    pub(crate) fn cancel(&self, seq: u64) -> Result<()> {
        let mut s = self.lock();
        let mut after = AfterUnlock::default();
        let issued = s.issued(seq);
        match s.slots.get_mut(&seq).map(|slot| &mut slot.phase) {
            None if issued => {} // finished (in the CQ, or taken)
            None => return Err(IoUringError::UnknownSeq { pid: self.pid, seq }),
            Some(Phase::Done) => {}
            Some(Phase::Running(cancel)) => cancel.request(&mut after),
            Some(Phase::Queued | Phase::Linked) => {
                s.end_queued(seq, OpError::cancelled(), &mut self.clock(), &self.counters, &mut after);
            }
        }
        drop(s);
        self.after_unlock(after);
        Ok(())
    }

    /// Whether running operation `seq` was asked to stop. One that already ended without its
    /// backend (its ring destroyed, its future's completion forced) counts as asked.
    pub(crate) fn is_cancelled(&self, seq: u64) -> bool {
        match self.lock().slots.get(&seq).map(|slot| &slot.phase) {
            Some(Phase::Running(cancel)) => cancel.requested,
            Some(Phase::Queued | Phase::Linked) => false,
            Some(Phase::Done) | None => true,
        }
    }

    /// The cancellation token of running operation `seq`, made on first request (already
    /// cancelled if cancellation was asked for before); of one that already ended without its
    /// backend, a cancelled token.
    pub(crate) fn cancel_token(&self, seq: u64) -> Arc<CancelToken> {
        let mut s = self.lock();
        match s.slots.get_mut(&seq).map(|slot| &mut slot.phase) {
            Some(Phase::Running(cancel)) => {
                let requested = cancel.requested;
                cancel.token.get_or_insert_with(|| Arc::new(CancelToken::new(requested))).clone()
            }
            Some(Phase::Queued | Phase::Linked) => Arc::new(CancelToken::new(false)),
            Some(Phase::Done) | None => Arc::new(CancelToken::new(true)),
        }
    }

    /// Registers `stop` as what stops each of `ops` (a running operation's sequence number and
    /// its key in the backend), under one lock: one whose cancellation was asked for already is
    /// stopped at once (once the lock is let go), as is every one of a destroyed ring; one that
    /// ended on its own is left alone. Used by
    /// the backends that keep operations by a key (io_uring's).
    #[cfg_attr(not(all(feature = "uring", target_os = "linux")), allow(dead_code))]
    pub(crate) fn stop_with(&self, ops: impl Iterator<Item = (u64, u64)>, stop: &Weak<dyn Stop>) {
        let mut s = self.lock();
        let mut after = AfterUnlock::default();
        // A destroyed ring asked every operation it had to stop, those whose slots it ended
        // (forced futures, the CQ's) too: each is stopped now, wherever its slot stands (one
        // that ended on its own meanwhile asks the backend for nothing it still has).
        let destroyed = s.destroyed;
        for (seq, key) in ops {
            match s.slots.get_mut(&seq).map(|slot| &mut slot.phase) {
                Some(Phase::Running(cancel)) if !cancel.requested && !destroyed => {
                    cancel.stop = Some((stop.clone(), key));
                }
                Some(Phase::Running(_)) => after.stops.push((stop.clone(), key)),
                _ if destroyed => after.stops.push((stop.clone(), key)),
                // Ended on its own: nothing to stop.
                _ => {}
            }
        }
        drop(s);
        self.after_unlock(after);
    }

    /// Ends the ring: queued operations are cancelled, running ones asked to stop, futures
    /// resolve `Cancelled`, CQ completions nobody took are discarded, every waiter wakes.
    pub(crate) fn destroy(&self) {
        let mut s = self.lock();
        if s.destroyed {
            return;
        }
        s.destroyed = true;
        s.retire_pool();
        // Nothing is counted once destroyed (`buffered` is set below): the pools are let go.
        s.retired_pools.clear();
        // The buffers of queued operations go back to their futures, with their cancellation.
        let RingState { sq, held, .. } = &mut *s;
        let mut bufs: rustc_hash::FxHashMap<u64, crate::op::LentBuf> =
            sq.drain(..).chain(held.drain()).filter_map(|(seq, mut op)| Some((seq, op.take_buffer()?))).collect();
        s.links.clear();
        s.forget_deadlines();
        let mut after = AfterUnlock { notify_waiters: true, ..AfterUnlock::default() };
        let lost_shots = s.forget_all_shots(&mut after);
        let mut discarded = s.cq.len() - s.cq_stale;
        s.cq.clear();
        s.cq_stale = 0;
        let mut forced = 0;
        let RingState { slots, done, stamps, .. } = &mut *s;
        slots.retain(|&seq, slot| {
            if let Phase::Running(cancel) = &mut slot.phase {
                cancel.request(&mut after);
            }
            match &mut slot.owner {
                Owner::Future(waker) => {
                    if !matches!(slot.phase, Phase::Done) {
                        slot.reserved = 0;
                        forced += 1;
                        slot.phase = Phase::Done;
                        let cancelled = OpError::cancelled().giving_back(bufs.remove(&seq));
                        done.insert(seq, SyscallCompletionEntry::from_outcome(seq, slot.user_data, Err(cancelled)));
                        after.wakers.extend(waker.take());
                    } else if let Some(entry) = done.get_mut(&seq)
                        && let Some(fd) = entry.result.new_fd()
                    {
                        // The descriptor it created goes with the process: the future must not
                        // hand out a number that names nothing (or, later, something else).
                        *entry = SyscallCompletionEntry::cancelled(seq, slot.user_data);
                        after.close_fds.push(fd);
                    } else if lost_shots.contains(&seq) {
                        // A multishot operation whose results were dropped with the ring does
                        // not end as if its stream had had them all.
                        done.insert(seq, SyscallCompletionEntry::cancelled(seq, slot.user_data));
                    }
                    true
                }
                Owner::Queue | Owner::Nobody => {
                    discarded += 1;
                    false
                }
            }
        });
        stamps.retain(|seq, _| slots.contains_key(seq));
        // Only the futures' completions are left to take; nothing is left to run.
        s.buffered = s.done.values().map(SyscallCompletionEntry::held).sum();
        s.rights.clear();
        self.counters.retired(discarded, true);
        s.metrics.completed += forced;
        s.metrics.cancelled += forced;
        after.wakers.extend(s.stream_wakers.drain().map(|(_, w)| w));
        drop(s);
        self.after_unlock(after);
    }
}
