//! What the backends that run operations on a thread pool and wait on a reactor share (blocking,
//! tokio, smol): how a batch is started, how a waiting operation races its cancellation, and how
//! large their window is.

use std::future::{Future, poll_fn};
use std::task::Poll;

use super::lanes::{Drainer, Lanes};
use super::{Batch, OpOutcome, Operation, Submission, file_ops, net_ops, time_ops};
use crate::op::{OpError, OpResult, SyscallOpType};

/// What one batch's `ReadAt`s may copy from the page cache on the thread that starts it
/// ([`file_ops::read_at_now`]), each try counted as at least [`READ_NOW_TRY`] bytes (its system
/// calls cost about what copying that does): that thread may be another tenant's (a completion
/// starts the next batch), which this keeps to tens of microseconds a batch.
const READ_NOW_PER_BATCH: usize = 128 << 10;

/// What one try of [`file_ops::read_at_now`] counts against [`READ_NOW_PER_BATCH`] at least.
const READ_NOW_TRY: usize = 4 << 10;

/// How the pool backends start a batch:
/// - a `Nop` completes at once;
/// - a `Timeout` waits on the timer ([`time_ops`]);
/// - a `ReadAt` of what the page cache holds, and a `Stat` of what the kernel's caches hold on a
///   local file system ([`file_ops::stat_now`]), are answered on this thread (up to
///   [`READ_NOW_PER_BATCH`], a `Stat` counted as [`READ_NOW_TRY`]);
/// - an operation that runs on readiness (a socket's, or a `Read` or `Write` of a socket, FIFO
///   or character device: see [`net_ops::runs_on_readiness`]) whose answer is already there
///   completes on this thread ([`net_ops::try_now`]); one that must wait goes to `wait`, which
///   races it against cancellation with [`run_waiting`];
/// - any other file operation goes to its process's lane in `lanes`, which hands `blocking` the
///   tasks it needs started.
///
/// Those answered here are delivered together at the end, one lock of their ring and one
/// release of their window's places per run ([`Completer::complete_all`]), not one each.
///
/// [`Completer::complete_all`]: super::Completer::complete_all
pub(crate) fn start_in_lanes(
    batch: Batch,
    lanes: &std::sync::Arc<Lanes>,
    mut wait: impl FnMut(Submission),
    blocking: impl FnMut(Drainer),
) {
    let mut answered = Vec::new();
    let mut files = Vec::new();
    let mut read_now_left = READ_NOW_PER_BATCH;
    for mut sub in batch.into_submissions() {
        if matches!(sub.op(), SyscallOpType::Nop) {
            // Nothing to run: answered here, as io_uring answers it inside the enter, rather
            // than after a trip through a thread pool shared with every other process.
            let outcome = if sub.is_cancelled() { Err(OpError::cancelled()) } else { Ok(OpResult::None) };
            answered.push((sub.into_completer(), outcome));
            continue;
        }
        if matches!(sub.op(), SyscallOpType::Timeout { .. }) {
            time_ops::start(sub);
            continue;
        }
        if !net_ops::runs_on_readiness(sub.op(), sub.process()) {
            // What the kernel's caches may answer on this thread, within the batch's budget
            // (counted whether answered or not).
            let cost = match *sub.op() {
                SyscallOpType::ReadAt { size, .. } => Some(size.max(READ_NOW_TRY)),
                SyscallOpType::Stat { .. } => Some(READ_NOW_TRY),
                _ => None,
            };
            if let Some(cost) = cost.filter(|&cost| cost <= read_now_left) {
                read_now_left -= cost;
                // A `Stat` resolves with the rights it was submitted with; a `ReadAt` needs none.
                let outcome = match sub.needs_rights() {
                    _ if sub.is_cancelled() => Some(Err(OpError::cancelled())),
                    Ok(Some(rights)) => file_ops::stat_now(sub.op(), &rights),
                    Ok(None) => file_ops::read_at_now(sub.op(), sub.process()),
                    Err(e) => Some(Err(e)),
                };
                if let Some(outcome) = outcome {
                    answered.push((sub.into_completer(), outcome));
                    continue;
                }
            }
            files.push(sub);
            continue;
        }
        let rights = match sub.needs_rights() {
            Ok(rights) => rights,
            Err(e) => {
                answered.push((sub.into_completer(), Err(e)));
                continue;
            }
        };
        if let Some(outcome) = net_ops::try_now(sub.op(), sub.process(), rights.as_deref(), || sub.is_cancelled()) {
            answered.push((sub.into_completer(), outcome));
        } else {
            // It waits on a peer, as a `Recv` does (a `Read` or `Write` of a socket too, which
            // the executor could not tell when it counted it): it gives its place in the window
            // back now (the executor starts what that lets in after this batch, not inside it).
            sub.leave_window();
            wait(sub);
        }
    }
    if !files.is_empty() {
        lanes.push(files).into_iter().for_each(blocking);
    }
    if !answered.is_empty() {
        super::Completer::complete_all(answered);
    }
}

/// The window of a backend that runs file operations on a thread pool of its runtime's (tokio's
/// `spawn_blocking`, smol's `unblock`), whose queue serves the processes' lanes first come,
/// first served: 32 per core (at most 256), so that the executor, which is fair across processes,
/// holds most of what the CPUs cannot run yet, rather than the pool's queue, which is not,
/// while one process's share (a quarter: 16 on 2 cores) still keeps such a pool, whose threads
/// take tens of microseconds to wake, busy.
#[cfg(any(feature = "tokio", feature = "smol"))]
pub(crate) fn pool_window() -> super::Capabilities {
    super::Capabilities::new((super::cores() * 32).clamp(32, 256))
}

/// The lanes of a backend on a runtime's blocking pool, which grows as it needs: four tasks per
/// core at most for a process (the blocking pool's threads per core: enough to keep a disk
/// busy), each lingering up to a millisecond for its lane's next operation. A millisecond is
/// well above the time a caller takes to submit its next operation once woken for the last
/// (tens of microseconds on a loaded machine), and below the time the runtimes keep an idle pool
/// thread anyway (tokio ten seconds, the `blocking` crate half a second).
#[cfg(any(feature = "tokio", feature = "smol"))]
pub(crate) fn file_lanes() -> std::sync::Arc<Lanes> {
    Lanes::new(4 * super::cores(), std::time::Duration::from_millis(1))
}

/// Runs a submission that waits on a peer (accept, connect, send, receive, a read or write of a
/// socket, FIFO or character device) with `execute`, raced against its cancellation, and
/// completes it. Skipped if it was already cancelled.
///
/// A cancellation drops `execute`'s future, which stops the wait. A waiting operation asked to
/// stop is not tried again: woken for its cancellation, it stops before its next attempt, so an
/// accept cancelled before a connection arrived never takes that connection off the queue only
/// to have it discarded. (Operations that do not wait are never interrupted: they run to their
/// end and report what really happened, as io_uring does for work already started.)
pub async fn run_waiting<F>(sub: Submission, execute: impl FnOnce(Operation) -> F)
where
    F: Future<Output = OpOutcome>,
{
    let (mut op, mut completer) = sub.into_parts();
    if op.is_cancelled() {
        return completer.complete(Err(OpError::cancelled().giving_back(op.take_buffer())));
    }
    // One that carries the caller's buffer answers its cancellation itself, giving the buffer
    // back (`net_ops::execute`): it is asked first.
    let lends = op.op().lends_buffer();
    // One that was not known to wait when it was counted (a `Read` or `Write` of a socket)
    // gives its place in the window back.
    completer.leave_window();
    let cancel = op.cancel_token();
    let exec = execute(op);
    let mut exec = std::pin::pin!(exec);
    let outcome = poll_fn(|cx| {
        if !lends {
            if cancel.poll_cancelled(cx).is_ready() {
                return Poll::Ready(Err(OpError::cancelled()));
            }
            return exec.as_mut().poll(cx);
        }
        if let Poll::Ready(outcome) = exec.as_mut().poll(cx) {
            return Poll::Ready(outcome);
        }
        // Cancelled since that poll: the run, polled again, sees it and gives the buffer back
        // (one that does not answer its cancellation ends without it).
        if cancel.poll_cancelled(cx).is_ready() {
            return match exec.as_mut().poll(cx) {
                Poll::Ready(outcome) => Poll::Ready(outcome),
                Poll::Pending => Poll::Ready(Err(OpError::cancelled())),
            };
        }
        Poll::Pending
    })
    .await;
    completer.complete(outcome);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Waker};

    use super::*;
    use crate::backend::Batch;
    use crate::syscalls::iouring::ring::test_support::ring;

    /// A waiting operation cancelled before its task runs again is not tried again: an accept
    /// asked to stop never takes a connection that arrived meanwhile, only to discard it.
    #[test]
    fn a_cancelled_wait_is_not_tried_again() {
        let (r, _) = ring(1, 4, 4);
        let (seq, _) = r.enqueue(std::iter::once((SyscallOpType::Accept { sockfd: 3 }, 0)), false).unwrap();
        let mut batch = Batch::with_capacity(1);
        batch.run(&r, |out| r.dispatch(1, out, |d, counted| (d, counted)));
        let sub = batch.into_submissions().next().unwrap();
        // Waits once, then finishes having "taken" something (as an accept takes a
        // connection), counting how often it is tried.
        let tries = Arc::new(AtomicUsize::new(0));
        let counted = tries.clone();
        let mut task = Box::pin(run_waiting(sub, move |_op| async move {
            let mut tried = false;
            poll_fn(|_| {
                counted.fetch_add(1, Ordering::SeqCst);
                if std::mem::replace(&mut tried, true) { Poll::Ready(Ok(OpResult::Count(1))) } else { Poll::Pending }
            })
            .await
        }));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(tries.load(Ordering::SeqCst), 1, "tried once, waiting");
        r.cancel(seq).unwrap();
        assert!(task.as_mut().poll(&mut cx).is_ready());
        assert_eq!(tries.load(Ordering::SeqCst), 1, "tried again after its cancellation");
        let done = r.wait(seq, None).unwrap();
        assert!(done.status.is_cancelled(), "{:?}", done);
    }

    /// A waiting operation that carries the caller's buffer is asked for its own answer to a
    /// cancellation, which gives the buffer back; a run that does not answer it still ends,
    /// cancelled (without the buffer it kept).
    #[test]
    fn a_cancelled_wait_with_a_buffer_gives_it_back() {
        for answers in [true, false] {
            let (r, _) = ring(1, 4, 4);
            let read = SyscallOpType::ReadInto { fd: 3, offset: None, buf: b"mine".to_vec(), size: 8 };
            let (seq, _) = r.enqueue(std::iter::once((read, 0)), false).unwrap();
            let mut batch = Batch::with_capacity(1);
            batch.run(&r, |out| r.dispatch(1, out, |d, counted| (d, counted)));
            let sub = batch.into_submissions().next().unwrap();
            let mut task = Box::pin(run_waiting(sub, move |mut op| async move {
                let mut buf = op.take_buffer();
                let cancel = op.cancel_token();
                poll_fn(|cx| match cancel.poll_cancelled(cx) {
                    Poll::Ready(()) if answers => Poll::Ready(Err(OpError::cancelled().giving_back(buf.take()))),
                    _ => Poll::Pending,
                })
                .await
            }));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(task.as_mut().poll(&mut cx).is_pending());
            r.cancel(seq).unwrap();
            assert!(task.as_mut().poll(&mut cx).is_ready(), "it ended (answers: {answers})");
            let done = r.wait(seq, None).unwrap();
            assert!(done.status.is_cancelled(), "{:?}", done.status);
            let back = matches!(&done.result, OpResult::Buf { count: 0, buf } if buf == b"mine");
            assert_eq!(back, answers, "{:?}", done.result);
        }
    }

    /// `IoUringManager::block_on` on a pool backend (the default `run_here`): the thread parks
    /// until a pool thread's completion, a timer or a waker on another thread wakes it.
    #[cfg(feature = "blocking")]
    #[test]
    fn block_on_parks_until_woken() {
        use crate::syscalls::IoUringManager;
        let m = IoUringManager::with_backend(Arc::new(crate::backend::BlockingBackend::new()));
        let (nops, timeout, sent) = m.block_on(async {
            let nops = futures::future::join_all((0..8).map(|_| m.submit_async(1, SyscallOpType::Nop).unwrap())).await;
            let timeout = m.submit_async(1, SyscallOpType::Timeout { duration: std::time::Duration::from_millis(20) });
            let timeout = timeout.unwrap().await;
            let (tx, rx) = futures::channel::oneshot::channel();
            let waker = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                tx.send(7).unwrap();
            });
            let sent = rx.await.unwrap();
            waker.join().unwrap();
            (nops, timeout, sent)
        });
        assert!(nops.iter().all(|done| done.status.is_success()));
        assert!(timeout.status.is_success(), "{:?}", timeout.status);
        assert_eq!(sent, 7);
    }
}
