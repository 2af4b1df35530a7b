//! [`RateLimit`]: how fast a process may go, for its policy.

/// A rate limit on a process's operations or bytes: a token bucket that refills at
/// [`per_second`](Self::per_second) units a second and holds at most [`burst`](Self::burst).
///
/// An operation starts only while the bucket is not empty, and takes its whole cost (one
/// operation, or the bytes it reads or writes as asked), which may leave the bucket in debt: a
/// transfer larger than the burst still runs, and the next waits until the debt is paid. So over
/// any stretch of time `t` the process moves at most `per_second × t` units plus one burst (the
/// bucket starts full) and one operation's cost, whatever the sizes. A throttled process's operations
/// wait in its SQ, holding no place in the executor and no thread; the time it spends so is shown
/// in [`ProcessStats::throttled`](crate::syscalls::ProcessStats::throttled).
///
/// ```
/// use ai_os_kernel::sandbox::{Policy, RateLimit};
///
/// let p = Policy::rooted("/tmp").ops_rate(RateLimit::per_second(1000)).bytes_rate(RateLimit::per_second(8 << 20));
/// assert_eq!(p.ops_rate_limit().unwrap().burst(), 50, "one twentieth of a second's worth");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    per_second: u64,
    burst: u64,
}

impl RateLimit {
    /// At most `n` units a second (`0` is taken as `1`), in bursts of up to one twentieth of a
    /// second's worth (at least 1).
    pub fn per_second(n: u64) -> Self {
        let per_second = n.max(1);
        RateLimit { per_second, burst: (per_second / 20).max(1) }
    }

    /// The same rate in bursts of up to `n` units (at least 1): what a process that was idle may
    /// take at once.
    pub fn with_burst(self, n: u64) -> Self {
        RateLimit { burst: n.max(1), ..self }
    }

    /// The refill rate, in units a second.
    pub fn rate(&self) -> u64 {
        self.per_second
    }

    /// The bucket's size.
    pub fn burst(&self) -> u64 {
        self.burst
    }
}
