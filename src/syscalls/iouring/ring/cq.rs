//! The completion queue: completions bound for it, and every way of taking one, from it or (a
//! future's) from `done`.

use super::timing::Clock;
use super::{AfterUnlock, RingState, SyscallCompletionRing};
use crate::op::SyscallCompletionEntry;
use crate::syscalls::iouring::metrics::Stage;

impl SyscallCompletionRing {
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
}

impl RingState {
    /// Puts a completion in the CQ and wakes whoever waits for one.
    pub(super) fn push_cq(&mut self, entry: SyscallCompletionEntry, after: &mut AfterUnlock) {
        self.cq.push_back(Some(entry));
        self.cq_arrived(after);
    }

    /// Wakes whoever waits for a CQ completion: once per pass that put any there.
    pub(super) fn cq_arrived(&mut self, after: &mut AfterUnlock) {
        after.wakers.extend(self.stream_wakers.drain().map(|(_, w)| w));
        after.notify_waiters |= self.blocked_waiters > 0;
    }

    pub(super) fn pop_cq(&mut self, clock: &mut Clock) -> Option<SyscallCompletionEntry> {
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
    pub(super) fn take_from_cq(&mut self, seq: u64, clock: &mut Clock) -> Option<SyscallCompletionEntry> {
        let entry = self.cq.iter_mut().find(|e| e.as_ref().is_some_and(|e| e.seq == seq))?.take()?;
        self.cq_stale += 1;
        self.compact_cq();
        self.took(&entry, clock);
        Some(entry)
    }

    /// Removes a future's done slot and returns its completion.
    pub(super) fn take_done(&mut self, seq: u64, clock: &mut Clock) -> SyscallCompletionEntry {
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
        self.buffered -= entry.held();
        if let Some(times) = self.unstamp(seq)
            && let Some(now) = clock.at(seq)
        {
            self.metrics.record(Stage::Waiting, now.saturating_duration_since(times[2]));
        }
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
