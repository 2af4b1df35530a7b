//! Rate limits as the executor applies them: a ring's token buckets ([`Throttle`]). The
//! executor puts a throttled ring back in line with a task on the host's timer when its bucket
//! has refilled.

use std::time::{Duration, Instant};

use crate::op::SyscallOpType;
use crate::sandbox::RateLimit;

const NANOS: u128 = 1_000_000_000;

/// A token bucket (see [`RateLimit`]): `tokens` may be negative, a debt the refill pays first.
#[derive(Debug)]
struct Bucket {
    limit: RateLimit,
    tokens: i128,
    /// The time up to which refills were counted.
    last: Instant,
}

impl Bucket {
    fn new(limit: RateLimit, now: Instant) -> Self {
        Bucket { limit, tokens: i128::from(limit.burst()), last: now }
    }

    /// Adds what the time since `last` earned, never past the burst. `last` moves on by the time
    /// the whole tokens took, so fractions carry over and the long-run rate is exact.
    fn refill(&mut self, now: Instant) {
        let rate = u128::from(self.limit.rate());
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        let earned = elapsed * rate / NANOS;
        if earned == 0 {
            return;
        }
        let burst = i128::from(self.limit.burst());
        let tokens = self.tokens.saturating_add(i128::try_from(earned).unwrap_or(i128::MAX));
        if tokens >= burst {
            // A full bucket banks no time.
            self.tokens = burst;
            self.last = now;
        } else {
            self.tokens = tokens;
            self.last += Duration::from_nanos(u64::try_from(earned * NANOS / rate).unwrap_or(u64::MAX));
        }
    }

    /// When the bucket will hold a token again (it holds none now).
    fn refilled_at(&self) -> Instant {
        let rate = u128::from(self.limit.rate());
        let missing = u128::try_from(1 - self.tokens).unwrap_or(1);
        let wait = (missing * NANOS).div_ceil(rate);
        self.last + Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
    }
}

/// A ring's rate limits as they stand: its buckets (made when the policy first limits it, and
/// made anew when the limit changes), and the time it spent waiting for them.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    ops: Option<Bucket>,
    bytes: Option<Bucket>,
    /// Since when the ring has been waiting for a bucket, if it is.
    since: Option<Instant>,
    total: Duration,
}

impl Throttle {
    /// Brings the buckets in line with the limits in force; with none left, a wait ends.
    pub(crate) fn limit(&mut self, ops: Option<RateLimit>, bytes: Option<RateLimit>, now: Instant) {
        let set = |bucket: &mut Option<Bucket>, limit: Option<RateLimit>| {
            if bucket.as_ref().map(|b| b.limit) != limit {
                *bucket = limit.map(|l| Bucket::new(l, now));
            }
        };
        set(&mut self.ops, ops);
        set(&mut self.bytes, bytes);
        if self.ops.is_none()
            && self.bytes.is_none()
            && let Some(since) = self.since.take()
        {
            self.total += now.saturating_duration_since(since);
        }
    }

    /// Whether the ring is waiting for its buckets.
    pub(crate) fn is_waiting(&self) -> bool {
        self.since.is_some()
    }

    /// Takes `op`'s cost from the buckets if they admit it now (each bucket it costs anything
    /// holds a token), ending a wait; otherwise starts (or goes on with) a wait and returns when
    /// the buckets will admit it.
    pub(crate) fn admit(&mut self, op: &SyscallOpType, now: Instant) -> Result<(), Instant> {
        let bytes = op.io_len() as u128;
        let mut blocked = None;
        for (bucket, cost) in [(&mut self.ops, 1), (&mut self.bytes, bytes)] {
            let Some(bucket) = bucket.as_mut().filter(|_| cost > 0) else { continue };
            bucket.refill(now);
            if bucket.tokens <= 0 {
                blocked = blocked.max(Some(bucket.refilled_at()));
            }
        }
        if let Some(at) = blocked {
            self.since.get_or_insert(now);
            return Err(at);
        }
        if let Some(since) = self.since.take() {
            self.total += now.saturating_duration_since(since);
        }
        if let Some(b) = &mut self.ops {
            b.tokens -= 1;
        }
        if let Some(b) = self.bytes.as_mut().filter(|_| bytes > 0) {
            b.tokens = b.tokens.saturating_sub(i128::try_from(bytes).unwrap_or(i128::MAX));
        }
        Ok(())
    }

    /// The time spent waiting for the buckets, up to `now`.
    pub(crate) fn throttled(&self, now: Instant) -> Duration {
        self.total + self.since.map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over ten simulated seconds a saturating process gets its rate plus one burst, and a
    /// transfer larger than the burst runs, leaving a debt the next ones wait out.
    #[test]
    fn buckets_hold_the_rate_with_one_burst() {
        let start = Instant::now();
        let mut t = Throttle::default();
        t.limit(Some(RateLimit::per_second(1000)), None, start);
        let (mut now, mut started) = (start, 0u64);
        let end = start + Duration::from_secs(10);
        while now <= end {
            match t.admit(&SyscallOpType::Nop, now) {
                Ok(()) => started += 1,
                Err(at) => {
                    assert!(at > now);
                    now = at;
                }
            }
        }
        assert_eq!(started, 10_000 + 50, "rate times time, plus the burst");
        assert!(t.throttled(now) > Duration::from_secs(9));

        let mut t = Throttle::default();
        t.limit(None, Some(RateLimit::per_second(1000).with_burst(100)), start);
        let big = SyscallOpType::ReadAt { fd: 3, offset: 0, size: 5000 };
        assert_eq!(t.admit(&big, start), Ok(()), "a transfer above the burst still runs");
        let at = t.admit(&big, start).unwrap_err();
        assert!(at - start >= Duration::from_millis(4900), "the debt of 4,900 bytes is paid first: {:?}", at - start);
        assert_eq!(t.admit(&SyscallOpType::Nop, start), Ok(()), "an operation that moves no byte is not held");
    }
}
