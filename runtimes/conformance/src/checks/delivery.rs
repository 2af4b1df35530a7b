//! The six delivery rules.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ai_os_kernel::syscalls::{IoUringError, OpResult, SyscallCompletionStatus, SyscallOpType};
use futures::StreamExt;
use futures::executor::block_on;

use super::{entry, held, manager, nop};
use crate::support::{Held, MakeBackend, eventually};

const T: Duration = Duration::from_secs(30);

pub fn nop_roundtrip(make: MakeBackend) {
    let m = manager(make);
    let seq = m.submit(1, entry(1, SyscallOpType::Nop, 42)).unwrap();
    let done = m.wait_completion_timeout(1, seq, T).unwrap();
    assert_eq!(done.seq, seq);
    assert_eq!(done.user_data, 42);
    assert_eq!(done.status, SyscallCompletionStatus::Success);
    assert_eq!(done.result, OpResult::None);
    assert_eq!(done.errno(), None);
}

/// Rule 1: every accepted submission completes exactly once, whichever way it is taken.
pub fn exactly_once(make: MakeBackend) {
    let m = manager(make);
    let pid = 3;
    m.create_ring(pid, Some(64), Some(128)).unwrap();
    let mut issued = HashMap::new();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for round in 0..20u64 {
        let batch = (0..32).map(|i| entry(pid, SyscallOpType::Nop, round * 1000 + i)).collect();
        let seqs = m.submit_batch(pid, batch).unwrap();
        for (i, &s) in seqs.iter().enumerate() {
            issued.insert(s, round * 1000 + i as u64);
        }
        // A few taken out of order by seq, the rest reaped.
        for &s in seqs.iter().rev().take(8) {
            let e = m.wait_completion_timeout(pid, s, T).unwrap();
            *seen.entry(e.seq).or_default() += 1;
            assert_eq!(e.user_data, issued[&e.seq]);
        }
        let mut got = 0;
        eventually(T, "reap a round", || {
            for e in m.reap_completions(pid, Some(7)).unwrap() {
                assert_eq!(e.user_data, issued[&e.seq]);
                *seen.entry(e.seq).or_default() += 1;
                got += 1;
            }
            got == 24
        });
    }
    assert_eq!(seen.len(), issued.len());
    assert!(seen.values().all(|&n| n == 1), "a completion was delivered twice");
    assert!(m.reap_completions(pid, None).unwrap().is_empty());
    let st = m.stats();
    assert_eq!(st.total_submissions, 640);
    assert_eq!(st.total_completions, 640);
    assert_eq!(st.pending, 0);
    assert_eq!(st.discarded, 0);
}

/// Rule 2: a future's completion is its own and never reaches the CQ.
pub fn future_owns_completion(make: MakeBackend) {
    let m = manager(make);
    let fut = m.submit_async(1, entry(1, SyscallOpType::Nop, 5)).unwrap();
    let seq = fut.seq();
    // Owned by the future: not waitable by seq.
    assert!(matches!(m.wait_completion(1, seq), Err(IoUringError::UnknownSeq { .. })));
    let done = block_on(fut);
    assert_eq!((done.seq, done.user_data), (seq, 5));
    assert!(done.status.is_success());
    assert!(m.reap_completions(1, None).unwrap().is_empty());
    assert_eq!(m.stats().pending, 0);
}

/// Rule 2: a dropped future cancels its operation and its completion is counted as discarded.
pub fn dropped_future_is_discarded(make: MakeBackend) {
    let (m, gate) = held(make, 1);
    let running = m.submit_async(1, nop(1)).unwrap();
    let queued = m.submit_async(1, nop(1)).unwrap();
    eventually(T, "first op at the gate", || gate.arrived.load(std::sync::atomic::Ordering::SeqCst) == 1);
    drop(queued);
    assert_eq!(m.stats().discarded, 1, "a queued operation's future dropped is discarded at once");
    drop(running);
    gate.open();
    eventually(T, "running op discarded", || m.stats().pending == 0);
    let st = m.stats();
    assert_eq!((st.total_submissions, st.total_completions, st.discarded), (2, 2, 2));
    assert!(m.reap_completions(1, None).unwrap().is_empty(), "discarded completions never reach the CQ");
}

/// Rule 2: `detach` hands the completion to the CQ.
pub fn detach_hands_to_cq(make: MakeBackend) {
    let m = manager(make);
    let fut = m.submit_async(1, entry(1, SyscallOpType::Nop, 9)).unwrap();
    let seq = fut.detach();
    let done = m.wait_completion_timeout(1, seq, T).unwrap();
    assert_eq!((done.seq, done.user_data), (seq, 9));
    // Detached after it completed: still lands in the CQ.
    let fut = m.submit_async(1, entry(1, SyscallOpType::Nop, 10)).unwrap();
    eventually(T, "the future's operation completed", || m.stats_for(1).unwrap().completed == 2);
    let seq = fut.detach();
    let mut got = Vec::new();
    eventually(T, "detached completion in CQ", || {
        got.extend(m.reap_completions(1, None).unwrap());
        !got.is_empty()
    });
    assert_eq!(got[0].seq, seq);
    assert_eq!(m.stats().discarded, 0);
}

/// Rule 3: `wait_completion(seq)` takes that entry, the others keep their order.
pub fn wait_takes_out_of_order(make: MakeBackend) {
    let m = manager(make);
    let ring = m.create_ring(1, None, None).unwrap();
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(m.submit(1, entry(1, SyscallOpType::Nop, i)).unwrap());
        eventually(T, "completion ready", || ring.ready() == seqs.len());
    }
    let middle = m.wait_completion(1, seqs[2]).unwrap();
    assert_eq!(middle.seq, seqs[2]);
    let rest: Vec<u64> = m.reap_completions(1, None).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(rest, vec![seqs[0], seqs[1], seqs[3], seqs[4]]);
}

/// Rule 4: a full SQ refuses at once and enqueues nothing.
pub fn backpressure_sq_full(make: MakeBackend) {
    let (m, gate) = held(make, 1);
    m.create_ring(1, Some(2), Some(8)).unwrap();
    let first = m.submit(1, nop(1)).unwrap();
    eventually(T, "first op running", || gate.arrived.load(std::sync::atomic::Ordering::SeqCst) == 1);
    let queued = [m.submit(1, nop(1)).unwrap(), m.submit(1, nop(1)).unwrap()];
    let err = m.submit(1, nop(1)).unwrap_err();
    assert_eq!(err, IoUringError::SubmissionQueueFull { pid: 1, capacity: 2 });
    let full = IoUringError::SubmissionQueueFull { pid: 1, capacity: 2 };
    assert_eq!(m.submit_async(1, nop(1)).err(), Some(full.clone()));
    assert_eq!(m.submit_batch(1, vec![nop(1)]).unwrap_err(), full);
    assert_eq!(m.stats().total_submissions, 3, "a refused submission is not enqueued");
    gate.open();
    for s in [first, queued[0], queued[1]] {
        assert!(m.wait_completion_timeout(1, s, T).unwrap().status.is_success());
    }
    m.submit(1, nop(1)).unwrap();
}

/// Rule 4: completions not taken count against the CQ; the ring refuses rather than drop.
pub fn backpressure_cq_full(make: MakeBackend) {
    let m = manager(make);
    let ring = m.create_ring(1, Some(4), Some(4)).unwrap();
    let seqs: Vec<u64> = (0..4).map(|_| m.submit(1, nop(1)).unwrap()).collect();
    eventually(T, "all four completed", || ring.ready() == 4);
    assert_eq!(m.submit(1, nop(1)).unwrap_err(), IoUringError::CompletionQueueFull { pid: 1, capacity: 4 });
    assert_eq!(m.submit_async(1, nop(1)).err(), Some(IoUringError::CompletionQueueFull { pid: 1, capacity: 4 }));
    let first = m.reap_completions(1, Some(1)).unwrap();
    assert_eq!(first.len(), 1);
    let fifth = m.submit(1, nop(1)).unwrap();
    m.wait_completion_timeout(1, fifth, T).unwrap();
    let mut all: Vec<u64> = first.iter().chain(&m.reap_completions(1, None).unwrap()).map(|e| e.seq).collect();
    all.sort();
    assert_eq!(all, seqs, "nothing was dropped");
}

/// `submit_batch` is all or nothing.
pub fn batch_all_or_nothing(make: MakeBackend) {
    let (m, gate) = held(make, 1);
    let ring = m.create_ring(1, Some(8), Some(8)).unwrap();
    assert!(m.submit_batch(1, Vec::new()).unwrap().is_empty());
    let nine = (0..9).map(|_| nop(1)).collect();
    assert_eq!(m.submit_batch(1, nine).unwrap_err(), IoUringError::BatchTooLarge { pid: 1, len: 9, capacity: 8 });
    let six = m.submit_batch(1, (0..6).map(|_| nop(1)).collect()).unwrap();
    assert_eq!(six.windows(2).filter(|w| w[1] == w[0] + 1).count(), 5, "consecutive seqs");
    let err = m.submit_batch(1, (0..4).map(|_| nop(1)).collect()).unwrap_err();
    assert!(matches!(err, IoUringError::CompletionQueueFull { .. } | IoUringError::SubmissionQueueFull { .. }));
    assert_eq!(ring.outstanding(), 6, "the refused batch left nothing behind");
    gate.open();
    for s in six {
        m.wait_completion_timeout(1, s, T).unwrap();
    }
    assert_eq!(m.stats().total_submissions, 6);
}

/// Rule 5: waiting on a seq never issued, already taken, or owned by a future fails at once.
pub fn wait_fails_fast(make: MakeBackend) {
    let m = manager(make);
    assert_eq!(m.wait_completion(1, 1).unwrap_err(), IoUringError::NoRing { pid: 1 });
    m.create_ring(1, None, None).unwrap();
    assert_eq!(m.wait_completion(1, 999).unwrap_err(), IoUringError::UnknownSeq { pid: 1, seq: 999 });
    assert_eq!(m.wait_completion(1, 0).unwrap_err(), IoUringError::UnknownSeq { pid: 1, seq: 0 });
    let seq = m.submit(1, nop(1)).unwrap();
    m.wait_completion_timeout(1, seq, T).unwrap();
    assert_eq!(m.wait_completion(1, seq).unwrap_err(), IoUringError::UnknownSeq { pid: 1, seq });
    let fut = m.submit_async(1, nop(1)).unwrap();
    assert!(matches!(m.wait_completion(1, fut.seq()), Err(IoUringError::UnknownSeq { .. })));
    block_on(fut);
    assert!(matches!(m.reap_completions(2, None), Err(IoUringError::NoRing { pid: 2 })));
    assert!(matches!(m.completions(2), Err(IoUringError::NoRing { pid: 2 })));
    assert!(matches!(m.cancel(2, 1), Err(IoUringError::NoRing { pid: 2 })));
}

/// `wait_completion_timeout` gives up and leaves the operation outstanding.
pub fn wait_timeout(make: MakeBackend) {
    let (m, gate) = held(make, 1);
    let seq = m.submit(1, nop(1)).unwrap();
    let start = std::time::Instant::now();
    assert_eq!(
        m.wait_completion_timeout(1, seq, Duration::from_millis(50)).unwrap_err(),
        IoUringError::Timeout { pid: 1, seq }
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(m.stats().pending, 1);
    gate.open();
    assert!(m.wait_completion_timeout(1, seq, T).unwrap().status.is_success());
}

/// Rule 5: destroying a ring wakes blocked waiters, resolves futures, ends streams.
pub fn destroy_wakes_everyone(make: MakeBackend) {
    let (m, gate) = held(make, 4);
    let seq = m.submit(1, nop(1)).unwrap();
    let fut = m.submit_async(1, nop(1)).unwrap();
    let mut stream = m.completions(1).unwrap();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let waiter = {
        let m = m.clone();
        std::thread::spawn(move || {
            tid_tx.send(crate::support::current_thread_id()).unwrap();
            m.wait_completion(1, seq)
        })
    };
    let tid = tid_rx.recv().unwrap();
    eventually(T, "the waiter blocked in wait_completion", || crate::support::thread_is_asleep(tid));
    m.destroy_ring(1).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap_err(), IoUringError::RingDestroyed { pid: 1 });
    assert!(block_on(fut).status.is_cancelled());
    assert!(block_on(stream.next()).is_none());
    assert_eq!(m.wait_completion(1, seq).unwrap_err(), IoUringError::NoRing { pid: 1 });
    assert_eq!(m.destroy_ring(1).unwrap_err(), IoUringError::NoRing { pid: 1 });
    gate.open();
    eventually(T, "late completions retired", || m.stats().pending == 0);
    assert_eq!(m.stats().active_rings, 0);
}

/// `cancel`: queued and running operations complete `Cancelled`; finished ones are left alone.
pub fn cancel_ops(make: MakeBackend) {
    let (m, gate) = held(make, 1);
    let running = m.submit(1, entry(1, SyscallOpType::Nop, 1)).unwrap();
    let queued = m.submit(1, entry(1, SyscallOpType::Nop, 2)).unwrap();
    eventually(T, "first op running", || gate.arrived.load(std::sync::atomic::Ordering::SeqCst) == 1);
    m.cancel(1, queued).unwrap();
    let c = m.wait_completion_timeout(1, queued, T).unwrap();
    assert!(c.status.is_cancelled());
    assert_eq!((c.user_data, c.errno()), (2, Some(libc::ECANCELED)));
    m.cancel(1, running).unwrap();
    assert!(m.wait_completion_timeout(1, running, T).unwrap().status.is_cancelled());
    m.cancel(1, running).unwrap(); // finished and taken: Ok, nothing changes
    assert_eq!(m.cancel(1, 999).unwrap_err(), IoUringError::UnknownSeq { pid: 1, seq: 999 });
    gate.open();
    let done = m.submit(1, nop(1)).unwrap();
    eventually(T, "completed", || m.ring(1).unwrap().ready() == 1);
    m.cancel(1, done).unwrap();
    assert!(m.wait_completion(1, done).unwrap().status.is_success(), "cancel after completion changes nothing");
    assert_eq!(m.stats().pending, 0);
}

/// A long queue of operations that complete the instant they start (`Lseek` runs inline on
/// io_uring, a ready socket answers at once) does not nest one start inside another: 20,000 of
/// them in one batch complete on a thread with a 128 KiB stack.
pub fn long_queue_of_instant_ops_keeps_the_stack_flat(make: MakeBackend) {
    let worker = std::thread::Builder::new().stack_size(128 << 10).spawn(move || {
        let m = manager(make);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"0123456789").unwrap();
        m.set_policy(1, ai_os_kernel::sandbox::Policy::rooted(dir.path())).unwrap();
        m.create_ring(1, Some(20_000), Some(20_000)).unwrap();
        let open = SyscallOpType::open("f", ai_os_kernel::syscalls::open_flags::O_RDONLY);
        let s = m.submit(1, entry(1, open, 0)).unwrap();
        let OpResult::Fd(fd) = m.wait_completion(1, s).unwrap().result else { panic!("open") };
        let seeks = (0..20_000).map(|i| entry(1, SyscallOpType::Lseek { fd, offset: i % 10, whence: 0 }, i as u64));
        let seqs = m.submit_batch(1, seeks.collect()).unwrap();
        for (i, s) in seqs.into_iter().enumerate() {
            let done = m.wait_completion_timeout(1, s, Duration::from_secs(30)).unwrap();
            assert_eq!(done.result, OpResult::Offset(i as u64 % 10));
        }
    });
    worker.unwrap().join().expect("the submitting thread overflowed its stack or failed");
}

/// The executor is fair: a process flooding its ring does not starve another.
pub fn fairness_under_flood(make: MakeBackend) {
    let m = ai_os_kernel::syscalls::IoUringManager::with_backend(Held::slow(make(), 2, Duration::from_millis(2)));
    let flood = m.submit_batch(1, (0..200).map(|_| nop(1)).collect()).unwrap();
    let seq = m.submit(2, nop(2)).unwrap();
    m.wait_completion_timeout(2, seq, T).unwrap();
    let flooder_done = m.ring(1).unwrap().ready();
    assert!(flooder_done < 50, "pid 2 waited behind {flooder_done} of pid 1's 200 operations");
    for s in flood {
        m.wait_completion_timeout(1, s, T).unwrap();
    }
}

/// Stats add up while many threads submit and take at once.
pub fn stats_consistent_under_concurrency(make: MakeBackend) {
    let m = manager(make);
    let threads: Vec<_> = (1..=4u32)
        .map(|pid| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut taken = HashSet::new();
                for _ in 0..50 {
                    let seqs = m.submit_batch(pid, (0..10).map(|_| nop(pid)).collect()).unwrap();
                    let fut = m.submit_async(pid, nop(pid)).unwrap();
                    assert!(block_on(fut).status.is_success());
                    taken.extend(m.reap_completions(pid, None).unwrap().into_iter().map(|e| e.seq));
                    for s in seqs {
                        if !taken.contains(&s) {
                            assert!(taken.insert(m.wait_completion_timeout(pid, s, T).unwrap().seq));
                        }
                    }
                }
                assert_eq!(taken.len(), 500);
            })
        })
        .collect();
    // Two threads share one ring while a third takes its completions.
    let shared: Vec<_> = (0..2)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    loop {
                        match m.submit(9, nop(9)) {
                            Ok(_) => break,
                            Err(
                                IoUringError::CompletionQueueFull { .. } | IoUringError::SubmissionQueueFull { .. },
                            ) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    let mut got = 0;
    eventually(T, "shared ring drained", || {
        got += m.reap_completions(9, None).map(|v| v.len()).unwrap_or(0);
        got == 200
    });
    for t in threads.into_iter().chain(shared) {
        t.join().unwrap();
    }
    let st = m.stats();
    assert_eq!(st.total_submissions, 4 * 550 + 200);
    assert_eq!(st.total_submissions, st.total_completions + st.pending);
    assert_eq!(st.pending, 0);
}
