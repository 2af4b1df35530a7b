//! The per-process ring: its submission queue, its completion queue, and the delivery state of
//! every outstanding operation.
//!
//! Each operation has a slot from submission until its completion is delivered: into the CQ (the
//! slot ends there, and the completion waits in the CQ itself), or, for a future, until the future
//! takes it. A slot has an owner (the CQ, a future, or nobody once its future was dropped) and a
//! phase (queued, running, done). Every path that ends an operation, taken from the CQ, taken by
//! its future, or discarded, counts it once in the manager's counters, so each accepted operation
//! is counted exactly once.
//!
//! A slot's life, by file:
//!
//! - [`submit`]: a batch is accepted all or nothing; each operation gets a sequence number, its
//!   rights and its share of the buffer budget, and a slot that is *queued* (in the SQ) or, when
//!   the executor has room, *running* at once. [`dispatch`](SyscallCompletionRing::dispatch)
//!   moves queued slots to running, as far as the rate limits admit them.
//! - [`slots`]: the slot itself ([`Slot`], its owner and phase), and delivery: a running slot's
//!   outcome goes to its owner. For the CQ the slot ends and the completion waits in the CQ; for
//!   a future the slot becomes *done* and the completion waits in `done`; for nobody (a dropped
//!   future) it is discarded. A future may also be dropped (`abandon`) or hand its completion to
//!   the CQ (`detach`). The rights an operation was submitted with are asked for here too.
//! - [`stop`]: cancelling one operation (a queued one completes `Cancelled` at once, a running
//!   one is asked to stop), and destroying the ring.
//! - [`cq`]: the completion queue, and taking completions from it (or from `done`).
//! - [`wait`]: blocking waits, futures' and streams' polls, and the wakers they leave.
//! - [`timing`]: the latency of one operation in [`SAMPLE_EVERY`](timing::SAMPLE_EVERY).
//! - [`seq`]: sequence numbers, given to rings in blocks.
//! - [`pool`]: the process's pool of registered buffers.
//! - `test_support` and `tests`: what the unit tests and loom models build on, and the unit
//!   tests.
//!
//! Everything a pass under the ring's lock leaves to do once the lock is released (cancellation
//! hooks, wake-ups, closes) is gathered in an [`AfterUnlock`] and done by
//! [`after_unlock`](SyscallCompletionRing::after_unlock).

mod chain;
mod cq;
mod deadline;
mod pool;
mod seq;
mod shots;
mod slots;
mod stop;
mod submit;
mod timing;
mod wait;

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use std::sync::{Arc, Weak};
use std::task::Waker;
use std::time::Instant;

use super::cancel::{CancelToken, Stop};
use super::metrics::{Metrics, ProcessStats};
use super::stats::Counters;
use super::stream::CompletionStream;
use super::throttle::Throttle;
use crate::op::Pid;
use crate::op::SyscallCompletionEntry;
use crate::op::SyscallOpType;
use crate::op::{IoUringError, Result};
use crate::process::Process;
use crate::sandbox::Sandbox;
use crate::sync::{AtomicBool, AtomicUsize, Condvar, Mutex, MutexGuard};
use std::sync::OnceLock;

use seq::SeqBlocks;
pub use shots::SHOTS_WAITING;
use slots::Slot;
pub(crate) use submit::{Accept, Dispatched, Taken};

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
    /// The ring itself, for what a pass under its lock hands the window (a linked operation
    /// queued by its predecessor's completion) and for deadlines' timer tasks, which must not
    /// keep it alive.
    me: Weak<SyscallCompletionRing>,
}

/// What starts a ring's operations: told when operations that held a place in its window leave
/// the backend. The executor implements it; the ring knows nothing else of it.
pub(crate) trait Window: Send + Sync {
    /// `counted` places held by `ring`'s operations are free again.
    fn release(&self, ring: &Arc<SyscallCompletionRing>, counted: usize);

    /// `ring` has operations queued again that were not there when it was last looked at (the
    /// next operation of a linked chain): it goes back in line if it is not in it.
    fn requeue(&self, ring: &Arc<SyscallCompletionRing>);
}

/// A ring's place in its scheduler's line, written by the scheduler under its own lock, but for
/// `held`, which a completion lowers without it (see the executor's `Window::release`).
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
    /// The results multishot operations gave, until their stream takes them (see [`shots`]).
    shots: FxHashMap<u64, shots::Waiting>,
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
    /// The operations of linked chains waiting for their predecessor, by seq (see [`chain`]).
    held: FxHashMap<u64, SyscallOpType>,
    /// The next operation of each chain operation that has one (see [`chain`]).
    links: FxHashMap<u64, chain::Link>,
    /// The timer task of each operation with a deadline, until it ends (see [`deadline`]).
    deadlines: FxHashMap<u64, crate::timer::TimerKey>,
    /// The process's pool of registered buffers, counted in `buffered` (see [`pool`]).
    pool: Option<crate::op::FixedBuffers>,
    /// Pools unregistered and not yet freed, still counted in `buffered`.
    retired_pools: Vec<crate::op::FixedBuffers>,
}

/// The wakers a pass wakes once the lock is let go: most wake one, which takes no allocation.
#[derive(Default)]
struct Wakers {
    one: Option<Waker>,
    more: Vec<Waker>,
}

impl Extend<Waker> for Wakers {
    fn extend<I: IntoIterator<Item = Waker>>(&mut self, wakers: I) {
        for waker in wakers {
            match self.one {
                None => self.one = Some(waker),
                Some(_) => self.more.push(waker),
            }
        }
    }
}

impl IntoIterator for Wakers {
    type Item = Waker;
    type IntoIter = std::iter::Chain<std::option::IntoIter<Waker>, std::vec::IntoIter<Waker>>;

    fn into_iter(self) -> Self::IntoIter {
        self.one.into_iter().chain(self.more)
    }
}

/// What to do once the ring's lock is released.
#[derive(Default)]
#[must_use]
pub(crate) struct AfterUnlock {
    cancel: Vec<Arc<CancelToken>>,
    /// Backends to tell to stop an operation, by its key there.
    stops: Vec<(std::sync::Weak<dyn Stop>, u64)>,
    wakers: Wakers,
    notify_waiters: bool,
    close_fds: Vec<i32>,
    /// Operations were queued that the window must be told of.
    requeue: bool,
}

impl SyscallCompletionRing {
    pub(crate) fn new(
        pid: Pid,
        sq_capacity: usize,
        cq_capacity: usize,
        process: Arc<Process>,
        counters: Arc<Counters>,
    ) -> Result<Arc<Self>> {
        validate_sizes(sq_capacity, cq_capacity)?;
        Ok(Arc::new_cyclic(|me| SyscallCompletionRing {
            pid,
            sq_capacity,
            cq_capacity,
            process,
            counters,
            state: Mutex::new(RingState::default()),
            arrived: Condvar::new(),
            seat: Seat::default(),
            window: OnceLock::new(),
            me: me.clone(),
        }))
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

    fn lock(&self) -> MutexGuard<'_, RingState> {
        crate::sync::lock(&self.state)
    }

    /// Wakes, notifies and closes what a pass under the lock left to do.
    pub(crate) fn after_unlock(&self, after: AfterUnlock) {
        for token in after.cancel {
            token.cancel();
        }
        for (stop, key) in after.stops {
            if let Some(stop) = stop.upgrade() {
                stop.stop(key);
            }
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
        if after.requeue
            && let (Some(me), Some(window)) = (self.me.upgrade(), self.window.get())
        {
            window.requeue(&me);
        }
    }
}

impl RingState {
    /// Operations accepted and not yet taken.
    fn outstanding(&self) -> usize {
        self.slots.len() + self.cq.len() - self.cq_stale
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
pub(crate) mod test_support;

#[cfg(test)]
mod tests;
