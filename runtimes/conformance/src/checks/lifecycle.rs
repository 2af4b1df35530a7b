//! Rings and processes: sizes, creation, destruction, and the registry's view of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{
    AsyncSyscallExecutor, DEFAULT_CQ_SIZE, DEFAULT_SQ_SIZE, IoUringError, IoUringHandler, OpResult, Syscall,
    SyscallHandlerRegistry, SyscallOpType as Op, SyscallResult,
};
use futures::executor::block_on;

use super::{entry, manager, nop, rooted};
use crate::support::{MakeBackend, kernel_fds_to, run_op};

pub fn ring_sizes(make: MakeBackend) {
    let m = manager(make);
    let ring = m.create_ring(1, None, None).unwrap();
    assert_eq!((ring.sq_capacity(), ring.cq_capacity()), (DEFAULT_SQ_SIZE, DEFAULT_CQ_SIZE));
    assert_eq!((DEFAULT_SQ_SIZE, DEFAULT_CQ_SIZE), (256, 512));
    assert_eq!(ring.pid(), 1);
    let ring = m.create_ring(2, Some(512), Some(1024)).unwrap();
    assert_eq!((ring.sq_capacity(), ring.cq_capacity()), (512, 1024));
    let ring = m.create_ring(3, Some(2048), None).unwrap();
    assert_eq!(ring.cq_capacity(), 2048, "the CQ grows to the SQ when not given");
    m.create_ring(4, Some(1), Some(1)).unwrap();
    m.create_ring(5, Some(65536), Some(65536)).unwrap();
    for (sq, cq) in [
        (Some(0), None),
        (None, Some(0)),
        (Some(65537), None),
        (Some(8), Some(4)),
        (Some(usize::MAX), Some(usize::MAX)),
    ] {
        let err = m.create_ring(10, sq, cq).unwrap_err();
        assert!(matches!(err, IoUringError::InvalidConfig(_)), "sizes {sq:?}/{cq:?}: {err}");
    }
    assert!(matches!(m.create_ring(1, None, None), Err(IoUringError::InvalidConfig(_))), "a second ring for pid 1");
    assert_eq!(m.stats().active_rings, 5);
}

/// Submitting to a pid without a ring creates one with the default sizes.
pub fn submit_creates_ring(make: MakeBackend) {
    let m = manager(make);
    assert!(matches!(m.ring(9), Err(IoUringError::NoRing { pid: 9 })));
    let seq = m.submit(9, nop(9)).unwrap();
    assert_ne!(seq, 0, "0 is never a sequence number");
    assert_eq!(m.submit(9, nop(9)).unwrap(), seq + 1, "a ring numbers its operations in order");
    m.wait_completion(9, seq + 1).unwrap();
    let ring = m.ring(9).unwrap();
    assert_eq!((ring.sq_capacity(), ring.cq_capacity()), (256, 512));
    m.wait_completion(9, seq).unwrap();
    assert_eq!(m.stats().active_rings, 1);
}

/// An entry must be submitted to its own pid.
pub fn pid_mismatch_refused(make: MakeBackend) {
    let m = manager(make);
    assert!(matches!(m.submit(1, nop(2)), Err(IoUringError::InvalidConfig(_))));
    assert!(matches!(m.submit_batch(1, vec![nop(1), nop(2)]), Err(IoUringError::InvalidConfig(_))));
    assert!(matches!(m.submit_async(1, nop(2)), Err(IoUringError::InvalidConfig(_))));
    assert_eq!(m.stats().total_submissions, 0);
}

/// Destroying a ring closes the process's kernel descriptors and forgets its policy.
pub fn destroy_closes_descriptors(make: MakeBackend) {
    let m = manager(make);
    let dir = rooted(&m, 1);
    let unique = dir.path().join("unique-name-for-fd-check");
    std::fs::write(&unique, b"x").unwrap();
    for _ in 0..3 {
        assert!(run_op(&m, 1, Op::open("unique-name-for-fd-check", O_RDONLY)).status.is_success());
    }
    assert_eq!(kernel_fds_to(&unique), 3);
    m.destroy_ring(1).unwrap();
    assert_eq!(kernel_fds_to(&unique), 0, "destroy_ring left kernel descriptors open");
    assert!(m.processes().get(1).is_none());
    // A new ring for the pid starts with nothing: no descriptors, deny-all.
    let done = run_op(&m, 1, Op::Read { fd: 3, size: 1 });
    assert_eq!(done.errno(), Some(ai_os_kernel::syscalls::errno::EBADF));
    let done = run_op(&m, 1, Op::open("unique-name-for-fd-check", O_RDONLY));
    assert_eq!(done.errno(), Some(ai_os_kernel::syscalls::errno::EACCES));
}

/// The registry's `IoUringHandler` and the rings share one process table.
pub fn registry_and_handler_share_descriptors(make: MakeBackend) {
    let m = Arc::new(manager(make));
    let dir = rooted(&m, 4);
    std::fs::write(dir.path().join("f"), b"shared").unwrap();
    let mut registry = SyscallHandlerRegistry::new();
    registry.register(Box::new(IoUringHandler::new(m.clone(), true)));
    let registry = Arc::new(registry);
    let exec = AsyncSyscallExecutor::new(registry.clone());

    let opened = block_on(exec.execute(4, Syscall::Io(Op::open("f", O_RDWR))));
    let SyscallResult::Done(done) = opened else { panic!("{opened:?}") };
    let OpResult::Fd(fd) = done.result else { panic!("{:?}", done.status) };
    // Opened through the registry, read through a ring.
    assert_eq!(run_op(&m, 4, Op::ReadAt { fd, offset: 0, size: 6 }).result, OpResult::Bytes(b"shared".to_vec()));
    // Non-blocking handler: the completion goes to the CQ.
    let handler = IoUringHandler::new(m.clone(), false);
    let mut nb = SyscallHandlerRegistry::new();
    nb.register(Box::new(handler));
    let r = block_on(nb.dispatch(4, &Syscall::Io(Op::WriteAt { fd, offset: 0, data: b"SH".to_vec() })));
    let SyscallResult::Submitted(seq) = r else { panic!("{r:?}") };
    assert_eq!(m.wait_completion(4, seq).unwrap().result, OpResult::Count(2));
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"SHared");

    assert_eq!(block_on(exec.execute(4, Syscall::GetPid)), SyscallResult::Value(4));
    let start = Instant::now();
    assert_eq!(block_on(exec.execute(4, Syscall::Sleep(Duration::from_millis(20)))), SyscallResult::Value(0));
    assert!(start.elapsed() >= Duration::from_millis(20));
    let bare = SyscallHandlerRegistry::new();
    assert!(matches!(block_on(bare.dispatch(4, &Syscall::Io(Op::Nop))), SyscallResult::Error(_)));
    // Errors of the manager come back as errors, not panics.
    let bad = block_on(
        IoUringHandler::new(m.clone(), true)
            .manager()
            .submit_async(4, entry(5, Op::Nop, 0))
            .map_or_else(|e| async move { e.to_string() }, |_| unreachable!()),
    );
    assert!(bad.contains("pid 5"), "{bad}");
}

/// `stats_for(pid)`: the process's own counters and where its operations spent their time.
pub fn stats_for_counts_and_latencies(make: MakeBackend) {
    let (m, gate) = super::held(make, 1);
    assert!(matches!(m.stats_for(1), Err(IoUringError::NoRing { pid: 1 })));
    let held_seq = m.submit(1, entry(1, Op::Nop, 0)).unwrap();
    let queued = m.submit(1, entry(1, Op::Nop, 0)).unwrap();
    let refused = m.submit(1, entry(1, Op::open("/etc/passwd", O_RDONLY), 0)).unwrap();
    m.cancel(1, queued).unwrap();
    let mid = m.stats_for(1).unwrap();
    assert_eq!((mid.submitted, mid.completed, mid.failed, mid.cancelled, mid.in_flight), (3, 2, 1, 1, 3));
    // The point: the held operation runs at least 50 ms, which its latency split must show.
    std::thread::sleep(Duration::from_millis(50));
    gate.open();
    let more = m.submit_batch(1, (0..20).map(|_| nop(1)).collect()).unwrap();
    for s in [held_seq, queued, refused].into_iter().chain(more) {
        m.wait_completion_timeout(1, s, Duration::from_secs(30)).unwrap();
    }
    let st = m.stats_for(1).unwrap();
    assert_eq!(st.pid, 1);
    assert_eq!((st.submitted, st.completed, st.failed, st.cancelled, st.in_flight), (23, 23, 1, 1, 0));
    // One operation in sixteen is measured at every stage: seqs 1 (the held one) and 17 of
    // 1..=23, both dispatched, run and taken.
    assert_eq!((st.queued.samples, st.running.samples, st.waiting.samples), (2, 2, 2), "{st:?}");
    assert!(st.running.p99 >= Duration::from_millis(50), "the held operation ran >= 50 ms: {:?}", st.running);
    assert!(st.running.p50 <= st.running.p99 && st.waiting.p50 <= st.waiting.p99);
    // Another process's figures are its own.
    m.submit(2, nop(2)).map(|s| m.wait_completion(2, s).unwrap()).unwrap();
    assert_eq!(m.stats_for(2).unwrap().submitted, 1);
    assert_eq!(m.stats_for(1).unwrap().submitted, 23);
    // Tracking off: the counters go on, the latency split stands still (seq 9 would be sampled).
    assert_eq!(m.stats_for(2).unwrap().waiting.samples, 1);
    m.set_latency_tracking(false);
    for _ in 0..9 {
        m.submit(2, nop(2)).map(|s| m.wait_completion(2, s).unwrap()).unwrap();
    }
    let off = m.stats_for(2).unwrap();
    assert_eq!((off.submitted, off.completed), (10, 10));
    assert_eq!((off.queued.samples, off.running.samples, off.waiting.samples), (1, 1, 1));
}
