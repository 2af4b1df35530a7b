//! Quality of service: rate limits hold, and a throttled tenant holds nothing another needs.

use std::time::{Duration, Instant};

use ai_os_kernel::Pid;
use ai_os_kernel::sandbox::{Policy, RateLimit};
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType as Op};

use super::{entry, manager, nop};
use crate::support::run_op;
use crate::support::{MakeBackend, within};

/// Expands to one `#[test]` per check of this module (called by `conformance_tests!`).
#[doc(hidden)]
#[macro_export]
macro_rules! __qos_checks {
    ($make:expr, $block_on:expr) => {
        $crate::__sync_checks!($make;
            qos_ops_rate_limit_holds, qos_bytes_rate_limit_holds, qos_throttled_tenant_delays_no_other,
            qos_destroy_ends_a_throttled_backlog, qos_a_lifted_limit_frees_a_throttled_tenant_at_once,
        );
    };
}

const T: Duration = Duration::from_secs(20);

/// Submits `n` NOPs for `pid` in batches of 100, each waited for; returns how long it took.
fn nops(m: &IoUringManager, pid: Pid, n: usize) -> Duration {
    let start = Instant::now();
    for first in (0..n).step_by(100) {
        let batch = (first..n.min(first + 100)).map(|_| nop(pid)).collect();
        for seq in m.submit_batch(pid, batch).unwrap() {
            assert!(m.wait_completion_timeout(pid, seq, T).unwrap().status.is_success());
        }
    }
    start.elapsed()
}

/// 550 operations at 1,000 a second with a burst of 50 take at least half a second (the burst
/// goes at once, the rest at the rate), and the time waited shows in `stats_for`.
pub fn qos_ops_rate_limit_holds(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, Policy::default().ops_rate(RateLimit::per_second(1000))).unwrap();
    m.create_ring(1, Some(1024), Some(1024)).unwrap();
    let took = nops(&m, 1, 550);
    assert!(took >= Duration::from_millis(490), "550 operations at 1,000/s (burst 50) took {took:?}");
    let throttled = m.stats_for(1).unwrap().throttled;
    assert!(throttled >= Duration::from_millis(300), "throttled for {throttled:?} of {took:?}");
    // Without a limit the same is not throttled further.
    m.set_policy(1, Policy::default()).unwrap();
    nops(&m, 1, 550);
    let after = m.stats_for(1).unwrap().throttled;
    assert!(after < throttled + Duration::from_millis(50), "{throttled:?} then {after:?}");
}

/// Reads of 8 KiB at 80 KiB a second (burst 8 KiB), counted as asked when each starts: the
/// first empties the bucket, the second starts on the next byte's token and leaves a debt of
/// 8 KiB, each next one a tenth of a second after the one before, so twelve take a second.
pub fn qos_bytes_rate_limit_holds(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), vec![3u8; 8192]).unwrap();
    let limit = RateLimit::per_second(80 << 10).with_burst(8 << 10);
    m.set_policy(1, Policy::rooted(dir.path()).bytes_rate(limit)).unwrap();
    let OpResult::Fd(fd) = run_op(&m, 1, Op::open("data", O_RDONLY)).result else { panic!("open") };
    let start = Instant::now();
    let reads = (0..12).map(|_| entry(1, Op::ReadAt { fd, offset: 0, size: 8192 }, 0)).collect();
    for seq in m.submit_batch(1, reads).unwrap() {
        assert_eq!(m.wait_completion_timeout(1, seq, T).unwrap().result, OpResult::Bytes(vec![3; 8192]));
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(950), "96 KiB at 80 KiB/s (burst 8 KiB) took {took:?}");
}

/// A tenant throttled with a long backlog holds no place in the executor: another tenant's
/// operations complete while it waits.
pub fn qos_throttled_tenant_delays_no_other(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, Policy::default().ops_rate(RateLimit::per_second(10).with_burst(1))).unwrap();
    m.create_ring(1, Some(4096), Some(4096)).unwrap();
    let backlog = (0..2000).map(|_| nop(1)).collect();
    let seqs = m.submit_batch(1, backlog).unwrap();
    let took = within(T, "another tenant's operations beside a throttled backlog", {
        let m = m.clone();
        move || nops(&m, 2, 1000)
    });
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(m.stats_for(1).unwrap().completed < 100, "the backlog is throttled");
    m.destroy_ring(1).unwrap();
    drop(seqs);
}

/// Destroying a throttled tenant ends its backlog at once: its futures resolve cancelled.
pub fn qos_destroy_ends_a_throttled_backlog(make: MakeBackend) {
    let m = manager(make);
    m.set_policy(1, Policy::default().ops_rate(RateLimit::per_second(1).with_burst(1))).unwrap();
    let first = m.submit_async(1, nop(1)).unwrap();
    let second = m.submit_async(1, nop(1)).unwrap();
    let done = within(T, "the first operation", move || futures::executor::block_on(first));
    assert!(done.status.is_success());
    std::thread::sleep(Duration::from_millis(50));
    m.destroy_ring(1).unwrap();
    let done = within(Duration::from_millis(900), "a throttled operation after destroy", move || {
        futures::executor::block_on(second)
    });
    assert!(done.status.is_cancelled(), "{:?}", done.status);
}

/// A tenant deep in debt (a 4 KiB read against 1 byte a second: an hour's wait) whose limit is
/// lifted goes on at once, not when the old limit would have let it: its next read completes,
/// and the time it waited stops growing.
pub fn qos_a_lifted_limit_frees_a_throttled_tenant_at_once(make: MakeBackend) {
    let m = manager(make);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), vec![5u8; 4096]).unwrap();
    let limited = Policy::rooted(dir.path()).bytes_rate(RateLimit::per_second(1).with_burst(1));
    m.set_policy(1, limited).unwrap();
    let OpResult::Fd(fd) = run_op(&m, 1, Op::open("data", O_RDONLY)).result else { panic!("open") };
    let read = || entry(1, Op::ReadAt { fd, offset: 0, size: 4096 }, 0);
    let first = m.submit(1, read()).unwrap();
    assert_eq!(m.wait_completion_timeout(1, first, T).unwrap().result, OpResult::Bytes(vec![5; 4096]));
    let second = m.submit(1, read()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(m.stats_for(1).unwrap().throttled > Duration::ZERO, "the second read waits for the debt");
    m.set_policy(1, Policy::rooted(dir.path())).unwrap();
    let done = m.wait_completion_timeout(1, second, Duration::from_secs(10)).expect("lifted: it goes on at once");
    assert_eq!(done.result, OpResult::Bytes(vec![5; 4096]));
    let waited = m.stats_for(1).unwrap().throttled;
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(m.stats_for(1).unwrap().throttled, waited, "no longer waiting");
}
