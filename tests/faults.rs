//! Faults injected inside operations (errors, `EINTR`, `EAGAIN`, short reads and writes, delays,
//! panics) on every backend compiled in: each becomes a completion that says what happened, no
//! completion is lost, and every process, including one that never sees a fault, keeps being
//! served.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ai_os_kernel::Pid;
use ai_os_kernel::backend;
use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::errno::{EAGAIN, EINTR, EIO, ENOSPC};
use ai_os_kernel::syscalls::open_flags::*;
use ai_os_kernel::syscalls::{
    IoUringManager, OpResult, SyscallCompletionEntry, SyscallOpType as Op, SyscallSubmissionEntry,
};
use ai_os_kernel_conformance::support::{Fault, Faulty, eventually, within};

const BLOCK: usize = 4096;
const SHORT: usize = 1000;
const FAULTED_PIDS: std::ops::RangeInclusive<Pid> = 1..=8;
const CLEAN_PID: Pid = 100;

/// The fault for a positioned read or write, by the block it touches; everything else runs.
fn fault_of_block(block: usize) -> Fault {
    match block % 8 {
        1 => Fault::Errno(EIO),
        2 => Fault::Errno(EINTR),
        3 => Fault::Errno(EAGAIN),
        4 => Fault::Short(SHORT),
        5 => Fault::Delay(Duration::from_millis(20)),
        6 => Fault::Panic,
        7 => Fault::Errno(ENOSPC),
        _ => Fault::None,
    }
}

fn plan(op: &Op) -> Fault {
    match op {
        Op::ReadAt { offset, .. }
        | Op::WriteAt { offset, .. }
        | Op::ReadInto { offset: Some(offset), .. }
        | Op::WriteFrom { offset: Some(offset), .. } => fault_of_block(*offset as usize / BLOCK),
        _ => Fault::None,
    }
}

fn pattern(i: usize) -> u8 {
    (i * 31 + i / BLOCK) as u8
}

fn run(m: &IoUringManager, pid: Pid, ops: Vec<Op>) -> Vec<SyscallCompletionEntry> {
    let entries = ops.into_iter().map(|op| SyscallSubmissionEntry::new(pid, op, 0)).collect();
    let seqs = m.submit_batch(pid, entries).expect("submit");
    seqs.into_iter().map(|s| m.wait_completion_timeout(pid, s, Duration::from_secs(30)).expect("completion")).collect()
}

fn open(m: &IoUringManager, pid: Pid, path: &str) -> i32 {
    match run(m, pid, vec![Op::open(path, O_RDWR)]).remove(0).result {
        OpResult::Fd(fd) => fd,
        other => panic!("open {path}: {other:?}"),
    }
}

/// What a read or write of `block` must have completed with, given its fault; returns the bytes
/// it moved. One that carried the caller's buffer (`owned`) has it back, but where the backend
/// lost the operation (a panic).
fn check(name: &str, block: usize, done: &SyscallCompletionEntry, full: usize, owned: bool) -> usize {
    let what = format!("{name}: block {block}: {done:?}");
    match fault_of_block(block) {
        Fault::Errno(errno) => {
            assert_eq!(done.errno(), Some(errno), "{what}");
            assert_eq!(matches!(done.result, OpResult::Buf { count: 0, .. }), owned, "{what}: the buffer back");
            // The caller's own: a write's whole, a read's empty with its room.
            if let OpResult::Buf { buf, .. } = &done.result {
                assert!(buf.len() == full || (buf.is_empty() && buf.capacity() >= full), "{what}: not the caller's");
            }
            0
        }
        Fault::Panic => {
            assert_eq!(done.errno(), Some(EIO), "{what}: a panic is EIO");
            assert!(!matches!(done.result, OpResult::Buf { .. }), "{what}: a lost operation has no buffer");
            0
        }
        fault => {
            assert!(done.status.is_success(), "{what}");
            let moved = match &done.result {
                OpResult::Bytes(b) if !owned => b.len(),
                OpResult::Count(n) if !owned => *n,
                OpResult::Buf { count, .. } if owned => *count,
                other => panic!("{what}: unexpected {other:?}"),
            };
            assert_eq!(moved, if fault == Fault::Short(SHORT) { SHORT } else { full }, "{what}");
            moved
        }
    }
}

fn faults_on(name: &'static str) {
    let inner = match backend::by_name(name) {
        Ok(b) => b,
        Err(e) => {
            return ai_os_kernel_conformance::support::report_skipped(&format!("faults on the {name} backend"), e);
        }
    };
    let faulty = Faulty::new(inner, plan);
    let m = IoUringManager::with_backend(faulty.clone());
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..32 * BLOCK).map(pattern).collect();
    std::fs::write(dir.path().join("data"), &data).unwrap();
    std::fs::write(dir.path().join("out"), vec![0u8; 80 * BLOCK]).unwrap();
    for pid in FAULTED_PIDS.chain([CLEAN_PID]) {
        m.set_policy(pid, Policy::rooted(dir.path()).read_write()).unwrap();
    }

    // A process that never meets a fault, busy the whole time.
    let clean = {
        let m = m.clone();
        std::thread::spawn(move || {
            let fd = open(&m, CLEAN_PID, "data");
            for round in 0..50 {
                let mut ops: Vec<Op> = (0..8).map(|_| Op::Nop).collect();
                ops.push(Op::ReadAt { fd, offset: (round % 4 * 8 * BLOCK) as u64, size: BLOCK });
                for done in run(&m, CLEAN_PID, ops) {
                    assert!(done.status.is_success(), "{name}: the clean process saw {done:?}");
                }
            }
        })
    };

    let workers: Vec<_> = FAULTED_PIDS
        .map(|pid| {
            let (m, data) = (m.clone(), data.clone());
            std::thread::spawn(move || {
                // Even pids read into and write from buffers of their own (`ReadInto`,
                // `WriteFrom`): a short one is cut by `limit_transfer` as the others are.
                let owned = pid % 2 == 0;
                let fd = open(&m, pid, "data");
                let read = |b: usize| match owned {
                    true => Op::read_into(fd, Some((b * BLOCK) as u64), Vec::with_capacity(BLOCK)),
                    false => Op::ReadAt { fd, offset: (b * BLOCK) as u64, size: BLOCK },
                };
                for (block, done) in run(&m, pid, (0..32).map(read).collect()).iter().enumerate() {
                    let moved = check(name, block, done, BLOCK, owned);
                    if let OpResult::Bytes(b) | OpResult::Buf { buf: b, .. } = &done.result {
                        assert_eq!(b[..], data[block * BLOCK..block * BLOCK + moved], "{name}: block {block} bytes");
                    }
                }
                // Each process writes its own 8 blocks of "out", one per kind of fault.
                let out = open(&m, pid, "out");
                let first = pid as usize * 8;
                let write = |b: usize| match owned {
                    true => Op::write_from(out, Some((b * BLOCK) as u64), vec![pid as u8; BLOCK]),
                    false => Op::WriteAt { fd: out, offset: (b * BLOCK) as u64, data: vec![pid as u8; BLOCK] },
                };
                let written: Vec<usize> = run(&m, pid, (first..first + 8).map(write).collect())
                    .iter()
                    .enumerate()
                    .map(|(j, done)| check(name, first + j, done, BLOCK, owned))
                    .collect();
                // Still served after its faults.
                let again = run(&m, pid, vec![Op::ReadAt { fd, offset: 0, size: BLOCK }]).remove(0);
                assert_eq!(again.result, OpResult::Bytes(data[..BLOCK].to_vec()), "{name}: pid {pid} after faults");
                (first, written)
            })
        })
        .collect();

    let mut expected_faults = [0usize; 4];
    let mut note = |block: usize| match fault_of_block(block) {
        Fault::Errno(_) => expected_faults[0] += 1,
        Fault::Short(_) => expected_faults[1] += 1,
        Fault::Delay(_) => expected_faults[2] += 1,
        Fault::Panic => expected_faults[3] += 1,
        Fault::None => {}
    };
    let mut results = Vec::new();
    for w in workers {
        results.push(w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
    }
    clean.join().unwrap_or_else(|p| std::panic::resume_unwind(p));

    // On disk, each write moved exactly the bytes its completion reported.
    let on_disk = std::fs::read(dir.path().join("out")).unwrap();
    for (first, written) in results {
        for (j, n) in written.into_iter().enumerate() {
            let block = &on_disk[(first + j) * BLOCK..(first + j + 1) * BLOCK];
            let pid = (first / 8) as u8;
            assert!(block[..n].iter().all(|&b| b == pid), "{name}: block {} head", first + j);
            assert!(block[n..].iter().all(|&b| b == 0), "{name}: block {} wrote past its count", first + j);
        }
        (0..32).chain(first..first + 8).for_each(&mut note);
    }
    let injected: Vec<usize> = faulty.injected.iter().map(|n| n.load(Ordering::SeqCst)).collect();
    assert_eq!(injected, expected_faults, "{name}: faults injected (errno, short, delay, panic)");

    let stats = m.stats();
    assert_eq!(stats.total_submissions, stats.total_completions, "{name}: {stats:?}");
    assert_eq!(stats.pending, 0, "{name}");
    // The window is given back just after the completion is delivered.
    eventually(Duration::from_secs(10), "the window was given back", || m.executor().in_flight() == 0);
    eprintln!("{name}: {} operations, faults injected {injected:?}, none lost", stats.total_submissions);
}

#[test]
fn faults_become_completions_on_every_backend() {
    within(Duration::from_secs(240), "faults", || {
        for name in backend::available() {
            faults_on(name);
        }
    });
}

/// What needs the blocking pool to wrap.
#[cfg(feature = "blocking")]
mod on_the_blocking_pool {
    use std::sync::Arc;

    use super::*;

    /// The wrapper itself: it really injects (a test of the test support).
    #[test]
    fn faulty_wrapper_injects() {
        let m = IoUringManager::with_backend(Faulty::new(Arc::new(backend::BlockingBackend::with_threads(2)), |_| {
            Fault::Panic
        }));
        let seq = m.submit(1, SyscallSubmissionEntry::new(1, Op::Nop, 0)).unwrap();
        assert_eq!(m.wait_completion_timeout(1, seq, Duration::from_secs(30)).unwrap().errno(), Some(EIO));
    }

    /// A backend that loses every batch it is handed (a bug): the operations still complete,
    /// with `EIO`, and the executor's window is given back.
    struct LosesBatches;

    impl backend::Backend for LosesBatches {
        fn name(&self) -> &'static str {
            "loses-batches"
        }
        fn spawn(&self, _task: backend::Task) {
            unreachable!("nothing is spawned")
        }
        fn submit(&self, batch: backend::Batch) {
            assert_eq!((batch.len(), batch.is_empty()), (3, false));
            assert!(batch.iter().all(|(_, process)| process.pid() == 7));
            drop(batch);
        }
    }

    #[test]
    fn dropped_batches_complete_with_eio() {
        within(Duration::from_secs(30), "dropped ring batch", || {
            let m = IoUringManager::with_backend(Arc::new(LosesBatches));
            let seqs = m.submit_batch(7, (0..3).map(|_| SyscallSubmissionEntry::new(7, Op::Nop, 0)).collect()).unwrap();
            for seq in seqs {
                let done = m.wait_completion_timeout(7, seq, Duration::from_secs(10)).unwrap();
                assert_eq!(done.errno(), Some(EIO), "{done:?}");
            }
            assert_eq!(m.executor().in_flight(), 0);
            assert_eq!(m.stats().pending, 0);
        });
    }
}
