//! Submission: accepting a batch (its sequence numbers, the rights and the buffer budget each
//! operation takes), and moving queued operations to running for the executor.

use std::time::{Duration, Instant};

use super::chain::Link;
use super::slots::{Owner, Phase, Slot};
use super::stop::Cancel;
use super::{AfterUnlock, RingState, SyscallCompletionRing};
use crate::op::SyscallCompletionEntry;
use crate::op::SyscallOpType;
use crate::op::{IoUringError, OpError, Result};
use crate::syscalls::iouring::metrics::Stage;

/// What [`SyscallCompletionRing::accept_started`] did with a batch.
pub(crate) struct Accepted {
    /// The first sequence number (the batch's are consecutive).
    pub(crate) first: u64,
    /// Whether any operation was queued (behind earlier ones) rather than started.
    pub(crate) queued: bool,
    /// How many started operations count against the executor's window.
    pub(crate) counted: usize,
}

/// What [`SyscallCompletionRing::dispatch`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// Operations taken that hold a place in the executor's window.
    pub(crate) counted: usize,
    /// Whether operations remain queued.
    pub(crate) more: bool,
    /// When the rate limits will admit the next queued operation, if they held it back.
    pub(crate) throttled: Option<Instant>,
}

/// How a batch is accepted: its completions for futures or for the CQ (a `bool` converts to
/// that alone) or for nobody (`discard`: the operations run, and their completions, even their
/// errors, are dropped as a dropped future's are), and whether it is a linked chain (see
/// `chain`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Accept {
    pub(crate) to_future: bool,
    pub(crate) linked: bool,
    pub(crate) discard: bool,
    /// For a future's batch of one: it may be a multishot operation, whose results its stream
    /// takes (none other is accepted).
    pub(crate) multishot: bool,
    /// For a batch of one operation: whether it waits on a peer, when the caller knows, so
    /// that the executor need not take the operation out of the batch to look (one refused
    /// stays with its caller).
    pub(crate) waits_alone: Option<bool>,
}

impl From<bool> for Accept {
    fn from(to_future: bool) -> Self {
        Accept { to_future, ..Accept::default() }
    }
}

/// An operation taken from the SQ for execution.
pub(crate) struct Dispatched {
    pub(crate) seq: u64,
    pub(crate) op: SyscallOpType,
}

impl SyscallCompletionRing {
    /// Accepts `ops` as one all-or-nothing batch; returns the first of their consecutive
    /// sequence numbers and whether any was queued for the executor. Operations the sandbox
    /// refuses complete at once with their error.
    pub(crate) fn enqueue(
        &self,
        ops: impl ExactSizeIterator<Item = (SyscallOpType, u64)>,
        how: impl Into<Accept>,
    ) -> Result<(u64, bool)> {
        let (accepted, after) = self.accept(ops, how.into(), None::<&mut fn(Dispatched, bool)>)?;
        self.after_unlock(after);
        Ok((accepted.first, accepted.queued))
    }

    /// Like [`enqueue`](Self::enqueue), but the operations skip the SQ and go to running at once,
    /// each handed to `start` (with whether it counts against the executor's window), unless
    /// operations queued earlier are still waiting: then they queue behind them. For an executor
    /// that has room for all of them and nobody else in line. The wake-ups of operations refused
    /// at once are left to [`after_unlock`](Self::after_unlock), once the executor's lock is released.
    pub(crate) fn accept_started(
        &self,
        ops: impl ExactSizeIterator<Item = (SyscallOpType, u64)>,
        how: impl Into<Accept>,
        start: &mut impl FnMut(Dispatched, bool),
    ) -> Result<(Accepted, AfterUnlock)> {
        self.accept(ops, how.into(), Some(start))
    }

    fn accept<F: FnMut(Dispatched, bool)>(
        &self,
        ops: impl ExactSizeIterator<Item = (SyscallOpType, u64)>,
        how: Accept,
        mut start: Option<&mut F>,
    ) -> Result<(Accepted, AfterUnlock)> {
        let Accept { to_future, linked, discard, multishot, .. } = how;
        let n = ops.len();
        let multishot = multishot && to_future && n == 1;
        let pid = self.pid;
        let sandbox = self.process.sandbox();
        let limit = self.cq_capacity.min(sandbox.policy().outstanding_limit());
        // A batch larger than the queue or the outstanding limit can never fit, however many
        // completions are taken: saying "full" would have its caller retry forever.
        let fits = self.sq_capacity.min(limit);
        if n > fits {
            return Err(IoUringError::BatchTooLarge { pid, len: n, capacity: fits });
        }
        let mut s = self.lock();
        if s.destroyed {
            return Err(IoUringError::RingDestroyed { pid });
        }
        if s.outstanding() + n > limit {
            return Err(IoUringError::CompletionQueueFull { pid, capacity: limit });
        }
        if s.sq.len() + n > self.sq_capacity {
            return Err(IoUringError::SubmissionQueueFull { pid, capacity: self.sq_capacity });
        }
        s.reserve_seqs(n as u64);
        let first = s.next_seq;
        let mut accepted = Accepted { first, queued: false, counted: 0 };
        // A chain's first operation waits in the SQ with the rest held, until all are checked.
        let linked = linked && n > 1;
        if !s.sq.is_empty() || linked {
            start = None;
        }
        let mut after = AfterUnlock::default();
        let mut clock = self.clock();
        s.metrics.submitted += n as u64;
        let (mut whole_before, mut refused) = (None, false);
        for (mut op, user_data) in ops {
            let seq = s.next_seq;
            s.next_seq += 1;
            let sampled = clock.at(seq);
            if let Some(now) = sampled {
                s.stamps.insert(seq, [now; 3]);
            }
            let owner = match (to_future, discard) {
                (_, true) => Owner::Nobody,
                (true, false) => Owner::Future(None),
                (false, false) => Owner::Queue,
            };
            let reserved = op.held_len();
            let checked = match sandbox.check(&op) {
                Ok(()) if op.is_multishot() && !multishot => Err(not_multishot(&op)),
                Ok(()) if op.fixed_owner().is_some_and(|owner| owner != pid) => Err(super::pool::not_its_pool(&op)),
                Ok(()) if reserved > 0 => s.reserve_buffer(&op, reserved, sandbox.policy().buffered_byte_limit()),
                checked => checked,
            };
            if checked.is_ok() && op.acts_with_rights() {
                s.rights.insert(seq, sandbox.clone());
            }
            match (checked, start.as_mut()) {
                (Ok(()), Some(start)) => {
                    if sampled.is_some() {
                        // Started the moment it was submitted.
                        s.metrics.record(Stage::Queued, Duration::ZERO);
                    }
                    let phase = Phase::Running(Cancel::default());
                    s.slots.insert(seq, Slot { user_data, owner, phase, reserved });
                    let counts = !op.may_wait_on_peer();
                    accepted.counted += usize::from(counts);
                    start(Dispatched { seq, op }, counts);
                }
                (Ok(()), None) if linked && seq > first => {
                    s.slots.insert(seq, Slot { user_data, owner, phase: Phase::Linked, reserved });
                    s.links.insert(seq - 1, Link { next: seq, whole: whole_before });
                    whole_before = op.write_len();
                    s.held.insert(seq, op);
                }
                (Ok(()), None) => {
                    // Only a chain's head needs it: no other queued operation pays for it.
                    if linked {
                        whole_before = op.write_len();
                    }
                    s.slots.insert(seq, Slot { user_data, owner, phase: Phase::Queued, reserved });
                    s.sq.push_back((seq, op));
                    accepted.queued = true;
                }
                (Err(e), _) => {
                    refused = true;
                    let e = e.giving_back(op.take_buffer());
                    let entry = SyscallCompletionEntry::from_outcome(seq, user_data, Err(e));
                    s.metrics.completed += 1;
                    s.metrics.failed += 1;
                    match owner {
                        Owner::Future(_) => {
                            s.slots.insert(seq, Slot { user_data, owner, phase: Phase::Done, reserved: 0 });
                            s.done.insert(seq, entry);
                        }
                        Owner::Queue => s.push_cq(entry, &mut after),
                        Owner::Nobody => {
                            s.unstamp(seq);
                            self.counters.retired(1, true);
                        }
                    }
                }
            }
        }
        if linked && refused {
            s.refuse_chain(first..first + n as u64, &mut clock, &self.counters, &mut after);
        }
        self.counters.submitted(n);
        Ok((accepted, after))
    }

    /// Moves up to `max` queued operations to running, in order, as far as the process's rate
    /// limits admit them. Operations that may wait on a peer do not count against `max`.
    pub(crate) fn dispatch<T>(
        &self,
        max: usize,
        out: &mut Vec<T>,
        mut make: impl FnMut(Dispatched, bool) -> T,
    ) -> Taken {
        let mut s = self.lock();
        out.reserve(max.min(s.sq.len()));
        let mut counted = 0;
        let mut clock = self.clock();
        // Only a process with a rate limit reads its limits and the time (or one whose limit was
        // lifted while it waited: its wait ends).
        let limited = self.process.is_rate_limited().then(|| {
            let now = Instant::now();
            let sandbox = self.process.sandbox();
            s.throttle.limit(sandbox.policy().ops_rate_limit(), sandbox.policy().bytes_rate_limit(), now);
            now
        });
        if limited.is_none() && s.throttle.is_waiting() {
            s.throttle.limit(None, None, Instant::now());
        }
        let mut throttled = None;
        while counted < max {
            let RingState { sq, throttle, .. } = &mut *s;
            if let (Some(now), Some((_, op))) = (limited, sq.front())
                && let Err(at) = throttle.admit(op, now)
            {
                throttled = Some(at);
                break;
            }
            let Some((seq, op)) = s.sq.pop_front() else { break };
            let RingState { slots, metrics, stamps, .. } = &mut *s;
            // Every operation in the SQ has a queued slot (cancelling one takes it out of both).
            let Some(slot) = slots.get_mut(&seq) else { continue };
            slot.phase = Phase::Running(Cancel::default());
            if let Some(now) = clock.at(seq)
                && let Some(times) = stamps.get_mut(&seq)
            {
                times[1] = now;
                metrics.record(Stage::Queued, now.saturating_duration_since(times[0]));
            }
            let counts = !op.may_wait_on_peer();
            counted += usize::from(counts);
            out.push(make(Dispatched { seq, op }, counts));
        }
        Taken { counted, more: !s.sq.is_empty(), throttled }
    }
}

impl RingState {
    /// Reserves `len` bytes of the buffer budget (`limit`) for read `op`, or refuses it with
    /// `ENOMEM` if they would pass it.
    #[inline]
    fn reserve_buffer(&mut self, op: &SyscallOpType, len: usize, limit: usize) -> std::result::Result<(), OpError> {
        if self.buffered + len > limit {
            self.reclaim_pools();
            if self.buffered + len > limit {
                return Err(over_budget(op, len, limit));
            }
        }
        self.buffered += len;
        Ok(())
    }
}

/// The refusal of a multishot operation submitted where its results have nobody to take them.
#[cold]
fn not_multishot(op: &SyscallOpType) -> OpError {
    OpError::new(
        rustix::io::Errno::INVAL.raw_os_error(),
        format!("{} gives many results: submit it alone with submit_multishot", op.name()),
    )
}

/// The refusal of a read whose `len` bytes would pass the buffer budget `limit`.
#[cold]
fn over_budget(op: &SyscallOpType, len: usize, limit: usize) -> OpError {
    OpError::new(
        rustix::io::Errno::NOMEM.raw_os_error(),
        format!("{}: {len} more bytes would pass the policy's {limit} bytes of reads outstanding", op.name()),
    )
}
