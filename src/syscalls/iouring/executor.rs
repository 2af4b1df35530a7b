//! [`IoUringExecutor`]: moves operations from the rings' submission queues into the backend,
//! fairly.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::error::Result;
use super::op::SyscallOpType;
use super::ring::SyscallCompletionRing;
use crate::backend::{Backend, RingBatch, Submission};
use crate::sync::{Mutex, MutexGuard};

/// Batches waiting for the outermost [`Shared::start`] of their thread, in order.
type Waiting = VecDeque<(Arc<Shared>, Batch)>;

/// What the executor hands its backend at once.
enum Batch {
    /// One ring's operations (a batch that skipped the SQ), sharing one reference to the ring.
    Ring(RingBatch),
    /// Submissions: operations taken from the SQs of the rings in line, or a batch that
    /// skipped the SQ, for a backend that takes no [`RingBatch`].
    Submissions(Vec<Submission>),
}

impl Batch {
    fn is_empty(&self) -> bool {
        match self {
            Batch::Ring(b) => b.is_empty(),
            Batch::Submissions(b) => b.is_empty(),
        }
    }

    fn submit_to(self, backend: &Arc<dyn Backend>) {
        match self {
            Batch::Ring(b) => backend.clone().submit_ring(b),
            Batch::Submissions(b) => backend.clone().submit(b),
        }
    }
}

thread_local! {
    /// `Some` while this thread is inside [`Shared::start`].
    static STARTING: RefCell<Option<Waiting>> = const { RefCell::new(None) };
}

/// The most operations one ring may hand the backend per turn, so one process flooding its ring
/// waits its turn behind every other ready ring.
const QUANTUM: usize = 32;

/// Drains the rings' submission queues into the backend, round-robin across processes.
///
/// The backend gets at most [`Capabilities::max_in_flight`](crate::backend::Capabilities)
/// operations at once (operations that wait on a peer, such as `Accept` or `Recv`, do not
/// count); the rest wait in their rings' SQs. Whenever room frees, the next ready ring in turn
/// hands over at most 32 operations, so a process that floods its ring delays another process
/// by at most one turn of each busy ring, never by its whole backlog.
///
/// There is no executor thread: the caller that submits, and the thread that completes an
/// operation, each move the next operations along, so an idle manager costs nothing.
#[derive(Clone)]
pub struct IoUringExecutor {
    inner: Arc<Shared>,
}

pub(crate) struct Shared {
    backend: Arc<dyn Backend>,
    window: usize,
    /// Whether the backend takes a batch that skipped the SQ as a [`RingBatch`].
    ring_batches: bool,
    sched: Mutex<Sched>,
}

#[derive(Default)]
struct Sched {
    ready: VecDeque<Arc<SyscallCompletionRing>>,
    in_flight: usize,
}

impl std::fmt::Debug for IoUringExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoUringExecutor")
            .field("backend", &self.inner.backend.name())
            .field("window", &self.inner.window)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl IoUringExecutor {
    /// An executor feeding `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        let caps = backend.capabilities();
        let (window, ring_batches) = (caps.max_in_flight.max(1), caps.ring_batches);
        IoUringExecutor {
            inner: Arc::new(Shared { backend, window, ring_batches, sched: Mutex::new(Sched::default()) }),
        }
    }

    /// The backend operations run on.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// Operations handed to the backend and not yet completed (those that wait on a peer
    /// excepted).
    pub fn in_flight(&self) -> usize {
        self.inner.lock().in_flight
    }

    /// Rings with queued operations waiting for room in the backend.
    pub fn ready_rings(&self) -> usize {
        self.inner.lock().ready.len()
    }

    /// Accepts `ops` into `ring` (see [`SyscallCompletionRing::submit`]) and moves them along:
    /// straight to the backend, skipping the SQ, when the window has room for all of them and no
    /// ring is waiting for it (so nobody is overtaken); into the SQ and the line otherwise.
    /// Returns the first sequence number.
    pub(crate) fn submit(
        &self,
        ring: &Arc<SyscallCompletionRing>,
        ops: impl ExactSizeIterator<Item = (SyscallOpType, u64)>,
        to_future: bool,
    ) -> Result<u64> {
        ring.scheduled_by(&self.inner);
        let n = ops.len();
        let mut s = self.inner.lock();
        if !s.ready.is_empty() || ring.scheduled.load(Ordering::Relaxed) || self.inner.window - s.in_flight < n {
            drop(s);
            let (first, queued) = ring.submit(ops, to_future)?;
            if queued {
                self.schedule(ring);
            }
            return Ok(first);
        }
        // Two closures, each pushing its own kind: one push that matches on the kind for every
        // operation cost a NOP 27 more instructions (callgrind).
        let (accepted, refused, batch) = if self.inner.ring_batches {
            let mut batch = RingBatch::new(ring, n);
            let (accepted, refused) = ring.submit_started(ops, to_future, &mut |d, counts| batch.push(d, counts))?;
            (accepted, refused, Batch::Ring(batch))
        } else {
            let mut batch = Vec::with_capacity(n);
            let (accepted, refused) =
                ring.submit_started(ops, to_future, &mut |d, counts| batch.push(Submission::new(ring, d, counts)))?;
            (accepted, refused, Batch::Submissions(batch))
        };
        s.in_flight += accepted.counted;
        drop(s);
        ring.finish(refused);
        self.inner.start(batch);
        if accepted.queued {
            self.schedule(ring);
        }
        Ok(accepted.first)
    }

    /// Puts `ring` in line (if it is not already) and moves what fits to the backend.
    pub(crate) fn schedule(&self, ring: &Arc<SyscallCompletionRing>) {
        ring.scheduled_by(&self.inner);
        let mut s = self.inner.lock();
        let mut batch = Vec::new();
        // With nobody in line, the ring goes first without joining the line (the same order,
        // without the queueing); it joins only if it has more than the window takes.
        let first = s.ready.is_empty() && !ring.scheduled.load(Ordering::Relaxed) && s.in_flight < self.inner.window;
        if !first || self.inner.take_from(&mut s, ring, &mut batch) {
            if !ring.scheduled.swap(true, Ordering::Relaxed) {
                s.ready.push_back(ring.clone());
            }
            self.inner.fill(&mut s, &mut batch);
        }
        drop(s);
        self.inner.start(Batch::Submissions(batch));
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sched> {
        crate::sync::lock(&self.sched)
    }

    /// Takes operations from the ready rings in turn while the window has room.
    fn fill(self: &Arc<Self>, s: &mut Sched, batch: &mut Vec<Submission>) {
        while s.in_flight < self.window {
            let Some(ring) = s.ready.pop_front() else { break };
            if self.take_from(s, &ring, batch) {
                s.ready.push_back(ring);
            } else {
                ring.scheduled.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Takes one turn's worth of `ring`'s queued operations (the window has room); returns
    /// whether more remain queued.
    fn take_from(
        self: &Arc<Self>,
        s: &mut Sched,
        ring: &Arc<SyscallCompletionRing>,
        batch: &mut Vec<Submission>,
    ) -> bool {
        let room = (self.window - s.in_flight).min(QUANTUM);
        let (counted, more) = ring.dispatch(room, batch, |d, counts| Submission::new(ring, d, counts));
        s.in_flight += counted;
        more
    }

    /// Hands `batch` to the backend. A backend may complete operations inside `submit` (io_uring
    /// finishes a NOP inside its enter, a socket with data ready answers at once), and each
    /// completion frees room that starts the next batch: started right there, that would nest one
    /// `submit` inside another for every turn of a long queue and overflow the stack. So a thread
    /// already inside `start` only queues the batch, and its outermost `start` runs the queue.
    fn start(self: &Arc<Self>, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let outermost = STARTING.with(|queue| {
            let mut queue = queue.borrow_mut();
            match queue.as_mut() {
                Some(waiting) => {
                    waiting.push_back((self.clone(), batch));
                    None
                }
                None => {
                    *queue = Some(VecDeque::new());
                    Some(batch)
                }
            }
        });
        let Some(batch) = outermost else { return };
        // Ends the queue even if a backend panics: batches still in it are dropped, which
        // completes their operations with EIO, so none is lost and this thread can start again.
        struct Outermost;
        impl Drop for Outermost {
            fn drop(&mut self) {
                let left = STARTING.with(|queue| queue.borrow_mut().take());
                drop(left);
            }
        }
        let _outermost = Outermost;
        batch.submit_to(&self.backend);
        while let Some((shared, batch)) =
            STARTING.with(|queue| queue.borrow_mut().as_mut().and_then(VecDeque::pop_front))
        {
            batch.submit_to(&shared.backend);
        }
    }

    /// Operations left the backend (`counted` of them in the window): their room goes to the
    /// next rings in line.
    pub(crate) fn release(self: &Arc<Self>, counted: usize) {
        let mut s = self.lock();
        s.in_flight -= counted;
        if s.ready.is_empty() {
            return;
        }
        let mut batch = Vec::new();
        self.fill(&mut s, &mut batch);
        drop(s);
        self.start(Batch::Submissions(batch));
    }
}

#[cfg(all(test, feature = "blocking", not(ai_os_kernel_loom)))]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::task::{Context, Wake, Waker};
    use std::time::Duration;

    use futures_core::Stream;

    use crate::backend::BlockingBackend;
    use crate::syscalls::{IoUringManager, SyscallOpType, SyscallSubmissionEntry};

    /// Submits a NOP from inside its `wake`, as an executor that polls inline would.
    struct SubmitsWhenWoken {
        manager: IoUringManager,
        done: mpsc::Sender<bool>,
    }

    impl Wake for SubmitsWhenWoken {
        fn wake(self: Arc<Self>) {
            let submitted = self.manager.submit(1, SyscallSubmissionEntry::new(1, SyscallOpType::Nop, 0)).is_ok();
            let _ = self.done.send(submitted);
        }
    }

    #[test]
    fn iouring_wakers_run_outside_the_executor_lock() {
        // An operation the sandbox refuses completes inside `submit`, on the path that skips the
        // SQ while the executor's lock is held: the CQ's waiters must be woken after that lock
        // is released, or a waker that submits deadlocks on it.
        let m = IoUringManager::with_backend(Arc::new(BlockingBackend::new()));
        m.create_ring(1, None, None).unwrap();
        let (tx, rx) = mpsc::channel();
        let waker = Waker::from(Arc::new(SubmitsWhenWoken { manager: m.clone(), done: tx }));
        let mut stream = m.completions(1).unwrap();
        assert!(std::pin::Pin::new(&mut stream).poll_next(&mut Context::from_waker(&waker)).is_pending());
        let submitter = {
            let m = m.clone();
            // No policy: the open is refused at submission.
            std::thread::spawn(move || m.submit(1, SyscallSubmissionEntry::new(1, SyscallOpType::open("f", 0), 0)))
        };
        let woke = rx.recv_timeout(Duration::from_secs(10)).expect("the waker ran, without deadlock");
        assert!(woke, "the waker's submission was accepted");
        assert!(submitter.join().unwrap().is_ok());
    }
}
