//! The cancellation signal shared by a running operation and whoever may cancel it.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use crate::sync::{AtomicBool, AtomicWaker, Mutex};

/// What stops the operations a backend keeps by a key of its own (io_uring's requests, by their
/// `user_data`): told once, with the operation's key, when its cancellation is asked for. Held
/// weakly by the ring beside the operation, so registering one allocates nothing and takes only
/// the ring's lock (see `SyscallCompletionRing::stop_with`); a [`CancelToken`] is for backends
/// that poll for cancellation.
pub(crate) trait Stop: Send + Sync {
    /// Asks the backend to stop the operation it keeps as `key` (harmless if it already ended).
    fn stop(&self, key: u64);
}

/// A hook run on cancellation.
type Hook = Box<dyn Fn() + Send + Sync>;

/// Set once by `cancel`, a dropped future or `destroy_ring`; read by the backend running the
/// operation. A backend that can stop an operation midway (a socket wait, an io_uring request)
/// watches it; one that cannot lets the operation finish and report what really happened.
#[derive(Default)]
pub struct CancelToken {
    cancelled: AtomicBool,
    waker: AtomicWaker,
    /// The hook, and whether it ran. A lock, not a `OnceLock` beside the flag: registering a
    /// hook and cancelling each write one place and read the other, and only a common lock
    /// guarantees that one of the two sides sees the other's write (the loom tests check it).
    hook: Mutex<HookState>,
}

#[derive(Default)]
struct HookState {
    hook: Option<Hook>,
    ran: bool,
}

impl HookState {
    /// Runs the hook unless it already ran.
    fn run_once(&mut self) {
        if let Some(hook) = self.hook.as_ref().filter(|_| !self.ran) {
            self.ran = true;
            hook();
        }
    }
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken").field("cancelled", &self.is_cancelled()).finish()
    }
}

impl CancelToken {
    /// A token, cancelled already or not.
    pub(crate) fn new(cancelled: bool) -> Self {
        CancelToken { cancelled: AtomicBool::new(cancelled), ..CancelToken::default() }
    }

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

    /// Calls `hook` once when cancellation is requested (at once if it already was): how a
    /// backend that cannot poll, such as io_uring's, learns to cancel. Only the first hook is
    /// kept, and it runs at most once however registration and cancellation race. It runs under
    /// the token's lock, so it must not touch the token.
    pub fn on_cancel(&self, hook: impl Fn() + Send + Sync + 'static) {
        let mut state = crate::sync::lock(&self.hook);
        if state.hook.is_none() {
            state.hook = Some(Box::new(hook));
        }
        if self.is_cancelled() {
            state.run_once();
        }
    }

    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.waker.wake();
        crate::sync::lock(&self.hook).run_once();
    }
}
