//! The cancellation signal shared by a running operation and whoever may cancel it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

/// Set once by `cancel`, a dropped future or `destroy_ring`; read by the backend running the
/// operation. A backend that can stop an operation midway (a socket wait, an io_uring request)
/// watches it; one that cannot lets the operation finish and report what really happened.
#[derive(Default)]
pub struct CancelToken {
    cancelled: AtomicBool,
    waker: AtomicWaker,
    hook: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken").field("cancelled", &self.is_cancelled()).finish()
    }
}

impl CancelToken {
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Ready once cancellation is requested.
    pub fn poll_cancelled(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_cancelled() {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // Checked again: a cancel between the first check and the registration would be missed.
        if self.is_cancelled() { Poll::Ready(()) } else { Poll::Pending }
    }

    /// Calls `hook` when cancellation is requested (at once if it already was): how a backend
    /// that cannot poll, such as io_uring's, learns to cancel. Only the first hook is kept; it may
    /// run twice when the two race, so it must be harmless to repeat.
    pub fn on_cancel(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.hook.set(Box::new(hook));
        if self.is_cancelled() {
            self.run_hook();
        }
    }

    fn run_hook(&self) {
        if let Some(hook) = self.hook.get() {
            hook();
        }
    }

    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.waker.wake();
        self.run_hook();
    }
}
