//! Latency sampling: which operations are timed, and the clock read for them under the lock.

use std::time::Instant;

use super::{RingState, SyscallCompletionRing};

/// One operation in this many has its latency measured (`stats_for`'s split), chosen by sequence
/// number (the first, then every sixteenth): reading the clock at each stage of every operation
/// would cost more than the rest of a NOP's bookkeeping, and a fixed sample keeps the
/// percentiles.
pub(super) const SAMPLE_EVERY: u64 = 16;

/// Reads the time at most once per pass under a ring's lock, and only for sampled operations.
pub(super) struct Clock {
    on: bool,
    now: Option<Instant>,
}

impl Clock {
    /// The time, if latency tracking is on and `seq` is sampled.
    pub(super) fn at(&mut self, seq: u64) -> Option<Instant> {
        (self.on && seq % SAMPLE_EVERY == 1).then(|| *self.now.get_or_insert_with(Instant::now))
    }
}

impl SyscallCompletionRing {
    /// A clock for one pass under the lock.
    pub(super) fn clock(&self) -> Clock {
        Clock { on: self.counters.timing(), now: None }
    }
}

impl RingState {
    /// Forgets the times of `seq`, if it is a sampled operation.
    pub(super) fn unstamp(&mut self, seq: u64) -> Option<[Instant; 3]> {
        if seq % SAMPLE_EVERY == 1 { self.stamps.remove(&seq) } else { None }
    }
}
