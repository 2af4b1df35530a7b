//! Linked chains (`submit_linked`): each operation of a chain runs only once the one before it
//! succeeded, and when one fails (or is cancelled, or times out) every later one completes
//! `Cancelled` without running, as io_uring's `IOSQE_IO_LINK` does, on every backend.
//!
//! A chain is accepted all or nothing, as any batch is, and its operations are checked then
//! (rights are taken at submission): if the sandbox refuses one, it completes with its error and
//! every other completes `Cancelled`, none having run. Its first operation is queued; the rest
//! wait in `held` (their slots *linked*), each named by its predecessor's [`Link`]. The
//! predecessor's delivery ([`RingState::follow`]) queues the next one at the front of the SQ and
//! has the window told ([`AfterUnlock::requeue`]), or ends the rest of the chain.

use super::slots::Phase;
use super::timing::Clock;
use super::{AfterUnlock, RingState};
#[cfg(doc)]
use crate::op::SyscallOpType;
use crate::op::{OpError, OpResult};
use crate::syscalls::iouring::stats::Counters;

/// What follows a chain operation.
pub(super) struct Link {
    /// The next operation's seq.
    pub(super) next: u64,
    /// For a write, the bytes it must write all of for the chain to go on (a short write ends
    /// it, as in io_uring): its [`write_len`](SyscallOpType::write_len).
    pub(super) whole: Option<usize>,
}

impl Link {
    /// Whether `outcome` of the operation this link follows lets the chain go on.
    pub(super) fn goes_on(&self, outcome: &Result<OpResult, OpError>) -> bool {
        match (outcome, self.whole) {
            (
                Ok(OpResult::Count(n) | OpResult::Buf { count: n, .. } | OpResult::Fixed { count: n, .. }),
                Some(whole),
            ) => *n == whole,
            (Ok(_), _) => true,
            (Err(_), _) => false,
        }
    }
}

impl RingState {
    /// After `seq` was delivered: if it is followed by `link`, queues the next operation (the
    /// chain goes on) or completes it and every later one `Cancelled`. A linked operation
    /// already ended (cancelled, timed out) ends the chain there: it ended the rest itself.
    pub(super) fn follow(
        &mut self,
        link: Link,
        goes_on: bool,
        clock: &mut Clock,
        counters: &Counters,
        after: &mut AfterUnlock,
    ) {
        if goes_on {
            if let Some(op) = self.held.remove(&link.next) {
                if let Some(slot) = self.slots.get_mut(&link.next) {
                    slot.phase = Phase::Queued;
                }
                self.sq.push_front((link.next, op));
                after.requeue = true;
            }
            return;
        }
        let mut next = Some(link.next);
        while let Some(seq) = next {
            let Some(mut op) = self.held.remove(&seq) else { break };
            next = self.links.remove(&seq).map(|l| l.next);
            let cancelled = OpError::cancelled().giving_back(op.take_buffer());
            let _always_delivered = self.deliver(seq, Err(cancelled), clock, counters, after);
        }
    }

    /// Takes queued or held operation `seq` out of the SQ (or its chain's hold), which it ends
    /// without running: the caller's buffer it carried, to give back with its completion.
    pub(super) fn unqueue(&mut self, seq: u64) -> Option<crate::op::LentBuf> {
        let mut op = match self.held.remove(&seq) {
            Some(op) => op,
            None => {
                let at = self.sq.iter().position(|&(q, _)| q == seq)?;
                self.sq.remove(at)?.1
            }
        };
        op.take_buffer()
    }

    /// Ends queued or held operation `seq` with `e` (its cancellation, its deadline), without
    /// running it: the caller's buffer it carried goes back with it, and whoever waits on the CQ
    /// is told.
    pub(super) fn end_queued(
        &mut self,
        seq: u64,
        e: OpError,
        clock: &mut Clock,
        counters: &Counters,
        after: &mut AfterUnlock,
    ) {
        let e = e.giving_back(self.unqueue(seq));
        let queued = self.cq.len();
        let _always_delivered = self.deliver(seq, Err(e), clock, counters, after);
        if self.cq.len() > queued {
            self.cq_arrived(after);
        }
    }

    /// Ends a chain whose operations were just accepted (`seqs`, queued or held, none started)
    /// because the sandbox refused one of them (already completed with its error): every other
    /// completes `Cancelled`.
    pub(super) fn refuse_chain(
        &mut self,
        seqs: std::ops::Range<u64>,
        clock: &mut Clock,
        counters: &Counters,
        after: &mut AfterUnlock,
    ) {
        for seq in seqs {
            self.links.remove(&seq);
            let buf = self.unqueue(seq);
            if self.slots.contains_key(&seq) {
                let cancelled = OpError::cancelled().giving_back(buf);
                let _always_delivered = self.deliver(seq, Err(cancelled), clock, counters, after);
            }
        }
    }
}
