//! [`UringBackend`]: the kernel's io_uring, for real.
//!
//! A batch from the executor becomes one `io_uring_enter`; a reaper thread waits for completions
//! and delivers them in bulk. A thread that runs a drive task ([`Backend::drive`], see the `local` module)
//! has a ring of its own instead: its submissions are entered once per tick of its executor and
//! its completions taken on it. Every buffer, path and descriptor an operation hands the kernel is
//! owned by the in-flight table until its completion arrives, whatever happened to the future that
//! asked. Sockets wait in the kernel too (`ACCEPT`, `CONNECT`, `SEND`, `RECV`, `SENDMSG`,
//! `RECVMSG`; a `Read` or `Write` of a socket is a `RECV` or `SEND`): a parked accept or receive
//! holds no thread (one the kernel stops polling, woken too often for nothing, holds one of its
//! io-wq workers at most a scheduler tick, the socket's timeout, and goes back to wait; see
//! `net_ops::KERNEL_WAIT`), and never surfaces `EAGAIN`. A write that could raise a signal (a
//! FIFO's; a regular file's under a finite `RLIMIT_FSIZE`) carries `IOSQE_ASYNC`, so that an io-wq
//! worker, whose signals are blocked, runs it instead of the host's submitting thread. What the
//! kernel cannot do here (opcodes it lacks, `Lseek` and `Close` among them; socket requests where
//! it would not wait on a non-blocking socket) runs on a fallback [`BlockingBackend`]; the calls
//! that only set a socket up or ask about it (`Socket`, `Bind`, `Listen`, `LocalAddr`, `PeerAddr`,
//! `Shutdown`) touch no file system, never wait, and run inline, at submission.
//!
//! Each operation family holds how its operations are prepared as requests, how their entries
//! are built and how their completions become outcomes (`file_ops`'s and `net_ops`'s `uring`
//! modules); this module holds what is generic to io_uring: the rings, the in-flight table, the
//! descriptors a batch names, and the dispatch to the families.

mod driver;
mod fixed;
mod local;
mod prepare;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use super::{Backend, Batch, BlockingBackend, Capabilities, Completer, LocalTask, OpOutcome, Operation, Task, net_ops};
use crate::op::Class;
use crate::op::SyscallOpType;
use crate::process::{DescriptorKind, Process};
use driver::Driver;
use prepare::Descriptors;

/// The submission queue size: also the executor's in-flight window.
const ENTRIES: u32 = 256;

/// The environment variable that makes io_uring setup fail with the given errno (`EPERM`,
/// `ENOSYS`, `ENOMEM` or a number), as a disabled or filtered kernel would: a test hook for the
/// fallback path.
pub const SETUP_FAILURE_ENV: &str = "AI_OS_KERNEL_URING_SETUP_ERRNO";

/// Executes operations with the kernel's io_uring (Linux 5.6 and later).
///
/// Two kernel rings, each with its reaper: one for file requests, which mostly complete inside
/// the enter that submits them (its reaper sleeps while nothing is left in flight), and one for
/// socket requests, which wait for their peer (its reaper waits in the kernel while any is
/// parked). Kept apart, a parked accept never wakes a reaper for every page-cached read that
/// some submitter already took, and socket requests never wait behind file requests in one
/// submission queue.
pub struct UringBackend {
    /// Tells this backend's rings apart from another's in a thread's [`local`] registry.
    id: usize,
    driver: Arc<Driver>,
    /// The ring for socket requests; `None` where the kernel would not wait on a non-blocking
    /// socket (they run on the fallback then).
    net: Option<Arc<Driver>>,
    fallback: Arc<BlockingBackend>,
    /// The rings of threads with drive tasks ([`UringBackend::drive`]), shut down with the
    /// backend (their tasks end then).
    own_rings: std::sync::Mutex<Vec<std::sync::Weak<Driver>>>,
    /// Socket calls tried at once, before (or instead of) their request, counted for tests.
    #[cfg(test)]
    tried_at_once: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for UringBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringBackend").field("in_flight", &self.in_flight()).finish()
    }
}

/// Where an operation runs.
enum Route {
    /// The file ring.
    Kernel,
    /// The socket ring (a socket request, or a `Read` or `Write` of a socket).
    Net,
    Inline,
    Fallback,
}

/// What the kernel offers this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The io_uring opcodes the crate uses, by name, and whether the kernel supports each.
    pub opcodes: Vec<(&'static str, bool)>,
    /// Whether socket requests (accept, connect, send, receive) run in the kernel: only where it
    /// waits on this crate's non-blocking sockets itself; elsewhere they run on the fallback.
    pub sockets_in_kernel: bool,
}

impl UringBackend {
    /// Sets up an io_uring instance. Fails as the kernel does where io_uring is disabled
    /// (`kernel.io_uring_disabled`, a container's seccomp profile: `EPERM`), missing (`ENOSYS`),
    /// or out of locked memory (`ENOMEM`); [`IoUringManager::new`] then falls back.
    ///
    /// [`IoUringManager::new`]: crate::syscalls::IoUringManager::new
    pub fn new() -> io::Result<Self> {
        Self::start(true)
    }

    /// Like [`new`](Self::new), but socket requests wait on the fallback pool's readiness
    /// reactor even where the kernel could hold them: what a kernel that would not wait on a
    /// non-blocking socket gets, and a choice for a host that wants io_uring for files only.
    pub fn with_sockets_on_fallback() -> io::Result<Self> {
        Self::start(false)
    }

    fn start(kernel_sockets: bool) -> io::Result<Self> {
        if let Ok(forced) = std::env::var(SETUP_FAILURE_ENV) {
            return Err(forced_failure(&forced));
        }
        static IDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let driver = Driver::start(ENTRIES, false, false)?;
        let net =
            if kernel_sockets { Some(Driver::start(ENTRIES, true, false)?).filter(|d| d.sockets_wait()) } else { None };
        Ok(UringBackend {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            driver,
            net,
            fallback: Arc::new(BlockingBackend::new()),
            own_rings: Default::default(),
            #[cfg(test)]
            tried_at_once: Default::default(),
        })
    }

    /// A task that gives the thread polling it a kernel ring of its own and works it there
    /// (spawn it on the thread's local executor: `tokio::task::spawn_local`, a smol
    /// `LocalExecutor`): the thread's submissions of one executor tick reach the kernel in one
    /// `io_uring_enter`, and their completions are taken on this thread as the executor's
    /// reactor reports them, with no reaper thread in between. `None` if this thread has one
    /// already. The task ends with the backend; when it ends (or is dropped) the thread's
    /// submissions go to the shared rings again. See `IoUringManager::drive`.
    fn own_ring_task(&self) -> Option<local::Drive> {
        if local::own_ring(self.id).is_some() {
            return None;
        }
        Some(local::Drive::new(self.id, self.own_ring()?))
    }

    /// A new ring for one thread's own use, shut down with the backend.
    fn own_ring(&self) -> Option<Arc<Driver>> {
        let driver = match Driver::start(ENTRIES, self.net.is_some(), true) {
            Ok(driver) => driver,
            Err(e) => {
                tracing::debug!(error = %e, "no ring of its own for this thread");
                return None;
            }
        };
        let mut own = self.own_rings.lock().unwrap_or_else(|e| e.into_inner());
        own.retain(|ring| ring.strong_count() > 0);
        own.push(Arc::downgrade(&driver));
        Some(driver)
    }

    /// The opcodes this crate uses and whether the kernel supports them.
    pub fn probe(&self) -> Probe {
        Probe {
            opcodes: prepare::OPCODES.iter().map(|&(name, code)| (name, self.driver.supports(code))).collect(),
            sockets_in_kernel: self.net.is_some(),
        }
    }

    /// Operations handed to the kernel and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.driver.in_flight() + self.net.as_ref().map_or(0, |net| net.in_flight())
    }

    /// The ring `op` goes to as it is, with no attempt at submission: the file ring for a file
    /// request, the socket ring for a `Read` or `Write` of a socket (a socket call is first tried
    /// at once).
    #[inline]
    fn plain_ring(&self, op: &SyscallOpType, process: &Process, fds: &mut Descriptors) -> Option<&Arc<Driver>> {
        match self.route(op, process, fds) {
            Route::Kernel => Some(&self.driver),
            Route::Net if !op.is_network() => self.net.as_ref(),
            _ => None,
        }
    }

    /// Whether `op` of `process` goes to a thread's own ring as it is: every kernel request,
    /// socket requests included (none is tried at once there).
    #[inline]
    fn as_is_to_own(&self, op: &SyscallOpType, process: &Process, fds: &mut Descriptors) -> bool {
        matches!(self.route(op, process, fds), Route::Kernel | Route::Net)
    }

    /// The ring all of `ops` (each with its process) go to as they are, if they share one.
    fn plain_ring_of<'p>(
        &self,
        mut ops: impl Iterator<Item = (&'p SyscallOpType, &'p Arc<Process>)>,
        fds: &mut Descriptors,
    ) -> Option<&Arc<Driver>> {
        let (op, process) = ops.next()?;
        let first = self.plain_ring(op, process, fds)?;
        ops.all(|(op, process)| self.plain_ring(op, process, fds).is_some_and(|d| Arc::ptr_eq(d, first)))
            .then_some(first)
    }

    /// Where `op` of `process` runs: in the kernel (the file ring, or the socket ring), inline
    /// (not io_uring operations), or on the fallback. A `Read` or `Write` of a socket is a socket
    /// request (a `RECV` or `SEND`): where the kernel would not wait on sockets, it runs on the
    /// fallback as the others do. A `Read` or `Write` of a FIFO or a character device always
    /// does: it waits on the fallback's reactor, where a read of a FIFO with no writer yet waits
    /// for one (the kernel's `READ` would report end of file) and a terminal cannot stop the
    /// host. So does a `ReadInto`, `WriteFrom`, `ReadFixed` or `WriteFixed` at the position. Only these have their
    /// descriptor looked up here.
    #[inline]
    fn route(&self, op: &SyscallOpType, process: &Process, fds: &mut Descriptors) -> Route {
        match op {
            _ if op.traits().class == Class::Inline => Route::Inline,
            SyscallOpType::Read { .. }
            | SyscallOpType::Write { .. }
            | SyscallOpType::ReadInto { offset: None, .. }
            | SyscallOpType::WriteFrom { offset: None, .. }
            | SyscallOpType::ReadFixed { offset: None, .. }
            | SyscallOpType::WriteFixed { offset: None, .. } => {
                match net_ops::read_or_write_of_peer(op, |fd| fds.get(process, fd)) {
                    Some(d) if d.kind() == DescriptorKind::Socket => self.net_route(op),
                    Some(_) => Route::Fallback,
                    None => self.file_route(op),
                }
            }
            // A process with a rate limit gets one result per submission: the kernel would give
            // more before it could be stopped.
            _ if op.is_multishot() && process.is_rate_limited() => Route::Fallback,
            // The kernel's multishot accept only while every connection it may take has room.
            SyscallOpType::AcceptMulti { sockfd } => match (&self.net, fds.get(process, *sockfd)) {
                (Some(net), Ok(d))
                    if net.multishot_accept()
                        && net_ops::uring::kernel_may_accept_all(process, &process.sandbox(), &d) =>
                {
                    self.net_route(op)
                }
                _ => Route::Fallback,
            },
            // In the kernel only where it receives many times, and the process has a buffer
            // group left there.
            SyscallOpType::RecvMulti { .. } => match &self.net {
                Some(net) if net.multishot_recv() && net.has_group_for(process) => self.net_route(op),
                _ => Route::Fallback,
            },
            _ if op.may_wait_on_peer() => self.net_route(op),
            _ => self.file_route(op),
        }
    }

    /// The file ring, if the kernel has the opcode.
    #[inline]
    fn file_route(&self, op: &SyscallOpType) -> Route {
        match prepare::opcode_of(op) {
            Some(code) if self.driver.supports(code) => Route::Kernel,
            _ => Route::Fallback,
        }
    }

    /// The socket ring, if there is one and the kernel has the opcode.
    fn net_route(&self, op: &SyscallOpType) -> Route {
        match (&self.net, prepare::opcode_of(op)) {
            (Some(net), Some(code)) if net.supports(code) => Route::Net,
            _ => Route::Fallback,
        }
    }

    /// A batch that is not all plain kernel requests, first on this thread and under no lock of
    /// the drivers': inline calls, the fallback's share, and, if `try_first`, socket requests
    /// tried at once (those that must wait go to the socket ring, in the batch's order). Kernel
    /// requests go to `file` and socket requests to `sockets` (the shared rings, or this
    /// thread's own for both).
    fn route_each(
        &self,
        batch: Batch,
        file: &Arc<Driver>,
        sockets: Option<&Arc<Driver>>,
        try_first: bool,
        fds: &mut Descriptors,
    ) {
        let mut kernel = Vec::new();
        let mut net = Vec::new();
        let mut answered = Vec::new();
        let mut elsewhere = Vec::new();
        for sub in batch.into_submissions() {
            match self.route(sub.op(), sub.process(), fds) {
                Route::Kernel => kernel.push(sub),
                Route::Net if !try_first || !sub.op().is_network() => net.push(sub),
                Route::Net => {
                    #[cfg(test)]
                    self.tried_at_once.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let tried = match sub.needs_rights() {
                        Ok(rights) => {
                            net_ops::try_now(sub.op(), sub.process(), rights.as_deref(), || sub.is_cancelled())
                        }
                        Err(e) => Some(Err(e)),
                    };
                    match tried {
                        Some(outcome) => answered.push((sub.into_completer(), outcome)),
                        None => net.push(sub),
                    }
                }
                Route::Inline => {
                    let (op, done) = sub.into_parts();
                    answered.push((done, inline(op)));
                }
                Route::Fallback => elsewhere.push(sub),
            }
        }
        Completer::complete_all(answered);
        if !elsewhere.is_empty() {
            self.fallback.submit(elsewhere.into_iter().collect());
        }
        // Everything answered at once (a socket's data was there): the drivers' locks are not
        // worth taking for nothing.
        if !kernel.is_empty() {
            self.to_kernel(file, kernel.into_iter().collect(), fds);
        }
        if let (Some(driver), false) = (sockets, net.is_empty()) {
            self.to_kernel(driver, net.into_iter().collect(), fds);
        }
    }
}

impl UringBackend {
    /// Hands `batch` to `driver`, and to the fallback what it cannot take (multishot receives
    /// with no buffer group left there for their process).
    fn to_kernel(&self, driver: &Arc<Driver>, batch: Batch, fds: &mut Descriptors) {
        let elsewhere = driver.submit(batch, fds);
        if !elsewhere.is_empty() {
            self.fallback.submit(elsewhere.into_iter().collect());
        }
    }
}

/// Runs an operation that never waits (the socket calls that only set a socket up) on the
/// calling thread.
fn inline(op: Operation) -> OpOutcome {
    let rights = op.needs_rights()?;
    net_ops::execute_now(op.op(), op.process(), rights.as_deref())
}

fn forced_failure(value: &str) -> io::Error {
    let errno = match value.trim() {
        "EPERM" => rustix::io::Errno::PERM.raw_os_error(),
        "ENOSYS" => rustix::io::Errno::NOSYS.raw_os_error(),
        "ENOMEM" => rustix::io::Errno::NOMEM.raw_os_error(),
        other => other.parse().unwrap_or(rustix::io::Errno::PERM.raw_os_error()),
    };
    io::Error::from_raw_os_error(errno)
}

impl Backend for UringBackend {
    fn name(&self) -> &'static str {
        "uring"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(ENTRIES as usize)
    }

    fn spawn(&self, task: Task) {
        self.fallback.spawn(task)
    }

    /// A batch of plain requests for one kernel ring goes there as it is, each run's ring kept
    /// once; anything else is routed request by request.
    ///
    /// On a thread with a drive task ([`Backend::drive`]), every kernel request
    /// goes to that thread's own ring instead.
    fn submit(&self, batch: Batch) {
        // The descriptors looked up to route the batch, kept for preparing its requests: one
        // lookup per request (and one per run of requests on one descriptor).
        let mut fds = Descriptors::default();
        if let Some(own) = local::own_ring(self.id) {
            // Every socket request goes to the kernel as it is: the tick's one enter submits it,
            // where a call tried at once would mostly fail (a receive posted before its data
            // comes) and cost a system call of its own.
            if batch.iter().all(|(op, process)| self.as_is_to_own(op, process, &mut fds)) {
                self.to_kernel(&own, batch, &mut fds);
            } else {
                let sockets = self.net.as_ref().map(|_| &own);
                self.route_each(batch, &own, sockets, false, &mut fds);
            }
        } else if let Some(driver) = self.plain_ring_of(batch.iter(), &mut fds) {
            self.to_kernel(driver, batch, &mut fds);
        } else {
            self.route_each(batch, &self.driver, self.net.as_ref(), true, &mut fds);
        }
    }

    fn drive(self: Arc<Self>) -> Option<LocalTask> {
        self.own_ring_task().map(|task| Box::pin(task) as LocalTask)
    }

    /// On a ring of the thread's own, parked in the kernel between ticks (see the `local`
    /// module's `run_here`): a new one, or the one the thread has already (a drive task's, or
    /// an outer `block_on`'s).
    fn run_here(self: Arc<Self>, future: Pin<&mut dyn Future<Output = ()>>) {
        if let Some(own) = local::own_ring(self.id) {
            return local::run_on(&own, future);
        }
        let Some(driver) = local::idle_ring(self.id).or_else(|| self.own_ring()) else {
            return super::park_until_ready(future);
        };
        if let Err(future) = local::run_here(self.id, driver, future) {
            super::park_until_ready(future);
        }
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        self.driver.shut_down();
        if let Some(net) = &self.net {
            net.shut_down();
        }
        for own in self.own_rings.get_mut().unwrap_or_else(|e| e.into_inner()).drain(..) {
            if let Some(own) = own.upgrade() {
                own.shut_down();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::UringBackend;
    use super::driver::Driver;
    use crate::op::open_flags::O_RDWR;
    use crate::sandbox::Policy;
    use crate::syscalls::{IoUringManager, OpResult, SyscallOpType as Op, SyscallSubmissionEntry};

    /// A manager on a real io_uring (and its driver) whose `pids` may bind UDP sockets on the
    /// loopback (a read of one is a plain kernel request that waits), and a directory they may use; `None`, said out loud, where io_uring is
    /// unavailable or holds no socket requests in the kernel.
    fn parked_setup(pids: &[crate::op::Pid]) -> Option<(Arc<Driver>, IoUringManager, tempfile::TempDir)> {
        let uring = match UringBackend::new() {
            Ok(uring) => Arc::new(uring),
            Err(e) => {
                eprintln!("io_uring unavailable ({e}): nothing to check here");
                return None;
            }
        };
        if !uring.probe().sockets_in_kernel {
            eprintln!("this kernel does not wait on sockets in io_uring: nothing to check here");
            return None;
        }
        let driver = uring.net.clone().expect("a socket ring");
        let m = IoUringManager::with_backend(uring);
        let dir = tempfile::tempdir().unwrap();
        for &pid in pids {
            m.set_policy(pid, policy(dir.path())).unwrap();
        }
        Some((driver, m, dir))
    }

    /// Files beneath `root`, UDP sockets on the loopback.
    fn policy(root: &std::path::Path) -> Policy {
        let lo: crate::sandbox::IpNet = "127.0.0.0/8".parse().unwrap();
        Policy::rooted(root).read_write().allow_bind(lo, ..)
    }

    /// A UDP socket of `pid` bound on the loopback, and its address: a `Recv` of it waits in the
    /// kernel until a datagram comes.
    fn parked_socket(m: &IoUringManager, pid: crate::op::Pid) -> (i32, std::net::SocketAddr) {
        let run = |op| {
            let seq = m.submit(pid, SyscallSubmissionEntry::new(pid, op, 0)).unwrap();
            m.wait_completion_timeout(pid, seq, Duration::from_secs(10)).unwrap().result
        };
        let OpResult::Fd(fd) = run(Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_DGRAM, protocol: 0 }) else {
            panic!("socket")
        };
        let lo = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        assert_eq!(run(Op::Bind { sockfd: fd, addr: lo }), OpResult::None);
        let OpResult::Addr(addr) = run(Op::LocalAddr { sockfd: fd }) else { panic!("local address") };
        (fd, addr)
    }

    fn until(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A write (or truncate) past the host's file size limit is `EFBIG` on io_uring too: the kernel raises
    /// SIGXFSZ at whichever thread runs the write, which must not be a thread of the host's
    /// (checked in a child process with a 4 KiB limit, which the signal would kill).
    #[test]
    fn iouring_a_write_past_the_file_size_limit_leaves_no_signal() {
        use crate::backend::file_ops::tests::with_file_size_limit;
        use crate::op::open_flags::O_CREAT;
        with_file_size_limit(
            "backend::uring::tests::iouring_a_write_past_the_file_size_limit_leaves_no_signal",
            || {
                let Ok(uring) = UringBackend::new() else { return };
                let m = IoUringManager::with_backend(Arc::new(uring));
                let dir = tempfile::tempdir().unwrap();
                m.set_policy(1, Policy::rooted(dir.path()).read_write()).unwrap();
                let run = |op| {
                    let seq = m.submit(1, SyscallSubmissionEntry::new(1, op, 0)).unwrap();
                    m.wait_completion_timeout(1, seq, Duration::from_secs(10)).unwrap()
                };
                let OpResult::Fd(fd) = run(Op::open("big", O_RDWR | O_CREAT)).result else { panic!("open") };
                assert_eq!(run(Op::WriteAt { fd, offset: 0, data: b"fits".to_vec() }).result, OpResult::Count(4));
                for op in [Op::WriteAt { fd, offset: 8192, data: b"past".to_vec() }, {
                    assert_eq!(run(Op::Lseek { fd, offset: 8192, whence: 0 }).result, OpResult::Offset(8192));
                    Op::Write { fd, data: b"past".to_vec() }
                }] {
                    let done = run(op);
                    assert_eq!(done.errno(), Some(rustix::io::Errno::FBIG.raw_os_error()), "{:?}", done.result);
                }
                // A truncate, an allocation, a vectored write (WRITEV) or a copy past it too.
                for op in [
                    Op::Ftruncate { fd, len: 8192 },
                    Op::Fallocate { fd, mode: 0, offset: 0, len: 8192 },
                    Op::WritevAt { fd, offset: 8192, bufs: vec![b"pa".to_vec(), b"st".to_vec()] },
                    Op::CopyRange { fd_in: fd, offset_in: 0, fd_out: fd, offset_out: 8192, len: 4 },
                ] {
                    let done = run(op);
                    assert_eq!(done.errno(), Some(rustix::io::Errno::FBIG.raw_os_error()), "{:?}", done.result);
                }
                assert!(run(Op::Ftruncate { fd, len: 2 }).status.is_success());
            },
        );
    }

    /// Threads submit batches of waiting reads and NOPs while their rings are cancelled and
    /// destroyed under them: every batch's ring is let go of in the end, nothing stays in the
    /// kernel.
    #[test]
    fn iouring_batch_rings_are_let_go_under_concurrent_cancels_and_destroys() {
        let Some((driver, m, dir)) = parked_setup(&[]) else { return };
        let workers: Vec<_> = (1..=4)
            .map(|pid| {
                let (m, root) = (m.clone(), dir.path().to_owned());
                std::thread::spawn(move || {
                    for round in 0..100 {
                        m.set_policy(pid, policy(&root)).unwrap();
                        let (fd, _) = parked_socket(&m, pid);
                        let ops = (0..8).map(|i| if i % 2 == 0 { Op::Read { fd, size: 8 } } else { Op::Nop });
                        let seqs = m
                            .submit_batch(pid, ops.map(|op| SyscallSubmissionEntry::new(pid, op, 0)).collect())
                            .unwrap();
                        if round % 3 == 0 {
                            for &seq in &seqs {
                                m.cancel(pid, seq).unwrap();
                            }
                        }
                        // The ring goes with whatever it still has in the kernel.
                        m.destroy_ring(pid).unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        until("every read left the kernel", || driver.in_flight() == 0);
        assert_eq!(driver.pinned_rings(), 0);
        assert_eq!(m.stats().pending, 0, "{:?}", m.stats());
    }

    /// The kernel cancels the requests of a thread that exits; a read (of a socket) that thread
    /// submitted is submitted again, rebuilt from what its table entry owns, and still gets its bytes.
    #[test]
    fn iouring_a_read_outlives_the_thread_that_submitted_it() {
        let Some((driver, m, _dir)) = parked_setup(&[1]) else { return };
        let (fd, addr) = parked_socket(&m, 1);
        let seq = {
            let m = m.clone();
            let recv = Op::Read { fd, size: 5 };
            std::thread::spawn(move || m.submit(1, SyscallSubmissionEntry::new(1, recv, 7))).join().unwrap().unwrap()
        };
        until("the receive is in the kernel", || driver.in_flight() == 1);
        // Long enough for the kernel to have cancelled it, and for it to be back.
        std::thread::sleep(Duration::from_millis(50));
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"hello", addr).unwrap();
        let done = m.wait_completion_timeout(1, seq, Duration::from_secs(10)).unwrap();
        assert_eq!((done.result, done.user_data), (OpResult::Bytes(b"hello".to_vec()), 7));
        assert_eq!((driver.in_flight(), driver.pinned_rings()), (0, 0));
    }

    /// A batch's ring is kept once, while any of its operations is in the kernel, and let go of
    /// when the last one completes, cancelled or not, or when its ring is destroyed under it.
    #[test]
    fn iouring_batch_rings_are_kept_while_their_operations_are_in_the_kernel() {
        let Some((driver, m, _dir)) = parked_setup(&[1, 2]) else { return };
        let run = |pid, ops: Vec<Op>| {
            let entries = ops.into_iter().map(|op| SyscallSubmissionEntry::new(pid, op, 0)).collect();
            m.submit_batch(pid, entries).unwrap()
        };
        let wait = |pid, seq| m.wait_completion_timeout(pid, seq, Duration::from_secs(10)).unwrap();
        // Batches that complete inside their enter keep nothing.
        for seq in run(1, vec![Op::Nop; 32]) {
            assert!(wait(1, seq).status.is_success());
        }
        assert_eq!(driver.pinned_rings(), 0);
        // Reads of a silent socket wait in the kernel: two batches, two rings kept.
        let ((fd1, _), (fd2, _)) = (parked_socket(&m, 1), parked_socket(&m, 2));
        let recv = |fd| Op::Read { fd, size: 8 };
        let reads1 = run(1, vec![recv(fd1), recv(fd1)]);
        let reads2 = run(2, vec![recv(fd2)]);
        until("all three reads are in the kernel", || driver.in_flight() == 3);
        assert_eq!(driver.pinned_rings(), 2);
        // One of two cancelled: the ring stays kept for the other.
        m.cancel(1, reads1[0]).unwrap();
        assert!(wait(1, reads1[0]).status.is_cancelled());
        assert_eq!(driver.pinned_rings(), 2);
        m.cancel(1, reads1[1]).unwrap();
        assert!(wait(1, reads1[1]).status.is_cancelled());
        until("pid 1's ring is let go", || driver.pinned_rings() == 1);
        // A ring destroyed under its read: the read is cancelled in the kernel and the ring let go.
        m.destroy_ring(2).unwrap();
        until("pid 2's read left the kernel", || driver.in_flight() == 0);
        assert_eq!(driver.pinned_rings(), 0);
        assert!(reads2[0] > 0);
        assert_eq!(m.stats().pending, 0);
    }

    /// One batch holding a socket send and a receive answered at once, a file read for the
    /// kernel, an inline seek, a receive that must wait and a NOP: each takes its own way, all
    /// complete with their own results, and nothing is left in flight.
    #[test]
    fn iouring_a_mixed_batch_routes_each_request_its_way() {
        use std::net::{IpAddr, Ipv4Addr, SocketAddr};
        let Some((driver, m, dir)) = parked_setup(&[]) else { return };
        std::fs::write(dir.path().join("data"), b"0123456789").unwrap();
        let lo: crate::sandbox::IpNet = "127.0.0.0/8".parse().unwrap();
        let policy = Policy::rooted(dir.path()).allow_bind(lo, ..).allow_listen().allow_connect(lo, ..);
        m.set_policy(1, policy).unwrap();
        let run = |op: Op| {
            let seq = m.submit(1, SyscallSubmissionEntry::new(1, op, 0)).unwrap();
            m.wait_completion_timeout(1, seq, Duration::from_secs(10)).unwrap().result
        };
        let fd = |r: OpResult| match r {
            OpResult::Fd(fd) => fd,
            other => panic!("expected a descriptor: {other:?}"),
        };
        let file = fd(run(Op::open("data", 0)));
        let listener = fd(run(Op::Socket { domain: 2, ty: 1, protocol: 0 }));
        run(Op::Bind { sockfd: listener, addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0) });
        run(Op::Listen { sockfd: listener, backlog: 4 });
        let OpResult::Addr(addr) = run(Op::LocalAddr { sockfd: listener }) else { panic!("no address") };
        let client = fd(run(Op::Socket { domain: 2, ty: 1, protocol: 0 }));
        let accept = m.submit(1, SyscallSubmissionEntry::new(1, Op::Accept { sockfd: listener }, 0)).unwrap();
        assert_eq!(run(Op::Connect { sockfd: client, addr }), OpResult::None);
        let OpResult::Accepted { fd: server, .. } =
            m.wait_completion_timeout(1, accept, Duration::from_secs(10)).unwrap().result
        else {
            panic!("accept failed")
        };

        let batch = vec![
            Op::Send { sockfd: client, data: b"ping".to_vec(), flags: 0 },
            Op::Recv { sockfd: server, size: 4, flags: 0 },
            Op::ReadAt { fd: file, offset: 3, size: 4 },
            Op::Lseek { fd: file, offset: 2, whence: 0 },
            Op::Recv { sockfd: client, size: 4, flags: 0 },
            Op::Nop,
        ];
        let seqs = m
            .submit_batch(
                1,
                batch.into_iter().enumerate().map(|(i, op)| SyscallSubmissionEntry::new(1, op, i as u64)).collect(),
            )
            .unwrap();
        // The client's receive waits for the reply, sent only now.
        assert_eq!(run(Op::Send { sockfd: server, data: b"pong".to_vec(), flags: 0 }), OpResult::Count(4));
        let results: Vec<OpResult> = seqs
            .iter()
            .map(|&seq| m.wait_completion_timeout(1, seq, Duration::from_secs(10)).unwrap().result)
            .collect();
        assert_eq!(
            results,
            [
                OpResult::Count(4),
                OpResult::Bytes(b"ping".to_vec()),
                OpResult::Bytes(b"3456".to_vec()),
                OpResult::Offset(2),
                OpResult::Bytes(b"pong".to_vec()),
                OpResult::None,
            ]
        );
        until("nothing is in the kernel", || driver.in_flight() == 0);
        assert_eq!(m.stats().pending, 0);
    }

    /// The io_uring kernel workers of this process now: its threads named `iou-wrk-<tid>`, where
    /// `tid` is the thread whose requests the worker runs.
    fn kernel_workers() -> Vec<String> {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
        // A thread that exits between the listing and the read is skipped.
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("iou-wrk-"))
            .map(|name| name.trim_end().to_owned())
            .collect()
    }

    /// A TCP socket of `pid`, made by the crate as every tenant's is, connected to a host end that
    /// sends each byte as soon as it is written. `pid` may connect on the loopback.
    fn connected(m: &IoUringManager, pid: crate::op::Pid) -> (i32, std::net::TcpStream) {
        let run = |op| {
            let seq = m.submit(pid, SyscallSubmissionEntry::new(pid, op, 0)).unwrap();
            m.wait_completion_timeout(pid, seq, Duration::from_secs(10)).unwrap().result
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = Op::Socket { domain: libc::AF_INET, ty: libc::SOCK_STREAM, protocol: 0 };
        let OpResult::Fd(sockfd) = run(socket) else { panic!("socket") };
        assert_eq!(run(Op::Connect { sockfd, addr: listener.local_addr().unwrap() }), OpResult::None);
        // Connected: the connection is queued on the listener, and taken at once.
        let (host, _) = listener.accept().unwrap();
        // Each byte leaves as it is written, not held back until the last one is acknowledged.
        host.set_nodelay(true).unwrap();
        (sockfd, host)
    }

    /// Parks `count` one-byte receives of `pid` on `sockfd`, in one batch; their sequence numbers.
    fn park_receives(m: &IoUringManager, pid: crate::op::Pid, sockfd: i32, count: usize) -> Vec<u64> {
        let recv = |i| SyscallSubmissionEntry::new(pid, Op::Recv { sockfd, size: 1, flags: 0 }, i as u64);
        m.submit_batch(pid, (0..count).map(recv).collect()).unwrap()
    }

    /// Writes `count` bytes (0, 1, ...) to `host` one at a time, the next only once one of `pid`'s
    /// receives took the last (each wakes every receive still waiting), all by `deadline`: the
    /// completions in the order they came, each checked to hold its byte; or the number of bytes
    /// received when the deadline passed.
    fn feed_one_at_a_time(
        m: &IoUringManager,
        pid: crate::op::Pid,
        host: &mut std::net::TcpStream,
        count: usize,
        deadline: Instant,
    ) -> Result<Vec<crate::syscalls::SyscallCompletionEntry>, usize> {
        use std::io::Write;
        let mut got = Vec::new();
        for i in 0..count {
            host.write_all(&[i as u8]).unwrap();
            while got.len() <= i {
                got.extend(m.reap_completions(pid, None).unwrap());
                if Instant::now() > deadline {
                    return Err(got.len());
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        for (i, done) in got.iter().enumerate() {
            assert!(done.status.is_success(), "receive {}: {:?} {:?}", done.user_data, done.status, done.errno());
            assert_eq!(done.result, OpResult::Bytes(vec![i as u8]), "the {i}th completion");
        }
        assert_eq!(got.len(), count);
        Ok(got)
    }

    /// Cancels every one of `seqs` that `got` does not hold, and checks that each ends cancelled;
    /// how many there were.
    fn cancel_the_rest(
        m: &IoUringManager,
        pid: crate::op::Pid,
        seqs: Vec<u64>,
        got: &[crate::syscalls::SyscallCompletionEntry],
    ) -> usize {
        let taken: std::collections::HashSet<u64> = got.iter().map(|done| done.seq).collect();
        let left: Vec<u64> = seqs.into_iter().filter(|seq| !taken.contains(seq)).collect();
        for &seq in &left {
            m.cancel(pid, seq).unwrap();
        }
        for &seq in &left {
            let done = m.wait_completion_timeout(pid, seq, Duration::from_secs(10)).unwrap();
            let errno = done.errno();
            assert!(done.status.is_cancelled(), "receive {} of pid {pid}: {:?} {errno:?}", done.user_data, done.status);
        }
        left.len()
    }

    /// 400 receives parked on one TCP socket, woken by 200 one-byte writes made one at a time:
    /// every byte wakes every receive, one takes it and the others wait again, until the kernel,
    /// done polling for those it woke too often, hands them to its io-wq workers, each of which
    /// blocks in the socket's receive (for at most the socket's timeout, then sends it back to
    /// wait). Each byte reaches one receive, in order, none surfaces `EAGAIN`, the rest end
    /// cancelled (those a worker runs too, which their cancellation interrupts: `EINTR`, taken for
    /// the cancellation it is), and the kernel's workers stay within the bound the driver registers
    /// (unbounded, the kernel made a worker for nearly every receive it handed over: 100 to 210 of
    /// them here). Checked in a child process, whose only threads are this test's.
    #[test]
    fn iouring_parked_receives_woken_often_hold_few_kernel_workers() {
        use crate::backend::file_ops::tests::in_child;
        use std::sync::atomic::{AtomicBool, Ordering};
        const RECEIVES: usize = 400;
        const BYTES: usize = 200;
        in_child("backend::uring::tests::iouring_parked_receives_woken_often_hold_few_kernel_workers", || {
            let Some((driver, m, dir)) = parked_setup(&[]) else { return };
            let lo: crate::sandbox::IpNet = "127.0.0.0/8".parse().unwrap();
            m.set_policy(1, Policy::rooted(dir.path()).allow_connect(lo, ..)).unwrap();
            m.create_ring(1, Some(1024), Some(1024)).unwrap();
            let (sockfd, mut host) = connected(&m, 1);
            let seqs = park_receives(&m, 1, sockfd, RECEIVES);
            until("every receive waits in the kernel", || driver.in_flight() == RECEIVES);

            // The most workers seen at once, sampled until told to stop.
            let stop = Arc::new(AtomicBool::new(false));
            let sampler = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut peak = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let now = kernel_workers();
                        if now.len() > peak.len() {
                            peak = now;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    peak
                })
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            let got = feed_one_at_a_time(&m, 1, &mut host, BYTES, deadline)
                .unwrap_or_else(|n| panic!("{n} of {BYTES} bytes received within 20 s"));
            // The driver's bound on unbound workers (see `bound_kernel_workers`; receives run on
            // those), which the kernel keeps per thread that submits: this one (the receives, the
            // cancels) and the reaper (receives sent back to wait). One more per submitter may
            // show for a moment: a worker idle long enough to leave gives its place back before
            // its thread is gone.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let bound = 2 * ((2 * cores).clamp(4, 32) + 1);

            // The rest still wait, and end cancelled.
            assert_eq!(cancel_the_rest(&m, 1, seqs, &got), RECEIVES - BYTES);
            m.destroy_ring(1).unwrap();
            until("nothing is in the kernel", || driver.in_flight() == 0);
            stop.store(true, Ordering::Relaxed);
            let peak = sampler.join().unwrap();

            // Each worker's name ends with the thread it runs requests of.
            let mut by_submitter = std::collections::BTreeMap::new();
            for name in &peak {
                *by_submitter.entry(name.as_str()).or_insert(0) += 1;
            }
            eprintln!(
                "at most {} io_uring kernel workers at once (bound {bound}): {by_submitter:?}; {:?} receives \
                 interrupted on a kernel worker (EINTR, delivered as cancelled)",
                peak.len(),
                driver.counts().interrupted
            );
            assert!(peak.len() <= bound, "{} kernel workers at once, more than {bound}: {by_submitter:?}", peak.len());
        });
    }

    /// Receives woken often on one tenant's socket never starve another tenant's: pid 1 parks 400
    /// receives on its socket and gets 200 bytes one at a time, so that the kernel hands many of
    /// them to its few io-wq workers (see the test above); then pid 2 parks 300 receives on its
    /// own socket and gets 200 bytes the same way, which hands its receives to the same workers.
    /// Every one of pid 2's bytes arrives, in order, within a bounded time: a worker never stays
    /// blocked in a receive of pid 1's (before the sockets' timeouts, pid 2's receives queued
    /// behind pid 1's blocked ones for good, and its 128th byte never came). The rest of both end
    /// cancelled. Checked in a child process, whose kernel workers are this test's alone.
    #[test]
    fn iouring_receives_woken_often_never_starve_another_socket() {
        use crate::backend::file_ops::tests::in_child;
        const A_RECEIVES: usize = 400;
        const A_BYTES: usize = 200;
        const B_RECEIVES: usize = 300;
        const B_BYTES: usize = 200;
        in_child("backend::uring::tests::iouring_receives_woken_often_never_starve_another_socket", || {
            let Some((driver, m, dir)) = parked_setup(&[]) else { return };
            let lo: crate::sandbox::IpNet = "127.0.0.0/8".parse().unwrap();
            for pid in [1, 2] {
                m.set_policy(pid, Policy::rooted(dir.path()).allow_connect(lo, ..)).unwrap();
                m.create_ring(pid, Some(1024), Some(1024)).unwrap();
            }
            let (a, mut host_a) = connected(&m, 1);
            let (b, mut host_b) = connected(&m, 2);

            let seqs_a = park_receives(&m, 1, a, A_RECEIVES);
            until("pid 1's receives wait in the kernel", || driver.in_flight() == A_RECEIVES);
            let start = Instant::now();
            let got_a = feed_one_at_a_time(&m, 1, &mut host_a, A_BYTES, start + Duration::from_secs(20))
                .unwrap_or_else(|n| panic!("socket A: {n} of {A_BYTES} bytes received within 20 s"));
            let took_a = start.elapsed();
            eprintln!("socket A: {A_BYTES} bytes to {A_RECEIVES} receives in {took_a:?}");

            let seqs_b = park_receives(&m, 2, b, B_RECEIVES);
            let parked = A_RECEIVES - A_BYTES + B_RECEIVES;
            until("pid 2's receives wait in the kernel", || driver.in_flight() == parked);
            let start = Instant::now();
            let got_b = feed_one_at_a_time(&m, 2, &mut host_b, B_BYTES, start + Duration::from_secs(10))
                .unwrap_or_else(|n| panic!("socket B stalled: {n} of {B_BYTES} bytes received within 10 s"));
            let took_b = start.elapsed();
            let counts = driver.counts();
            eprintln!(
                "then socket B: {B_BYTES} bytes to {B_RECEIVES} receives in {took_b:?}; {:?} receives sent back to \
                 wait after EAGAIN",
                counts.sent_back
            );

            assert_eq!(cancel_the_rest(&m, 1, seqs_a, &got_a), A_RECEIVES - A_BYTES);
            assert_eq!(cancel_the_rest(&m, 2, seqs_b, &got_b), B_RECEIVES - B_BYTES);
            for pid in [1, 2] {
                m.destroy_ring(pid).unwrap();
            }
            until("nothing is in the kernel", || driver.in_flight() == 0);
            eprintln!("{:?} requests interrupted on a kernel worker", counts.interrupted);
        });
    }

    /// A ring of this thread's own that retries the requests it woke only when this thread asks
    /// for completions (`IORING_SETUP_DEFER_TASKRUN`, Linux 6.1): a test can take what woke a
    /// request from under it before it looks again. `None`, said out loud, where the kernel
    /// refuses it.
    fn deferred_ring() -> Option<io_uring::IoUring> {
        match io_uring::IoUring::builder().setup_single_issuer().setup_defer_taskrun().build(8) {
            Ok(ring) => Some(ring),
            Err(e) => {
                eprintln!("no io_uring with deferred task work ({e}): nothing to check here");
                None
            }
        }
    }

    /// Lets the kernel retry what it deferred, then waits up to `limit` for request `user_data`'s
    /// completion: its result, if it came.
    fn deferred_completion(ring: &mut io_uring::IoUring, user_data: u64, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ts = io_uring::types::Timespec::from(left);
            match ring.submitter().submit_with_args(1, &io_uring::types::SubmitArgs::new().timespec(&ts)) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(e) => panic!("io_uring_enter: {e}"),
            }
            if let Some(result) = ring.completion().find(|c| c.user_data() == user_data).map(|c| c.result()) {
                return Some(result);
            }
            if left.is_zero() {
                return None;
            }
        }
    }

    /// Submits `sqe` as request 1 on `ring`, then wakes it for nothing until the kernel stops
    /// polling it and hands it to an io-wq worker, which runs it blocking: each time `wake` makes
    /// its socket ready and `take` takes what made it ready before the ring retries the request.
    /// Linux polls a request at most 128 times (`APOLL_MAX_RETRY`): the first when it is
    /// submitted, then once after each wake-up that found nothing, so that the 127th such wake-up
    /// hands it to a worker. Returns its completion's result, if one came before that wake-up or
    /// within `settle` after it, and the wake-ups made.
    ///
    /// # Safety
    ///
    /// Everything `sqe` points to must outlive the request.
    unsafe fn wake_until_handed_to_a_worker(
        ring: &mut io_uring::IoUring,
        sqe: &io_uring::squeue::Entry,
        settle: Duration,
        mut wake: impl FnMut(),
        mut take: impl FnMut(),
    ) -> (Option<i32>, usize) {
        const HANDED_OVER_AFTER: usize = 127;
        // SAFETY: the caller keeps what `sqe` points to alive.
        unsafe { ring.submission().push(&sqe.clone().user_data(1)) }.unwrap();
        ring.submit().unwrap();
        for round in 1..=HANDED_OVER_AFTER {
            wake();
            take();
            // No wake-up after the last: a receive a worker runs blocking could take its byte.
            let wait = if round < HANDED_OVER_AFTER { Duration::ZERO } else { settle };
            if let Some(result) = deferred_completion(ring, 1, wait) {
                return (Some(result), round);
            }
        }
        (None, HANDED_OVER_AFTER)
    }

    /// Takes one byte from non-blocking `socket` as soon as it is there.
    fn take_a_byte(socket: &std::net::TcpStream) {
        use std::io::Read;
        let start = Instant::now();
        loop {
            match (&*socket).read(&mut [0]) {
                Ok(1) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(start.elapsed() < Duration::from_secs(10), "no byte came");
                    std::thread::yield_now();
                }
                other => panic!("read: {other:?}"),
            }
        }
    }

    /// A non-blocking TCP socket connected to a peer that sends each byte as it is written.
    fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        peer.set_nodelay(true).unwrap();
        let (socket, _) = listener.accept().unwrap();
        socket.set_nonblocking(true).unwrap();
        (socket, peer)
    }

    /// The kernel behaviour the driver relies on for receives. A `RECV` woken too often for data
    /// others took is run blocking on an io-wq worker, the socket's `O_NONBLOCK` ignored; on a
    /// socket set up as the crate sets up each of its own (`net_ops::bound_kernel_waits`) it ends
    /// `EAGAIN` within the socket's timeout, which the driver sends back to wait, and frees the
    /// worker. Without the timeout it holds the worker until data comes, and its cancellation
    /// interrupts it: `EINTR`, which the driver takes for the cancellation it is.
    #[test]
    fn iouring_receives_run_on_kernel_workers_end_within_the_socket_timeout() {
        use std::io::Write;
        let Some(mut ring) = deferred_ring() else { return };
        // Never freed: the kernel may write into it for as long as the request lives.
        let buf: &'static mut [u8; 1] = Box::leak(Box::new([0]));
        let mut run = |socket: &std::net::TcpStream, peer: &std::net::TcpStream, settle| {
            let fd = io_uring::types::Fd(std::os::fd::AsRawFd::as_raw_fd(socket));
            let recv = io_uring::opcode::Recv::new(fd, buf.as_mut_ptr(), 1).build();
            let started = std::cell::Cell::new(Instant::now());
            let wake = || {
                (&*peer).write_all(&[7]).unwrap();
                started.set(Instant::now());
            };
            // SAFETY: the request points only into the buffer, which is never freed.
            let (result, rounds) =
                unsafe { wake_until_handed_to_a_worker(&mut ring, &recv, settle, wake, || take_a_byte(socket)) };
            (result, rounds, started.get().elapsed())
        };

        // As the crate sets up its sockets: the worker's receive ends `EAGAIN` within a few ticks.
        let (socket, peer) = tcp_pair();
        super::net_ops::bound_kernel_waits(&socket).unwrap();
        let (result, rounds, took) = run(&socket, &peer, Duration::from_secs(1));
        eprintln!("with the timeouts: {result:?} after {rounds} wake-ups for nothing, {took:?} after the last");
        assert_eq!(result, Some(-libc::EAGAIN), "after {rounds} wake-ups for nothing");
        assert!(took < Duration::from_millis(500), "the worker's receive ended only after {took:?}");

        // Without them, the worker's receive waits for data, and its cancellation is `EINTR`.
        let (socket, peer) = tcp_pair();
        let (result, rounds, _) = run(&socket, &peer, Duration::from_millis(200));
        assert_eq!(result, None, "after {rounds} wake-ups for nothing");
        let cancel = io_uring::opcode::AsyncCancel::new(1).build().user_data(2);
        // SAFETY: a cancel request points at no memory.
        unsafe { ring.submission().push(&cancel) }.unwrap();
        let result = deferred_completion(&mut ring, 1, Duration::from_secs(10));
        eprintln!("without them: blocked on a worker after {rounds} wake-ups for nothing; cancelled: {result:?}");
        assert_eq!(result, Some(-libc::EINTR), "a receive cancelled on a worker");
    }

    /// The kernel behaviour the driver relies on for accepts: an `ACCEPT` woken too often for
    /// connections others took is run on an io-wq worker too, but the kernel honours the
    /// listener's `O_NONBLOCK` there (`do_accept` adds the file's flags): on the crate's
    /// non-blocking listeners it ends `EAGAIN` at once, which the driver sends back to wait; it
    /// never holds the worker.
    #[test]
    fn iouring_accepts_run_on_kernel_workers_end_at_once() {
        let Some(mut ring) = deferred_ring() else { return };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        super::net_ops::bound_kernel_waits(&listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let fd = io_uring::types::Fd(std::os::fd::AsRawFd::as_raw_fd(&listener));
        let flags = (rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC).bits() as i32;
        let accept = io_uring::opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut()).flags(flags).build();
        let started = std::cell::Cell::new(Instant::now());
        let mut clients = Vec::new();
        let wake = || {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
            started.set(Instant::now());
        };
        let take = || {
            let start = Instant::now();
            while let Err(e) = listener.accept() {
                assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "accept: {e}");
                assert!(start.elapsed() < Duration::from_secs(10), "no connection came");
                std::thread::yield_now();
            }
        };
        // SAFETY: the request points at no memory (no room for the peer's address).
        let (result, rounds) =
            unsafe { wake_until_handed_to_a_worker(&mut ring, &accept, Duration::from_secs(1), wake, take) };
        let took = started.get().elapsed();
        eprintln!("{result:?} after {rounds} wake-ups for nothing, {took:?} after the last");
        assert_eq!(result, Some(-libc::EAGAIN), "after {rounds} wake-ups for nothing");
        assert!(took < Duration::from_millis(500), "the worker's accept ended only after {took:?}");
    }

    /// A current-thread tokio runtime and a `LocalSet` with `m`'s drive task spawned on it.
    fn driven(m: &IoUringManager) -> (tokio::runtime::Runtime, tokio::task::LocalSet) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.spawn_local(m.drive());
        (rt, local)
    }

    /// A backend with socket requests in the kernel, a manager on it, and pid 1 allowed UDP on
    /// the loopback: `None`, said out loud, where io_uring or its socket requests are missing.
    fn uring_with_sockets() -> Option<(Arc<UringBackend>, IoUringManager, tempfile::TempDir)> {
        let uring = UringBackend::new().ok().filter(|u| u.probe().sockets_in_kernel);
        let Some(uring) = uring.map(Arc::new) else {
            eprintln!("no io_uring with socket requests in the kernel: nothing to check here");
            return None;
        };
        let m = IoUringManager::with_backend(uring.clone());
        let dir = tempfile::tempdir().unwrap();
        m.set_policy(1, policy(dir.path())).unwrap();
        Some((uring, m, dir))
    }

    /// [`uring_with_sockets`], pid 1's UDP socket on the loopback (its descriptor and address),
    /// and a runtime with the manager's drive task spawned ([`driven`]).
    #[allow(clippy::type_complexity)]
    fn driven_with_a_socket() -> Option<(
        Arc<UringBackend>,
        IoUringManager,
        tempfile::TempDir,
        (i32, std::net::SocketAddr),
        (tokio::runtime::Runtime, tokio::task::LocalSet),
    )> {
        let (uring, m, dir) = uring_with_sockets()?;
        let socket = parked_socket(&m, 1);
        let runtime = driven(&m);
        Some((uring, m, dir, socket, runtime))
    }

    /// Lets the drive task start (at its first poll), then gives this thread's own ring.
    async fn own_ring_started(uring: &UringBackend) -> Arc<Driver> {
        tokio::task::yield_now().await;
        super::local::own_ring(uring.id).expect("this thread has a ring of its own")
    }

    /// Inside a drive task's thread, with an operation of the thread's waiting in its own ring:
    /// the operations one task submits in one tick reach that ring, which enters the kernel once
    /// for all of them (twice at most, if the task's wake-up comes between), and none reaches
    /// the shared rings. On an idle ring an operation is entered at once, and one that
    /// completes inside the enter needs no turn of the task.
    #[test]
    fn iouring_a_drive_task_enters_once_per_tick() {
        use std::sync::atomic::Ordering;
        let Some((uring, m, _dir, (fd, addr), (rt, local))) = driven_with_a_socket() else { return };
        local.block_on(&rt, async {
            let own = own_ring_started(&uring).await;
            // Only the task works the ring: a lost wake-up hangs (and times out) here.
            own.counts().hold_watch.store(true, Ordering::Relaxed);
            let shared = uring.driver.counts().enters.load(Ordering::Relaxed);
            // Idle: entered at once, done inside the enter.
            let before = own.counts().enters.load(Ordering::Relaxed);
            let nop = m.submit_async(1, Op::Nop).unwrap();
            assert_eq!(own.counts().enters.load(Ordering::Relaxed), before + 1);
            assert!(nop.await.status.is_success());
            // A receive waits in the ring: the next tick's 64 NOPs are entered together.
            let parked = m.submit_async(1, Op::Read { fd, size: 5 }).unwrap();
            let before = own.counts().enters.load(Ordering::Relaxed);
            let nops: Vec<_> = (0..64).map(|_| m.submit_async(1, Op::Nop).unwrap()).collect();
            assert_eq!(own.counts().enters.load(Ordering::Relaxed), before, "entered before the tick ended");
            let all = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(nops));
            for done in all.await.expect("the drive task entered and delivered the NOPs") {
                assert!(done.status.is_success(), "{:?}", done.status);
            }
            let enters = own.counts().enters.load(Ordering::Relaxed) - before;
            assert!((1..=2).contains(&enters), "64 NOPs of one tick took {enters} kernel entries");
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"hello", addr).unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), parked).await.expect("the receive completed");
            assert_eq!(got.result, OpResult::Bytes(b"hello".to_vec()));
            assert_eq!(uring.driver.counts().enters.load(Ordering::Relaxed), shared, "the shared ring was entered");
        });
        assert_eq!(m.stats().pending, 0);
    }

    /// A manager on a real io_uring (and its shared file ring's driver) whose pid 1 has a file
    /// holding `contents` open (its descriptor), in a directory it may use; `None`, said out
    /// loud, where io_uring is unavailable.
    fn with_a_file(contents: &[u8]) -> Option<(Arc<Driver>, IoUringManager, tempfile::TempDir, i32)> {
        let uring = match UringBackend::new() {
            Ok(uring) => Arc::new(uring),
            Err(e) => {
                eprintln!("io_uring unavailable ({e}): nothing to check here");
                return None;
            }
        };
        let driver = uring.driver.clone();
        let m = IoUringManager::with_backend(uring);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), contents).unwrap();
        m.set_policy(1, policy(dir.path())).unwrap();
        let seq = m.submit(1, Op::open("f", O_RDWR)).unwrap();
        let OpResult::Fd(fd) = m.wait_completion_timeout(1, seq, Duration::from_secs(10)).unwrap().result else {
            panic!("open")
        };
        Some((driver, m, dir, fd))
    }

    /// A `ReadFixed` and a `WriteFixed` of a file are `READ_FIXED` and `WRITE_FIXED`: the pool
    /// is registered with the kernel ring the first time, and the bytes are right. Pools
    /// registered and unregistered one after another, more of them than the kernel ring's table
    /// has blocks, each get a block: those of unregistered pools are cleared and used again.
    /// With a budget that holds one pool and a half, each pool's memory leaves the budget once
    /// it is unregistered and dropped, though the kernel ring still holds it registered until
    /// its next submission.
    #[test]
    fn iouring_registered_buffers_are_read_and_written_in_place() {
        use std::sync::atomic::Ordering;
        let Some((driver, m, dir, fd)) = with_a_file(b"") else { return };
        m.set_policy(1, policy(dir.path()).max_buffered_bytes(12 * 1024)).unwrap();
        let run = |op| m.wait_completion_timeout(1, m.submit(1, op).unwrap(), Duration::from_secs(10)).unwrap();
        let fixed = || driver.counts().fixed.load(Ordering::Relaxed);
        for round in 0..super::fixed::BLOCKS + 8 {
            let pool = m.register_buffers(1, 2, 4096).unwrap();
            let before = fixed();
            let mut buf = pool.take().unwrap();
            buf.extend_from_slice(format!("round {round:03}").as_bytes());
            let (written, buf) = run(Op::write_fixed(fd, Some(0), buf)).into_fixed();
            assert_eq!(written.unwrap(), 9);
            let mut buf = buf.unwrap();
            buf.clear();
            let (read, buf) = run(Op::read_fixed(fd, Some(0), buf)).into_fixed();
            assert_eq!((read.unwrap(), &buf.unwrap()[..]), (9, format!("round {round:03}").as_bytes()));
            assert_eq!(fixed(), before + 2, "round {round}: not run with the registered buffer");
            assert!(m.unregister_buffers(1));
        }
        assert_eq!(m.stats().pending, 0);
    }

    /// A `ReadFixed` prepared with its pool's slot, whose pool is unregistered and its slot
    /// cleared before the kernel takes the request (in `block_on`, submissions wait for the
    /// thread's next enter): the kernel refuses the cleared slot (`EFAULT`), and the driver
    /// submits the read again as a plain one of the same memory, which reads the file.
    #[test]
    fn iouring_a_registered_read_whose_slot_was_cleared_reads_plainly() {
        use std::sync::atomic::Ordering;
        let Some((_, m, _dir, fd)) = with_a_file(b"plain after all") else { return };
        let m2 = m.clone();
        bounded("block_on", move || {
            m2.block_on(async {
                let own = super::local::only_own_ring().expect("this thread has a ring of its own");
                let pool = m2.register_buffers(1, 1, 64).unwrap();
                let fixed = own.counts().fixed.load(Ordering::Relaxed);
                let read = m2.submit_async(1, Op::read_fixed(fd, Some(0), pool.take().unwrap())).unwrap();
                assert_eq!(own.counts().fixed.load(Ordering::Relaxed), fixed + 1, "prepared with its slot");
                assert!(m2.unregister_buffers(1));
                // The next submission of the ring clears the retired pool's slot.
                let nop = m2.submit_async(1, Op::Nop).unwrap();
                let (n, buf) = read.await.into_fixed();
                assert_eq!((n.unwrap(), &buf.unwrap()[..]), (15, &b"plain after all"[..]));
                assert!(nop.await.status.is_success());
            });
            m2
        });
        assert_eq!(m.stats().pending, 0);
    }

    /// A thread that blocks with a drive task on it (its executor cannot run the task) still
    /// gets what it submitted to be entered by the task: the ring's reaper enters and delivers it.
    #[test]
    fn iouring_a_blocked_drive_task_is_taken_over() {
        let Some((uring, m, _dir, (fd, addr), (rt, local))) = driven_with_a_socket() else { return };
        local.block_on(&rt, async {
            let own = own_ring_started(&uring).await;
            // A receive waits in the ring, so what follows waits for the task to be entered.
            let parked = m.submit_async(1, Op::Read { fd, size: 5 }).unwrap();
            for round in 0..3 {
                let seq = m.submit(1, SyscallSubmissionEntry::new(1, Op::Nop, round)).unwrap();
                // Blocks this thread, and with it the drive task.
                let start = Instant::now();
                let done = m.wait_completion_timeout(1, seq, Duration::from_secs(10)).unwrap();
                assert!(done.status.is_success());
                assert!(start.elapsed() < Duration::from_secs(2), "taken over only after {:?}", start.elapsed());
            }
            assert!(own.counts().taken_over.load(std::sync::atomic::Ordering::Relaxed) >= 3);
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"hello", addr).unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), parked).await.expect("the receive completed");
            assert_eq!(got.result, OpResult::Bytes(b"hello".to_vec()));
        });
    }

    /// Runs `f` on a thread of its own and waits for it at most 30 s: a lost wake-up fails the
    /// test rather than hanging it.
    fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()).unwrap());
        rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("{what}: no end within 30 s"))
    }

    /// `IoUringManager::block_on` on io_uring: the thread's own ring, parked in the kernel
    /// between ticks. A receive wakes it when its datagram comes, a waker on another thread
    /// wakes it with a NOP, each a few kernel entries however long the wait (no spinning); a TCP
    /// round trip of a server side and a client joined on the thread costs at most two, and one
    /// with a peer on another thread too (the thread parks in the enter that submits its send
    /// and its receive). The reaper never takes over.
    #[test]
    fn iouring_block_on_parks_in_the_kernel() {
        use futures::io::{AsyncReadExt, AsyncWriteExt};
        use std::sync::atomic::Ordering;
        let Some((uring, m, _dir)) = uring_with_sockets() else { return };
        let lo: crate::sandbox::IpNet = "127.0.0.0/8".parse().unwrap();
        m.set_policy(2, Policy::default().allow_bind(lo, ..).allow_listen().allow_connect(lo, ..)).unwrap();
        let (fd, addr) = parked_socket(&m, 1);
        let m = bounded("block_on", move || {
            let t = m.tenant(2);
            m.block_on(async {
                let own = super::local::only_own_ring().expect("this thread has a ring of its own");
                // Only this thread works the ring: a lost wake-up hangs (and times out) here.
                own.counts().hold_watch.store(true, Ordering::Relaxed);
                let entries = || own.counts().enters.load(Ordering::Relaxed);
                // A receive, whose datagram comes from another thread while this one is parked.
                let before = entries();
                let parked = m.submit_async(1, Op::Read { fd, size: 5 }).unwrap();
                let sender = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"hello", addr).unwrap();
                });
                assert_eq!(parked.await.result, OpResult::Bytes(b"hello".to_vec()));
                sender.join().unwrap();
                // A waker called on another thread.
                let (tx, rx) = futures::channel::oneshot::channel();
                let waker = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    tx.send(7).unwrap();
                });
                assert_eq!(rx.await.unwrap(), 7);
                waker.join().unwrap();
                let waited = entries() - before;
                assert!(waited <= 8, "two waits of 50 ms took {waited} kernel entries");
                // Round trips of a server side and a client, joined.
                const TRIPS: usize = 200;
                let l = t.tcp_listen((std::net::Ipv4Addr::LOCALHOST, 0)).await.unwrap();
                let (c, a) = futures::join!(t.tcp_connect(l.local_addr()), l.accept());
                let (mut c, (mut s, _)) = (c.unwrap(), a.unwrap());
                let before = entries();
                let serve = async {
                    let mut buf = [0u8; 64];
                    for _ in 0..TRIPS {
                        s.read_exact(&mut buf).await.unwrap();
                        s.write_all(&buf).await.unwrap();
                    }
                };
                let trips = async {
                    for i in 0..TRIPS {
                        let mut back = [0u8; 64];
                        c.write_all(&[i as u8; 64]).await.unwrap();
                        c.read_exact(&mut back).await.unwrap();
                        assert_eq!(back, [i as u8; 64]);
                    }
                };
                futures::join!(serve, trips);
                let took = entries() - before;
                assert!(took <= 2 * TRIPS + 8, "{TRIPS} round trips took {took} kernel entries");
                // The same with `Send` and `Recv`: each goes to the kernel as it is, none is
                // tried at once first (a receive posted before its data would fail it).
                let (tried, before) = (uring.tried_at_once.load(Ordering::Relaxed), entries());
                let (cfd, sfd) = (c.fd(), s.fd());
                let serve = async {
                    for _ in 0..TRIPS {
                        let got = m.submit_async(2, Op::Recv { sockfd: sfd, size: 64, flags: 0 }).unwrap().await;
                        let OpResult::Bytes(data) = got.result else { panic!("{got:?}") };
                        let sent = m.submit_async(2, Op::Send { sockfd: sfd, data, flags: 0 }).unwrap().await;
                        assert_eq!(sent.result, OpResult::Count(64));
                    }
                };
                let trips = async {
                    for i in 0..TRIPS {
                        let sent = m.submit_async(2, Op::Send { sockfd: cfd, data: vec![i as u8; 64], flags: 0 });
                        assert_eq!(sent.unwrap().await.result, OpResult::Count(64));
                        let mut back = Vec::new();
                        while back.len() < 64 {
                            let size = 64 - back.len();
                            let got = m.submit_async(2, Op::Recv { sockfd: cfd, size, flags: 0 }).unwrap().await;
                            let OpResult::Bytes(data) = got.result else { panic!("{got:?}") };
                            back.extend(data);
                        }
                        assert_eq!(back, [i as u8; 64]);
                    }
                };
                futures::join!(serve, trips);
                let took = entries() - before;
                assert!(took <= 2 * TRIPS + 8, "{TRIPS} round trips of Send and Recv took {took} kernel entries");
                assert_eq!(uring.tried_at_once.load(Ordering::Relaxed), tried, "a socket call was tried at once");
                // Round trips with a peer on another thread: this one parks for each reply.
                let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let host_addr = host.local_addr().unwrap();
                let echo = std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let (mut peer, _) = host.accept().unwrap();
                    peer.set_nodelay(true).unwrap();
                    let mut buf = [0u8; 64];
                    for _ in 0..TRIPS {
                        peer.read_exact(&mut buf).unwrap();
                        peer.write_all(&buf).unwrap();
                    }
                });
                let mut far = t.tcp_connect(host_addr).await.unwrap();
                let before = entries();
                for i in 0..TRIPS {
                    let mut back = [0u8; 64];
                    far.write_all(&[i as u8; 64]).await.unwrap();
                    far.read_exact(&mut back).await.unwrap();
                    assert_eq!(back, [i as u8; 64]);
                }
                let took = entries() - before;
                assert!(took <= 2 * TRIPS + 8, "{TRIPS} round trips with a peer elsewhere took {took} kernel entries");
                echo.join().unwrap();
            });
            // Its ring went with it: the thread's submissions go to the shared rings again.
            assert!(super::local::only_own_ring().is_none());
            m
        });
        // The handles' closes, submitted as they dropped, complete.
        until("nothing is pending", || m.stats().pending == 0);
    }

    /// A thread's `block_on`s share one ring: the next takes back what the last left, with what
    /// it left in flight reaped meanwhile; between them the thread's submissions go to the
    /// shared rings. The ring goes (its reaper ends) with the thread, and with its backend.
    #[test]
    fn iouring_block_on_keeps_the_threads_ring_for_the_next() {
        bounded("block_on's ring kept", move || {
            let Some((uring, m, _dir)) = uring_with_sockets() else { return };
            let (fd, addr) = parked_socket(&m, 1);
            let (first, left) = m.block_on(async {
                let own = super::local::only_own_ring().expect("a ring of its own");
                // Left in flight as it ends: reaped once the ring is idle.
                (own, m.submit(1, SyscallSubmissionEntry::new(1, Op::Read { fd, size: 5 }, 7)).unwrap())
            });
            assert!(super::local::only_own_ring().is_none(), "between them, the shared rings");
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"hello", addr).unwrap();
            let reaped = m.wait_completion_timeout(1, left, Duration::from_secs(10)).expect("reaped while idle");
            assert_eq!(reaped.result, OpResult::Bytes(b"hello".to_vec()));
            for _ in 0..3 {
                let again = m.block_on(async {
                    assert!(m.submit_async(1, Op::Nop).unwrap().await.status.is_success());
                    super::local::only_own_ring().expect("a ring of its own")
                });
                assert!(Arc::ptr_eq(&first, &again), "the same ring");
            }
            let first = Arc::downgrade(&first);
            // Another thread's `block_on` has a ring of its own, which ends with the thread.
            let other = std::thread::scope(|s| {
                s.spawn(|| Arc::downgrade(&m.block_on(async { super::local::only_own_ring().unwrap() })))
                    .join()
                    .unwrap()
            });
            assert!(!std::ptr::eq(other.as_ptr(), first.as_ptr()));
            until("the ring of a thread gone ended", || other.strong_count() == 0);
            // The kept ring ends with its backend.
            drop(m);
            drop(uring);
            until("the kept ring ended with its backend", || first.upgrade().is_none_or(|ring| ring.is_shut_down()));
        });
    }

    /// `block_on` inside a drive task's executor (and inside another `block_on`) works the
    /// thread's existing ring, and leaves the drive task working it after.
    #[test]
    fn iouring_block_on_nests_on_the_threads_ring() {
        bounded("nested block_on", move || {
            let Some((uring, m, _dir, (fd, addr), (rt, local))) = driven_with_a_socket() else { return };
            local.block_on(&rt, async {
                let own = own_ring_started(&uring).await;
                own.counts().hold_watch.store(true, std::sync::atomic::Ordering::Relaxed);
                // Something waits in the ring: what follows is deferred.
                let parked = m.submit_async(1, Op::Read { fd, size: 5 }).unwrap();
                let inner = m.block_on(async {
                    let nested = m.block_on(async { m.submit_async(1, Op::Nop).unwrap().await });
                    assert!(nested.status.is_success());
                    futures::future::join_all((0..8).map(|_| m.submit_async(1, Op::Nop).unwrap())).await
                });
                assert!(inner.iter().all(|done| done.status.is_success()));
                // The drive task works the ring again.
                std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"hello", addr).unwrap();
                let got = tokio::time::timeout(Duration::from_secs(10), parked).await.expect("the receive completed");
                assert_eq!(got.result, OpResult::Bytes(b"hello".to_vec()));
                assert!(super::local::own_ring(uring.id).is_some());
            });
        });
    }

    /// A receive submitted under a drive task, which is then dropped before the receive's data
    /// comes: the ring's reaper takes its completion, and the thread's later submissions go to
    /// the shared rings. A receive cancelled before the drive task entered it ends cancelled.
    #[test]
    fn iouring_a_dropped_drive_task_hands_its_ring_back() {
        use std::sync::atomic::Ordering;
        let Some((net, m, _dir)) = parked_setup(&[1]) else { return };
        let (fd, addr) = parked_socket(&m, 1);
        let (rt, local) = driven(&m);
        let (seq, cancelled, own) = local.block_on(&rt, async {
            tokio::task::yield_now().await;
            let cancelled = m.submit_async(1, Op::Read { fd, size: 5 }).unwrap();
            m.cancel(1, cancelled.seq()).unwrap();
            let cancelled = tokio::time::timeout(Duration::from_secs(10), cancelled).await.expect("cancelled in time");
            let seq = m.submit(1, SyscallSubmissionEntry::new(1, Op::Read { fd, size: 5 }, 3)).unwrap();
            (seq, cancelled, own_ring_of(&m))
        });
        assert!(cancelled.status.is_cancelled(), "{:?}", cancelled.status);
        let own = own.expect("this thread had a ring of its own");
        own.counts().hold_watch.store(true, Ordering::Relaxed);
        drop(local);
        // The ring's own reaper takes the receive's completion.
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"hello", addr).unwrap();
        let done = m.wait_completion_timeout(1, seq, Duration::from_secs(10)).unwrap();
        assert_eq!((done.result, done.user_data), (OpResult::Bytes(b"hello".to_vec()), 3));
        until("the ring's reaper stopped", || Arc::strong_count(&own) == 1);
        // This thread's next receive waits on the shared socket ring.
        let seq = m.submit(1, SyscallSubmissionEntry::new(1, Op::Read { fd, size: 5 }, 4)).unwrap();
        until("the receive is on the shared ring", || net.in_flight() == 1);
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"again", addr).unwrap();
        let done = m.wait_completion_timeout(1, seq, Duration::from_secs(10)).unwrap();
        assert_eq!(done.result, OpResult::Bytes(b"again".to_vec()));
        assert_eq!(m.stats().pending, 0);
    }

    /// This thread's own ring under `m`'s backend (the thread's only one), if it has one.
    fn own_ring_of(m: &IoUringManager) -> Option<Arc<Driver>> {
        super::local::only_own_ring().filter(|_| m.stats().backend == "uring")
    }

    /// A drive task ends when its backend shuts down; a second one on the same thread ends at
    /// once.
    #[test]
    fn iouring_drive_tasks_end_with_their_backend() {
        let Some((_, m, _dir)) = parked_setup(&[1]) else { return };
        let (fd, _) = parked_socket(&m, 1);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        let first = local.spawn_local(m.drive());
        local.block_on(&rt, async move {
            tokio::task::yield_now().await;
            let own = own_ring_of(&m).expect("this thread has a ring of its own");
            let second = tokio::time::timeout(Duration::from_secs(10), m.drive()).await;
            assert!(second.is_ok(), "a second drive task on this thread did not end at once");
            // A drive task dropped unpolled leaves no ring behind (its reaper stops).
            drop(m.drive());
            assert!(!first.is_finished());
            // A receive waits on the ring as the backend goes.
            let parked = m.submit_async(1, Op::Read { fd, size: 5 }).unwrap();
            tokio::task::yield_now().await;
            until("the receive is in the kernel", || own.in_flight() == 1);
            drop(own);
            drop(m);
            let parked = tokio::time::timeout(Duration::from_secs(10), parked).await.expect("the receive ended");
            assert!(!parked.status.is_success());
            tokio::time::timeout(Duration::from_secs(10), first)
                .await
                .expect("the drive task ended with its backend")
                .unwrap();
        });
    }

    /// The tests above return early where io_uring is refused (`parked_setup` gives `None`); this
    /// one says so past the harness's capture, so that CI logs show that they checked nothing.
    /// Where io_uring is allowed, it checks that they do run.
    #[test]
    fn iouring_unit_tests_say_when_io_uring_is_unavailable() {
        use std::io::Write;
        match UringBackend::new() {
            Ok(uring) => assert_eq!(
                parked_setup(&[1]).is_some(),
                uring.probe().sockets_in_kernel,
                "io_uring is available, so the tests above run where it holds socket requests"
            ),
            Err(e) => {
                assert!(parked_setup(&[1]).is_none());
                let line = format!(
                    "SKIPPED: backend::uring::tests::*: io_uring unavailable ({e}): the io_uring unit tests checked nothing\n"
                );
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}
