//! [`TokioBackend`]: operations on a tokio runtime.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, OnceLock};

use rustix::io::Errno;
use tokio::io::unix::AsyncFd;
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use super::lanes::{Drainer, Lanes};
use super::net_ops::{Interest, Readiness};
use super::{Backend, Batch, Capabilities, Task, net_ops, pool};
use crate::op::OpError;
use crate::process::Descriptor;

/// Runs operations on a tokio runtime: file operations on its blocking pool (`spawn_blocking`,
/// as `tokio::fs` does, but a few tasks per process that each run its operations one after
/// another, not a task each), sockets on its reactor (`AsyncFd`), tasks on its workers.
///
/// Which runtime:
/// - [`TokioBackend::with_handle`]: the runtime you give;
/// - [`TokioBackend::new`]: the current runtime if called inside a multi-thread one, otherwise a
///   small runtime of its own (two workers), shut down when the backend is dropped. A
///   current-thread runtime is not borrowed: it only makes progress while its owner polls it,
///   and a blocking `wait_completion` from inside it would then wait forever.
#[derive(Debug)]
pub struct TokioBackend {
    handle: Handle,
    owned: Option<Runtime>,
    lanes: Arc<Lanes>,
}

impl TokioBackend {
    /// On the current multi-thread runtime, or on a runtime of its own (see above).
    pub fn new() -> std::io::Result<Self> {
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => Ok(Self::with_handle(h)),
            _ => Self::owned(),
        }
    }

    /// On the runtime behind `handle`, which must outlive the operations.
    pub fn with_handle(handle: Handle) -> Self {
        TokioBackend { handle, owned: None, lanes: pool::file_lanes() }
    }

    /// On a runtime of its own with two worker threads.
    pub fn owned() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ai-os-kernel-tokio")
            .enable_all()
            .build()?;
        Ok(TokioBackend { handle: rt.handle().clone(), owned: Some(rt), lanes: pool::file_lanes() })
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for TokioBackend {
    fn drop(&mut self) {
        // The last reference may go away on one of the runtime's own threads, where a blocking
        // shutdown would panic.
        if let Some(rt) = self.owned.take() {
            rt.shutdown_background();
        }
    }
}

impl Backend for TokioBackend {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn capabilities(&self) -> Capabilities {
        pool::pool_window()
    }

    fn spawn(&self, task: Task) {
        drop(self.handle.spawn(task));
    }

    /// File operations go to their processes' lanes, drained on the blocking pool; socket
    /// operations whose answer is already there complete at once, the rest wait in a task on the
    /// reactor.
    fn submit(&self, batch: Batch) {
        pool::start_in_lanes(
            batch,
            &self.lanes,
            |sub| {
                let reactor = Reactor(self.handle.clone());
                self.spawn(Box::pin(pool::run_waiting(
                    sub,
                    move |op| async move { net_ops::execute(op, &reactor).await },
                )))
            },
            |drainer| drain(self.handle.clone(), drainer),
        );
    }
}

/// Runs `drainer` on the blocking pool of `handle`'s runtime, and the task that goes on with its
/// lane after its turn at the back of the pool's queue.
fn drain(handle: Handle, drainer: Drainer) {
    let on = handle.clone();
    drop(on.spawn_blocking(move || {
        if let Some(next) = drainer.run() {
            drain(handle, next);
        }
    }));
}

/// The runtime's reactor, which socket operations wait on.
struct Reactor(Handle);

impl Readiness for Reactor {
    fn retry<T: Send>(
        &self,
        d: &Descriptor,
        interest: Interest,
        mut attempt: impl FnMut() -> Result<T, Errno> + Send,
    ) -> impl Future<Output = Result<T, OpError>> + Send {
        let held = d
            .registration(|fd| Ok(Waits { fd, registered: Mutex::new(None), refused: OnceLock::new() }))
            .and_then(|w| w.hold(&self.0));
        async move {
            let held = held?;
            let interest = match interest {
                Interest::Read => tokio::io::Interest::READABLE,
                Interest::Write => tokio::io::Interest::WRITABLE,
            };
            held.source().async_io(interest, |_| attempt().map_err(io::Error::from)).await.map_err(OpError::from)
        }
    }
}

/// A descriptor's registration with the runtime's reactor: made when an operation starts waiting
/// on it, dropped (deregistered) when the last one waiting stops. tokio keeps a registration for
/// every edge of readiness, waited for or not, and wakes its reactor's thread for each: one kept
/// while nothing waits would have every send to the socket (a peer's, or another tenant's)
/// pay for a wake-up of that thread.
struct Waits {
    fd: Arc<OwnedFd>,
    /// The registration and how many operations wait on it.
    registered: Mutex<Option<(Arc<Source>, usize)>>,
    /// Why the reactor refused it, for good (a runtime without IO, a descriptor epoll does not
    /// take): asked once, not at every wait.
    refused: OnceLock<OpError>,
}

/// A descriptor registered with the reactor.
type Source = AsyncFd<Arc<OwnedFd>>;

/// One operation's wait on a [`Waits`]: its registration, made if it is the first.
struct Held<'a> {
    waits: &'a Waits,
    source: Option<Arc<Source>>,
}

impl Waits {
    fn hold(&self, handle: &Handle) -> Result<Held<'_>, OpError> {
        if let Some(refused) = self.refused.get() {
            return Err(refused.clone());
        }
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        let source = match registered.as_mut() {
            Some((source, waiting)) => {
                *waiting += 1;
                source.clone()
            }
            None => {
                let made = register(handle, self.fd.clone()).map_err(OpError::from);
                let source = Arc::new(made.inspect_err(|e| drop(self.refused.set(e.clone())))?);
                *registered = Some((source.clone(), 1));
                source
            }
        };
        Ok(Held { waits: self, source: Some(source) })
    }
}

impl Held<'_> {
    fn source(&self) -> &Source {
        self.source.as_deref().expect("held until dropped")
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.source.take());
        let mut registered = self.waits.registered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, waiting)) = registered.as_mut() {
            *waiting -= 1;
            if *waiting == 0 {
                // Deregistered under the lock: a wait starting meanwhile registers anew only
                // once this registration is gone (the reactor refuses a second one).
                registered.take();
            }
        }
    }
}

/// Registers `fd` with the reactor of `handle`'s runtime, for reading and writing.
fn register(handle: &Handle, fd: Arc<OwnedFd>) -> io::Result<Source> {
    // The registration belongs to this backend's runtime, whichever thread asks.
    let _in_runtime = handle.enter();
    let both = tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE;
    // SAFETY: `fd` is an `Arc<OwnedFd>` moved into the `AsyncFd`: it keeps the descriptor open,
    // and `as_raw_fd` returns the same number, for as long as the `AsyncFd` lives; no code here
    // closes or replaces the descriptor.
    let register = || unsafe { AsyncFd::register_with_interest(fd, both) };
    // tokio panics when the runtime was built without IO; make that a clear error.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(register)) {
        Ok(done) => done.map_err(|e| e.into_parts().1),
        Err(_) => Err(io::Error::other("the tokio runtime has IO disabled: build it with enable_io()")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(w: &Waits) -> Option<usize> {
        w.registered.lock().unwrap().as_ref().map(|(_, n)| *n)
    }

    /// A descriptor is registered while operations wait on it, once however many do, and
    /// deregistered when the last stops: registered anew afterwards (a registration left behind
    /// would make the reactor refuse the next one).
    #[test]
    fn a_descriptor_is_registered_only_while_waited_on() {
        let backend = TokioBackend::owned().unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let w = Waits { fd: Arc::new(OwnedFd::from(a)), registered: Mutex::new(None), refused: OnceLock::new() };
        assert_eq!(waiting(&w), None);
        let first = w.hold(backend.handle()).unwrap();
        let second = w.hold(backend.handle()).unwrap();
        assert_eq!(waiting(&w), Some(2));
        assert!(Arc::ptr_eq(first.source.as_ref().unwrap(), second.source.as_ref().unwrap()), "one registration");
        drop(first);
        assert_eq!(waiting(&w), Some(1));
        drop(second);
        assert_eq!(waiting(&w), None, "deregistered with the last wait");
        for _ in 0..3 {
            let again = w.hold(backend.handle()).expect("registered anew");
            assert_eq!(waiting(&w), Some(1));
            drop(again);
        }
    }

    /// A descriptor the reactor refuses (epoll takes no regular file) is refused at every wait
    /// with the same error, asked of the reactor once.
    #[test]
    fn a_refused_registration_is_remembered() {
        let backend = TokioBackend::owned().unwrap();
        let file = tempfile::tempfile().unwrap();
        let w = Waits { fd: Arc::new(OwnedFd::from(file)), registered: Mutex::new(None), refused: OnceLock::new() };
        let first = w.hold(backend.handle()).err().expect("epoll refuses a regular file");
        assert_eq!(first.errno(), libc::EPERM);
        assert!(w.refused.get().is_some(), "remembered");
        let again = w.hold(backend.handle()).err().expect("refused again");
        assert_eq!(again.errno(), first.errno());
        assert_eq!(waiting(&w), None);
    }
}
