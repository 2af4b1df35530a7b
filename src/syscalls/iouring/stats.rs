//! Counters behind [`IoUringStats`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// A snapshot of the manager's counters.
///
/// `pending` counts operations accepted and not yet taken by anyone (queued, in flight, or
/// completed and waiting in a CQ or a future), so `total_submissions == total_completions +
/// pending` whenever nothing is moving. A completion counts once it is taken (reaped, waited,
/// streamed, or resolved by a future) or discarded (its future was dropped, or its ring was
/// destroyed); `discarded` counts the latter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoUringStats {
    /// Rings alive now.
    pub active_rings: usize,
    /// Operations accepted, ever.
    pub total_submissions: u64,
    /// Completions taken or discarded, ever.
    pub total_completions: u64,
    /// Operations accepted and not yet taken.
    pub pending: u64,
    /// Completions nobody could take: their future was dropped or their ring destroyed.
    pub discarded: u64,
    /// The backend's name: `"uring"`, `"tokio"`, `"smol"`, `"blocking"`, or a custom one.
    pub backend: &'static str,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    submissions: AtomicU64,
    completions: AtomicU64,
    discarded: AtomicU64,
    untimed: AtomicBool,
}

impl Counters {
    /// Whether latency tracking is on.
    pub(crate) fn timing(&self) -> bool {
        !self.untimed.load(Relaxed)
    }

    pub(crate) fn set_timing(&self, on: bool) {
        self.untimed.store(!on, Relaxed);
    }

    pub(crate) fn submitted(&self, n: usize) {
        self.submissions.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn retired(&self, n: usize, discarded: bool) {
        if n == 0 {
            return;
        }
        if discarded {
            self.discarded.fetch_add(n as u64, Relaxed);
        }
        self.completions.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn snapshot(&self, active_rings: usize, backend: &'static str) -> IoUringStats {
        // Completions first: read the other way round, a completion landing in between could
        // make `pending` negative.
        let total_completions = self.completions.load(Relaxed);
        let total_submissions = self.submissions.load(Relaxed);
        IoUringStats {
            active_rings,
            total_submissions,
            total_completions,
            pending: total_submissions.saturating_sub(total_completions),
            discarded: self.discarded.load(Relaxed),
            backend,
        }
    }
}
