//! Model checks of the delivery state machine with loom: every interleaving of the threads
//! below (up to the preemption bound in `scripts/loom.sh`) is run, and a lost wake-up shows as
//! a deadlock, a double delivery or a leak as a failed assertion.
//!
//! Run with `bash scripts/loom.sh` (the crate rebuilt with `--cfg ai_os_kernel_loom`, which
//! swaps `crate::sync` for loom's primitives).

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use loom::thread;

use super::cancel::CancelToken;
use super::executor::IoUringExecutor;
use super::future::CompletionFuture;
use super::ring::SyscallCompletionRing;
use super::ring::test_support::{nops, start_all};
use super::stats::Counters;
use crate::backend::{Backend, Batch, Task};
use crate::op::IoUringError;
use crate::op::OpResult;
use crate::process::DescriptorKind;

/// A small ring of `pid`: room for the few operations a model runs.
fn ring(pid: crate::op::Pid) -> (Arc<SyscallCompletionRing>, Arc<Counters>) {
    super::ring::test_support::ring(pid, 4, 4)
}

/// Every accepted operation was counted as completed once, and nothing is left.
fn all_retired(r: &SyscallCompletionRing, counters: &Counters) {
    let snap = counters.snapshot(1, "loom");
    assert_eq!(snap.total_submissions, snap.total_completions, "{snap:?}");
    assert_eq!(snap.pending, 0);
    assert_eq!(r.outstanding(), 0, "a slot outlived its completion");
}

/// A real kernel descriptor installed in the ring's process, standing for one an `Open` made.
fn new_descriptor(r: &SyscallCompletionRing) -> i32 {
    let dir = rustix::fs::open(
        std::env::temp_dir(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    r.process().install(dir, DescriptorKind::File).unwrap()
}

/// Runs `f` on the ring from a new (model) thread.
fn on_thread<T: Send + 'static>(
    r: &Arc<SyscallCompletionRing>,
    f: impl FnOnce(&SyscallCompletionRing) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let r = r.clone();
    thread::spawn(move || f(&r))
}

/// A ring with one running NOP, owned by a future or by the CQ.
fn one_running(to_future: bool) -> (Arc<SyscallCompletionRing>, Arc<Counters>, u64) {
    let (r, counters) = ring(1);
    let (seq, _) = r.enqueue(nops(1), to_future).unwrap();
    assert_eq!(start_all(&r), vec![seq]);
    (r, counters, seq)
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// A completion racing the future's first poll: the future is woken or finds it done.
#[test]
fn loom_future_poll_races_completion() {
    model(|| {
        let (r, counters, seq) = one_running(true);
        let completer = on_thread(&r, move |r| r.complete(seq, Ok(OpResult::Count(7))));
        let entry = loom::future::block_on(CompletionFuture::new(r.clone(), seq));
        assert_eq!(entry.result, OpResult::Count(7));
        completer.join().unwrap();
        all_retired(&r, &counters);
    });
}

/// `cancel` racing the executor (dispatch, then completion): exactly one completion reaches
/// the CQ, `Cancelled` only if the operation never started.
#[test]
fn loom_cancel_races_dispatch_and_completion() {
    model(|| {
        let (r, counters) = ring(1);
        let (seq, _) = r.enqueue(nops(1), false).unwrap();
        let runner = on_thread(&r, move |r| {
            let started = start_all(&r);
            for &s in &started {
                r.complete(s, Ok(OpResult::None));
            }
            !started.is_empty()
        });
        r.cancel(seq).unwrap();
        let started = runner.join().unwrap();
        let got = r.reap(usize::MAX);
        assert_eq!(got.len(), 1, "exactly one completion");
        assert_eq!(got[0].status.is_cancelled(), !started, "cancelled iff it never ran");
        assert!(matches!(r.cancel(seq), Ok(())), "cancelling a finished op changes nothing");
        all_retired(&r, &counters);
    });
}

/// A future dropped while its `Open` completes: the completion is discarded once and the
/// descriptor it created is closed, whichever came first.
#[test]
fn loom_dropped_future_races_completion_closes_descriptor() {
    model(|| {
        let (r, counters, seq) = one_running(true);
        let fd = new_descriptor(&r);
        let future = CompletionFuture::new(r.clone(), seq);
        let completer = on_thread(&r, move |r| r.complete(seq, Ok(OpResult::Fd(fd))));
        drop(future);
        completer.join().unwrap();
        assert_eq!(r.process().open_descriptors(), 0, "the discarded descriptor was closed");
        assert_eq!(counters.snapshot(1, "loom").discarded, 1);
        all_retired(&r, &counters);
    });
}

/// A multishot operation, running, owned by its stream.
fn one_multishot() -> (Arc<SyscallCompletionRing>, Arc<Counters>, u64) {
    let (r, counters) = ring(1);
    let how = super::ring::Accept { to_future: true, multishot: true, ..Default::default() };
    let (seq, _) = r.enqueue(nops(1), how).unwrap();
    assert_eq!(start_all(&r), vec![seq]);
    (r, counters, seq)
}

/// A multishot operation's two results and its completion racing its stream's polls: the stream
/// gets both results, in order, then the completion, and is woken for each.
#[test]
fn loom_multishot_results_race_the_stream() {
    model(|| {
        let (r, counters, seq) = one_multishot();
        let (a, b) = (new_descriptor(&r), new_descriptor(&r));
        let backend = on_thread(&r, move |r| {
            assert!(r.more(seq, Ok(OpResult::Fd(a))));
            assert!(r.more(seq, Ok(OpResult::Fd(b))));
            r.complete(seq, Ok(OpResult::None));
        });
        let mut shots = super::Multishot::new(r.clone(), seq);
        let mut got = Vec::new();
        let next = |shots: &mut super::Multishot| {
            loom::future::block_on(poll_fn(|cx| futures_core::Stream::poll_next(std::pin::Pin::new(&mut *shots), cx)))
        };
        while let Some(entry) = next(&mut shots) {
            got.push(entry.result);
        }
        backend.join().unwrap();
        assert_eq!(got, vec![OpResult::Fd(a), OpResult::Fd(b), OpResult::None]);
        assert_eq!(r.process().open_descriptors(), 2, "both handed on");
        all_retired(&r, &counters);
    });
}

/// A multishot stream dropped while its results come: each result is either refused (the
/// backend told to stop) or dropped with the stream, and every descriptor is closed once.
#[test]
fn loom_dropped_multishot_races_its_results() {
    model(|| {
        let (r, counters, seq) = one_multishot();
        let (a, b) = (new_descriptor(&r), new_descriptor(&r));
        let backend = on_thread(&r, move |r| {
            if r.more(seq, Ok(OpResult::Fd(a))) {
                r.more(seq, Ok(OpResult::Fd(b)));
            } else {
                let _ = r.process().close(b);
            }
            r.complete(seq, Err(crate::op::OpError::cancelled()));
        });
        drop(super::Multishot::new(r.clone(), seq));
        backend.join().unwrap();
        assert_eq!(r.process().open_descriptors(), 0, "every result's descriptor closed");
        all_retired(&r, &counters);
    });
}

/// `wait_completion` on one operation while two complete: it wakes for its own, whichever
/// order they land in, and leaves the other in the CQ.
#[test]
fn loom_wait_races_completions() {
    model(|| {
        let (r, counters) = ring(1);
        let (first, _) = r.enqueue(nops(2), false).unwrap();
        start_all(&r);
        let completer = on_thread(&r, move |r| {
            r.complete(first + 1, Ok(OpResult::None));
            r.complete(first, Ok(OpResult::Count(3)));
        });
        assert_eq!(r.wait(first, None).unwrap().result, OpResult::Count(3));
        completer.join().unwrap();
        assert_eq!(r.reap(usize::MAX).iter().map(|e| e.seq).collect::<Vec<_>>(), vec![first + 1]);
        all_retired(&r, &counters);
    });
}

/// `take` (a taker of the CQ-owned operation `seq`) racing its completion and `destroy_ring`:
/// it must return or end, never hang, and everything is counted once.
fn completion_and_destroy_race(take: fn(&SyscallCompletionRing, u64)) {
    model(move || {
        let (r, counters, seq) = one_running(false);
        let completer = on_thread(&r, move |r| r.complete(seq, Ok(OpResult::None)));
        let destroyer = on_thread(&r, move |r| r.destroy());
        take(&r, seq);
        completer.join().unwrap();
        destroyer.join().unwrap();
        all_retired(&r, &counters);
    });
}

/// `wait_completion` racing a completion and `destroy_ring`: it returns the entry or
/// `RingDestroyed`.
#[test]
fn loom_wait_races_completion_and_destroy() {
    completion_and_destroy_race(|r, seq| match r.wait(seq, None) {
        Ok(entry) => assert_eq!(entry.seq, seq),
        Err(e) => assert!(matches!(e, IoUringError::RingDestroyed { .. }), "{e}"),
    });
}

/// A stream waiting on the CQ while a completion and `destroy_ring` race: it yields the entry
/// or ends.
#[test]
fn loom_stream_races_completion_and_destroy() {
    completion_and_destroy_race(|r, seq| {
        if let Some(entry) = loom::future::block_on(poll_fn(|cx| r.poll_cq(1, cx))) {
            assert_eq!(entry.seq, seq);
        }
    });
}

/// A future whose ring is destroyed while its operation completes resolves exactly once,
/// with the real outcome or `Cancelled`.
#[test]
fn loom_future_races_destroy() {
    model(|| {
        let (r, counters, seq) = one_running(true);
        let completer = on_thread(&r, move |r| r.complete(seq, Ok(OpResult::Count(1))));
        let destroyer = on_thread(&r, move |r| r.destroy());
        let entry = loom::future::block_on(CompletionFuture::new(r.clone(), seq));
        assert!(entry.result == OpResult::Count(1) || entry.status.is_cancelled(), "{entry:?}");
        completer.join().unwrap();
        destroyer.join().unwrap();
        all_retired(&r, &counters);
    });
}

/// Registering a cancellation hook (io_uring's `ASYNC_CANCEL`) while the operation is
/// cancelled: the hook runs exactly once, never zero times.
#[test]
fn loom_cancel_hook_runs_exactly_once() {
    model(|| {
        let token = Arc::new(CancelToken::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let canceller = {
            let token = token.clone();
            thread::spawn(move || token.cancel())
        };
        let counted = runs.clone();
        token.on_cancel(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        canceller.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    });
}

/// Cancelling a running operation while its backend asks for its token (made on demand, as
/// io_uring's does for a request still in the kernel) and hooks it: the hook runs exactly once,
/// whichever side comes first.
#[test]
fn loom_cancel_races_the_token_made_on_demand() {
    model(|| {
        let (r, counters) = ring(1);
        let (seq, _) = r.enqueue(nops(1), false).unwrap();
        start_all(&r);
        let canceller = {
            let r = r.clone();
            thread::spawn(move || r.cancel(seq).unwrap())
        };
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        r.cancel_token(seq).on_cancel(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        canceller.join().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the hook ran exactly once");
        assert!(r.is_cancelled(seq));
        r.complete(seq, Err(crate::backend::OpError::cancelled()));
        assert!(r.reap(1)[0].status.is_cancelled());
        all_retired(&r, &counters);
    });
}

/// Completes every operation inside `submit`, on the thread that moved it along.
struct Inline;

impl Backend for Inline {
    fn name(&self) -> &'static str {
        "inline"
    }
    fn capabilities(&self) -> crate::backend::Capabilities {
        crate::backend::Capabilities::new(1)
    }
    fn spawn(&self, _task: Task) {
        unreachable!("submit completes inline")
    }
    fn submit(&self, batch: Batch) {
        for sub in batch.into_submissions() {
            sub.complete(Ok(OpResult::None));
        }
    }
}

/// Two processes scheduling at once through an executor with room for one operation: the
/// room freed by one completion is handed on, so both operations run and nothing is stranded
/// in an SQ.
#[test]
fn loom_executor_hands_room_on() {
    model(|| {
        let executor = IoUringExecutor::new(Arc::new(Inline));
        let (a, ca) = ring(1);
        let (b, cb) = ring(2);
        let submit = |r: Arc<SyscallCompletionRing>, executor: IoUringExecutor| {
            thread::spawn(move || {
                let (seq, _) = r.enqueue(nops(1), false).unwrap();
                executor.schedule(&r);
                seq
            })
        };
        let ta = submit(a.clone(), executor.clone());
        let tb = submit(b.clone(), executor.clone());
        let (sa, sb) = (ta.join().unwrap(), tb.join().unwrap());
        assert_eq!(a.wait(sa, None).unwrap().seq, sa);
        assert_eq!(b.wait(sb, None).unwrap().seq, sb);
        assert_eq!((executor.in_flight(), executor.ready_rings()), (0, 0));
        all_retired(&a, &ca);
        all_retired(&b, &cb);
    });
}

/// A backend that keeps every operation until the test completes it.
#[derive(Default)]
struct Parked(loom::sync::Mutex<Vec<crate::backend::Submission>>);

impl Parked {
    /// Completes every operation kept so far.
    fn complete_all(&self) {
        let kept = std::mem::take(&mut *self.0.lock().unwrap());
        for sub in kept {
            sub.complete(Ok(OpResult::None));
        }
    }
}

impl Backend for Parked {
    fn name(&self) -> &'static str {
        "parked"
    }
    fn capabilities(&self) -> crate::backend::Capabilities {
        // A window of 4: each ring's default share is a quarter of it, 1.
        crate::backend::Capabilities::new(4)
    }
    fn spawn(&self, _task: Task) {
        unreachable!("nothing is spawned")
    }
    fn submit(&self, batch: Batch) {
        self.0.lock().unwrap().extend(batch.into_submissions());
    }
}

/// A ring at its share (1) with one operation in the backend queues a second, which takes it
/// out of line, while the first completes (giving its room back without the executor's lock):
/// the ring is never left out of line with nothing of it in flight, and the second runs.
#[test]
fn loom_a_ring_at_its_share_is_put_back_by_its_completion() {
    model(|| {
        let parked = Arc::new(Parked::default());
        let executor = IoUringExecutor::new(parked.clone());
        let (r, counters) = ring(1);
        let (first, _) = r.enqueue(nops(1), false).unwrap();
        executor.schedule(&r);
        assert_eq!(parked.0.lock().unwrap().len(), 1, "the first operation is in the backend");
        let completer = {
            let parked = parked.clone();
            thread::spawn(move || parked.complete_all())
        };
        let (second, _) = r.enqueue(nops(1), false).unwrap();
        executor.schedule(&r);
        completer.join().unwrap();
        // The second is in the backend now, whichever way the two went.
        parked.complete_all();
        assert_eq!(r.wait(first, None).unwrap().seq, first);
        assert_eq!(r.wait(second, None).unwrap().seq, second);
        assert_eq!((executor.in_flight(), executor.ready_rings()), (0, 0));
        all_retired(&r, &counters);
    });
}
