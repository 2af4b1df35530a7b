//! Counters behind [`IoUringStats`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

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

/// The manager's counters, striped: each thread counts in a stripe of its own (its cache line),
/// so that submitters on different cores never pass a line between them for the counts; a
/// snapshot sums the stripes.
#[derive(Debug)]
pub(crate) struct Counters {
    stripes: Box<[Stripe]>,
    untimed: AtomicBool,
}

/// One thread's counts (or a few threads', past [`STRIPES`] threads), on a line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    submissions: AtomicU64,
    completions: AtomicU64,
    discarded: AtomicU64,
}

/// Stripes per manager: 2 KiB.
const STRIPES: usize = 16;

/// The calling thread's stripe: threads take them in turn as they first count.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Relaxed) % STRIPES;
    }
    MINE.try_with(|i| *i).unwrap_or(0)
}

impl Default for Counters {
    fn default() -> Self {
        Counters { stripes: (0..STRIPES).map(|_| Stripe::default()).collect(), untimed: AtomicBool::new(false) }
    }
}

impl Counters {
    /// Whether latency tracking is on.
    pub(crate) fn timing(&self) -> bool {
        !self.untimed.load(Relaxed)
    }

    pub(crate) fn set_timing(&self, on: bool) {
        self.untimed.store(!on, Relaxed);
    }

    fn mine(&self) -> &Stripe {
        &self.stripes[stripe_index()]
    }

    pub(crate) fn submitted(&self, n: usize) {
        self.mine().submissions.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn retired(&self, n: usize, discarded: bool) {
        if n == 0 {
            return;
        }
        let mine = self.mine();
        if discarded {
            mine.discarded.fetch_add(n as u64, Relaxed);
        }
        mine.completions.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn snapshot(&self, active_rings: usize, backend: &'static str) -> IoUringStats {
        // Completions first: read the other way round, a completion landing in between could
        // make `pending` negative.
        let sum = |count: fn(&Stripe) -> &AtomicU64| self.stripes.iter().map(|s| count(s).load(Relaxed)).sum::<u64>();
        let total_completions = sum(|s| &s.completions);
        let total_submissions = sum(|s| &s.submissions);
        IoUringStats {
            active_rings,
            total_submissions,
            total_completions,
            pending: total_submissions.saturating_sub(total_completions),
            discarded: sum(|s| &s.discarded),
            backend,
        }
    }
}
