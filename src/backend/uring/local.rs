//! A thread's own kernel ring, worked by a drive task on that thread ([`Drive`]).
//!
//! Without one, every `submit` enters the kernel itself and a reaper thread takes the
//! completions that come later, waking each waiting task from there: a socket round trip costs
//! a kernel entry per operation and a crossing of threads per completion. A drive task, spawned
//! on a thread's local executor, gives that thread a ring of its own. While anything of the
//! thread's waits in that ring (a server's parked receives), its submissions are pushed there
//! without entering the kernel, and the task, woken once per tick of its executor, enters once
//! for all of them; it takes the completions on this thread as the executor's reactor reports
//! the ring readable (tokio's, inside a tokio runtime; async-io's otherwise). On an idle ring a
//! submission is entered at once and what completes inside the enter is delivered there, as
//! without the task. Submitters on different threads with drive tasks share no kernel ring.
//!
//! The task is a helper, never a dependency: the ring's reaper watches it, and makes a pass
//! itself when the task makes none while work waits (its executor is blocked); when the task
//! ends, the reaper reaps what is left and the thread's submissions go to the shared rings again.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};

use super::driver::Driver;

thread_local! {
    /// The rings of this thread's live drive tasks, by the id of the backend they belong to.
    static OWN: RefCell<Vec<(usize, Arc<Driver>)>> = const { RefCell::new(Vec::new()) };
    /// The rings this thread's `block_on`s left, by backend: the next one of the same backend
    /// takes its ring back, as making a ring and its reaper thread costs a hundred times an
    /// operation. Idle, a ring's reaper sleeps (it reaps what was left in flight first).
    static IDLE: RefCell<Idle> = const { RefCell::new(Idle(Vec::new())) };
}

/// The idle rings of a thread; shut down with it (each reaper ends once its ring is empty).
struct Idle(Vec<(usize, Arc<Driver>)>);

impl Drop for Idle {
    fn drop(&mut self) {
        for (_, driver) in &self.0 {
            driver.shut_down();
        }
    }
}

/// The ring a `block_on` of backend `id` left on this thread, if there is one and its backend
/// has not shut it down. Rings of backends gone are let go of on the way.
pub(super) fn idle_ring(id: usize) -> Option<Arc<Driver>> {
    IDLE.try_with(|idle| {
        let idle = &mut idle.borrow_mut().0;
        idle.retain(|(_, driver)| !driver.is_shut_down());
        let at = idle.iter().position(|(of, _)| *of == id)?;
        Some(idle.swap_remove(at).1)
    })
    .ok()
    .flatten()
}

/// Keeps `driver`, a ring of backend `id` a `block_on` worked, for the thread's next one; shuts
/// it down if the thread is ending.
fn keep_idle(id: usize, driver: Arc<Driver>) {
    let kept = IDLE.try_with(|idle| idle.borrow_mut().0.push((id, driver.clone())));
    if kept.is_err() {
        driver.shut_down();
    }
}

/// This thread's own ring for backend `id`, if a drive task works one here.
#[inline]
pub(super) fn own_ring(id: usize) -> Option<Arc<Driver>> {
    // None while the thread's locals are torn down (a batch dropped then may still submit).
    OWN.try_with(|own| {
        let own = own.borrow();
        own.iter().find(|(of, _)| *of == id).map(|(_, driver)| driver.clone())
    })
    .ok()
    .flatten()
}

/// The one own ring of this thread, in tests that make one backend per thread.
#[cfg(test)]
pub(super) fn only_own_ring() -> Option<Arc<Driver>> {
    OWN.with(|own| {
        let own = own.borrow();
        assert!(own.len() <= 1, "one own ring per test thread");
        own.first().map(|(_, driver)| driver.clone())
    })
}

/// How many passes one poll of the task makes while the ring keeps turning readable, before it
/// lets its executor run other tasks.
const PASSES_PER_POLL: usize = 8;

/// The drive task of one thread's own ring (see the [module docs](self)). Not `Send`: it works
/// the thread that polls it.
pub(super) struct Drive {
    id: usize,
    driver: Arc<Driver>,
    /// Set at the first poll: the reactor's registration, and the thread's.
    started: Option<(Readiness, Own)>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drive {
    /// The task for `driver`, a ring of backend `id`'s own for this thread.
    pub(super) fn new(id: usize, driver: Arc<Driver>) -> Self {
        Drive { id, driver, started: None, _not_send: std::marker::PhantomData }
    }

    /// Registers the ring as this thread's at the first poll: `false` if another drive task
    /// works this backend on this thread already, or the reactor refuses the ring.
    fn start(&mut self) -> bool {
        if own_ring(self.id).is_some() {
            return false;
        }
        let readiness = match Readiness::new(&self.driver) {
            Ok(readiness) => readiness,
            Err(e) => {
                tracing::debug!(error = %e, "no reactor takes the ring: the thread's submissions stay on the shared rings");
                return false;
            }
        };
        let Some(own) = Own::register(self.id, &self.driver, false) else { return false };
        self.started = Some((readiness, own));
        true
    }
}

impl Future for Drive {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.started.is_none() && !this.start() {
            return Poll::Ready(());
        }
        for _ in 0..PASSES_PER_POLL {
            if !this.driver.drive_pass(cx.waker()) {
                // The backend is shutting down: its reaper reaps what is left.
                return Poll::Ready(());
            }
            let (readiness, _) = this.started.as_mut().expect("registered at the first poll");
            match readiness.poll_readable(cx) {
                // Completions came since the pass (or during it): another pass.
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "the reactor lost the ring: the reaper reaps it");
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    // Submissions pushed while delivering (room freed starts queued batches):
                    // entered next tick, with whatever the tasks it woke submit meanwhile.
                    if this.driver.needs_pass() {
                        cx.waker().wake_by_ref();
                    }
                    return Poll::Pending;
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Drive {
    fn drop(&mut self) {
        // Started, its registration ends the ring's work here; never started, nothing was
        // routed to the ring, whose reaper stops now.
        if self.started.take().is_none() {
            self.driver.shut_down();
        }
    }
}

/// Runs `future` to completion on this thread with `driver` as the thread's own ring (see
/// [`run_on`]): a new one, or the one its last `block_on` left ([`idle_ring`]), kept for the
/// next one afterwards. `Err(future)`, not polled, if the thread cannot take it (its locals are
/// being torn down); the ring is shut down then.
pub(super) fn run_here(
    id: usize,
    driver: Arc<Driver>,
    future: Pin<&mut dyn Future<Output = ()>>,
) -> Result<(), Pin<&mut dyn Future<Output = ()>>> {
    // Ends the ring's work here as a dropped drive task does, however `future` ends, and keeps
    // the ring for the thread's next `block_on`.
    let Some(_own) = Own::register(id, &driver, true) else {
        driver.shut_down();
        return Err(future);
    };
    // The loop below parks in the enter that submits what a tick deferred.
    driver.defer_all(true);
    run_on(&driver, future);
    Ok(())
}

/// Runs `future` to completion on this thread, working `driver` (the thread's own ring) here
/// between polls: with nothing left to poll, the thread parks in the kernel, in the
/// `io_uring_enter` that submits what the poll deferred, until a completion comes or a waker on
/// another thread sends a NOP to wake it; then one pass delivers what completed. So one tick's
/// operations cost one kernel entry, which also waits for the next: no reactor's wait beside it.
/// Inside a drive task's executor (a `block_on` there) it works that task's ring the same way,
/// leaving the task's waker as it is.
pub(super) fn run_on(driver: &Arc<Driver>, mut future: Pin<&mut dyn Future<Output = ()>>) {
    let signal = Arc::new(Signal { state: AtomicU8::new(RUNNING), driver: Arc::downgrade(driver) });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        signal.state.store(RUNNING, Ordering::SeqCst);
        if future.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        if signal.state.compare_exchange(RUNNING, PARKED, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            // Nothing to poll: the enter that submits what the poll deferred also waits for
            // the next completion (at once if one is there), or a waker's NOP.
            driver.park_in_kernel();
            // Running before the pass, whose completions wake this thread's own tasks: they need
            // no NOP (the loop polls again anyway).
            signal.state.store(RUNNING, Ordering::SeqCst);
        }
        // Woken during the poll, or back from the kernel: what was deferred is entered and what
        // completed delivered, then the future is polled again.
        if !driver.pass_here() {
            // The backend shut down (it cannot while its manager's `block_on` runs): as on any
            // other backend from here.
            return crate::backend::park_until_ready(future);
        }
    }
}

/// Polling the future, or about to.
const RUNNING: u8 = 0;
/// Parked in the kernel (or about to be): a waker must send a NOP.
const PARKED: u8 = 1;
/// Woken while running: poll again before parking.
const NOTIFIED: u8 = 2;

/// The waker of [`run_here`]'s future.
struct Signal {
    state: AtomicU8,
    driver: std::sync::Weak<Driver>,
}

impl std::task::Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A thread that parked (or is about to) is sent a NOP; its enter returns with the NOP's
        // completion (or at once, if the NOP comes first).
        if self.state.swap(NOTIFIED, Ordering::SeqCst) == PARKED
            && let Some(driver) = self.driver.upgrade()
        {
            driver.wake_parked();
        }
    }
}

/// A thread's registration of its own ring for a backend: while it lives, the thread's
/// submissions to that backend go to the ring, worked on this thread (a drive task, or
/// [`run_here`]); dropped, they go to the shared rings again, and the ring's reaper reaps what
/// is left, then stops.
struct Own {
    id: usize,
    driver: Arc<Driver>,
    /// Kept idle for the thread's next `block_on` when dropped, rather than shut down.
    keep: bool,
}

impl Own {
    /// `None` if the thread has a ring of its own for backend `id` already, or its locals are
    /// being torn down.
    fn register(id: usize, driver: &Arc<Driver>, keep: bool) -> Option<Own> {
        let fresh = OWN
            .try_with(|own| {
                let mut own = own.borrow_mut();
                let fresh = own.iter().all(|(of, _)| *of != id);
                if fresh {
                    own.push((id, driver.clone()));
                }
                fresh
            })
            .unwrap_or(false);
        fresh.then(|| {
            driver.set_driving(true);
            Own { id, driver: driver.clone(), keep }
        })
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        let _ = OWN.try_with(|own| own.borrow_mut().retain(|(id, _)| *id != self.id));
        self.driver.defer_all(false);
        self.driver.set_driving(false);
        if self.keep {
            keep_idle(self.id, self.driver.clone());
        } else {
            self.driver.shut_down();
        }
    }
}

/// The ring's descriptor, for a reactor: readable while completions wait to be taken. Holds the
/// ring open.
struct RingFd(Arc<Driver>);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.ring_fd()
    }
}

impl AsFd for RingFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is the ring's, open for as long as its `Driver` lives, which
        // `self` keeps alive.
        unsafe { BorrowedFd::borrow_raw(self.0.ring_fd()) }
    }
}

/// Whose reactor tells the task that completions came.
enum Readiness {
    /// Tokio's, when the task runs inside a tokio runtime.
    #[cfg(feature = "tokio")]
    Tokio(tokio::io::unix::AsyncFd<RingFd>),
    /// Async-io's otherwise (driven on this thread inside `async_io::block_on`, and by its own
    /// thread elsewhere).
    AsyncIo(async_io::Async<RingFd>),
}

impl Readiness {
    fn new(driver: &Arc<Driver>) -> io::Result<Self> {
        #[cfg(feature = "tokio")]
        if tokio::runtime::Handle::try_current().is_ok() {
            let interest = tokio::io::Interest::READABLE;
            // SAFETY: the `RingFd` moved into the `AsyncFd` keeps the ring, and so its
            // descriptor, open, and `as_raw_fd` returns that same descriptor, for as long as the
            // `AsyncFd` lives; nothing here closes or replaces it.
            let register =
                || unsafe { tokio::io::unix::AsyncFd::register_with_interest(RingFd(driver.clone()), interest) };
            // tokio panics where the runtime was built without IO: async-io's reactor then
            // (the panic hook still reports it; under `panic = "abort"` it aborts: build the
            // runtime with IO, as any that runs sockets is).
            if let Ok(registered) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(register)) {
                return registered.map(Readiness::Tokio).map_err(|e| e.into_parts().1);
            }
        }
        async_io::Async::new_nonblocking(RingFd(driver.clone())).map(Readiness::AsyncIo)
    }

    /// Ready once the ring turned readable since the last time this returned ready.
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            #[cfg(feature = "tokio")]
            Readiness::Tokio(fd) => match fd.poll_read_ready(cx) {
                Poll::Ready(Ok(mut ready)) => {
                    ready.clear_ready();
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            Readiness::AsyncIo(fd) => fd.poll_readable(cx),
        }
    }
}
