//! Per-process observability: what each ring did and where its operations spent their time.
//!
//! Timestamps are taken once per batch (at submission, dispatch, completion and taking), not
//! once per operation, and latencies go into fixed power-of-two buckets, allocated on first
//! use: an idle ring pays nothing, a busy one a few additions per operation.

use std::time::Duration;

use crate::op::Pid;

/// One process's counters and latency split, from
/// [`IoUringManager::stats_for`](super::IoUringManager::stats_for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStats {
    /// The process.
    pub pid: Pid,
    /// Operations accepted by its current ring.
    pub submitted: u64,
    /// Operations that completed (however they ended).
    pub completed: u64,
    /// Completed with an error.
    pub failed: u64,
    /// Completed as cancelled.
    pub cancelled: u64,
    /// Accepted and not yet taken: queued, running, or completed and waiting.
    pub in_flight: u64,
    /// Queued → started: time spent in the submission queue, waiting for the executor.
    pub queued: Percentiles,
    /// Started → completed: time in the backend.
    pub running: Percentiles,
    /// Completed → taken: time until the caller collected the completion.
    ///
    /// The three stages are measured on one operation in sixteen (the first, then every
    /// sixteenth sequence number), so the clock is read a few times per batch rather than
    /// several times per operation.
    pub waiting: Percentiles,
    /// Time its operations spent held back by its policy's rate limits
    /// ([`Policy::ops_rate`](crate::sandbox::Policy::ops_rate),
    /// [`bytes_rate`](crate::sandbox::Policy::bytes_rate)), its current wait included.
    pub throttled: Duration,
}

/// A latency distribution, from power-of-two buckets: each figure is the upper bound of its
/// bucket, so it is at most twice the true value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Percentiles {
    /// How many operations were measured.
    pub samples: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

const BUCKETS: usize = 48;

/// Stages of an operation's life.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    Queued = 0,
    Running = 1,
    Waiting = 2,
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) submitted: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) cancelled: u64,
    hist: Option<Box<[[u32; BUCKETS]; 3]>>,
}

impl Metrics {
    pub(crate) fn record(&mut self, stage: Stage, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let bucket = ((u64::BITS - ns.leading_zeros()) as usize).min(BUCKETS - 1);
        let hist = self.hist.get_or_insert_with(|| Box::new([[0; BUCKETS]; 3]));
        let slot = &mut hist[stage as usize][bucket];
        *slot = slot.saturating_add(1);
    }

    pub(crate) fn snapshot(&self, pid: Pid, in_flight: u64, throttled: Duration) -> ProcessStats {
        let pct = |stage: Stage| self.hist.as_ref().map(|h| percentiles(&h[stage as usize])).unwrap_or_default();
        ProcessStats {
            pid,
            submitted: self.submitted,
            completed: self.completed,
            failed: self.failed,
            cancelled: self.cancelled,
            in_flight,
            queued: pct(Stage::Queued),
            running: pct(Stage::Running),
            waiting: pct(Stage::Waiting),
            throttled,
        }
    }
}

fn percentiles(h: &[u32; BUCKETS]) -> Percentiles {
    let samples: u64 = h.iter().map(|&n| u64::from(n)).sum();
    let at = |q: f64| {
        let want = ((samples as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, &n) in h.iter().enumerate() {
            seen += u64::from(n);
            if seen >= want {
                // Bucket b holds durations below 2^b ns.
                return Duration::from_nanos(1u64 << bucket);
            }
        }
        Duration::ZERO
    };
    if samples == 0 { Percentiles::default() } else { Percentiles { samples, p50: at(0.5), p99: at(0.99) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iouring_histogram_percentiles_bound_the_truth() {
        let mut m = Metrics::default();
        for us in 1..=100u64 {
            m.record(Stage::Running, Duration::from_micros(us));
        }
        let s = m.snapshot(1, 0, Duration::ZERO);
        assert_eq!(s.running.samples, 100);
        assert!(s.running.p50 >= Duration::from_micros(50) && s.running.p50 <= Duration::from_micros(100));
        assert!(s.running.p99 >= Duration::from_micros(99) && s.running.p99 <= Duration::from_micros(200));
        assert_eq!(s.queued, Percentiles::default());
    }
}
