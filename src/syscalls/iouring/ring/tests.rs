use super::test_support::{nops, start_all};
use super::*;
use crate::op::{OpError, OpResult};
use std::pin::Pin;
use std::task::{Context, Poll, Wake};

fn ring(sq: usize, cq: usize) -> (Arc<SyscallCompletionRing>, Arc<Counters>) {
    super::test_support::ring(1, sq, cq)
}

struct Flag(std::sync::atomic::AtomicBool);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn iouring_sizes_are_validated() {
    assert!(validate_sizes(1, 1).is_ok());
    assert!(validate_sizes(MAX_RING_SIZE, MAX_RING_SIZE).is_ok());
    for (sq, cq) in [(0, 1), (1, 0), (MAX_RING_SIZE + 1, MAX_RING_SIZE + 1), (4, 2)] {
        assert!(validate_sizes(sq, cq).is_err(), "{sq}/{cq}");
    }
}

#[test]
fn iouring_state_machine_delivers_each_once() {
    let (r, counters) = ring(8, 8);
    let (first, queued) = r.enqueue(nops(3), false).unwrap();
    assert!(queued);
    let seqs = start_all(&r);
    assert_eq!(seqs, vec![first, first + 1, first + 2]);
    for &s in seqs.iter().rev() {
        r.complete(s, Ok(OpResult::None));
    }
    // A duplicate completion from a confused backend changes nothing.
    r.complete(first, Ok(OpResult::Count(9)));
    let got: Vec<u64> = r.reap(usize::MAX).iter().map(|e| e.seq).collect();
    assert_eq!(got, vec![first + 2, first + 1, first], "completion order, each once");
    let snap = counters.snapshot(1, "test");
    assert_eq!((snap.total_submissions, snap.total_completions, snap.pending), (3, 3, 0));
}

#[test]
fn iouring_started_batches_skip_the_sq_but_never_overtake_it() {
    let (r, counters) = ring(8, 8);
    let mut started = Vec::new();
    let (a, after) = r.accept_started(nops(3), false, &mut |d, counts| started.push((d.seq, counts))).unwrap();
    r.after_unlock(after);
    assert_eq!((a.queued, a.counted), (false, 3));
    assert_eq!(started, vec![(a.first, true), (a.first + 1, true), (a.first + 2, true)]);
    assert!(start_all(&r).is_empty(), "nothing went through the SQ");
    // With operations queued before them, they queue behind those.
    let (queued, _) = r.enqueue(nops(1), false).unwrap();
    started.clear();
    let (b, after) = r.accept_started(nops(2), false, &mut |d, counts| started.push((d.seq, counts))).unwrap();
    r.after_unlock(after);
    assert!(b.queued && b.counted == 0 && started.is_empty());
    assert_eq!(start_all(&r), vec![queued, b.first, b.first + 1]);
    for seq in a.first..b.first + 2 {
        r.complete(seq, Ok(OpResult::None));
    }
    assert_eq!(r.reap(usize::MAX).len(), 6);
    assert_eq!(counters.snapshot(1, "t").pending, 0);
    assert!(r.lock().stamps.is_empty());
}

#[test]
fn iouring_cancel_hooks_run_outside_the_ring_lock() {
    // A backend's hook may ask the ring about its operation (or take locks of its own that
    // the ring's callers hold): it runs once the ring's lock is released, or this deadlocks.
    let (r, _) = ring(8, 8);
    let (seq, _) = r.enqueue(nops(1), false).unwrap();
    start_all(&r);
    let (tx, rx) = std::sync::mpsc::channel();
    let asked = r.clone();
    r.cancel_token(seq).on_cancel(move || {
        let _ = tx.send(asked.is_cancelled(seq));
    });
    let canceller = {
        let r = r.clone();
        std::thread::spawn(move || r.cancel(seq).unwrap())
    };
    let seen = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the hook ran, without deadlock");
    assert!(seen, "the hook saw its operation cancelled");
    canceller.join().unwrap();
    r.complete(seq, Err(OpError::cancelled()));
    assert!(r.reap(1)[0].status.is_cancelled());
}

/// Records the keys a backend was asked to stop, and asks the ring about each as it is told
/// (which deadlocks if it is told under the ring's lock).
struct Stops {
    ring: Arc<SyscallCompletionRing>,
    told: std::sync::Mutex<Vec<(u64, bool)>>,
}

impl crate::syscalls::iouring::cancel::Stop for Stops {
    fn stop(&self, key: u64) {
        let cancelled = self.ring.is_cancelled(key - 1000);
        self.told.lock().unwrap().push((key, cancelled));
    }
}

#[test]
fn iouring_a_backend_registered_to_stop_an_operation_is_told_once_outside_the_lock() {
    let (r, _) = ring(8, 8);
    let (first, _) = r.enqueue(nops(4), false).unwrap();
    start_all(&r);
    let stops = Arc::new(Stops { ring: r.clone(), told: Default::default() });
    let weak: std::sync::Weak<dyn crate::syscalls::iouring::cancel::Stop> =
        Arc::downgrade(&stops) as std::sync::Weak<Stops>;
    let told = || std::mem::take(&mut *stops.told.lock().unwrap());
    // `first` is cancelled before its backend registers: stopped at registration.
    r.cancel(first).unwrap();
    // `first + 3` ended before: nothing to stop.
    r.complete(first + 3, Ok(OpResult::None));
    r.stop_with((first..first + 4).map(|seq| (seq, seq + 1000)), &weak);
    assert_eq!(told(), vec![(first + 1000, true)]);
    // Cancelled after: told once, however often it is asked for.
    r.cancel(first + 1).unwrap();
    r.cancel(first + 1).unwrap();
    assert_eq!(told(), vec![(first + 1001, true)]);
    // The ring's end asks the rest, once.
    r.destroy();
    assert_eq!(told(), vec![(first + 1002, true)]);
    // A ring destroyed before its backend registers (between the enter and the registration):
    // every operation it had is stopped at registration, its futures' and its CQ's alike.
    let (r, _) = ring(8, 8);
    let stops = Arc::new(Stops { ring: r.clone(), told: Default::default() });
    let weak: std::sync::Weak<dyn crate::syscalls::iouring::cancel::Stop> =
        Arc::downgrade(&stops) as std::sync::Weak<Stops>;
    let (queued, _) = r.enqueue(nops(1), false).unwrap();
    let (owned, _) = r.enqueue(nops(1), true).unwrap();
    start_all(&r);
    r.destroy();
    r.stop_with([(queued, queued + 1000), (owned, owned + 1000)].into_iter(), &weak);
    let told = std::mem::take(&mut *stops.told.lock().unwrap());
    assert_eq!(told.iter().map(|&(key, _)| key).collect::<Vec<_>>(), vec![queued + 1000, owned + 1000]);
    assert!(told.iter().all(|&(_, cancelled)| cancelled), "each counts as asked to stop");
    // A backend gone is not told.
    let (r, _) = ring(8, 8);
    let (seq, _) = r.enqueue(nops(1), false).unwrap();
    start_all(&r);
    r.stop_with(std::iter::once((seq, 1)), &weak);
    drop(stops);
    r.cancel(seq).unwrap();
}

#[test]
fn iouring_waits_out_of_order_compact_the_cq() {
    let (r, counters) = ring(64, 64);
    for _ in 0..100 {
        let (seq, _) = r.enqueue(nops(40), false).unwrap();
        for s in start_all(&r) {
            r.complete(s, Ok(OpResult::None));
        }
        for s in (seq..seq + 40).rev() {
            assert_eq!(r.wait(s, None).unwrap().seq, s);
        }
    }
    let s = r.lock();
    assert!(s.cq.len() <= 64, "stale CQ numbers grew to {}", s.cq.len());
    assert!(s.stamps.is_empty(), "sampled times outlived their operations");
    drop(s);
    assert_eq!(counters.snapshot(1, "t").pending, 0);
}

#[test]
fn iouring_abandoned_then_completed_is_discarded_and_fd_closed() {
    let (r, counters) = ring(8, 8);
    let tmp = std::env::temp_dir();
    let fd =
        rustix::fs::open(&tmp, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty())
            .unwrap();
    let vfd = r.process().install(fd, crate::process::DescriptorKind::File).unwrap();
    let (seq, _) = r.enqueue(nops(1), true).unwrap();
    start_all(&r);
    r.abandon(seq);
    r.complete(seq, Ok(OpResult::Fd(vfd)));
    assert_eq!(r.process().open_descriptors(), 0, "the discarded result's descriptor was closed");
    assert!(r.lock().stamps.is_empty(), "sampled times outlived their operation");
    let snap = counters.snapshot(1, "t");
    assert_eq!((snap.pending, snap.discarded), (0, 1));
    assert_eq!(r.outstanding(), 0);
}

#[test]
fn iouring_detach_after_destroy_is_discarded_not_stranded() {
    // Found by the op-sequence fuzz target: a future detached after its ring was destroyed
    // put its completion in a CQ nobody could reach, pending forever.
    let (r, counters) = ring(8, 8);
    let (seq, _) = r.enqueue(nops(1), true).unwrap();
    r.destroy();
    r.detach(seq);
    assert_eq!(r.outstanding(), 0);
    let snap = counters.snapshot(0, "t");
    assert_eq!((snap.total_submissions, snap.total_completions, snap.pending, snap.discarded), (1, 1, 0, 1));
}

#[test]
fn iouring_cq_waiters_are_woken_once_a_pass_fills_the_cq() {
    let (r, _) = ring(8, 8);
    let flag = Arc::new(Flag(false.into()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let woken = || flag.0.swap(false, std::sync::atomic::Ordering::SeqCst);
    // A completion bound for a future leaves the CQ's waiters asleep.
    let (fut, _) = r.enqueue(nops(1), true).unwrap();
    assert!(r.poll_cq(1, &mut cx).is_pending());
    start_all(&r);
    r.complete(fut, Ok(OpResult::None));
    assert!(!woken(), "nothing reached the CQ");
    // A pass of completions for the CQ wakes them.
    let (first, _) = r.enqueue(nops(2), false).unwrap();
    start_all(&r);
    r.after_unlock(r.complete_many([(first, Ok(OpResult::None)), (first + 1, Ok(OpResult::None))].into_iter()));
    assert!(woken(), "completions reached the CQ");
    assert!(matches!(r.poll_cq(1, &mut cx), Poll::Ready(Some(_))));
    assert!(matches!(r.poll_cq(1, &mut cx), Poll::Ready(Some(_))));
    // So does a queued operation cancelled into the CQ.
    assert!(r.poll_cq(1, &mut cx).is_pending());
    let (queued, _) = r.enqueue(nops(1), false).unwrap();
    r.cancel(queued).unwrap();
    assert!(woken(), "the cancelled operation reached the CQ");
    let Poll::Ready(Some(e)) = r.poll_cq(1, &mut cx) else { panic!("not in the CQ") };
    assert!(e.status.is_cancelled());
}

#[test]
fn iouring_future_is_woken_and_takes_its_entry() {
    let (r, _) = ring(8, 8);
    let (seq, _) = r.enqueue(nops(1), true).unwrap();
    let flag = Arc::new(Flag(false.into()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(r.poll_owned(seq, &mut cx).is_pending());
    start_all(&r);
    r.complete(seq, Ok(OpResult::Count(1)));
    assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst), "completion woke the future");
    let Poll::Ready(e) = r.poll_owned(seq, &mut cx) else { panic!("not ready") };
    assert_eq!(e.result, OpResult::Count(1));
    assert_eq!(r.ready(), 0, "a future's completion never reaches the CQ");
}

#[test]
fn iouring_dropped_streams_leave_no_waker() {
    use futures_core::Stream;
    let (r, _) = ring(8, 8);
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    for _ in 0..20_000 {
        let mut stream = r.completions();
        assert!(Pin::new(&mut stream).poll_next(&mut cx).is_pending());
    }
    assert!(r.lock().stream_wakers.is_empty(), "dropped streams left their wakers");
    // A live stream (and each clone) keeps one waker, however often it polls.
    let mut stream = r.completions();
    let mut clone = stream.clone();
    for _ in 0..3 {
        assert!(Pin::new(&mut stream).poll_next(&mut cx).is_pending());
        assert!(Pin::new(&mut clone).poll_next(&mut cx).is_pending());
    }
    assert_eq!(r.lock().stream_wakers.len(), 2);
    drop(clone);
    assert_eq!(r.lock().stream_wakers.len(), 1);
}

#[test]
fn iouring_reads_hold_no_more_than_the_buffer_budget() {
    use crate::process::ProcessTable;
    use crate::sandbox::Policy;
    let table = ProcessTable::new();
    table.set_policy(1, Policy::default().max_buffered_bytes(100)).unwrap();
    let counters = Arc::new(Counters::default());
    let r = SyscallCompletionRing::new(1, 8, 8, table.get_or_create(1), counters.clone()).unwrap();
    let read = |size| std::iter::once((SyscallOpType::ReadAt { fd: 3, offset: 0, size }, 0));
    let (first, _) = r.enqueue(read(60), false).unwrap();
    let (over, _) = r.enqueue(read(50), false).unwrap();
    assert_eq!(r.lock().buffered, 60, "the refused read reserved nothing");
    let refused = r.wait(over, None).unwrap();
    assert_eq!(refused.errno(), Some(rustix::io::Errno::NOMEM.raw_os_error()));
    // Completed, the read holds only what it brought back, until taken.
    start_all(&r);
    r.complete(first, Ok(OpResult::Bytes(vec![7; 5])));
    assert_eq!(r.lock().buffered, 5);
    let (second, _) = r.enqueue(read(95), false).unwrap();
    assert_eq!(r.lock().buffered, 100);
    let (third, _) = r.enqueue(read(1), false).unwrap();
    assert!(r.wait(third, None).unwrap().status.is_error());
    // A queued read cancelled, a taken result: both give their bytes back.
    r.cancel(second).unwrap();
    assert_eq!(r.lock().buffered, 5);
    assert_eq!(r.wait(first, None).unwrap().result, OpResult::Bytes(vec![7; 5]));
    assert_eq!(r.lock().buffered, 0);
    // A future's result counts until the future takes it, or the ring is destroyed.
    let (fut, _) = r.enqueue(read(40), true).unwrap();
    start_all(&r);
    r.complete(fut, Ok(OpResult::Bytes(vec![1; 30])));
    assert_eq!(r.lock().buffered, 30);
    r.abandon(fut);
    assert_eq!(r.lock().buffered, 0);
    r.reap(usize::MAX);
    assert_eq!(counters.snapshot(1, "t").pending, 0);
}

/// A multishot receive's results: covered by its reservation while it runs, told to stop at a
/// third of it, counted on their own once it completed until taken, and given back when taken
/// or dropped with the stream.
#[test]
fn iouring_multishot_results_hold_no_more_than_the_buffer_budget() {
    use crate::op::RECV_SHARES;
    use crate::process::ProcessTable;
    use crate::sandbox::Policy;
    let table = ProcessTable::new();
    table.set_policy(1, Policy::default().max_buffered_bytes(RECV_SHARES * 10)).unwrap();
    let counters = Arc::new(Counters::default());
    let r = SyscallCompletionRing::new(1, 8, 8, table.get_or_create(1), counters.clone()).unwrap();
    let multishot = Accept { to_future: true, multishot: true, ..Accept::default() };
    let recv = || std::iter::once((SyscallOpType::RecvMulti { sockfd: 3, size: 10 }, 0));
    let (seq, _) = r.enqueue(recv(), multishot).unwrap();
    start_all(&r);
    assert_eq!(r.lock().buffered, RECV_SHARES * 10);
    let bytes = |n| Ok(OpResult::Bytes(Vec::with_capacity(n)));
    // A third of the reservation is 40 bytes: the fourth result of 10 says stop.
    assert!(r.more(seq, bytes(10)) && r.more(seq, bytes(10)) && r.more(seq, bytes(10)));
    assert!(!r.more(seq, bytes(10)), "stopped at a third of the reservation");
    assert_eq!(r.lock().buffered, RECV_SHARES * 10, "covered by the reservation while it runs");
    r.complete(seq, Ok(OpResult::None));
    assert_eq!(r.lock().buffered, 40, "counted on their own once it completed");
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(matches!(r.poll_shot(seq, &mut cx), std::task::Poll::Ready((_, false))));
    assert_eq!(r.lock().buffered, 30, "a result taken is given back");
    // Dropped with three results and its completion untaken: everything is given back.
    r.abandon(seq);
    assert_eq!(r.lock().buffered, 0);
    assert_eq!(counters.snapshot(1, "t").pending, 0);
}

#[test]
fn iouring_destroy_with_running_ops_then_late_completions() {
    let (r, counters) = ring(8, 8);
    let (fut_seq, _) = r.enqueue(nops(1), true).unwrap();
    let (cq_seq, _) = r.enqueue(nops(2), false).unwrap();
    let running = {
        let mut out = Vec::new();
        r.dispatch(2, &mut out, |d, counts| (d, counts));
        out
    };
    assert_eq!(running.len(), 2);
    r.destroy();
    assert!(running.iter().all(|(d, _)| r.is_cancelled(d.seq)), "running ops were asked to stop");
    for (d, _) in &running {
        r.complete(d.seq, Ok(OpResult::None));
    }
    assert!(matches!(r.wait(cq_seq, None), Err(IoUringError::RingDestroyed { .. })));
    let waker = Waker::from(Arc::new(Flag(false.into())));
    let Poll::Ready(e) = r.poll_owned(fut_seq, &mut Context::from_waker(&waker)) else { panic!() };
    assert!(e.status.is_cancelled());
    assert!(matches!(r.enqueue(nops(1), false), Err(IoUringError::RingDestroyed { .. })));
    assert!(r.lock().stamps.is_empty(), "sampled times outlived their operations");
    let snap = counters.snapshot(0, "t");
    assert_eq!((snap.total_submissions, snap.total_completions, snap.discarded), (3, 3, 2));
}

#[test]
fn iouring_stale_cq_entries_left_by_waits_are_skipped_and_counted_exactly() {
    // Waits out of order leave stale numbers in the CQ (too few to compact); the stream and
    // reap then step over them. After every step, `ready()` and `outstanding()` must count
    // only the completions really waiting.
    let (r, counters) = ring(16, 16);
    let (first, _) = r.enqueue(nops(8), false).unwrap();
    let seqs: Vec<u64> = (first..first + 8).collect();
    assert_eq!(start_all(&r), seqs);
    for &s in &seqs {
        r.complete(s, Ok(OpResult::None));
    }
    assert_eq!((r.ready(), r.outstanding()), (8, 8));
    // Take the 2nd, 3rd and 6th: stale numbers before, between and after live entries.
    for i in [1, 2, 5] {
        assert_eq!(r.wait(seqs[i], None).unwrap().seq, seqs[i]);
    }
    assert_eq!((r.ready(), r.outstanding()), (5, 5));
    assert_eq!(r.lock().cq_stale, 3, "too few stale numbers to compact");
    let flag = Arc::new(Flag(false.into()));
    let waker = Waker::from(flag);
    let mut cx = Context::from_waker(&waker);
    let mut next = || match r.poll_cq(1, &mut cx) {
        Poll::Ready(Some(e)) => e.seq,
        other => panic!("expected a completion, got {other:?}"),
    };
    // The stream takes the 1st, then steps over two stale numbers to the 4th.
    assert_eq!(next(), seqs[0]);
    assert_eq!((r.ready(), r.outstanding()), (4, 4));
    assert_eq!(next(), seqs[3]);
    assert_eq!((r.ready(), r.outstanding()), (3, 3));
    assert_eq!(r.lock().cq_stale, 1, "the stale numbers stepped over are no longer counted");
    // Reap takes the rest, over the last stale number, in completion order.
    let rest: Vec<u64> = r.reap(usize::MAX).iter().map(|e| e.seq).collect();
    assert_eq!(rest, vec![seqs[4], seqs[6], seqs[7]]);
    assert_eq!((r.ready(), r.outstanding()), (0, 0));
    let s = r.lock();
    assert!(s.cq.is_empty() && s.cq_stale == 0, "cq {:?}, stale {}", s.cq.len(), s.cq_stale);
    drop(s);
    assert!(r.poll_cq(1, &mut cx).is_pending(), "nothing left to take");
    // The ring stays exact for what follows: one more round, a wait then the stream.
    let (more, _) = r.enqueue(nops(2), false).unwrap();
    for s in start_all(&r) {
        r.complete(s, Ok(OpResult::None));
    }
    assert_eq!(r.wait(more, None).unwrap().seq, more);
    assert_eq!((r.ready(), r.outstanding()), (1, 1));
    let Poll::Ready(Some(last)) = r.poll_cq(1, &mut cx) else { panic!("the last completion") };
    assert_eq!(last.seq, more + 1);
    assert_eq!((r.ready(), r.outstanding()), (0, 0));
    let snap = counters.snapshot(1, "t");
    assert_eq!((snap.total_submissions, snap.total_completions, snap.pending), (10, 10, 0));
}

/// A chain goes on only after an operation that succeeded, a write only if it wrote all its
/// bytes; otherwise every later operation completes `Cancelled`, once, without running.
#[test]
fn a_chain_goes_on_only_after_a_whole_success() {
    let (r, counters) = ring(8, 8);
    let write = || (SyscallOpType::WriteAt { fd: 3, offset: 0, data: vec![0; 10] }, 0);
    let linked = Accept { linked: true, ..Accept::default() };
    // A whole write: the next is queued, then runs.
    let (first, _) = r.enqueue([write(), (SyscallOpType::Nop, 1)].into_iter(), linked).unwrap();
    assert_eq!(start_all(&r), vec![first], "only the head runs");
    r.complete(first, Ok(OpResult::Count(10)));
    assert_eq!(start_all(&r), vec![first + 1]);
    r.complete(first + 1, Ok(OpResult::None));
    // A short write: the rest is cancelled.
    let (first, _) =
        r.enqueue([write(), (SyscallOpType::Nop, 1), (SyscallOpType::Nop, 2)].into_iter(), linked).unwrap();
    assert_eq!(start_all(&r), vec![first]);
    r.complete(first, Ok(OpResult::Count(9)));
    assert!(start_all(&r).is_empty(), "nothing after a short write runs");
    let done = r.reap(usize::MAX);
    let cancelled: Vec<u64> = done.iter().filter(|e| e.status.is_cancelled()).map(|e| e.seq).collect();
    assert_eq!(cancelled, vec![first + 1, first + 2]);
    // A completion for a held operation from a confused backend changes nothing.
    r.complete(first + 2, Ok(OpResult::None));
    assert!(r.reap(usize::MAX).is_empty());
    let snap = counters.snapshot(1, "test");
    assert_eq!((snap.total_submissions, snap.total_completions, snap.pending), (5, 5, 0));
    assert!(r.lock().held.is_empty() && r.lock().links.is_empty());
}

/// A running operation stopped by its deadline completes `ETIMEDOUT`, not `Cancelled`; the
/// timer's task is taken back when an operation ends first.
#[test]
fn a_deadline_turns_a_cancellation_into_a_time_out() {
    let (r, _) = ring(8, 8);
    let (first, _) = r.enqueue(nops(2), false).unwrap();
    assert_eq!(start_all(&r), vec![first, first + 1]);
    r.set_deadline(first, Instant::now());
    r.set_deadline(first + 1, Instant::now() + std::time::Duration::from_secs(3600));
    let end = Instant::now() + std::time::Duration::from_secs(10);
    while !r.is_cancelled(first) {
        assert!(Instant::now() < end, "the deadline never asked it to stop");
        std::thread::yield_now();
    }
    r.complete(first, Err(OpError::cancelled()));
    r.complete(first + 1, Ok(OpResult::None));
    let done = r.reap(usize::MAX);
    assert_eq!(done[0].errno(), Some(crate::op::errno::ETIMEDOUT), "{:?}", done[0]);
    assert!(done[1].status.is_success());
    assert!(r.lock().deadlines.is_empty(), "the timer's task was taken back");
}

/// A cancelled operation whose deadline passes before it stops stays `Cancelled`.
#[test]
fn a_cancellation_before_the_deadline_stays_a_cancellation() {
    let (r, _) = ring(8, 8);
    let (first, _) = r.enqueue(nops(1), false).unwrap();
    assert_eq!(start_all(&r), vec![first]);
    r.set_deadline(first, Instant::now() + std::time::Duration::from_millis(20));
    r.cancel(first).unwrap();
    let end = Instant::now() + std::time::Duration::from_secs(10);
    while !r.lock().deadlines.is_empty() {
        assert!(Instant::now() < end, "the deadline never passed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    r.complete(first, Err(OpError::cancelled()));
    assert!(r.reap(usize::MAX)[0].status.is_cancelled());
}

/// A pool's memory counts against the ring's budget while it is registered, and after it is
/// unregistered while a handle or a buffer of it lives; once both are dropped it leaves the
/// budget. A ring destroyed with a pool still held counts nothing, and registering on it
/// afterwards is `ECANCELED` (the destroyed ring's counts are not touched again).
#[test]
fn pools_count_until_freed_and_nothing_once_destroyed() {
    let (r, _) = super::test_support::ring(1, 8, 8);
    let pool = r.register_buffers(2, 4096).unwrap();
    assert_eq!(r.lock().buffered, 8192);
    let buf = pool.take().unwrap();
    assert!(r.unregister_buffers());
    r.lock().reclaim_pools();
    assert_eq!(r.lock().buffered, 8192, "a handle and a buffer live");
    drop(pool);
    r.lock().reclaim_pools();
    assert_eq!(r.lock().buffered, 8192, "a buffer lives");
    drop(buf);
    r.lock().reclaim_pools();
    assert_eq!(r.lock().buffered, 0, "freed");
    let held = r.register_buffers(1, 4096).unwrap();
    r.destroy();
    assert_eq!(r.lock().buffered, 0);
    drop(held);
    let refused = r.register_buffers(1, 4096).unwrap_err();
    assert!(refused.is_cancelled(), "{refused:?}");
    assert_eq!(r.lock().buffered, 0);
}
