//! The cancellation signal shared by a running operation and whoever may cancel it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

/// Set once by `cancel`, a dropped future or `destroy_ring`; read by the backend running the
/// operation. A backend that can stop an operation midway (a socket wait, an io_uring request)
/// watches it; one that cannot lets the operation finish and report what really happened.
#[derive(Debug, Default)]
pub struct CancelToken {
    cancelled: AtomicBool,
    waker: AtomicWaker,
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

    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.waker.wake();
    }
}
