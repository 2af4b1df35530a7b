//! The per-process ring: its submission queue, its completion queue, and the delivery state of
//! every outstanding operation.
//!
//! Each operation has a slot from submission until its completion is delivered: into the CQ (the
//! slot ends there, and the completion waits in the CQ itself), or, for a future, until the future
//! takes it. A slot has an owner (the CQ, a future, or nobody once its future was dropped) and a
//! phase (queued, running, done). Every path that ends an operation, taken from the CQ, taken by
//! its future, or discarded, counts it once in the manager's counters, so each accepted operation
//! is counted exactly once.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::cancel::CancelToken;
use super::metrics::{Metrics, ProcessStats, Stage};
use super::stats::Counters;
use super::stream::CompletionStream;
use super::throttle::Throttle;
use crate::op::Pid;
use crate::op::SyscallCompletionEntry;
use crate::op::{IoUringError, OpError, Result};
use crate::op::{OpResult, SyscallOpType};
use crate::process::Process;
use crate::sandbox::Sandbox;
use crate::sync::{AtomicBool, AtomicUsize, Condvar, Mutex, MutexGuard};
use std::sync::OnceLock;

/// Default submission queue size.
pub const DEFAULT_SQ_SIZE: usize = 256;
/// Default completion queue size: the most operations a ring may have outstanding.
pub const DEFAULT_CQ_SIZE: usize = 512;
/// The largest ring this crate accepts (its own limit, not the kernel's).
pub const MAX_RING_SIZE: usize = 65536;

/// A process's completion ring.
///
/// Made by [`IoUringManager::create_ring`](super::IoUringManager::create_ring) (or on the first
/// submission to a pid); most calls go through the manager by pid. A ring admits at most
/// `sq_capacity` queued operations and at most `cq_capacity` outstanding ones (queued, running,
/// or completed and not yet taken): beyond that, submissions are refused at once, so no
/// completion is ever dropped.
pub struct SyscallCompletionRing {
    pid: Pid,
    sq_capacity: usize,
    cq_capacity: usize,
    process: Arc<Process>,
    counters: Arc<Counters>,
    state: Mutex<RingState>,
    /// Signalled when a CQ-owned completion arrives or the ring is destroyed.
    arrived: Condvar,
    /// The ring's place in the line of the scheduler that starts its operations.
    pub(crate) seat: Seat,
    /// Where the places its operations hold in the backend's window are given back, set when the
    /// ring is first scheduled. Reached through the ring, so an operation in flight holds one
    /// reference (the ring) rather than two. (The scheduler's line holds the ring only while it
    /// has queued operations, so the two keep each other alive no longer than that.)
    window: OnceLock<Arc<dyn Window>>,
}

/// What starts a ring's operations: told when operations that held a place in its window leave
/// the backend. The executor implements it; the ring knows nothing else of it.
pub(crate) trait Window: Send + Sync {
    /// `counted` places held by `ring`'s operations are free again.
    fn release(&self, ring: &Arc<SyscallCompletionRing>, counted: usize);
}

/// A ring's place in its scheduler's line. Read and written only by the scheduler, under its own
/// lock (the atomics only let a shared ring carry it).
#[derive(Default)]
pub(crate) struct Seat {
    /// Whether the ring is in line (or out of it for a while, below, and coming back).
    pub(crate) scheduled: AtomicBool,
    /// Places in the window its operations hold.
    pub(crate) held: AtomicUsize,
    /// Whether it is out of line because it holds its whole share of the window (still
    /// `scheduled`; its next completion puts it back).
    pub(crate) at_share: AtomicBool,
    /// What was left of its turn when it went out of line for holding its share.
    pub(crate) turn_left: AtomicUsize,
    /// Whether it is out of line waiting for its rate limit's timer (still `scheduled`). A timer
    /// entry for a ring no longer waiting is stale and ignored.
    pub(crate) throttled: AtomicBool,
}

impl std::fmt::Debug for SyscallCompletionRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyscallCompletionRing")
            .field("pid", &self.pid)
            .field("sq_capacity", &self.sq_capacity)
            .field("cq_capacity", &self.cq_capacity)
            .field("outstanding", &self.outstanding())
            .finish()
    }
}

#[derive(Default)]
struct RingState {
    /// The next sequence number, within the ring's last block (see [`SeqBlocks`]).
    next_seq: u64,
    /// The blocks of sequence numbers this ring was given: a number is this ring's only if it
    /// lies in one of them below `next_seq`.
    blocks: SeqBlocks,
    /// Queued operations, oldest first.
    sq: VecDeque<(u64, SyscallOpType)>,
    /// Every operation not yet completed, and every future's completion not yet taken. Keyed by
    /// seq; Fx hashing, as the keys are the ring's own counters, not attacker-chosen. Small (the
    /// ops wait in the SQ, the completions in the CQ or in `done`): slots move on every insert
    /// and removal.
    slots: FxHashMap<u64, Slot>,
    /// Futures' completions, until the future takes them.
    done: FxHashMap<u64, SyscallCompletionEntry>,
    /// CQ-owned completions in completion order, taken from the front without a lookup.
    /// `wait_completion` takes one out of order by leaving a `None` behind, passed over or
    /// compacted later.
    cq: VecDeque<Option<SyscallCompletionEntry>>,
    cq_stale: usize,
    /// The sandbox in force when each operation that needs it to run
    /// ([`SyscallOpType::acts_with_rights`]) was submitted, until the operation ends. Kept apart
    /// from the slots: few operations have one, and every slot would carry the room for it.
    rights: FxHashMap<u64, Arc<Sandbox>>,
    /// Bytes held for reads: reserved by those not yet completed, held by results not yet
    /// taken. Never more than the policy's `max_buffered_bytes` (checked at submission).
    buffered: usize,
    destroyed: bool,
    /// The waker of each stream waiting for a CQ completion, by stream id; taken (all of them)
    /// when one arrives, removed when its stream is dropped.
    stream_wakers: FxHashMap<u64, Waker>,
    next_stream_id: u64,
    blocked_waiters: usize,
    metrics: Metrics,
    /// The policy's rate limits as they stand for this ring.
    throttle: Throttle,
    /// When each sampled operation was submitted, started and completed (the later ones set as
    /// it gets there): kept apart so that every other slot is smaller.
    stamps: FxHashMap<u64, [Instant; 3]>,
}

/// An operation's delivery state, from submission until its completion enters the CQ (or, for
/// a future's, until the future takes it).
struct Slot {
    user_data: u64,
    owner: Owner,
    phase: Phase,
    /// The bytes a read counts against the ring's buffer budget until it completes.
    reserved: usize,
}

enum Owner {
    Queue,
    Future(Option<Waker>),
    /// The future was dropped: the completion is discarded when it arrives.
    Nobody,
}

enum Phase {
    /// In the SQ.
    Queued,
    Running(Cancel),
    /// Completed for a future; the completion is in `done`.
    Done,
}

/// A running operation's cancellation: whether it was asked for, and the token of a backend
/// that watches for it. The token is made only when a backend asks for one (an operation that
/// waits, an io_uring request still in the kernel after its enter): most operations finish
/// without, and sharing a token with each would cost two atomic operations apiece.
#[derive(Default)]
struct Cancel {
    requested: bool,
    token: Option<Arc<CancelToken>>,
}

impl Cancel {
    /// Records the request; a backend's token is told once the ring's lock is released, as its
    /// hook (io_uring's `ASYNC_CANCEL`) may take other locks or ask the ring about the operation.
    fn request(&mut self, after: &mut AfterUnlock) {
        self.requested = true;
        after.cancel.extend(self.token.clone());
    }
}

/// What to do once the ring's lock is released.
#[derive(Default)]
#[must_use]
pub(crate) struct AfterUnlock {
    cancel: Vec<Arc<CancelToken>>,
    wakers: Vec<Waker>,
    notify_waiters: bool,
    close_fds: Vec<i32>,
}

/// What [`SyscallCompletionRing::submit_started`] did with a batch.
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

/// An operation taken from the SQ for execution.
pub(crate) struct Dispatched {
    pub(crate) seq: u64,
    pub(crate) op: SyscallOpType,
}

impl SyscallCompletionRing {
    pub(crate) fn new(
        pid: Pid,
        sq_capacity: usize,
        cq_capacity: usize,
        process: Arc<Process>,
        counters: Arc<Counters>,
    ) -> Result<Self> {
        validate_sizes(sq_capacity, cq_capacity)?;
        Ok(SyscallCompletionRing {
            pid,
            sq_capacity,
            cq_capacity,
            process,
            counters,
            state: Mutex::new(RingState::default()),
            arrived: Condvar::new(),
            seat: Seat::default(),
            window: OnceLock::new(),
        })
    }

    /// The process this ring belongs to.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The most operations that may be queued, not yet started.
    pub fn sq_capacity(&self) -> usize {
        self.sq_capacity
    }

    /// The most operations that may be outstanding.
    pub fn cq_capacity(&self) -> usize {
        self.cq_capacity
    }

    /// Operations accepted and not yet taken (queued, running, or completed).
    pub fn outstanding(&self) -> usize {
        self.lock().outstanding()
    }

    /// Completions waiting in the CQ.
    pub fn ready(&self) -> usize {
        let s = self.lock();
        s.cq.len() - s.cq_stale
    }

    /// This ring's counters and latency split.
    pub fn stats(&self) -> ProcessStats {
        let s = self.lock();
        s.metrics.snapshot(self.pid, s.outstanding() as u64, s.throttle.throttled(Instant::now()))
    }

    /// Whether the ring was destroyed.
    pub fn is_destroyed(&self) -> bool {
        self.lock().destroyed
    }

    /// A stream of this ring's CQ completions (the same as
    /// [`IoUringManager::completions`](super::IoUringManager::completions)); it ends when the
    /// ring is destroyed.
    pub fn completions(self: &Arc<Self>) -> CompletionStream {
        CompletionStream::new(self.clone())
    }

    pub(crate) fn process(&self) -> &Arc<Process> {
        &self.process
    }

    /// Records where the places of this ring's operations are given back: `window`'s, on the
    /// first call (a manager has one executor).
    pub(crate) fn scheduled_by(&self, window: impl FnOnce() -> Arc<dyn Window>) {
        self.window.get_or_init(window);
    }

    /// Gives `counted` places of this ring's operations back to its window (none before its
    /// first operation).
    pub(crate) fn release(self: &Arc<Self>, counted: usize) {
        if counted > 0
            && let Some(window) = self.window.get()
        {
            window.release(self, counted);
        }
    }

    /// A clock for one pass under the lock.
    fn clock(&self) -> Clock {
        Clock { on: self.counters.timing(), now: None }
    }

    fn lock(&self) -> MutexGuard<'_, RingState> {
        crate::sync::lock(&self.state)
    }

    /// Wakes, notifies and closes what a pass under the lock left to do.
    pub(crate) fn finish(&self, after: AfterUnlock) {
        for token in after.cancel {
            token.cancel();
        }
        for w in after.wakers {
            w.wake();
        }
        if after.notify_waiters {
            self.arrived.notify_all();
        }
        for fd in after.close_fds {
            let _ = self.process.close(fd);
        }
    }

    /// Accepts `ops` as one all-or-nothing batch; returns the first of their consecutive
    /// sequence numbers and whether any was queued for the executor. Operations the sandbox
    /// refuses complete at once with their error.
    pub(crate) fn submit(
        &self,
        ops: impl ExactSizeIterator<Item = (SyscallOpType, u64)>,
        to_future: bool,
    ) -> Result<(u64, bool)> {
        let (accepted, after) = self.accept(ops, to_future, None::<&mut fn(Dispatched, bool)>)?;
        self.finish(after);
        Ok((accepted.first, accepted.queued))
    }

    /// Like [`submit`](Self::submit), but the operations skip the SQ and go to running at once,
    /// each handed to `start` (with whether it counts against the executor's window), unless
    /// operations queued earlier are still waiting: then they queue behind them. For an executor
    /// that has room for all of them and nobody else in line. The wake-ups of operations refused
    /// at once are left to [`finish`](Self::finish), once the executor's lock is released.
    pub(crate) fn submit_started(
        &self,
        ops: impl ExactSizeIterator<Item = (SyscallOpType, u64)>,
        to_future: bool,
        start: &mut impl FnMut(Dispatched, bool),
    ) -> Result<(Accepted, AfterUnlock)> {
        self.accept(ops, to_future, Some(start))
    }

    fn accept<F: FnMut(Dispatched, bool)>(
        &self,
        ops: impl ExactSizeIterator<Item = (SyscallOpType, u64)>,
        to_future: bool,
        mut start: Option<&mut F>,
    ) -> Result<(Accepted, AfterUnlock)> {
        let n = ops.len();
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
        if !s.sq.is_empty() {
            start = None;
        }
        let mut after = AfterUnlock::default();
        let mut clock = self.clock();
        s.metrics.submitted += n as u64;
        for (op, user_data) in ops {
            let seq = s.next_seq;
            s.next_seq += 1;
            let sampled = clock.at(seq);
            if let Some(now) = sampled {
                s.stamps.insert(seq, [now; 3]);
            }
            let owner = if to_future { Owner::Future(None) } else { Owner::Queue };
            let reserved = op.read_len();
            let checked = match sandbox.check(&op) {
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
                (Ok(()), None) => {
                    s.slots.insert(seq, Slot { user_data, owner, phase: Phase::Queued, reserved });
                    s.sq.push_back((seq, op));
                    accepted.queued = true;
                }
                (Err(e), _) => {
                    let entry = SyscallCompletionEntry::from_outcome(seq, user_data, Err(e));
                    s.metrics.completed += 1;
                    s.metrics.failed += 1;
                    if to_future {
                        s.slots.insert(seq, Slot { user_data, owner, phase: Phase::Done, reserved: 0 });
                        s.done.insert(seq, entry);
                    } else {
                        s.push_cq(entry, &mut after);
                    }
                }
            }
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

    /// Delivers the outcome of a running operation to its owner.
    pub(crate) fn complete(&self, seq: u64, outcome: std::result::Result<OpResult, OpError>) {
        let after = self.complete_many(std::iter::once((seq, outcome)));
        self.finish(after);
    }

    /// Delivers many outcomes under one lock. Returns the wake-ups (and closes) to do with
    /// [`finish`](Self::finish) once the caller holds no lock of its own: a woken task may come
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

    /// A future polls for its completion.
    pub(crate) fn poll_owned(&self, seq: u64, cx: &mut Context<'_>) -> Poll<SyscallCompletionEntry> {
        let mut s = self.lock();
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
            }
            Phase::Queued => {
                s.sq.retain(|&(q, _)| q != seq);
                s.remove(seq);
                self.counters.retired(1, true);
            }
            Phase::Done => {
                s.remove(seq);
                if let Some(e) = s.done.remove(&seq) {
                    s.buffered -= e.result.held_bytes();
                    after.close_fds.extend(e.result.new_fd());
                }
                self.counters.retired(1, true);
            }
        }
        drop(s);
        self.finish(after);
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
        self.finish(after);
    }

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
            Some(Phase::Queued) => {
                s.sq.retain(|&(q, _)| q != seq);
                let cancelled = Err(OpError::cancelled());
                let queued = s.cq.len();
                let _always_delivered = s.deliver(seq, cancelled, &mut self.clock(), &self.counters, &mut after);
                if s.cq.len() > queued {
                    s.cq_arrived(&mut after);
                }
            }
        }
        drop(s);
        self.finish(after);
        Ok(())
    }

    /// The rights operation `seq` was submitted with (see [`SyscallOpType::acts_with_rights`]);
    /// `ECANCELED` if it has already ended without its backend (its ring destroyed), or
    /// `EINVAL` for an operation that took none.
    pub(crate) fn rights(&self, seq: u64) -> std::result::Result<Arc<Sandbox>, OpError> {
        let s = self.lock();
        match s.slots.get(&seq) {
            Some(Slot { phase: Phase::Running(_) | Phase::Queued, .. }) => {
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

    /// Whether running operation `seq` was asked to stop. One that already ended without its
    /// backend (its ring destroyed, its future's completion forced) counts as asked.
    pub(crate) fn is_cancelled(&self, seq: u64) -> bool {
        match self.lock().slots.get(&seq).map(|slot| &slot.phase) {
            Some(Phase::Running(cancel)) => cancel.requested,
            Some(Phase::Queued) => false,
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
            Some(Phase::Queued) => Arc::new(CancelToken::new(false)),
            Some(Phase::Done) | None => Arc::new(CancelToken::new(true)),
        }
    }

    /// Takes up to `max` CQ completions, oldest first.
    pub(crate) fn reap(&self, max: usize) -> Vec<SyscallCompletionEntry> {
        let mut s = self.lock();
        let mut out = Vec::with_capacity(max.min(s.cq.len()));
        let mut clock = self.clock();
        while out.len() < max {
            match s.cq.pop_front() {
                Some(Some(entry)) => {
                    s.took(&entry, &mut clock);
                    out.push(entry);
                }
                Some(None) => s.cq_stale -= 1,
                None => break,
            }
        }
        self.counters.retired(out.len(), false);
        out
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

    /// Ends the ring: queued operations are cancelled, running ones asked to stop, futures
    /// resolve `Cancelled`, CQ completions nobody took are discarded, every waiter wakes.
    pub(crate) fn destroy(&self) {
        let mut s = self.lock();
        if s.destroyed {
            return;
        }
        s.destroyed = true;
        s.sq.clear();
        let mut discarded = s.cq.len() - s.cq_stale;
        s.cq.clear();
        s.cq_stale = 0;
        let mut after = AfterUnlock { notify_waiters: true, ..AfterUnlock::default() };
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
                        done.insert(seq, SyscallCompletionEntry::cancelled(seq, slot.user_data));
                        after.wakers.extend(waker.take());
                    } else if let Some(entry) = done.get_mut(&seq)
                        && let Some(fd) = entry.result.new_fd()
                    {
                        // The descriptor it created goes with the process: the future must not
                        // hand out a number that names nothing (or, later, something else).
                        *entry = SyscallCompletionEntry::cancelled(seq, slot.user_data);
                        after.close_fds.push(fd);
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
        s.buffered = s.done.values().map(|e| e.result.held_bytes()).sum();
        s.rights.clear();
        self.counters.retired(discarded, true);
        s.metrics.completed += forced;
        s.metrics.cancelled += forced;
        after.wakers.extend(s.stream_wakers.drain().map(|(_, w)| w));
        drop(s);
        self.finish(after);
    }
}

impl RingState {
    /// Reserves `len` bytes of the buffer budget (`limit`) for read `op`, or refuses it with
    /// `ENOMEM` if they would pass it.
    #[inline]
    fn reserve_buffer(&mut self, op: &SyscallOpType, len: usize, limit: usize) -> std::result::Result<(), OpError> {
        if self.buffered + len > limit {
            return Err(over_budget(op, len, limit));
        }
        self.buffered += len;
        Ok(())
    }

    /// Makes room for `n` consecutive sequence numbers from `next_seq`: a batch's numbers are
    /// consecutive, so a batch that would cross the end of the ring's block starts a new one.
    fn reserve_seqs(&mut self, n: u64) {
        if self.next_seq == 0 || self.next_seq + n > self.blocks.end() {
            self.next_seq = self.blocks.take_new();
        }
    }

    /// Whether this ring issued `seq` (whether or not it has completed since).
    fn issued(&self, seq: u64) -> bool {
        seq < self.next_seq && self.blocks.contains(seq)
    }

    /// Ends a running (or, when cancelled, queued) slot with `outcome`, for its owner. Gives the
    /// outcome back if `seq` has no such slot. A completion put in the CQ wakes nobody yet: the
    /// caller calls [`cq_arrived`](Self::cq_arrived) once for its pass.
    fn deliver(
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
        if matches!(slot.get().phase, Phase::Done) {
            return Some(outcome);
        }
        let entry = SyscallCompletionEntry::from_outcome(seq, slot.get().user_data, outcome);
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
        // What the read reserved becomes what its result holds, until taken.
        self.buffered -= std::mem::take(&mut slot.get_mut().reserved);
        if !matches!(slot.get().owner, Owner::Nobody) {
            self.buffered += entry.result.held_bytes();
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
        None
    }

    /// Puts a completion in the CQ and wakes whoever waits for one.
    fn push_cq(&mut self, entry: SyscallCompletionEntry, after: &mut AfterUnlock) {
        self.cq.push_back(Some(entry));
        self.cq_arrived(after);
    }

    /// Wakes whoever waits for a CQ completion: once per pass that put any there.
    fn cq_arrived(&mut self, after: &mut AfterUnlock) {
        after.wakers.extend(self.stream_wakers.drain().map(|(_, w)| w));
        after.notify_waiters |= self.blocked_waiters > 0;
    }

    fn pop_cq(&mut self, clock: &mut Clock) -> Option<SyscallCompletionEntry> {
        while let Some(entry) = self.cq.pop_front() {
            match entry {
                Some(entry) => {
                    self.took(&entry, clock);
                    return Some(entry);
                }
                None => self.cq_stale -= 1,
            }
        }
        None
    }

    /// Takes `seq`'s completion from wherever it stands in the CQ.
    fn take_from_cq(&mut self, seq: u64, clock: &mut Clock) -> Option<SyscallCompletionEntry> {
        let entry = self.cq.iter_mut().find(|e| e.as_ref().is_some_and(|e| e.seq == seq))?.take()?;
        self.cq_stale += 1;
        self.compact_cq();
        self.took(&entry, clock);
        Some(entry)
    }

    /// Removes a future's done slot and returns its completion.
    fn take_done(&mut self, seq: u64, clock: &mut Clock) -> SyscallCompletionEntry {
        self.slots.remove(&seq);
        let entry = self.done.remove(&seq).expect("a done slot's completion is in `done`");
        self.took(&entry, clock);
        entry
    }

    /// A completion leaves its ring: the bytes it held leave the buffer budget, and how long it
    /// waited is measured if it is a sampled one. Every way of taking a completion ends here.
    #[inline]
    fn took(&mut self, entry: &SyscallCompletionEntry, clock: &mut Clock) {
        let seq = entry.seq;
        self.buffered -= entry.result.held_bytes();
        if let Some(times) = self.unstamp(seq)
            && let Some(now) = clock.at(seq)
        {
            self.metrics.record(Stage::Waiting, now.saturating_duration_since(times[2]));
        }
    }

    /// Removes a slot that ends without being taken (and without a completion), giving back
    /// what it reserved.
    fn remove(&mut self, seq: u64) -> Option<Slot> {
        self.unstamp(seq);
        forget_rights(&mut self.rights, seq);
        let slot = self.slots.remove(&seq)?;
        self.buffered -= slot.reserved;
        Some(slot)
    }

    /// Forgets the times of `seq`, if it is a sampled operation.
    fn unstamp(&mut self, seq: u64) -> Option<[Instant; 3]> {
        if seq % SAMPLE_EVERY == 1 { self.stamps.remove(&seq) } else { None }
    }

    /// Operations accepted and not yet taken.
    fn outstanding(&self) -> usize {
        self.slots.len() + self.cq.len() - self.cq_stale
    }

    /// Drops stale CQ numbers once they are most of the queue, so a caller that only ever uses
    /// `wait_completion` does not grow the CQ without bound.
    fn compact_cq(&mut self) {
        if self.cq_stale > 32 && self.cq_stale * 2 > self.cq.len() {
            self.cq.retain(Option::is_some);
            self.cq_stale = 0;
        }
    }
}

/// Forgets the rights of operation `seq`, which has ended (a lookup only while any operation
/// has some).
fn forget_rights(rights: &mut FxHashMap<u64, Arc<Sandbox>>, seq: u64) {
    if !rights.is_empty() {
        rights.remove(&seq);
    }
}

/// The refusal of a read whose `len` bytes would pass the buffer budget `limit`.
#[cold]
fn over_budget(op: &SyscallOpType, len: usize, limit: usize) -> OpError {
    OpError::new(
        rustix::io::Errno::NOMEM.raw_os_error(),
        format!("{}: {len} more bytes would pass the policy's {limit} bytes of reads outstanding", op.name()),
    )
}

/// How many sequence numbers a ring takes at a time. A batch (at most [`MAX_RING_SIZE`]
/// operations) always fits in one.
const SEQ_BLOCK: u64 = 1 << 20;

/// The next block of sequence numbers not yet given to any ring, counted in blocks: shared by
/// every ring of the program, so that a sequence number names an operation of one ring lifetime
/// only. A stale number kept from a destroyed ring is unknown to every later ring of its pid
/// instead of naming another tenant's operation. A block's first number is never issued, so 0
/// is never a sequence number. (2^44 blocks: not exhausted in the life of any program.)
static NEXT_SEQ_BLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The blocks of sequence numbers one ring was given, in increasing order.
#[derive(Default)]
struct SeqBlocks {
    starts: Vec<u64>,
}

impl SeqBlocks {
    /// Takes a new block; returns its first number to issue: one past the block's start, so
    /// that each ring's first operation is one of those sampled for latency (see
    /// [`SAMPLE_EVERY`]).
    fn take_new(&mut self) -> u64 {
        let start = NEXT_SEQ_BLOCK.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * SEQ_BLOCK;
        self.starts.push(start);
        start + 1
    }

    /// One past the last number of the newest block (0 before the first).
    fn end(&self) -> u64 {
        self.starts.last().map_or(0, |s| s + SEQ_BLOCK)
    }

    /// Whether `seq` lies in one of the blocks.
    fn contains(&self, seq: u64) -> bool {
        let i = self.starts.partition_point(|&s| s <= seq);
        i > 0 && seq - self.starts[i - 1] < SEQ_BLOCK
    }
}

/// One operation in this many has its latency measured (`stats_for`'s split), chosen by sequence
/// number (the first, then every sixteenth): reading the clock at each stage of every operation
/// would cost more than the rest of a NOP's bookkeeping, and a fixed sample keeps the
/// percentiles. (One in eight cost 4-6 % of a batch of NOPs once the rest of their path was
/// 30 % faster; one in sixteen costs 1-4 %.)
const SAMPLE_EVERY: u64 = 16;

/// Reads the time at most once per pass under a ring's lock, and only for sampled operations.
struct Clock {
    on: bool,
    now: Option<Instant>,
}

impl Clock {
    /// The time, if latency tracking is on and `seq` is sampled.
    fn at(&mut self, seq: u64) -> Option<Instant> {
        (self.on && seq % SAMPLE_EVERY == 1).then(|| *self.now.get_or_insert_with(Instant::now))
    }
}

/// Checks ring sizes: each in `1..=65536`, and the CQ at least as large as the SQ.
pub(crate) fn validate_sizes(sq: usize, cq: usize) -> Result<()> {
    let ok = |n: usize| (1..=MAX_RING_SIZE).contains(&n);
    if !ok(sq) || !ok(cq) {
        return Err(IoUringError::InvalidConfig(format!(
            "ring sizes must be in 1..={MAX_RING_SIZE}; got sq {sq}, cq {cq}"
        )));
    }
    if cq < sq {
        return Err(IoUringError::InvalidConfig(format!(
            "the completion queue ({cq}) must be at least as large as the submission queue ({sq})"
        )));
    }
    Ok(())
}

/// What the ring's unit tests and the loom models build their cases from.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use super::SyscallCompletionRing;
    use crate::op::SyscallOpType;
    use crate::process::ProcessTable;
    use crate::syscalls::iouring::stats::Counters;

    /// A ring of `pid` with the given sizes, and the counters it reports to.
    pub(crate) fn ring(pid: crate::op::Pid, sq: usize, cq: usize) -> (Arc<SyscallCompletionRing>, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let process = ProcessTable::new().get_or_create(pid);
        (Arc::new(SyscallCompletionRing::new(pid, sq, cq, process, counters.clone()).unwrap()), counters)
    }

    /// `n` NOPs, their `user_data` counting from 0.
    pub(crate) fn nops(n: usize) -> impl ExactSizeIterator<Item = (SyscallOpType, u64)> {
        (0..n).map(|i| (SyscallOpType::Nop, i as u64))
    }

    /// Moves every queued operation to running, as the executor does; their sequence numbers.
    pub(crate) fn start_all(r: &SyscallCompletionRing) -> Vec<u64> {
        let mut out = Vec::new();
        r.dispatch(usize::MAX, &mut out, |d, counts| (d, counts));
        out.into_iter().map(|(d, _)| d.seq).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{nops, start_all};
    use super::*;
    use std::pin::Pin;
    use std::task::Wake;

    fn ring(sq: usize, cq: usize) -> (Arc<SyscallCompletionRing>, Arc<Counters>) {
        super::test_support::ring(1, sq, cq)
    }

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn iouring_sizes_are_validated() {
        assert!(validate_sizes(1, 1).is_ok());
        assert!(validate_sizes(MAX_RING_SIZE, MAX_RING_SIZE).is_ok());
        for (sq, cq) in [(0, 1), (1, 0), (MAX_RING_SIZE + 1, MAX_RING_SIZE + 1), (4, 2)] {
            assert!(validate_sizes(sq, cq).is_err(), "{sq}/{cq}");
        }
    }

    #[test]
    fn iouring_state_machine_delivers_each_once() {
        let (r, counters) = ring(8, 8);
        let (first, queued) = r.submit(nops(3), false).unwrap();
        assert!(queued);
        let seqs = start_all(&r);
        assert_eq!(seqs, vec![first, first + 1, first + 2]);
        for &s in seqs.iter().rev() {
            r.complete(s, Ok(OpResult::None));
        }
        // A duplicate completion from a confused backend changes nothing.
        r.complete(first, Ok(OpResult::Count(9)));
        let got: Vec<u64> = r.reap(usize::MAX).iter().map(|e| e.seq).collect();
        assert_eq!(got, vec![first + 2, first + 1, first], "completion order, each once");
        let snap = counters.snapshot(1, "test");
        assert_eq!((snap.total_submissions, snap.total_completions, snap.pending), (3, 3, 0));
    }

    #[test]
    fn iouring_started_batches_skip_the_sq_but_never_overtake_it() {
        let (r, counters) = ring(8, 8);
        let mut started = Vec::new();
        let (a, after) = r.submit_started(nops(3), false, &mut |d, counts| started.push((d.seq, counts))).unwrap();
        r.finish(after);
        assert_eq!((a.queued, a.counted), (false, 3));
        assert_eq!(started, vec![(a.first, true), (a.first + 1, true), (a.first + 2, true)]);
        assert!(start_all(&r).is_empty(), "nothing went through the SQ");
        // With operations queued before them, they queue behind those.
        let (queued, _) = r.submit(nops(1), false).unwrap();
        started.clear();
        let (b, after) = r.submit_started(nops(2), false, &mut |d, counts| started.push((d.seq, counts))).unwrap();
        r.finish(after);
        assert!(b.queued && b.counted == 0 && started.is_empty());
        assert_eq!(start_all(&r), vec![queued, b.first, b.first + 1]);
        for seq in a.first..b.first + 2 {
            r.complete(seq, Ok(OpResult::None));
        }
        assert_eq!(r.reap(usize::MAX).len(), 6);
        assert_eq!(counters.snapshot(1, "t").pending, 0);
        assert!(r.lock().stamps.is_empty());
    }

    #[test]
    fn iouring_cancel_hooks_run_outside_the_ring_lock() {
        // A backend's hook may ask the ring about its operation (or take locks of its own that
        // the ring's callers hold): it runs once the ring's lock is released, or this deadlocks.
        let (r, _) = ring(8, 8);
        let (seq, _) = r.submit(nops(1), false).unwrap();
        start_all(&r);
        let (tx, rx) = std::sync::mpsc::channel();
        let asked = r.clone();
        r.cancel_token(seq).on_cancel(move || {
            let _ = tx.send(asked.is_cancelled(seq));
        });
        let canceller = {
            let r = r.clone();
            std::thread::spawn(move || r.cancel(seq).unwrap())
        };
        let seen = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the hook ran, without deadlock");
        assert!(seen, "the hook saw its operation cancelled");
        canceller.join().unwrap();
        r.complete(seq, Err(OpError::cancelled()));
        assert!(r.reap(1)[0].status.is_cancelled());
    }

    #[test]
    fn iouring_waits_out_of_order_compact_the_cq() {
        let (r, counters) = ring(64, 64);
        for _ in 0..100 {
            let (seq, _) = r.submit(nops(40), false).unwrap();
            for s in start_all(&r) {
                r.complete(s, Ok(OpResult::None));
            }
            for s in (seq..seq + 40).rev() {
                assert_eq!(r.wait(s, None).unwrap().seq, s);
            }
        }
        let s = r.lock();
        assert!(s.cq.len() <= 64, "stale CQ numbers grew to {}", s.cq.len());
        assert!(s.stamps.is_empty(), "sampled times outlived their operations");
        drop(s);
        assert_eq!(counters.snapshot(1, "t").pending, 0);
    }

    #[test]
    fn iouring_abandoned_then_completed_is_discarded_and_fd_closed() {
        let (r, counters) = ring(8, 8);
        let tmp = std::env::temp_dir();
        let fd = rustix::fs::open(
            &tmp,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let vfd = r.process().install(fd, crate::process::DescriptorKind::File).unwrap();
        let (seq, _) = r.submit(nops(1), true).unwrap();
        start_all(&r);
        r.abandon(seq);
        r.complete(seq, Ok(OpResult::Fd(vfd)));
        assert_eq!(r.process().open_descriptors(), 0, "the discarded result's descriptor was closed");
        assert!(r.lock().stamps.is_empty(), "sampled times outlived their operation");
        let snap = counters.snapshot(1, "t");
        assert_eq!((snap.pending, snap.discarded), (0, 1));
        assert_eq!(r.outstanding(), 0);
    }

    #[test]
    fn iouring_detach_after_destroy_is_discarded_not_stranded() {
        // Found by the op-sequence fuzz target: a future detached after its ring was destroyed
        // put its completion in a CQ nobody could reach, pending forever.
        let (r, counters) = ring(8, 8);
        let (seq, _) = r.submit(nops(1), true).unwrap();
        r.destroy();
        r.detach(seq);
        assert_eq!(r.outstanding(), 0);
        let snap = counters.snapshot(0, "t");
        assert_eq!((snap.total_submissions, snap.total_completions, snap.pending, snap.discarded), (1, 1, 0, 1));
    }

    #[test]
    fn iouring_cq_waiters_are_woken_once_a_pass_fills_the_cq() {
        let (r, _) = ring(8, 8);
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let woken = || flag.0.swap(false, std::sync::atomic::Ordering::SeqCst);
        // A completion bound for a future leaves the CQ's waiters asleep.
        let (fut, _) = r.submit(nops(1), true).unwrap();
        assert!(r.poll_cq(1, &mut cx).is_pending());
        start_all(&r);
        r.complete(fut, Ok(OpResult::None));
        assert!(!woken(), "nothing reached the CQ");
        // A pass of completions for the CQ wakes them.
        let (first, _) = r.submit(nops(2), false).unwrap();
        start_all(&r);
        r.finish(r.complete_many([(first, Ok(OpResult::None)), (first + 1, Ok(OpResult::None))].into_iter()));
        assert!(woken(), "completions reached the CQ");
        assert!(matches!(r.poll_cq(1, &mut cx), Poll::Ready(Some(_))));
        assert!(matches!(r.poll_cq(1, &mut cx), Poll::Ready(Some(_))));
        // So does a queued operation cancelled into the CQ.
        assert!(r.poll_cq(1, &mut cx).is_pending());
        let (queued, _) = r.submit(nops(1), false).unwrap();
        r.cancel(queued).unwrap();
        assert!(woken(), "the cancelled operation reached the CQ");
        let Poll::Ready(Some(e)) = r.poll_cq(1, &mut cx) else { panic!("not in the CQ") };
        assert!(e.status.is_cancelled());
    }

    #[test]
    fn iouring_future_is_woken_and_takes_its_entry() {
        let (r, _) = ring(8, 8);
        let (seq, _) = r.submit(nops(1), true).unwrap();
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(r.poll_owned(seq, &mut cx).is_pending());
        start_all(&r);
        r.complete(seq, Ok(OpResult::Count(1)));
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst), "completion woke the future");
        let Poll::Ready(e) = r.poll_owned(seq, &mut cx) else { panic!("not ready") };
        assert_eq!(e.result, OpResult::Count(1));
        assert_eq!(r.ready(), 0, "a future's completion never reaches the CQ");
    }

    #[test]
    fn iouring_dropped_streams_leave_no_waker() {
        use futures_core::Stream;
        let (r, _) = ring(8, 8);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..20_000 {
            let mut stream = r.completions();
            assert!(Pin::new(&mut stream).poll_next(&mut cx).is_pending());
        }
        assert!(r.lock().stream_wakers.is_empty(), "dropped streams left their wakers");
        // A live stream (and each clone) keeps one waker, however often it polls.
        let mut stream = r.completions();
        let mut clone = stream.clone();
        for _ in 0..3 {
            assert!(Pin::new(&mut stream).poll_next(&mut cx).is_pending());
            assert!(Pin::new(&mut clone).poll_next(&mut cx).is_pending());
        }
        assert_eq!(r.lock().stream_wakers.len(), 2);
        drop(clone);
        assert_eq!(r.lock().stream_wakers.len(), 1);
    }

    #[test]
    fn iouring_reads_hold_no_more_than_the_buffer_budget() {
        use crate::process::ProcessTable;
        use crate::sandbox::Policy;
        let table = ProcessTable::new();
        table.set_policy(1, Policy::default().max_buffered_bytes(100)).unwrap();
        let counters = Arc::new(Counters::default());
        let r = Arc::new(SyscallCompletionRing::new(1, 8, 8, table.get_or_create(1), counters.clone()).unwrap());
        let read = |size| std::iter::once((SyscallOpType::ReadAt { fd: 3, offset: 0, size }, 0));
        let (first, _) = r.submit(read(60), false).unwrap();
        let (over, _) = r.submit(read(50), false).unwrap();
        assert_eq!(r.lock().buffered, 60, "the refused read reserved nothing");
        let refused = r.wait(over, None).unwrap();
        assert_eq!(refused.errno(), Some(rustix::io::Errno::NOMEM.raw_os_error()));
        // Completed, the read holds only what it brought back, until taken.
        start_all(&r);
        r.complete(first, Ok(OpResult::Bytes(vec![7; 5])));
        assert_eq!(r.lock().buffered, 5);
        let (second, _) = r.submit(read(95), false).unwrap();
        assert_eq!(r.lock().buffered, 100);
        let (third, _) = r.submit(read(1), false).unwrap();
        assert!(r.wait(third, None).unwrap().status.is_error());
        // A queued read cancelled, a taken result: both give their bytes back.
        r.cancel(second).unwrap();
        assert_eq!(r.lock().buffered, 5);
        assert_eq!(r.wait(first, None).unwrap().result, OpResult::Bytes(vec![7; 5]));
        assert_eq!(r.lock().buffered, 0);
        // A future's result counts until the future takes it, or the ring is destroyed.
        let (fut, _) = r.submit(read(40), true).unwrap();
        start_all(&r);
        r.complete(fut, Ok(OpResult::Bytes(vec![1; 30])));
        assert_eq!(r.lock().buffered, 30);
        r.abandon(fut);
        assert_eq!(r.lock().buffered, 0);
        r.reap(usize::MAX);
        assert_eq!(counters.snapshot(1, "t").pending, 0);
    }

    #[test]
    fn iouring_destroy_with_running_ops_then_late_completions() {
        let (r, counters) = ring(8, 8);
        let (fut_seq, _) = r.submit(nops(1), true).unwrap();
        let (cq_seq, _) = r.submit(nops(2), false).unwrap();
        let running = {
            let mut out = Vec::new();
            r.dispatch(2, &mut out, |d, counts| (d, counts));
            out
        };
        assert_eq!(running.len(), 2);
        r.destroy();
        assert!(running.iter().all(|(d, _)| r.is_cancelled(d.seq)), "running ops were asked to stop");
        for (d, _) in &running {
            r.complete(d.seq, Ok(OpResult::None));
        }
        assert!(matches!(r.wait(cq_seq, None), Err(IoUringError::RingDestroyed { .. })));
        let waker = Waker::from(Arc::new(Flag(false.into())));
        let Poll::Ready(e) = r.poll_owned(fut_seq, &mut Context::from_waker(&waker)) else { panic!() };
        assert!(e.status.is_cancelled());
        assert!(matches!(r.submit(nops(1), false), Err(IoUringError::RingDestroyed { .. })));
        assert!(r.lock().stamps.is_empty(), "sampled times outlived their operations");
        let snap = counters.snapshot(0, "t");
        assert_eq!((snap.total_submissions, snap.total_completions, snap.discarded), (3, 3, 2));
    }

    #[test]
    fn iouring_stale_cq_entries_left_by_waits_are_skipped_and_counted_exactly() {
        // Waits out of order leave stale numbers in the CQ (too few to compact); the stream and
        // reap then step over them. After every step, `ready()` and `outstanding()` must count
        // only the completions really waiting.
        let (r, counters) = ring(16, 16);
        let (first, _) = r.submit(nops(8), false).unwrap();
        let seqs: Vec<u64> = (first..first + 8).collect();
        assert_eq!(start_all(&r), seqs);
        for &s in &seqs {
            r.complete(s, Ok(OpResult::None));
        }
        assert_eq!((r.ready(), r.outstanding()), (8, 8));
        // Take the 2nd, 3rd and 6th: stale numbers before, between and after live entries.
        for i in [1, 2, 5] {
            assert_eq!(r.wait(seqs[i], None).unwrap().seq, seqs[i]);
        }
        assert_eq!((r.ready(), r.outstanding()), (5, 5));
        assert_eq!(r.lock().cq_stale, 3, "too few stale numbers to compact");
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag);
        let mut cx = Context::from_waker(&waker);
        let mut next = || match r.poll_cq(1, &mut cx) {
            Poll::Ready(Some(e)) => e.seq,
            other => panic!("expected a completion, got {other:?}"),
        };
        // The stream takes the 1st, then steps over two stale numbers to the 4th.
        assert_eq!(next(), seqs[0]);
        assert_eq!((r.ready(), r.outstanding()), (4, 4));
        assert_eq!(next(), seqs[3]);
        assert_eq!((r.ready(), r.outstanding()), (3, 3));
        assert_eq!(r.lock().cq_stale, 1, "the stale numbers stepped over are no longer counted");
        // Reap takes the rest, over the last stale number, in completion order.
        let rest: Vec<u64> = r.reap(usize::MAX).iter().map(|e| e.seq).collect();
        assert_eq!(rest, vec![seqs[4], seqs[6], seqs[7]]);
        assert_eq!((r.ready(), r.outstanding()), (0, 0));
        let s = r.lock();
        assert!(s.cq.is_empty() && s.cq_stale == 0, "cq {:?}, stale {}", s.cq.len(), s.cq_stale);
        drop(s);
        assert!(r.poll_cq(1, &mut cx).is_pending(), "nothing left to take");
        // The ring stays exact for what follows: one more round, a wait then the stream.
        let (more, _) = r.submit(nops(2), false).unwrap();
        for s in start_all(&r) {
            r.complete(s, Ok(OpResult::None));
        }
        assert_eq!(r.wait(more, None).unwrap().seq, more);
        assert_eq!((r.ready(), r.outstanding()), (1, 1));
        let Poll::Ready(Some(last)) = r.poll_cq(1, &mut cx) else { panic!("the last completion") };
        assert_eq!(last.seq, more + 1);
        assert_eq!((r.ready(), r.outstanding()), (0, 0));
        let snap = counters.snapshot(1, "t");
        assert_eq!((snap.total_submissions, snap.total_completions, snap.pending), (10, 10, 0));
    }
}
