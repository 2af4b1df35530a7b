//! What the backends that run operations on a thread pool and wait on a reactor share (blocking,
//! tokio, smol): how a batch is started, how a waiting operation races its cancellation, and how
//! large their window is.

use std::future::{Future, poll_fn};
use std::task::Poll;

use super::{Batch, OpOutcome, Operation, Submission, file_ops, net_ops};
use crate::op::{OpError, OpResult, SyscallOpType};

/// How the pool backends start a batch: a `Nop` completes at once, an operation that runs on
/// readiness (a socket's, or a `Read` or `Write` of a socket, FIFO or character device: see
/// [`net_ops::runs_on_readiness`]) whose answer is already there completes on this thread
/// ([`net_ops::try_now`]), one that must wait goes to `wait` (which races it against
/// cancellation with [`run_waiting`]), and a file operation goes to `file`.
pub(crate) fn start_ready_first(batch: Batch, mut file: impl FnMut(Submission), mut wait: impl FnMut(Submission)) {
    for mut sub in batch.into_submissions() {
        if matches!(sub.op(), SyscallOpType::Nop) {
            // Nothing to run: answered here, as io_uring answers it inside the enter, rather
            // than after a trip through a thread pool shared with every other process.
            let outcome = if sub.is_cancelled() { Err(OpError::cancelled()) } else { Ok(OpResult::None) };
            sub.complete(outcome);
            continue;
        }
        if !net_ops::runs_on_readiness(sub.op(), sub.process()) {
            file(sub);
            continue;
        }
        let rights = match sub.needs_rights() {
            Ok(rights) => rights,
            Err(e) => {
                sub.complete(Err(e));
                continue;
            }
        };
        if let Some(outcome) = net_ops::try_now(sub.op(), sub.process(), rights.as_deref(), || sub.is_cancelled()) {
            sub.complete(outcome);
        } else {
            // It waits on a peer, as a `Recv` does (a `Read` or `Write` of a socket too, which
            // the executor could not tell when it counted it): it gives its place in the window
            // back now (the executor starts what that lets in after this batch, not inside it).
            sub.leave_window();
            wait(sub);
        }
    }
}

/// The window of a backend that runs file operations on a thread pool of its runtime's (tokio's
/// `spawn_blocking`, smol's `unblock`), whose queue serves all processes first come, first
/// served: 32 per core (at most 256), so that the executor, which is fair across processes,
/// holds most of what the CPUs cannot run yet, rather than the pool's queue, which is not,
/// while one process's share (a quarter: 16 on 2 cores) still keeps such a pool, whose threads
/// take tens of microseconds to wake, busy.
#[cfg(any(feature = "tokio", feature = "smol"))]
pub(crate) fn pool_window() -> super::Capabilities {
    super::Capabilities::new((super::cores() * 32).clamp(32, 256))
}

/// File operations to run on a runtime's blocking pool: one, or several taken in turn by each of
/// a few pool tasks ([`file_work`]).
#[cfg(any(feature = "tokio", feature = "smol"))]
pub(crate) enum FileWork {
    One(Submission),
    Shared(std::sync::Arc<std::sync::Mutex<std::vec::IntoIter<Submission>>>),
}

#[cfg(any(feature = "tokio", feature = "smol"))]
impl FileWork {
    /// Runs the operation, or the shared ones until none is left, on the calling thread.
    pub(crate) fn run(self) {
        match self {
            FileWork::One(sub) => run_blocking(sub),
            FileWork::Shared(queue) => loop {
                // The lock is let go of before the operation runs.
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                match next {
                    Some(sub) => run_blocking(sub),
                    None => break,
                }
            },
        }
    }
}

/// A batch's file operations as pool tasks, each process's apart: one task for one operation;
/// for more, four tasks per core at most (the blocking pool's threads per core, enough to keep a
/// disk busy), each taking the next of that process's operations until none is left. A batch
/// then costs a few thread wake-ups, not one per operation. An operation that blocks (an `fsync`,
/// a read of a hung file system) holds one task while the others go on, and never one of
/// another process's: no process's operations wait in a queue behind another's. Operations no
/// task took (its pool shut down) are dropped with the queue and complete with `EIO`.
#[cfg(any(feature = "tokio", feature = "smol"))]
fn file_work(files: Vec<Submission>) -> Vec<FileWork> {
    let mut work = Vec::new();
    let mut files = files.into_iter().peekable();
    while let Some(first) = files.next() {
        let process = std::sync::Arc::as_ptr(first.process());
        let of_process = |sub: &Submission| std::sync::Arc::as_ptr(sub.process()) == process;
        if !files.peek().is_some_and(of_process) {
            work.push(FileWork::One(first));
            continue;
        }
        let mut same = vec![first];
        while let Some(next) = files.next_if(of_process) {
            same.push(next);
        }
        let tasks = same.len().min(4 * super::cores());
        let queue = std::sync::Arc::new(std::sync::Mutex::new(same.into_iter()));
        work.extend((0..tasks).map(|_| FileWork::Shared(queue.clone())));
    }
    work
}

/// How tokio and smol start a batch: as [`start_ready_first`], with the file operations gathered
/// into a few blocking tasks ([`file_work`]), each handed to `blocking`.
#[cfg(any(feature = "tokio", feature = "smol"))]
pub(crate) fn start_in_few_tasks(batch: Batch, wait: impl FnMut(Submission), blocking: impl FnMut(FileWork)) {
    let mut files = Vec::new();
    start_ready_first(batch, |sub| files.push(sub), wait);
    file_work(files).into_iter().for_each(blocking);
}

/// Runs a file operation to its end on the calling thread and completes it (skipped if it was
/// cancelled before it started): for a backend that starts file operations straight on its
/// blocking pool, without a task hop in between.
pub(crate) fn run_blocking(sub: Submission) {
    let (op, done) = sub.into_parts();
    let outcome = if op.is_cancelled() { Err(OpError::cancelled()) } else { file_ops::execute_sync(op) };
    done.complete(outcome);
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
    let (op, mut completer) = sub.into_parts();
    if op.is_cancelled() {
        return completer.complete(Err(OpError::cancelled()));
    }
    // One that was not known to wait when it was counted (a `Read` or `Write` of a socket)
    // gives its place in the window back.
    completer.leave_window();
    let cancel = op.cancel_token();
    let exec = execute(op);
    let mut exec = std::pin::pin!(exec);
    let outcome = poll_fn(|cx| {
        if cancel.poll_cancelled(cx).is_ready() {
            return Poll::Ready(Err(OpError::cancelled()));
        }
        exec.as_mut().poll(cx)
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

    /// A batch's file operations go to pool tasks by process: one process's operations never
    /// share a queue (and so never wait) with another's, however the batch mixes them.
    #[cfg(any(feature = "tokio", feature = "smol"))]
    #[test]
    fn file_work_keeps_each_process_apart() {
        use crate::syscalls::iouring::ring::test_support::nops;
        let rings = [ring(1, 8, 8).0, ring(2, 8, 8).0, ring(3, 8, 8).0];
        let mut batch = Batch::with_capacity(7);
        for (r, n) in rings.iter().zip([3, 1, 3]) {
            r.enqueue(nops(n), false).unwrap();
            batch.run(r, |out| r.dispatch(n, out, |d, counted| (d, counted)));
        }
        let work = file_work(batch.into_submissions().collect());
        let mut pids = Vec::new();
        for w in &work {
            pids.push(match w {
                FileWork::One(sub) => vec![sub.process().pid()],
                FileWork::Shared(queue) => queue.lock().unwrap().as_slice().iter().map(|s| s.process().pid()).collect(),
            });
        }
        // Pid 1's three share a queue (three tasks), pid 2's one is alone, pid 3's three likewise.
        let (one, three) = (vec![1, 1, 1], vec![3, 3, 3]);
        let expect = vec![one.clone(), one.clone(), one, vec![2], three.clone(), three.clone(), three];
        assert_eq!(pids, expect);
        for w in work {
            w.run();
        }
        for r in &rings {
            assert_eq!(r.reap(usize::MAX).len(), if r.pid() == 2 { 1 } else { 3 }, "every operation ran");
        }
    }

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
}
