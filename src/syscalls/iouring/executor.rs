//! [`IoUringExecutor`]: moves operations from the rings' submission queues into the backend,
//! fairly.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::ring::{Accept, SyscallCompletionRing, Taken, Window};
use crate::backend::{Backend, Batch};
use crate::op::Result;
use crate::op::SyscallOpType;
use crate::sync::{AtomicBool, AtomicUsize, Mutex, MutexGuard};
use crate::timer::timer;

/// Batches waiting for the outermost [`Shared::start`] of their thread, in order.
type Waiting = VecDeque<(Arc<Shared>, Batch)>;

/// The most batches one outermost [`Shared::start`] hands the backend itself; the rest go to
/// the backend's threads ([`Backend::spawn`]).
const STARTS_PER_CALL: usize = 16;

thread_local! {
    /// `Some` while this thread is inside [`Shared::start`].
    static STARTING: RefCell<Option<Waiting>> = const { RefCell::new(None) };
}

/// The operations one ring may hand the backend per turn for each unit of its weight, so one
/// process flooding its ring waits its turn behind every other ready ring.
const QUANTUM: usize = 32;

/// Drains the rings' submission queues into the backend, fairly across processes: deficit round
/// robin, weighted by each process's [`Policy::weight`](crate::sandbox::Policy::weight).
///
/// The backend gets at most [`Capabilities::max_in_flight`](crate::backend::Capabilities)
/// operations at once (operations that wait on a peer, such as `Accept` or `Recv`, do not
/// count); the rest wait in their rings' SQs. Whenever room frees, the ring whose turn it is
/// goes on with its turn: at most 32 operations per unit of weight, then the next ring in line
/// takes its own. So a process that floods its ring delays another process by at most one turn
/// of each busy ring, never by its whole backlog, and under contention each process starts
/// operations in proportion to its weight. A ring holds at most its share of the window (see
/// [`Policy::max_in_flight`](crate::sandbox::Policy::max_in_flight)); one that holds it leaves
/// the line until one of its operations completes, and then goes on with its turn. The cost is
/// constant per operation.
///
/// A process with a rate limit ([`Policy::ops_rate`](crate::sandbox::Policy::ops_rate)) leaves
/// the line when its bucket is empty, and a task on the host's timer thread puts it back when
/// the bucket has refilled: a throttled process holds no place and no thread.
///
/// There is no executor thread: the caller that submits, and the thread that completes an
/// operation, each move the next operations along, so an idle manager costs nothing.
#[derive(Clone)]
pub struct IoUringExecutor {
    inner: Arc<Shared>,
}

pub(crate) struct Shared {
    /// Itself, for what outlives a call (a batch queued for this thread's outermost start, the
    /// timer): reached from a ring's [`Window`] by reference.
    me: std::sync::Weak<Shared>,
    backend: Arc<dyn Backend>,
    window: usize,
    sched: Mutex<Sched>,
    /// Operations in the window. Taken under the lock (a batch started, the line filled); given
    /// back without it when nothing waits for room ([`Window::release`]).
    in_flight: AtomicUsize,
    /// Whether a ring is in line (`Sched::ready` is not empty): set under the lock, true from
    /// before a ring is put in line until after the line empties, so that a completion that
    /// finds it false and its ring not out of line at its share has nobody to hand room to.
    waiting: AtomicBool,
}

#[derive(Default)]
struct Sched {
    ready: VecDeque<Turn>,
}

/// A ring in line, and what is left of its turn: how many more operations it may start before
/// the next ring's turn (0: its next turn starts afresh).
struct Turn {
    ring: Arc<SyscallCompletionRing>,
    left: usize,
}

impl Turn {
    fn new(ring: Arc<SyscallCompletionRing>) -> Self {
        Turn { ring, left: 0 }
    }
}

/// What a ring may start in one turn: [`QUANTUM`] per unit of its process's weight.
fn turn_size(ring: &SyscallCompletionRing) -> usize {
    QUANTUM * ring.process().weight() as usize
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
        let window = caps.max_in_flight.max(1);
        IoUringExecutor {
            inner: Arc::new_cyclic(|me| Shared {
                me: me.clone(),
                backend,
                window,
                sched: Mutex::new(Sched::default()),
                in_flight: AtomicUsize::new(0),
                waiting: AtomicBool::new(false),
            }),
        }
    }

    /// The backend operations run on.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// Operations handed to the backend and not yet completed (those that wait on a peer
    /// excepted).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Rings with queued operations waiting for room in the backend.
    pub fn ready_rings(&self) -> usize {
        self.inner.lock().ready.len()
    }

    /// Accepts `ops` into `ring` (see [`SyscallCompletionRing::enqueue`]) and moves them along:
    /// straight to the backend, skipping the SQ, when the window has room for all of them and no
    /// ring is waiting for it (so nobody is overtaken); into the SQ and the line otherwise.
    /// Returns the first sequence number.
    pub(crate) fn accept(
        &self,
        ring: &Arc<SyscallCompletionRing>,
        ops: impl ExactSizeIterator<Item = (SyscallOpType, u64)>,
        how: impl Into<Accept>,
    ) -> Result<u64> {
        let how = how.into();
        ring.scheduled_by(|| self.inner.clone());
        let mut ops = ops.peekable();
        let n = ops.len();
        // The places the batch may take in the window: exactly those of one operation (none if
        // it waits on a peer), at most one each for more.
        let most = if n == 1 {
            let waits = how.waits_alone.unwrap_or_else(|| ops.peek().is_some_and(|(op, _)| op.may_wait_on_peer()));
            usize::from(!waits)
        } else {
            n
        };
        let s = self.inner.lock();
        // A rate-limited process's operations always pass through its SQ, where the limits
        // apply, and a linked chain's, whose first operation starts only once all are checked.
        if how.linked
            || !s.ready.is_empty()
            || ring.seat.scheduled.load(Ordering::Relaxed)
            || self.inner.window - self.inner.in_flight.load(Ordering::SeqCst) < most
            || self.inner.share(ring).saturating_sub(ring.seat.held.load(Ordering::Relaxed)) < most
            || ring.process().is_rate_limited()
        {
            drop(s);
            let (first, queued) = ring.enqueue(ops, how)?;
            if queued {
                self.schedule(ring);
            }
            return Ok(first);
        }
        // Their places are taken now, and the lock let go before the ring checks and accepts
        // them: the one lock every submitter shares is held for these few lines only. Places
        // they do not take (refused, or not counted) are given back below, as a completion's.
        self.inner.in_flight.fetch_add(most, Ordering::SeqCst);
        ring.seat.held.fetch_add(most, Ordering::SeqCst);
        drop(s);
        let mut reserved = Reserved { window: &self.inner, ring, places: most };
        let mut batch = Batch::with_capacity(n);
        let accepted = batch.run(ring, |out| ring.accept_started(ops, how, &mut |d, counts| out.push((d, counts))));
        reserved.places -= accepted.as_ref().map_or(0, |(accepted, _)| accepted.counted);
        drop(reserved);
        let (accepted, refused) = accepted?;
        ring.after_unlock(refused);
        self.inner.start(batch);
        if accepted.queued {
            self.schedule(ring);
        }
        Ok(accepted.first)
    }

    /// Puts `ring` in line (if it is not already: one out of line at its share or waiting for
    /// the rate-limit timer is scheduled too) and moves what fits to the backend.
    pub(crate) fn schedule(&self, ring: &Arc<SyscallCompletionRing>) {
        ring.scheduled_by(|| self.inner.clone());
        self.inner.requeue(ring);
    }

    /// Looks again at a ring its process's policy (or its destruction) may have changed: one
    /// waiting for the rate-limit timer, or out of line at a share it no longer fills, goes
    /// back in line now, and what fits starts.
    pub(crate) fn reconsider(&self, ring: &Arc<SyscallCompletionRing>) {
        let inner = &self.inner;
        let mut s = inner.lock();
        if ring.seat.throttled.swap(false, Ordering::Relaxed) {
            s.ready.push_back(Turn::new(ring.clone()));
        } else if ring.seat.at_share.load(Ordering::SeqCst) && ring.seat.held.load(Ordering::SeqCst) < inner.share(ring)
        {
            ring.seat.at_share.store(false, Ordering::SeqCst);
            s.ready.push_back(Turn { ring: ring.clone(), left: ring.seat.turn_left.swap(0, Ordering::Relaxed) });
        } else {
            return;
        }
        inner.note_waiting(&s);
        inner.fill_and_start(s);
    }
}

/// Window places taken for a batch and not (yet) held by its operations: given back when
/// dropped, whatever happened to the batch.
struct Reserved<'a> {
    window: &'a Shared,
    ring: &'a Arc<SyscallCompletionRing>,
    places: usize,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.places > 0 {
            self.window.release(self.ring, self.places);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sched> {
        crate::sync::lock(&self.sched)
    }

    /// Records whether a ring is in line, under the lock (`s`), after every change to the line.
    fn note_waiting(&self, s: &Sched) {
        self.waiting.store(!s.ready.is_empty(), Ordering::SeqCst);
    }

    /// [`fill`](Self::fill)s under `s`, then starts what it took once `s` is let go of.
    fn fill_and_start(&self, mut s: MutexGuard<'_, Sched>) {
        let mut batch = Batch::with_capacity(0);
        self.fill(&mut s, &mut batch);
        self.note_waiting(&s);
        drop(s);
        self.start(batch);
    }

    /// Starts operations from the rings in line while the window has room: the ring at the
    /// front goes on with its turn; one whose turn is used up goes to the back, one with nothing
    /// left queued leaves the line, one its rate limit holds back waits for the timer.
    fn fill(&self, s: &mut Sched, batch: &mut Batch) {
        // The line is not empty while this runs (`waiting` is true): a completion meanwhile
        // gives its room back (without the lock), then finds `waiting` true and takes the lock,
        // after this, where it sees a ring this took out of line at its share.
        let Sched { ready } = s;
        loop {
            let in_flight = self.in_flight.load(Ordering::SeqCst);
            if in_flight >= self.window {
                break;
            }
            let Some(Turn { ring, left }) = ready.front_mut() else { break };
            if *left == 0 {
                *left = turn_size(ring);
            }
            let share = self.share(ring);
            let held = ring.seat.held.load(Ordering::SeqCst);
            let room = (self.window - in_flight).min(*left).min(share.saturating_sub(held));
            let taken = if room > 0 {
                batch.run(ring, |out| ring.dispatch(room, out, |d, counts| (d, counts)))
            } else {
                Taken { counted: 0, more: true, throttled: None }
            };
            self.in_flight.fetch_add(taken.counted, Ordering::SeqCst);
            *left -= taken.counted.min(*left);
            let held = ring.seat.held.fetch_add(taken.counted, Ordering::SeqCst) + taken.counted;
            let (used_up, at_share) = (*left == 0, held >= share);
            if let Some(at) = taken.throttled {
                if let Some(turn) = ready.pop_front() {
                    self.throttle(turn.ring, at);
                }
            } else if !taken.more {
                if let Some(turn) = ready.pop_front() {
                    turn.ring.seat.scheduled.store(false, Ordering::Relaxed);
                }
            } else if at_share {
                // It holds its whole share: out of line (still scheduled) until one of its
                // operations completes, keeping what is left of its turn.
                if let Some(turn) = ready.pop_front() {
                    turn.ring.seat.turn_left.store(turn.left, Ordering::Relaxed);
                    turn.ring.seat.at_share.store(true, Ordering::SeqCst);
                }
            } else if used_up && let Some(turn) = ready.pop_front() {
                ready.push_back(turn);
            }
            // Otherwise the window is full: the turn goes on when room frees.
        }
    }

    /// The most places `ring` may hold in the window: its policy's
    /// [`max_in_flight`](crate::sandbox::Policy::max_in_flight), or by default a quarter of the
    /// window per unit of its weight (so that shares follow weights when the window is not
    /// full too); at least 1 and at most the window.
    fn share(&self, ring: &SyscallCompletionRing) -> usize {
        let process = ring.process();
        let default = || (self.window / 4).max(1).saturating_mul(process.weight() as usize);
        process.in_flight_limit().unwrap_or_else(default).clamp(1, self.window)
    }

    /// Takes `ring` (marked scheduled) out of line until `at`, when its rate limit admits its
    /// next operation: the host's timer puts it back then (holding neither the ring nor the
    /// executor meanwhile). Without a timer (its thread could not be made) the ring is let go of
    /// instead: its next submission puts it back in line.
    fn throttle(&self, ring: Arc<SyscallCompletionRing>, at: Instant) {
        ring.seat.throttled.store(true, Ordering::Relaxed);
        let (me, waiting) = (self.me.clone(), Arc::downgrade(&ring));
        let rejoin = move || {
            if let (Some(me), Some(ring)) = (me.upgrade(), waiting.upgrade()) {
                me.rejoin(ring);
            }
        };
        if let Err(e) = timer().at(at, rejoin) {
            tracing::error!(error = %e, "could not start the timer thread for a rate limit's wait");
            ring.seat.throttled.store(false, Ordering::Relaxed);
            ring.seat.scheduled.store(false, Ordering::Relaxed);
        }
    }

    /// Puts a throttled ring back in line (the timer's call) and starts what fits. A ring put
    /// back meanwhile ([`IoUringExecutor::reconsider`]) is not put back twice.
    fn rejoin(&self, ring: Arc<SyscallCompletionRing>) {
        let mut s = self.lock();
        if ring.seat.throttled.swap(false, Ordering::Relaxed) {
            s.ready.push_back(Turn::new(ring));
            self.note_waiting(&s);
        }
        self.fill_and_start(s);
    }

    /// Hands `batch` to the backend. A backend may complete operations inside `submit` (io_uring
    /// finishes a NOP inside its enter, a socket with data ready answers at once), and each
    /// completion frees room that starts the next batch: started right there, that would nest one
    /// `submit` inside another for every turn of a long queue and overflow the stack. So a thread
    /// already inside `start` only queues the batch, and its outermost `start` runs the queue.
    fn start(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        if crate::timer::on_timer_thread() {
            // Let in by a timer task (a rate limit's wait ended, a chain's timeout fired): the
            // host's one timer thread, which every deadline waits on, starts nothing itself.
            if let Some(me) = self.me.upgrade() {
                self.backend.spawn(Box::pin(async move { me.start(batch) }));
            }
            return;
        }
        let outermost = STARTING.with(|queue| {
            let mut queue = queue.borrow_mut();
            match queue.as_mut() {
                Some(waiting) => {
                    // Alive: a caller of this method holds it.
                    if let Some(me) = self.me.upgrade() {
                        waiting.push_back((me, batch));
                    }
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
        self.backend.submit(batch);
        let mut started = 1;
        while let Some((shared, batch)) =
            STARTING.with(|queue| queue.borrow_mut().as_mut().and_then(VecDeque::pop_front))
        {
            if started == STARTS_PER_CALL {
                // Operations that complete as they start (NOPs) keep freeing room for more, and
                // this thread, whoever's it is (another tenant's `submit`, a reaper, the timer),
                // would start them for as long as their process keeps queueing: the rest goes to
                // the backend's own threads.
                let mut rest = vec![(shared, batch)];
                rest.extend(
                    STARTING
                        .with(|queue| queue.borrow_mut().as_mut().map(|w| w.drain(..).collect::<Vec<_>>()))
                        .unwrap_or_default(),
                );
                self.backend.spawn(Box::pin(async move {
                    for (shared, batch) in rest {
                        shared.start(batch);
                    }
                }));
                break;
            }
            shared.backend.submit(batch);
            started += 1;
        }
    }
}

impl Window for Shared {
    /// Operations of `ring` left the backend (`counted` of them in the window): their room goes
    /// to the next rings in line, `ring` back among them if it was out of line for holding its
    /// whole share.
    ///
    /// Without the lock when no ring is in line and `ring` is not out of line at its share: the
    /// one lock every submitter shares is not taken for nothing. The room is given back first
    /// (all sequentially consistent). `waiting` is set before a ring is put in line and stays
    /// set while [`fill`](Shared::fill) runs; a ring goes out of line at its share only inside
    /// `fill`, before `waiting` may be cleared. So if this reads `waiting` false, either it did
    /// so before that `fill` began, which then saw the room given back, or after it ended, and
    /// then it reads the ring's `at_share` as that `fill` left it and takes the lock.
    /// (`waiting` must be read first: read second, a `fill` could begin between the two reads,
    /// miss the room given back and take the ring out of line with nothing of it in flight.)
    fn release(&self, ring: &Arc<SyscallCompletionRing>, counted: usize) {
        self.in_flight.fetch_sub(counted, Ordering::SeqCst);
        ring.seat.held.fetch_sub(counted, Ordering::SeqCst);
        if !self.waiting.load(Ordering::SeqCst) && !ring.seat.at_share.load(Ordering::SeqCst) {
            return;
        }
        let mut s = self.lock();
        if ring.seat.at_share.swap(false, Ordering::SeqCst) {
            // Back in line: at the front to go on with a turn its share cut short (so that every
            // ring starts its weight's worth per round of the line, capped or not), at the back
            // if that turn was used up.
            let turn = Turn { ring: ring.clone(), left: ring.seat.turn_left.swap(0, Ordering::Relaxed) };
            if turn.left > 0 {
                s.ready.push_front(turn);
            } else {
                s.ready.push_back(turn);
            }
            self.note_waiting(&s);
        }
        if s.ready.is_empty() {
            return;
        }
        self.fill_and_start(s);
    }

    fn requeue(&self, ring: &Arc<SyscallCompletionRing>) {
        let mut s = self.lock();
        if !ring.seat.scheduled.swap(true, Ordering::Relaxed) {
            s.ready.push_back(Turn::new(ring.clone()));
            self.note_waiting(&s);
        }
        self.fill_and_start(s);
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

    /// Holds what it is given, for the test to complete one at a time.
    #[derive(Default)]
    struct Holds(std::sync::Mutex<std::collections::VecDeque<crate::backend::Submission>>);

    impl crate::backend::Backend for Holds {
        fn name(&self) -> &'static str {
            "holds"
        }
        fn capabilities(&self) -> crate::backend::Capabilities {
            crate::backend::Capabilities::new(4)
        }
        fn spawn(&self, _task: crate::backend::Task) {}
        fn submit(&self, batch: crate::backend::Batch) {
            self.0.lock().unwrap().extend(batch.into_submissions());
        }
    }

    /// Under contention, processes of weights 1 and 3 start operations in the ratio 1:3 (whole
    /// turns: 32 and 96 at a time; shares of the window: a quarter and three quarters), and a
    /// process alone in line takes its share.
    #[test]
    fn weights_share_the_window() {
        use crate::sandbox::Policy;
        let backend = Arc::new(Holds::default());
        let m = IoUringManager::with_backend(backend.clone());
        for (pid, weight) in [(1, 1), (2, 3)] {
            m.set_policy(pid, Policy::default().weight(weight)).unwrap();
            m.create_ring(pid, Some(4096), Some(4096)).unwrap();
        }
        let nops = |pid| (0..2000).map(|_| SyscallSubmissionEntry::new(pid, SyscallOpType::Nop, 0)).collect();
        m.submit_batch(1, nops(1)).unwrap();
        m.submit_batch(2, nops(2)).unwrap();
        let mut started = [0usize; 3];
        for _ in 0..1024 {
            let next = backend.0.lock().unwrap().pop_front().expect("the window is kept full");
            started[next.process().pid() as usize] += 1;
            // Completing it frees room, which starts the next operation (into `backend`).
            next.complete(Ok(crate::syscalls::OpResult::None));
        }
        assert_eq!(started[1] + started[2], 1024);
        let share = started[1] as f64 / 1024.0;
        assert!((0.22..=0.28).contains(&share), "weight 1 of 4 started {started:?}");
        // Pid 2 alone: its share, three quarters of the window with weight 3.
        m.destroy_ring(1).unwrap();
        let held = backend.0.lock().unwrap().drain(..).collect::<Vec<_>>();
        for sub in held {
            sub.complete(Ok(crate::syscalls::OpResult::None));
        }
        let pids: Vec<_> = backend.0.lock().unwrap().iter().map(|s| s.process().pid()).collect();
        assert_eq!(pids, [2, 2, 2]);
    }

    /// Completes every operation as it starts, and keeps spawned tasks for the test to run.
    #[derive(Default)]
    struct Instant_(std::sync::Mutex<Vec<crate::backend::Task>>);

    impl crate::backend::Backend for Instant_ {
        fn name(&self) -> &'static str {
            "instant"
        }
        fn spawn(&self, task: crate::backend::Task) {
            self.0.lock().unwrap().push(task);
        }
        fn submit(&self, batch: crate::backend::Batch) {
            for sub in batch.into_submissions() {
                sub.complete(Ok(crate::syscalls::OpResult::None));
            }
        }
    }

    /// Operations that complete as they start do not keep the thread that started them (which
    /// may be another tenant's) starting the next ones for as long as their process has any:
    /// after a few batches the rest goes to the backend's threads, and all still complete.
    #[test]
    fn instant_completions_do_not_trap_the_starting_thread() {
        use crate::sandbox::Policy;
        let backend = Arc::new(Instant_::default());
        let m = IoUringManager::with_backend(backend.clone());
        // One in flight at a time: each completion lets the next one in, a batch each.
        m.set_policy(1, Policy::default().max_in_flight(1)).unwrap();
        m.create_ring(1, Some(4096), Some(4096)).unwrap();
        let nops = (0..1000).map(|_| SyscallSubmissionEntry::new(1, SyscallOpType::Nop, 0)).collect();
        m.submit_batch(1, nops).unwrap();
        let completed = || m.stats_for(1).unwrap().completed;
        assert!(completed() <= 32, "the submitting call started {} of 1,000", completed());
        // The backend's threads (run here, one task at a time) start the rest.
        loop {
            let next = backend.0.lock().unwrap().pop();
            let Some(task) = next else { break };
            futures::executor::block_on(task);
        }
        assert_eq!(completed(), 1000);
    }

    /// A process whose operations never end holds at most its share of the window (a quarter
    /// by default): the rest stays for the others, and each completion lets one more of its
    /// operations in.
    #[test]
    fn a_process_holds_at_most_its_share_of_the_window() {
        let backend = Arc::new(Holds::default());
        let m = IoUringManager::with_backend(backend.clone());
        let pids_held = || backend.0.lock().unwrap().iter().map(|s| s.process().pid()).collect::<Vec<_>>();
        let nops = |pid, n| (0..n).map(|_| SyscallSubmissionEntry::new(pid, SyscallOpType::Nop, 0)).collect();
        m.submit_batch(1, nops(1, 10)).unwrap();
        assert_eq!(pids_held(), [1], "a quarter of a window of 4");
        m.submit_batch(2, nops(2, 10)).unwrap();
        m.submit(3, SyscallSubmissionEntry::new(3, SyscallOpType::Nop, 0)).unwrap();
        assert_eq!(pids_held(), [1, 2, 3]);
        let first = backend.0.lock().unwrap().pop_front().unwrap();
        first.complete(Ok(crate::syscalls::OpResult::None));
        assert_eq!(pids_held(), [2, 3, 1], "its completion let its next operation in");
        assert_eq!(m.stats_for(1).unwrap().completed, 1);
        // A larger share, set by the policy, is taken up to the window.
        m.set_policy(4, crate::sandbox::Policy::default().max_in_flight(100)).unwrap();
        let held = backend.0.lock().unwrap().drain(..).collect::<Vec<_>>();
        for sub in held {
            sub.complete(Ok(crate::syscalls::OpResult::None));
        }
        m.destroy_ring(1).unwrap();
        m.destroy_ring(2).unwrap();
        let held = backend.0.lock().unwrap().drain(..).collect::<Vec<_>>();
        for sub in held {
            sub.complete(Ok(crate::syscalls::OpResult::None));
        }
        m.submit_batch(4, nops(4, 10)).unwrap();
        assert_eq!(pids_held(), [4, 4, 4, 4]);
    }

    /// A share raised by a new policy lets a ring that held its old share go on at once, not
    /// when one of its operations completes (which, for one that never ends, is never).
    #[test]
    fn a_raised_share_takes_effect_at_once() {
        use crate::sandbox::Policy;
        let backend = Arc::new(Holds::default());
        let m = IoUringManager::with_backend(backend.clone());
        m.set_policy(1, Policy::default().max_in_flight(1)).unwrap();
        let nops = (0..3).map(|_| SyscallSubmissionEntry::new(1, SyscallOpType::Nop, 0)).collect();
        m.submit_batch(1, nops).unwrap();
        assert_eq!(backend.0.lock().unwrap().len(), 1);
        m.set_policy(1, Policy::default().max_in_flight(3)).unwrap();
        assert_eq!(backend.0.lock().unwrap().len(), 3, "the raised share is taken at once");
        for sub in backend.0.lock().unwrap().drain(..).collect::<Vec<_>>() {
            sub.complete(Ok(crate::syscalls::OpResult::None));
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
