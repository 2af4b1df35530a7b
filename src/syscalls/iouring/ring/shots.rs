//! The results of multishot operations (see [`SyscallOpType::is_multishot`]), which give many
//! before their completion: each waits in its operation's queue here until the operation's
//! stream ([`Multishot`](crate::syscalls::Multishot)) takes it, then the completion comes last.
//!
//! The queue is bounded: once [`SHOTS_WAITING`] results wait untaken, or results holding a third
//! of what the operation reserved of the buffer budget (a `RecvMulti`'s share for results
//! waiting, see [`RECV_SHARES`](crate::op::RECV_SHARES)), the backend is told to stop (its
//! [`more`](SyscallCompletionRing::more) answers `false`) and the operation completes. A result
//! already on its way is still kept, so none is lost: an accepted connection holds a place in
//! its process's descriptor table, received bytes the third share of the reservation. A process
//! with a rate limit gets one result per submission, so that each passes its limits. While the
//! operation runs its reservation covers the bytes its results hold; once it has completed they
//! are counted on their own until taken. A result nobody will take (its stream dropped, its ring
//! destroyed) is dropped, and the descriptor it made closed.
//!
//! [`SyscallOpType::is_multishot`]: crate::op::SyscallOpType::is_multishot

use std::collections::VecDeque;
use std::task::{Context, Poll};

use rustc_hash::FxHashMap;

use super::slots::{Owner, Phase, Slot};
use super::{AfterUnlock, RingState, SyscallCompletionRing};
use crate::op::{OpError, OpResult, SyscallCompletionEntry};

/// How many results of one multishot operation may wait untaken before its backend is told to
/// stop.
pub const SHOTS_WAITING: usize = 64;

impl SyscallCompletionRing {
    /// One result of multishot operation `seq`, for its stream; whether its backend should go
    /// on. `false` once [`SHOTS_WAITING`] results wait, or when nobody will take them (the
    /// operation was cancelled or its stream dropped, the ring destroyed: the result is dropped,
    /// a descriptor it made closed).
    pub(crate) fn more(&self, seq: u64, outcome: Result<OpResult, OpError>) -> bool {
        let (goes_on, after) = self.more_later(seq, outcome);
        self.after_unlock(after);
        goes_on
    }

    /// [`more`](Self::more), leaving the wake-up (or close) for
    /// [`after_unlock`](Self::after_unlock), for a backend that holds a lock of its own.
    pub(crate) fn more_later(&self, seq: u64, outcome: Result<OpResult, OpError>) -> (bool, AfterUnlock) {
        let mut after = AfterUnlock::default();
        let mut s = self.lock();
        let RingState { slots, shots, destroyed, .. } = &mut *s;
        let goes_on = match slots.get_mut(&seq) {
            Some(Slot { owner: Owner::Future(waker), phase: Phase::Running(cancel), user_data, reserved })
                if !*destroyed =>
            {
                after.wakers.extend(waker.take());
                let waiting = shots.entry(seq).or_default();
                let entry = SyscallCompletionEntry::from_outcome(seq, *user_data, outcome);
                waiting.bytes += held_by(&entry);
                waiting.results.push_back(entry);
                waiting.results.len() < SHOTS_WAITING
                    && (*reserved == 0 || waiting.bytes < *reserved / 3)
                    && !cancel.is_requested()
                    && !self.process.is_rate_limited()
            }
            _ => {
                after.close_fds.extend(outcome.ok().and_then(|r| r.new_fd()));
                false
            }
        };
        (goes_on, after)
    }

    /// A multishot operation's stream polls for its next result, or, once none waits and the
    /// operation has completed, its completion (`true`: the last).
    pub(crate) fn poll_shot(&self, seq: u64, cx: &mut Context<'_>) -> Poll<(SyscallCompletionEntry, bool)> {
        let mut s = self.lock();
        if let Some(waiting) = s.shots.get_mut(&seq)
            && let Some(entry) = waiting.results.pop_front()
        {
            let held = held_by(&entry);
            waiting.bytes -= held;
            if waiting.results.is_empty() {
                s.shots.remove(&seq);
            }
            // Counted on its own once the operation completed (see `waiting_bytes`).
            if matches!(s.slots.get(&seq), Some(Slot { phase: Phase::Done, .. })) {
                s.buffered -= held;
            }
            return Poll::Ready((entry, false));
        }
        self.poll_owned_locked(&mut s, seq, cx).map(|entry| (entry, true))
    }
}

/// The results of one multishot operation waiting for its stream, and the bytes they hold.
#[derive(Default)]
pub(super) struct Waiting {
    results: VecDeque<SyscallCompletionEntry>,
    bytes: usize,
}

/// The bytes the results of `seq` waiting hold: when its operation completes, covered by its
/// reservation until then, they are counted on their own until taken.
pub(super) fn waiting_bytes(shots: &FxHashMap<u64, Waiting>, seq: u64) -> usize {
    if shots.is_empty() { 0 } else { shots.get(&seq).map_or(0, |w| w.bytes) }
}

impl RingState {
    /// Drops the results of `seq` nobody will take, closing the descriptors they made (and, if
    /// the operation has completed, no longer counting what they hold).
    pub(super) fn forget_shots(&mut self, seq: u64, after: &mut AfterUnlock) {
        if !self.shots.is_empty()
            && let Some(waiting) = self.shots.remove(&seq)
        {
            if matches!(self.slots.get(&seq), Some(Slot { phase: Phase::Done, .. })) {
                self.buffered -= waiting.bytes;
            }
            close_made(waiting, after);
        }
    }

    /// Drops every result waiting (the ring is destroyed); the operations that had some.
    pub(super) fn forget_all_shots(&mut self, after: &mut AfterUnlock) -> Vec<u64> {
        let mut had = Vec::new();
        for (seq, waiting) in self.shots.drain() {
            had.push(seq);
            close_made(waiting, after);
        }
        had
    }
}

fn close_made(waiting: Waiting, after: &mut AfterUnlock) {
    after.close_fds.extend(waiting.results.into_iter().filter_map(|e| e.result.new_fd()));
}

/// The memory a result holds (received bytes).
fn held_by(entry: &SyscallCompletionEntry) -> usize {
    match &entry.result {
        OpResult::Bytes(bytes) => bytes.capacity(),
        _ => 0,
    }
}
