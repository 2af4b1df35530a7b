//! Test support: bounded waits, temp dirs, and backend wrappers that hold or slow operations.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ai_os_kernel::Pid;
use ai_os_kernel::backend::{Backend, Batch, CancelToken, Capabilities, OpError, Submission, Task, file_ops, net_ops};
use ai_os_kernel::syscalls::{IoUringManager, SyscallCompletionEntry, SyscallOpType, SyscallSubmissionEntry};

/// How a backend under test is made.
pub type MakeBackend = fn() -> Arc<dyn Backend>;

/// The longest any single check may take before it counts as a hang.
pub const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread and fails if it has not finished within `limit`: a hang is a bug.
pub fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            let _ = worker.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {limit:?} (hang)"),
    }
}

/// Polls `cond` until it holds, failing after `limit`.
pub fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < end, "{what}: not true after {limit:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Submits `op` for `pid` and waits (bounded) for its completion.
pub fn run_op(m: &IoUringManager, pid: Pid, op: SyscallOpType) -> SyscallCompletionEntry {
    let seq = m.submit(pid, SyscallSubmissionEntry::new(pid, op, 0)).expect("submit");
    m.wait_completion_timeout(pid, seq, Duration::from_secs(30)).expect("completion")
}

/// A gate that holds operations until opened.
#[derive(Default)]
pub struct Gate {
    opened: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
    /// Operations that reached the gate.
    pub arrived: AtomicUsize,
}

impl Gate {
    /// Lets every held and future operation through.
    pub fn open(&self) {
        self.opened.store(true, Ordering::SeqCst);
        for w in self.waiters.lock().unwrap().drain(..) {
            w.wake();
        }
    }

    /// Waits until the gate opens (`Ok`) or, when given a token, the operation is cancelled
    /// (`Err`).
    fn wait<'a>(&'a self, cancel: Option<&'a CancelToken>) -> impl Future<Output = Result<(), ()>> + 'a {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            if self.opened.load(Ordering::SeqCst) {
                return Poll::Ready(Ok(()));
            }
            if cancel.is_some_and(|c| c.poll_cancelled(cx).is_ready()) {
                return Poll::Ready(Err(()));
            }
            self.waiters.lock().unwrap().push(cx.waker().clone());
            if self.opened.load(Ordering::SeqCst) { Poll::Ready(Ok(())) } else { Poll::Pending }
        })
    }
}

/// Wraps a backend: every operation waits at a [`Gate`] (without holding a thread; a
/// cancellation stops it there unless the wrapper is uninterruptible) and may be slowed; the
/// in-flight window is set by the test.
pub struct Held {
    inner: Arc<dyn Backend>,
    gate: Arc<Gate>,
    window: usize,
    delay: Duration,
    /// Ignore cancellation at the gate, so the operation runs once the gate opens.
    uninterruptible: bool,
}

impl Held {
    /// Holds every operation of `inner` at `gate`, `window` in flight at most.
    pub fn new(inner: Arc<dyn Backend>, gate: Arc<Gate>, window: usize) -> Arc<Self> {
        Arc::new(Held { inner, gate, window, delay: Duration::ZERO, uninterruptible: false })
    }

    /// Like [`Held::new`], but cancellation cannot stop operations at the gate: they run once it
    /// opens, whatever happened to their futures meanwhile.
    pub fn uninterruptible(inner: Arc<dyn Backend>, gate: Arc<Gate>, window: usize) -> Arc<Self> {
        Arc::new(Held { inner, gate, window, delay: Duration::ZERO, uninterruptible: true })
    }

    /// Lets operations through at once, each taking `delay` longer.
    pub fn slow(inner: Arc<dyn Backend>, window: usize, delay: Duration) -> Arc<Self> {
        let gate = Arc::new(Gate::default());
        gate.open();
        Arc::new(Held { inner, gate, window, delay, uninterruptible: false })
    }
}

impl Backend for Held {
    fn name(&self) -> &'static str {
        "held"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new(self.window)
    }

    /// Each operation waits at the gate in a task of its own, then goes to the inner backend (an
    /// uninterruptible one's file operation runs to its end there and then, as one the kernel
    /// had started would, whatever happened to its future).
    fn submit(&self, batch: Batch) {
        for mut sub in batch.into_submissions() {
            let (inner, gate, delay, uninterruptible) =
                (self.inner.clone(), self.gate.clone(), self.delay, self.uninterruptible);
            self.inner.spawn(Box::pin(async move {
                let cancel = (!uninterruptible).then(|| sub.cancel_token());
                if gate.wait(cancel.as_deref()).await.is_err() {
                    let buf = sub.take_buffer();
                    return sub.complete(Err(OpError::cancelled().giving_back(buf)));
                }
                if !delay.is_zero() {
                    futures_timer::Delay::new(delay).await;
                }
                if uninterruptible && !net_ops::runs_on_readiness(sub.op(), sub.process()) {
                    let (op, done) = sub.into_parts();
                    return done.complete(file_ops::execute_sync(op));
                }
                inner.submit(Batch::from(sub));
            }));
        }
    }

    fn spawn(&self, task: Task) {
        self.inner.spawn(task)
    }
}

/// Wraps a backend and panics inside every `Read` of size 13.
pub struct Panicky {
    /// The backend that does the real work.
    pub inner: Arc<dyn Backend>,
}

impl Backend for Panicky {
    fn name(&self) -> &'static str {
        "panicky"
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    /// A `Read` of size 13 panics in a task of the inner backend's, holding its submission; the
    /// rest go to the inner backend.
    fn submit(&self, batch: Batch) {
        let (panics, rest): (Vec<Submission>, Vec<Submission>) =
            batch.into_submissions().partition(|sub| matches!(sub.op(), SyscallOpType::Read { size: 13, .. }));
        for sub in panics {
            self.inner.spawn(Box::pin(async move {
                let _held = sub;
                panic!("injected panic inside an operation");
            }));
        }
        if !rest.is_empty() {
            self.inner.submit(rest.into_iter().collect());
        }
    }

    fn spawn(&self, task: Task) {
        self.inner.spawn(task)
    }
}

/// A boxed future, for the async checks.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How the runtime under test blocks on a future.
pub type BlockOn = fn(BoxFuture);

/// How many of this process's kernel descriptors point at `path`.
pub fn kernel_fds_to(path: &std::path::Path) -> usize {
    let real = std::fs::canonicalize(path).unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| *target == real)
        .count()
}

/// What [`Faulty`] does to one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: the operation runs as it would.
    None,
    /// The operation fails with this errno without running (`EIO`, `EINTR`, `EAGAIN`, ...).
    Errno(i32),
    /// The operation moves at most this many bytes, as a short read or write of the kernel.
    Short(usize),
    /// The operation runs this much later (without holding a thread).
    Delay(Duration),
    /// The operation panics inside the backend.
    Panic,
}

/// Wraps a backend and injects the fault that `plan` picks for each operation: errors, `EINTR`,
/// `EAGAIN`, short transfers, delays and panics. The manager must turn each into a completion
/// (an error, or the short count the kernel would have reported) and keep serving.
pub struct Faulty {
    inner: Arc<dyn Backend>,
    plan: fn(&SyscallOpType) -> Fault,
    /// Faults injected so far, by kind: errno, short, delay, panic.
    pub injected: [AtomicUsize; 4],
}

impl Faulty {
    /// Injects `plan`'s faults into `inner`'s operations.
    pub fn new(inner: Arc<dyn Backend>, plan: fn(&SyscallOpType) -> Fault) -> Arc<Self> {
        Arc::new(Faulty { inner, plan, injected: Default::default() })
    }
}

impl Backend for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    /// Errors complete at once, short transfers are cut and go on, delays and panics happen in a
    /// task of the inner backend's; what is left goes to the inner backend as one batch.
    fn submit(&self, batch: Batch) {
        let count = |kind: usize| self.injected[kind].fetch_add(1, Ordering::SeqCst);
        let mut rest = Vec::new();
        for mut sub in batch.into_submissions() {
            match (self.plan)(sub.op()) {
                Fault::None => rest.push(sub),
                Fault::Errno(errno) => {
                    count(0);
                    let buf = sub.take_buffer();
                    sub.complete(Err(OpError::new(errno, "injected fault").giving_back(buf)));
                }
                Fault::Short(max) => {
                    count(1);
                    sub.limit_transfer(max);
                    rest.push(sub);
                }
                Fault::Delay(d) => {
                    count(2);
                    let inner = self.inner.clone();
                    self.inner.spawn(Box::pin(async move {
                        futures_timer::Delay::new(d).await;
                        inner.submit(Batch::from(sub));
                    }));
                }
                Fault::Panic => {
                    count(3);
                    self.inner.spawn(Box::pin(async move {
                        let name = sub.op().name();
                        panic!("injected panic inside {name}");
                    }));
                }
            }
        }
        if !rest.is_empty() {
            self.inner.submit(rest.into_iter().collect());
        }
    }

    fn spawn(&self, task: Task) {
        self.inner.spawn(task)
    }
}

/// This process's kernel descriptors whose `/proc/self/fd` link reads `target`.
fn kernel_fds_linking_to(target: &std::path::Path) -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            (std::fs::read_link(e.path()).ok()? == target).then_some(fd)
        })
        .collect()
}

/// The numbers of this process's kernel descriptors that point at `path`, for a test to inspect
/// (the path must be unique to the test, so that no other test's descriptor matches).
pub fn kernel_fd_numbers_to(path: &std::path::Path) -> Vec<i32> {
    kernel_fds_linking_to(&std::fs::canonicalize(path).unwrap())
}

/// The numbers of this process's kernel descriptors that are the socket with inode `inode`.
pub fn kernel_fd_numbers_of_socket(inode: u64) -> Vec<i32> {
    kernel_fds_linking_to(std::path::Path::new(&format!("socket:[{inode}]")))
}

/// Whether this process's kernel descriptor `fd` is close-on-exec (`FD_CLOEXEC`). Panics if `fd`
/// is not open.
pub fn is_close_on_exec(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; an fd that is not open is EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert!(flags >= 0, "fcntl({fd}, F_GETFD): {}", std::io::Error::last_os_error());
    flags & libc::FD_CLOEXEC != 0
}

/// The inode of the TCP socket of the network namespace whose local address is `local` and whose
/// peer is `remote` (`None` for a listening socket), read from `/proc/self/net/tcp` or `tcp6`.
pub fn tcp_socket_inode(local: std::net::SocketAddr, remote: Option<std::net::SocketAddr>) -> Option<u64> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    // `ADDR:PORT`, the address as the kernel's in-memory words printed in hex, the port in hex.
    fn parse(field: &str) -> Option<SocketAddr> {
        let (ip, port) = field.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let mut bytes = Vec::new();
        for word in 0..ip.len() / 8 {
            let w = u32::from_str_radix(&ip[word * 8..word * 8 + 8], 16).ok()?;
            bytes.extend_from_slice(&w.to_ne_bytes());
        }
        let ip = match bytes.len() {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
            16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    }
    let table = if local.is_ipv4() { "/proc/self/net/tcp" } else { "/proc/self/net/tcp6" };
    let listening = match local.ip() {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    };
    let remote = remote.unwrap_or(listening);
    std::fs::read_to_string(table).unwrap().lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let inode = fields.get(9)?.parse().ok()?;
        (parse(fields.get(1)?)? == local && parse(fields.get(2)?)? == remote && inode != 0).then_some(inode)
    })
}

/// Says that a test did not check what it is named for (io_uring refused by this kernel, no IPv6
/// loopback, ...), as one line `SKIPPED: <what>: <why>` on the real standard error: written past
/// the test harness's capture, so that CI logs show it even for a test that passes.
pub fn report_skipped(what: &str, why: impl std::fmt::Display) {
    use std::io::Write;
    // One write, so that the line is not cut by the harness's own output.
    let _ = std::io::stderr().write_all(format!("SKIPPED: {what}: {why}\n").as_bytes());
}

/// The kernel's id of the calling thread, for [`thread_is_asleep`].
pub fn current_thread_id() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Whether thread `tid` of this process is asleep in the kernel (state `S` in
/// `/proc/self/task/<tid>/stat`): blocked on a condition variable, a park or a poll, not running
/// or runnable. How a test observes that another thread has started waiting.
pub fn thread_is_asleep(tid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else { return false };
    // `pid (comm) state ...`: the name may hold spaces and parentheses, so read after the last `)`.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("S")
}
