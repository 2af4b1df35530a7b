//! One thread that runs short tasks at their time: operations' deadlines, `Timeout`
//! operations and rate limits' waits. A leaf: it knows nothing of rings or backends.
//!
//! Tasks are kept in time order in a map, so one taken back ([`Timer::cancel`]) leaves nothing
//! behind: however many a tenant's operations register and take back, the timer holds only
//! those still due. The thread is made on the first task and sleeps until the earliest is due.
//! A task runs on it outside the timer's lock, so it may register or take back others; it must
//! be short (complete an operation, cancel one, wake a scheduler), as every later task waits
//! for it: what it would start that may take longer (other operations) goes elsewhere (see
//! [`on_timer_thread`]). One that panics is caught and logged.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

type Task = Box<dyn FnOnce() + Send>;

thread_local! {
    /// Whether this thread is a timer's.
    static ON_TIMER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is a timer's: work a task would start that may take long (other
/// tenants' operations) belongs on another thread.
pub(crate) fn on_timer_thread() -> bool {
    ON_TIMER.get()
}

/// A task's place in the timer, to take it back with [`Timer::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey(Instant, u64);

/// The tasks due, by time, and whether the thread runs.
#[derive(Default)]
struct Due {
    tasks: BTreeMap<TimerKey, Task>,
    next: u64,
    running: bool,
}

/// See the module's docs.
#[derive(Default)]
pub(crate) struct Timer {
    due: Mutex<Due>,
    changed: Condvar,
}

/// The host's timer, shared by every manager.
pub(crate) fn timer() -> &'static Arc<Timer> {
    static TIMER: OnceLock<Arc<Timer>> = OnceLock::new();
    TIMER.get_or_init(Arc::default)
}

impl Timer {
    /// Runs `task` at `at` (at once, on the timer's thread, if `at` is past), unless taken back
    /// before. Fails only if the timer's thread cannot be made.
    pub(crate) fn at(self: &Arc<Self>, at: Instant, task: impl FnOnce() + Send + 'static) -> std::io::Result<TimerKey> {
        let mut due = self.lock();
        if !due.running {
            let me = self.clone();
            std::thread::Builder::new().name("ai-os-kernel-timer".into()).spawn(move || me.run())?;
            due.running = true;
        }
        let key = TimerKey(at, due.next);
        due.next += 1;
        let earliest = due.tasks.first_key_value().is_none_or(|(first, _)| key < *first);
        due.tasks.insert(key, Box::new(task));
        drop(due);
        if earliest {
            self.changed.notify_one();
        }
        Ok(key)
    }

    /// Takes the task at `key` back: `true` if it had not run yet (it never will), `false` if it
    /// ran or is running.
    pub(crate) fn cancel(&self, key: TimerKey) -> bool {
        // Dropped once the lock is released: what the task owns may take other locks as it goes.
        let task = self.lock().tasks.remove(&key);
        task.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, Due> {
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        ON_TIMER.set(true);
        let mut due = self.lock();
        loop {
            let now = Instant::now();
            match due.tasks.first_key_value().map(|(key, _)| key.0) {
                Some(at) if at <= now => {
                    let Some((_, task)) = due.tasks.pop_first() else { continue };
                    drop(due);
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)).is_err() {
                        tracing::error!("a timer task panicked");
                    }
                    due = self.lock();
                }
                Some(at) => due = self.changed.wait_timeout(due, at - now).unwrap_or_else(|e| e.into_inner()).0,
                None => due = self.changed.wait(due).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// Tasks run in time order, not in the order they were given; one taken back never runs
    /// and leaves nothing behind.
    #[test]
    fn tasks_run_in_time_order_and_cancelled_ones_never() {
        let timer = Arc::new(Timer::default());
        let (tx, rx) = mpsc::channel();
        let now = Instant::now();
        for (i, ms) in [(0, 60), (1, 20), (2, 40)] {
            let tx = tx.clone();
            timer.at(now + Duration::from_millis(ms), move || tx.send(i).unwrap()).unwrap();
        }
        let tx2 = tx.clone();
        let key = timer.at(now + Duration::from_millis(30), move || tx2.send(9).unwrap()).unwrap();
        assert!(timer.cancel(key));
        assert!(!timer.cancel(key), "taken back once");
        let got: Vec<i32> = (0..3).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(got, [1, 2, 0]);
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err(), "the cancelled task ran");
        assert!(timer.lock().tasks.is_empty());
    }

    /// A task may register another from the timer's thread, and a panicking one stops nothing.
    #[test]
    fn a_task_may_register_another_and_a_panic_is_caught() {
        let timer = Arc::new(Timer::default());
        let (tx, rx) = mpsc::channel();
        timer.at(Instant::now(), || panic!("a task that panics")).unwrap();
        let again = timer.clone();
        timer
            .at(Instant::now(), move || {
                again.at(Instant::now() + Duration::from_millis(5), move || tx.send(()).unwrap()).unwrap();
            })
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}
