//! [`Lanes`]: file operations queued by process, each process's drained by a few tasks of a
//! blocking pool that stay while its operations keep coming.
//!
//! A pool backend that started one pool task per file operation paid a task and a thread
//! wake-up for each. Here an operation joins its process's lane, and a task is started only
//! when the lane's tasks cannot take it: each takes the next operation of its lane as it
//! finishes one, so an operation submitted while the lane is busy (the next of 64 reads kept in
//! flight, started by the completion of the one before, on that task's thread) costs no task and
//! no wake-up at all. On a pool that grows as it needs (tokio's, smol's), a task whose lane is
//! empty may also wait a moment for the next operation ([`Lanes::new`]'s `linger`), so that one
//! submitted as soon as the last completed (a read at a time) costs one wake-up, not a task.
//!
//! What the lanes keep:
//! - **Processes apart.** A lane holds one process's operations, and no operation waits in a
//!   queue behind another process's. One whose operations block (a hung file system) holds its
//!   own lane's tasks, at most [`Lanes::new`]'s `most` (and its share of the executor's window),
//!   never another's; on a pool of a fixed size, the threads those tasks hold are not there for
//!   the others until they end.
//! - **Turns.** A task runs at most [`TURN`] operations, then hands its lane to a new task at
//!   the back of the pool's queue: a pool with a fixed number of threads serves every lane in
//!   turn, however long one process keeps its own busy.
//! - **Few idle threads.** At most one task per core lingers at a time, across all lanes, and
//!   only for `linger`; the others end when their lane is empty.
//! - **Nothing lost.** Every queued operation is run by a task or, when no task can run (the
//!   pool shut down), completed with `EIO` as a dropped submission is.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::submission::Submission;
use super::{Completer, OpOutcome, file_ops};
use crate::op::{OpError, errno};
use crate::process::Process;

/// The most operations a task runs before it hands its lane to a new task.
pub(crate) const TURN: usize = 32;

/// How long a lingering task yields its CPU before it sleeps: about as long as a woken submitter
/// takes to queue its next operation, which then costs no wake-up.
const YIELD_FOR: Duration = Duration::from_micros(50);

/// Every process's lane of file operations, for one backend.
pub(crate) struct Lanes {
    state: Mutex<State>,
    most: usize,
    linger: Duration,
}

#[derive(Default)]
struct State {
    lanes: HashMap<usize, Lane>,
    /// Tasks waiting for their lane's next operation, across all lanes.
    lingering: usize,
}

/// One process's queued file operations and the tasks draining them. It exists while either is
/// there, and keeps its process's allocation meanwhile (not the process), so that its key, the
/// process's address, names no other process.
struct Lane {
    queue: VecDeque<Submission>,
    /// Tasks started for the lane and not yet ended.
    tasks: usize,
    /// Of those, the ones running an operation.
    busy: usize,
    /// Of the others, the threads of those lingering for the next operation.
    parked: Vec<Thread>,
    _process: Weak<Process>,
}

/// A task to start on the pool: [`Drainer::run`] takes its lane's operations in turn. Dropped
/// without running (its pool shut down), it ends its part in the lane, and if it was the lane's
/// last task it completes what is queued there with `EIO`.
#[must_use = "a lane's operations wait for the task to run"]
pub(crate) struct Drainer {
    lanes: Arc<Lanes>,
    key: usize,
    ended: bool,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").field("most", &self.most).field("linger", &self.linger).finish_non_exhaustive()
    }
}

fn key(process: &Arc<Process>) -> usize {
    Arc::as_ptr(process) as usize
}

impl Lanes {
    /// Lanes of at most `most` tasks each (at least 1), whose tasks wait up to `linger` for their
    /// lane's next operation (zero: they end at once).
    pub(crate) fn new(most: usize, linger: Duration) -> Arc<Self> {
        Arc::new(Lanes { state: Mutex::new(State::default()), most: most.max(1), linger })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `files` in their processes' lanes and returns the tasks to start for them: one for
    /// each operation that no task of its lane is free to take, as long as the lane has fewer
    /// than `most`. A lingering task is woken for the one it takes.
    pub(crate) fn push(self: &Arc<Self>, files: impl IntoIterator<Item = Submission>) -> Vec<Drainer> {
        let mut start = Vec::new();
        let mut wake = Vec::new();
        let mut state = self.lock();
        for sub in files {
            let key = key(sub.process());
            let lane = state.lanes.entry(key).or_insert_with(|| Lane {
                queue: VecDeque::new(),
                tasks: 0,
                busy: 0,
                parked: Vec::new(),
                _process: Arc::downgrade(sub.process()),
            });
            lane.queue.push_back(sub);
            if let Some(thread) = lane.parked.pop() {
                wake.push(thread);
            } else if lane.tasks < self.most && lane.queue.len() > lane.tasks - lane.busy {
                // Tasks started and not yet running an operation will each take one.
                lane.tasks += 1;
                start.push(Drainer { lanes: self.clone(), key, ended: false });
            }
        }
        drop(state);
        wake.into_iter().for_each(|t| t.unpark());
        start
    }

    /// The next operation of lane `key` for one of its tasks. If the lane is empty and fewer
    /// than one task per core linger, it waits for one: it first yields its CPU for
    /// [`YIELD_FOR`] (the submitter, woken by the last completion, often queues the next meanwhile, which then
    /// costs no wake-up), then sleeps until `linger` has passed since the lane was found empty.
    /// `None` ends the task (and the lane, if it was its last: nothing is queued).
    fn next(&self, key: usize) -> Option<Submission> {
        let mut state = self.lock();
        // While lingering: since when.
        let mut lingering: Option<Instant> = None;
        loop {
            let State { lanes, lingering: all } = &mut *state;
            // The lane is there as long as it has a task: this one.
            let lane = lanes.get_mut(&key)?;
            if let Some(sub) = lane.queue.pop_front() {
                lane.busy += 1;
                *all -= usize::from(lingering.is_some());
                return Some(sub);
            }
            if lingering.is_none() && !self.linger.is_zero() && *all < super::cores() {
                *all += 1;
                lingering = Some(Instant::now());
            }
            let waited = lingering.map(|since| since.elapsed());
            match waited {
                Some(waited) if waited < YIELD_FOR => {
                    drop(state);
                    std::thread::yield_now();
                    state = self.lock();
                }
                Some(waited) if waited < self.linger => {
                    let me = std::thread::current();
                    lane.parked.push(me.clone());
                    let wait = self.linger - waited;
                    drop(state);
                    std::thread::park_timeout(wait);
                    state = self.lock();
                    // Still there if not woken by a push (timed out, or woken spuriously).
                    if let Some(lane) = state.lanes.get_mut(&key) {
                        lane.parked.retain(|t| t.id() != me.id());
                    }
                }
                _ => {
                    *all -= usize::from(lingering.is_some());
                    Self::leave(state, key);
                    return None;
                }
            }
        }
    }

    /// A task of lane `key` finished its operation and will ask for the next.
    fn idle(&self, key: usize) {
        if let Some(lane) = self.lock().lanes.get_mut(&key) {
            lane.busy -= 1;
        }
    }

    /// A task of lane `key` ends without taking its next operation: its turn is over (`again`:
    /// a new task takes its place, returned, if operations are queued) or it never ran. The last
    /// task of a lane that never ran leaves its operations to no one: they complete with `EIO`
    /// (dropped, once no lock is held).
    fn end(self: &Arc<Self>, key: usize, again: bool) -> Option<Drainer> {
        let mut state = self.lock();
        let lane = state.lanes.get_mut(&key)?;
        if again && !lane.queue.is_empty() {
            return Some(Drainer { lanes: self.clone(), key, ended: false });
        }
        Self::leave(state, key);
        None
    }

    /// A task of lane `key` ends: the lane goes with its last task, and what it held (its queue,
    /// if no task will ever run it, whose operations then complete with `EIO`) is dropped once
    /// `state` is let go of, as completing can start the next operations and lock it again.
    fn leave(mut state: MutexGuard<'_, State>, key: usize) {
        let Some(lane) = state.lanes.get_mut(&key) else { return };
        lane.tasks -= 1;
        if lane.tasks == 0 {
            let gone = state.lanes.remove(&key);
            drop(state);
            drop(gone);
        }
    }
}

impl Drainer {
    /// Runs its lane's operations one after another on the calling thread (a pool's), until the
    /// lane is empty or [`TURN`] have run; then, if more are queued, returns the task that goes
    /// on with them, to start at the back of the pool's queue.
    pub(crate) fn run(mut self) -> Option<Drainer> {
        let mut ran = 0;
        while let Some(sub) = self.lanes.next(self.key) {
            let (done, outcome) = execute(sub);
            // Free for the lane's next operation before completing this one: the completion may
            // start that operation, which should then not start a task of its own.
            self.lanes.idle(self.key);
            done.complete(outcome);
            ran += 1;
            if ran == TURN {
                self.ended = true;
                return self.lanes.end(self.key, true);
            }
        }
        self.ended = true;
        None
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        if !self.ended {
            let again = self.lanes.end(self.key, false);
            debug_assert!(again.is_none());
        }
    }
}

/// Runs a file operation to its end (skipped if it was cancelled before it started); a panic
/// inside it is caught and becomes `EIO`, so that the task goes on with its lane.
pub(crate) fn execute(sub: Submission) -> (Completer, OpOutcome) {
    let (mut op, done) = sub.into_parts();
    if op.is_cancelled() {
        return (done, Err(OpError::cancelled().giving_back(op.take_buffer())));
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| file_ops::execute_sync(op))).unwrap_or_else(|_| {
        tracing::error!("a file operation panicked; it completed with EIO");
        Err(OpError::new(errno::EIO, "the operation panicked"))
    });
    (done, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Batch;
    use crate::syscalls::iouring::ring::SyscallCompletionRing;
    use crate::syscalls::iouring::ring::test_support::{nops, ring};

    /// `n` NOPs of each ring, dispatched as the executor does, as submissions in ring order.
    fn submissions(rings: &[(&Arc<SyscallCompletionRing>, usize)]) -> Vec<Submission> {
        let mut batch = Batch::with_capacity(0);
        for &(r, n) in rings {
            r.enqueue(nops(n), false).unwrap();
            batch.run(r, |out| r.dispatch(n, out, |d, counted| (d, counted)));
        }
        batch.into_submissions().collect()
    }

    fn tasks(lanes: &Lanes, r: &SyscallCompletionRing) -> Option<usize> {
        lanes.lock().lanes.get(&key(r.process())).map(|lane| lane.tasks)
    }

    /// Each process's operations get tasks of their own lane: one per operation up to `most`,
    /// however a batch mixes processes; the tasks run every operation and the lanes go away.
    #[test]
    fn each_process_has_a_lane_of_its_own() {
        let (a, b, c) = (ring(1, 8, 8).0, ring(2, 8, 8).0, ring(3, 8, 8).0);
        let lanes = Lanes::new(2, Duration::ZERO);
        let drainers = lanes.push(submissions(&[(&a, 3), (&b, 1), (&c, 1)]));
        let of = |d: &Drainer| drainers.iter().filter(|o| o.key == d.key).count();
        assert_eq!(
            drainers.iter().map(of).collect::<Vec<_>>(),
            [2, 2, 1, 1],
            "two for pid 1 (most 2), one each for 2 and 3"
        );
        assert_eq!((tasks(&lanes, &a), tasks(&lanes, &b), tasks(&lanes, &c)), (Some(2), Some(1), Some(1)));
        for d in drainers {
            assert!(d.run().is_none());
        }
        for (r, n) in [(&a, 3), (&b, 1), (&c, 1)] {
            let done = r.reap(usize::MAX);
            assert_eq!(done.len(), n, "every operation ran");
            assert!(done.iter().all(|c| c.status.is_success()));
            assert_eq!(tasks(&lanes, r), None, "an empty lane without tasks is gone");
        }
    }

    /// An operation queued while its lane's task is between two operations (started by the
    /// completion of the one before, as the executor does) is left to that task: no new one.
    #[test]
    fn a_task_between_operations_takes_the_next() {
        let a = ring(1, 8, 8).0;
        let lanes = Lanes::new(8, Duration::ZERO);
        let mut first = lanes.push(submissions(&[(&a, 1)]));
        assert_eq!(first.len(), 1);
        let d = first.pop().unwrap();
        let sub = lanes.next(d.key).expect("the queued operation");
        let mut second = lanes.push(submissions(&[(&a, 1)]));
        assert_eq!(second.len(), 1, "while the task is busy, an operation gets a task of its own");
        let (done, outcome) = execute(sub);
        lanes.idle(d.key);
        // Now free, between two operations: what comes meanwhile is its.
        assert!(lanes.push(submissions(&[(&a, 1)])).is_empty(), "a free task takes it");
        done.complete(outcome);
        assert_eq!(tasks(&lanes, &a), Some(2));
        // (It ends here, as if its pool dropped it: its sibling runs what is queued.)
        drop(d);
        assert_eq!(tasks(&lanes, &a), Some(1));
        assert!(second.pop().unwrap().run().is_none());
        assert_eq!(a.reap(usize::MAX).len(), 3, "every operation ran once");
        assert_eq!(tasks(&lanes, &a), None);
    }

    /// A task runs at most a turn of operations, then hands the rest to a new task (to start at
    /// the back of the pool's queue), which runs them.
    #[test]
    fn a_task_hands_its_lane_on_after_a_turn() {
        let (a, _) = ring(1, 64, 64);
        let lanes = Lanes::new(1, Duration::ZERO);
        let mut drainers = lanes.push(submissions(&[(&a, TURN + 5)]));
        assert_eq!(drainers.len(), 1);
        let next = drainers.pop().unwrap().run().expect("more queued after a turn");
        assert_eq!(a.reap(usize::MAX).len(), TURN);
        assert_eq!(tasks(&lanes, &a), Some(1), "the new task takes the old one's place");
        assert!(next.run().is_none());
        assert_eq!(a.reap(usize::MAX).len(), 5);
        assert_eq!(tasks(&lanes, &a), None);
    }

    /// Tasks that never run (their pool shut down) leave nothing waiting: the last of a lane
    /// completes what is queued with `EIO`, and the lane is gone.
    #[test]
    fn a_lane_whose_tasks_never_run_completes_with_eio() {
        let a = ring(1, 8, 8).0;
        let lanes = Lanes::new(2, Duration::ZERO);
        let drainers = lanes.push(submissions(&[(&a, 3)]));
        assert_eq!(drainers.len(), 2);
        drop(drainers);
        let done = a.reap(usize::MAX);
        assert_eq!(done.len(), 3);
        assert!(done.iter().all(|c| c.errno() == Some(errno::EIO)), "{done:?}");
        assert_eq!(tasks(&lanes, &a), None);
    }

    /// A process whose lane's tasks are all busy (blocked in a hung file system, say) holds up
    /// no other process: another's operation gets a task of its own and runs meanwhile.
    #[test]
    fn a_busy_lane_holds_up_no_other() {
        let (a, b) = (ring(1, 8, 8).0, ring(2, 8, 8).0);
        let lanes = Lanes::new(1, Duration::ZERO);
        let mut of_a = lanes.push(submissions(&[(&a, 2)]));
        assert_eq!(of_a.len(), 1, "most 1");
        let a_task = of_a.pop().unwrap();
        let held = lanes.next(a_task.key).expect("a's first operation, held as if blocked");
        let mut of_b = lanes.push(submissions(&[(&b, 1)]));
        assert_eq!(of_b.len(), 1, "b's operation is not queued behind a's");
        assert!(of_b.pop().unwrap().run().is_none());
        assert_eq!(b.reap(usize::MAX).len(), 1, "b's ran while a's was still running");
        let (done, outcome) = execute(held);
        lanes.idle(a_task.key);
        done.complete(outcome);
        assert!(a_task.run().is_none());
        assert_eq!(a.reap(usize::MAX).len(), 2);
    }

    /// A lingering task takes an operation queued after its lane was empty and it went to sleep:
    /// the push starts no new task and wakes it, and it runs the operation; with nothing queued,
    /// it ends after `linger`.
    #[test]
    fn a_lingering_task_takes_the_next_operation() {
        let a = ring(1, 8, 8).0;
        let lanes = Lanes::new(4, Duration::from_millis(500));
        let mut first = lanes.push(submissions(&[(&a, 1)]));
        let task = first.pop().unwrap();
        let runner = std::thread::spawn(move || task.run());
        let deadline = Instant::now() + Duration::from_secs(5);
        let asleep = || lanes.lock().lanes.get(&key(a.process())).is_some_and(|lane| !lane.parked.is_empty());
        while a.ready() < 1 || !asleep() {
            assert!(Instant::now() < deadline, "the task never ran its operation and went to sleep");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(lanes.push(submissions(&[(&a, 1)])).is_empty(), "the sleeping task is woken for it");
        while a.ready() < 2 {
            assert!(Instant::now() < deadline, "the woken task never ran the second");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(runner.join().unwrap().is_none(), "it ends after lingering");
        assert_eq!(tasks(&lanes, &a), None);
        // A short linger ends on its own.
        let short = Lanes::new(4, Duration::from_millis(20));
        let started = Instant::now();
        for d in short.push(submissions(&[(&a, 1)])) {
            assert!(d.run().is_none());
        }
        assert!(started.elapsed() >= Duration::from_millis(20), "lingered");
        assert_eq!(tasks(&short, &a), None);
        assert_eq!(a.reap(usize::MAX).len(), 3);
    }
}
