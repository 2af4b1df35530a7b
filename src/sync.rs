//! The synchronisation primitives of the delivery core (rings, cancellation, the executor).
//!
//! A normal build uses `std`'s. Built with `RUSTFLAGS="--cfg ai_os_kernel_loom"`, they are
//! loom's model-checked stand-ins, so the loom tests (`src/syscalls/iouring/loom_tests.rs`)
//! explore every interleaving of the ring's state machine: see `scripts/loom.sh`.

#[cfg(not(ai_os_kernel_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize};
#[cfg(not(ai_os_kernel_loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(ai_os_kernel_loom))]
pub(crate) use atomic_waker::AtomicWaker;

#[cfg(ai_os_kernel_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize};
#[cfg(ai_os_kernel_loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

/// loom's `AtomicWaker` under the method names of the `atomic-waker` crate's.
#[cfg(ai_os_kernel_loom)]
#[derive(Default)]
pub(crate) struct AtomicWaker(loom::future::AtomicWaker);

#[cfg(ai_os_kernel_loom)]
impl AtomicWaker {
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.0.register_by_ref(waker);
    }

    pub(crate) fn wake(&self) {
        self.0.wake();
    }
}

/// Locks `m`, recovering from poisoning: no code path panics while holding the delivery core's
/// locks, but a poisoned lock must still deliver.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
