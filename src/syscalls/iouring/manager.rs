//! [`IoUringManager`]: the one entry point, by pid.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::executor::IoUringExecutor;
use super::future::CompletionFuture;
use super::metrics::ProcessStats;
use super::multishot::Multishot;
use super::ring::{Accept, DEFAULT_CQ_SIZE, DEFAULT_SQ_SIZE, SyscallCompletionRing};
use super::rings::Rings;
use super::stats::{Counters, IoUringStats};
use super::stream::CompletionStream;
use crate::backend::{self, Backend};
use crate::op::FixedBuffers;
use crate::op::Pid;
use crate::op::SyscallCompletionEntry;
use crate::op::{IntoSubmission, SyscallOpType, SyscallSubmissionEntry};
use crate::op::{IoUringError, Result};
use crate::process::ProcessTable;
use crate::sandbox::Policy;

/// Creates rings for virtual processes, accepts their submissions, and hands back their
/// completions.
///
/// Cheap to clone (all clones share the same rings, processes and backend), `Send + Sync`, and
/// every method takes `&self`. See the [crate docs](crate) for the three ways to collect
/// completions and the delivery rules.
///
/// When the last clone is dropped, every ring still alive is destroyed as by
/// [`destroy_ring`](Self::destroy_ring): operations still waiting (an accept nobody answers, a
/// receive on a silent peer) are cancelled, futures resolve `Cancelled`, streams end, and the
/// backend is released once its work has drained.
#[derive(Clone)]
pub struct IoUringManager {
    inner: Arc<Inner>,
}

struct Inner {
    /// Looked up on every call. Fx hashing: pids are assigned by the host, not chosen by the
    /// tenants whose operations run here.
    rings: Rings,
    processes: Arc<ProcessTable>,
    executor: IoUringExecutor,
    counters: Arc<Counters>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Waiting operations hold the executor, and so the backend, until they end: without this,
        // an accept nobody answers would keep both alive after the last handle is gone.
        let rings = std::mem::take(&mut *self.rings.write());
        for ring in rings.into_values() {
            ring.destroy();
        }
    }
}

impl std::fmt::Debug for IoUringManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoUringManager").field("stats", &self.stats()).finish()
    }
}

impl Default for IoUringManager {
    fn default() -> Self {
        Self::new()
    }
}

impl IoUringManager {
    /// A manager on the best backend compiled in, or the one `AI_OS_KERNEL_BACKEND` names (see
    /// [`backend::from_env`]).
    ///
    /// # Panics
    ///
    /// If `AI_OS_KERNEL_BACKEND` names a backend that is unknown or not compiled in, or no
    /// backend is compiled in at all; the message names the choices. Use
    /// [`try_new`](Self::try_new) to get that as an error.
    pub fn new() -> Self {
        Self::try_new().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`new`](Self::new), but a bad backend choice is an [`IoUringError::InvalidConfig`].
    pub fn try_new() -> Result<Self> {
        Ok(Self::with_backend(backend::from_env()?))
    }

    /// A manager on `backend`.
    pub fn with_backend(backend: Arc<dyn Backend>) -> Self {
        IoUringManager {
            inner: Arc::new(Inner {
                rings: Rings::default(),
                processes: Arc::new(ProcessTable::new()),
                executor: IoUringExecutor::new(backend),
                counters: Arc::default(),
            }),
        }
    }

    /// Creates the ring of `pid` with `sq_size` (default 256) and `cq_size` (default 512, or
    /// `sq_size` if larger) entries. Sizes must be in `1..=65536` with `cq_size >= sq_size`.
    /// A pid that already has a ring is refused.
    pub fn create_ring(
        &self,
        pid: Pid,
        sq_size: Option<usize>,
        cq_size: Option<usize>,
    ) -> Result<Arc<SyscallCompletionRing>> {
        let sq = sq_size.unwrap_or(DEFAULT_SQ_SIZE);
        let cq = cq_size.unwrap_or(DEFAULT_CQ_SIZE.max(sq));
        let mut rings = self.inner.rings.write();
        if rings.contains_key(&pid) {
            return Err(IoUringError::InvalidConfig(format!("pid {pid} already has a ring; destroy it first")));
        }
        let ring = self.new_ring(pid, sq, cq)?;
        rings.insert(pid, ring.clone());
        Ok(ring)
    }

    fn new_ring(&self, pid: Pid, sq: usize, cq: usize) -> Result<Arc<SyscallCompletionRing>> {
        let process = self.inner.processes.get_or_create(pid);
        SyscallCompletionRing::new(pid, sq, cq, process, self.inner.counters.clone())
    }

    /// The ring of `pid`.
    pub fn ring(&self, pid: Pid) -> Result<Arc<SyscallCompletionRing>> {
        self.inner.rings.get(pid).ok_or(IoUringError::NoRing { pid })
    }

    /// The ring of `pid`, created with default sizes if it has none.
    fn ring_or_create(&self, pid: Pid) -> Result<Arc<SyscallCompletionRing>> {
        if let Ok(ring) = self.ring(pid) {
            return Ok(ring);
        }
        let mut rings = self.inner.rings.write();
        if let Some(ring) = rings.get(&pid) {
            return Ok(ring.clone());
        }
        let ring = self.new_ring(pid, DEFAULT_SQ_SIZE, DEFAULT_CQ_SIZE)?;
        rings.insert(pid, ring.clone());
        Ok(ring)
    }

    /// Sets the sandbox of `pid` (a process without one denies everything). Takes effect for
    /// operations submitted from now on: an operation's rights (its root, whether it may write,
    /// its network rules and limits) are those in force when it was submitted, however long it
    /// waits to run. A rooted policy whose root cannot be opened is refused.
    ///
    /// ```
    /// use ai_os_kernel::sandbox::Policy;
    /// use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType, errno};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let m = IoUringManager::new();
    /// m.set_policy(1, Policy::rooted(dir.path()).max_open_fds(16)).unwrap();
    /// let seq = m.submit(1, SyscallOpType::open("../outside", 0)).unwrap();
    /// assert_eq!(m.wait_completion(1, seq).unwrap().errno(), Some(errno::EACCES));
    /// ```
    pub fn set_policy(&self, pid: Pid, policy: Policy) -> Result<()> {
        let root = policy.root().map(|r| r.display().to_string());
        self.inner.processes.set_policy(pid, policy).map_err(|e| {
            IoUringError::InvalidConfig(format!("policy root {:?} of pid {pid}: {e}", root.unwrap_or_default()))
        })?;
        // A ring held out of line by its old weight, share or rate limit is looked at again now,
        // not when that limit would have let it go.
        if let Some(ring) = self.inner.rings.get(pid) {
            self.inner.executor.reconsider(&ring);
        }
        Ok(())
    }

    /// Submits one operation; its completion goes to the ring's CQ. Returns its sequence number.
    /// A pid without a ring gets one with default sizes.
    ///
    /// ```
    /// use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType, SyscallSubmissionEntry};
    ///
    /// let m = IoUringManager::new();
    /// let a = m.submit(1, SyscallOpType::Nop).unwrap(); // an operation alone
    /// let b = m.submit(1, SyscallSubmissionEntry::new(1, SyscallOpType::Nop, 42)).unwrap();
    /// assert_eq!(m.wait_completion(1, b).unwrap().user_data, 42);
    /// assert!(m.wait_completion(1, a).unwrap().status.is_success());
    /// ```
    pub fn submit(&self, pid: Pid, entry: impl IntoSubmission) -> Result<u64> {
        self.submit_one(pid, entry.into_submission(pid), false).map(|(_, seq)| seq)
    }

    fn submit_one(
        &self,
        pid: Pid,
        entry: SyscallSubmissionEntry,
        to_future: bool,
    ) -> Result<(Arc<SyscallCompletionRing>, u64)> {
        check_pid(pid, &entry)?;
        self.enqueue(pid, std::iter::once(entry), to_future)
    }

    /// Accepts entries (pids already checked) into the ring of `pid` and puts it in line for
    /// the executor; returns the ring and the first sequence number.
    /// Gives the operations their deadlines, counted from now.
    fn enqueue(
        &self,
        pid: Pid,
        entries: impl ExactSizeIterator<Item = SyscallSubmissionEntry>,
        how: impl Into<Accept>,
    ) -> Result<(Arc<SyscallCompletionRing>, u64)> {
        let ring = self.ring_or_create(pid)?;
        // Read once, and only for a batch with deadlines: the same now for all of them.
        let mut now = None;
        let mut deadlines = Vec::new();
        let ops = entries.enumerate().map(|(i, e)| {
            // A deadline past the clock's end is none.
            if let Some(within) = e.deadline
                && let Some(at) = now.get_or_insert_with(Instant::now).checked_add(within)
            {
                deadlines.push((i as u64, at));
            }
            (e.op, e.user_data)
        });
        let first = self.inner.executor.accept(&ring, ops, how)?;
        for (i, at) in deadlines {
            ring.set_deadline(first + i, at);
        }
        Ok((ring, first))
    }

    /// Submits a batch, all or nothing: if it does not fit, nothing is enqueued. Completions go
    /// to the CQ. Returns the sequence numbers, in order.
    ///
    /// ```
    /// use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType, SyscallSubmissionEntry};
    ///
    /// let m = IoUringManager::new();
    /// let batch = (0..8).map(|i| SyscallSubmissionEntry::new(1, SyscallOpType::Nop, i)).collect();
    /// let seqs = m.submit_batch(1, batch).unwrap();
    /// let mut taken = 0;
    /// while taken < seqs.len() {
    ///     taken += m.reap_completions(1, None).unwrap().len();
    /// }
    /// ```
    pub fn submit_batch(&self, pid: Pid, entries: Vec<SyscallSubmissionEntry>) -> Result<Vec<u64>> {
        let entries = entries_for(pid, entries)?;
        let n = entries.len() as u64;
        if n == 0 {
            return Ok(Vec::new());
        }
        let (_, first) = self.enqueue(pid, entries.into_iter(), false)?;
        Ok((first..first + n).collect())
    }

    /// Submits a batch, all or nothing as [`submit_batch`](Self::submit_batch), and returns
    /// one future per operation, in order, each owning its completion: nothing to match by
    /// `user_data`.
    ///
    /// ```
    /// use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType};
    ///
    /// let m = IoUringManager::new();
    /// let futures = m.submit_batch_async(1, [SyscallOpType::Nop, SyscallOpType::Nop]).unwrap();
    /// let done = futures::executor::block_on(futures::future::join_all(futures));
    /// assert!(done.iter().all(|d| d.status.is_success()));
    /// ```
    pub fn submit_batch_async<E: IntoSubmission>(
        &self,
        pid: Pid,
        entries: impl IntoIterator<Item = E>,
    ) -> Result<Vec<CompletionFuture>> {
        let entries = entries_for(pid, entries)?;
        let n = entries.len() as u64;
        if n == 0 {
            return Ok(Vec::new());
        }
        let (ring, first) = self.enqueue(pid, entries.into_iter(), true)?;
        Ok((first..first + n).map(|seq| CompletionFuture::new(ring.clone(), seq)).collect())
    }

    /// Submits a linked chain, all or nothing as [`submit_batch`](Self::submit_batch): each
    /// operation runs only once the one before it succeeded (a write: wrote all its bytes), in
    /// order, and when one fails, is cancelled or times out, every later one completes
    /// `Cancelled` without running, as io_uring's `IOSQE_IO_LINK` chains do (on every backend).
    /// Every operation completes exactly once, in the CQ. The sandbox checks them all at
    /// submission: if it refuses one, that one completes with its error and the others
    /// `Cancelled`, none having run. Returns the sequence numbers, in order.
    ///
    /// Replacing a file safely: write the new contents to a temporary file, flush it, rename it
    /// over the target, each step only if the one before succeeded.
    ///
    /// ```
    /// use ai_os_kernel::sandbox::Policy;
    /// use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType as Op, SyscallSubmissionEntry};
    /// use ai_os_kernel::syscalls::open_flags::*;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// std::fs::write(dir.path().join("config"), b"old").unwrap();
    /// let m = IoUringManager::new();
    /// m.set_policy(1, Policy::rooted(dir.path()).read_write()).unwrap();
    /// let seq = m.submit(1, SyscallSubmissionEntry::new(1, Op::open("config.tmp", O_WRONLY | O_CREAT | O_TRUNC), 0)).unwrap();
    /// let OpResult::Fd(fd) = m.wait_completion(1, seq).unwrap().result else { panic!() };
    ///
    /// let chain = [
    ///     Op::WriteAt { fd, offset: 0, data: b"new".to_vec() },
    ///     Op::Fsync { fd },
    ///     Op::Rename { from: "config.tmp".into(), to: "config".into(), flags: 0 },
    /// ];
    /// let entries = chain.into_iter().map(|op| SyscallSubmissionEntry::new(1, op, 0)).collect();
    /// for seq in m.submit_linked(1, entries).unwrap() {
    ///     assert!(m.wait_completion(1, seq).unwrap().status.is_success());
    /// }
    /// assert_eq!(std::fs::read(dir.path().join("config")).unwrap(), b"new");
    /// ```
    pub fn submit_linked(&self, pid: Pid, entries: Vec<SyscallSubmissionEntry>) -> Result<Vec<u64>> {
        let entries = entries_for(pid, entries)?;
        let n = entries.len() as u64;
        if n == 0 {
            return Ok(Vec::new());
        }
        let (_, first) = self.enqueue(pid, entries.into_iter(), Accept { linked: true, ..Accept::default() })?;
        Ok((first..first + n).collect())
    }

    /// Submits `op` to `ring` (and no later ring of its pid) and returns the future that owns
    /// its completion: for a handle, whose descriptor belongs to that ring's process only.
    pub(crate) fn submit_async_to(
        &self,
        ring: &Arc<SyscallCompletionRing>,
        op: SyscallOpType,
    ) -> Result<CompletionFuture> {
        let seq = self.inner.executor.accept(ring, std::iter::once((op, 0)), true)?;
        Ok(CompletionFuture::new(ring.clone(), seq))
    }

    /// [`submit_multishot`](Self::submit_multishot) of `op` to `ring` (and no later ring of its
    /// pid), for a handle.
    pub(crate) fn submit_multishot_to(
        &self,
        ring: &Arc<SyscallCompletionRing>,
        op: SyscallOpType,
    ) -> Result<Multishot> {
        let how = Accept { to_future: true, multishot: true, ..Accept::default() };
        let seq = self.inner.executor.accept(ring, std::iter::once((op, 0)), how)?;
        Ok(Multishot::new(ring.clone(), seq))
    }

    /// Submits `op` to `ring` (and no later ring of its pid) with nobody to take its
    /// completion (a handle's close on drop): it runs, and its completion is discarded.
    pub(crate) fn submit_discarded(&self, ring: &Arc<SyscallCompletionRing>, op: SyscallOpType) -> Result<()> {
        let discard = Accept { discard: true, ..Accept::default() };
        self.inner.executor.accept(ring, std::iter::once((op, 0)), discard).map(drop)
    }

    /// Submits one operation and returns a future that owns its completion.
    ///
    /// ```
    /// use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType};
    ///
    /// let m = IoUringManager::new();
    /// let done = futures::executor::block_on(m.submit_async(1, SyscallOpType::Nop).unwrap());
    /// assert!(done.into_result().is_ok());
    /// ```
    pub fn submit_async(&self, pid: Pid, entry: impl IntoSubmission) -> Result<CompletionFuture> {
        let (ring, seq) = self.submit_one(pid, entry.into_submission(pid), true)?;
        Ok(CompletionFuture::new(ring, seq))
    }

    /// Submits a multishot operation (an [`AcceptMulti`](SyscallOpType::AcceptMulti)) and
    /// returns the stream of its results, then of its completion (see [`Multishot`]). Any other
    /// operation gives only its completion; a multishot operation submitted any other way
    /// completes at once with `EINVAL`.
    ///
    /// ```
    /// use ai_os_kernel::sandbox::Policy;
    /// use ai_os_kernel::syscalls::{IoUringManager, OpResult, SyscallOpType};
    /// use futures::StreamExt;
    /// use std::net::Ipv4Addr;
    ///
    /// let m = IoUringManager::new();
    /// m.set_policy(1, Policy::default().allow_bind(Ipv4Addr::LOCALHOST, ..).allow_listen()).unwrap();
    /// futures::executor::block_on(async {
    ///     let tenant = m.tenant(1);
    ///     let listener = tenant.tcp_listen((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    ///     let mut accepts = m.submit_multishot(1, SyscallOpType::AcceptMulti { sockfd: listener.fd() }).unwrap();
    ///     let clients: Vec<_> = (0..3).map(|_| std::net::TcpStream::connect(listener.local_addr()).unwrap()).collect();
    ///     for _ in &clients {
    ///         let one = accepts.next().await.unwrap();
    ///         assert!(matches!(one.result, OpResult::Accepted { .. }));
    ///     }
    ///     m.cancel(1, accepts.seq()).unwrap();
    ///     // Last, its completion; then the stream ends.
    ///     assert!(accepts.next().await.unwrap().status.is_cancelled());
    ///     assert!(accepts.next().await.is_none());
    /// });
    /// ```
    pub fn submit_multishot(&self, pid: Pid, entry: impl IntoSubmission) -> Result<Multishot> {
        let entry = entry.into_submission(pid);
        check_pid(pid, &entry)?;
        let how = Accept { to_future: true, multishot: true, ..Accept::default() };
        let (ring, seq) = self.enqueue(pid, std::iter::once(entry), how)?;
        Ok(Multishot::new(ring, seq))
    }

    /// [`submit`](Self::submit) that takes the entry out of `slot` only if the ring accepts it:
    /// refused (a full or destroyed ring, another pid's entry), the entry stays in `slot`, with
    /// the caller's buffer it may carry (`ReadInto`, `WriteFrom`), which a refused `submit`
    /// drops. An empty `slot` is refused with `InvalidConfig`; nothing is created or submitted.
    ///
    /// ```
    /// use ai_os_kernel::syscalls::{IoUringError, IoUringManager, SyscallOpType, SyscallSubmissionEntry};
    ///
    /// let m = IoUringManager::new();
    /// m.create_ring(1, Some(1), Some(1)).unwrap();
    /// let _busy = m.submit(1, SyscallOpType::Timeout { duration: std::time::Duration::from_secs(60) }).unwrap();
    /// let mut slot = Some(SyscallSubmissionEntry::new(1, SyscallOpType::read_into(3, Some(0), Vec::with_capacity(64)), 0));
    /// let refused = m.submit_from(1, &mut slot).unwrap_err();
    /// assert!(matches!(refused, IoUringError::CompletionQueueFull { .. }));
    /// assert!(slot.is_some(), "the entry, and its buffer, stay with the caller");
    /// ```
    pub fn submit_from(&self, pid: Pid, slot: &mut Option<SyscallSubmissionEntry>) -> Result<u64> {
        self.submit_one_from(pid, slot, false).map(|(_, seq)| seq)
    }

    /// [`submit_async`](Self::submit_async) that takes the entry out of `slot` only if the ring
    /// accepts it (see [`submit_from`](Self::submit_from)).
    pub fn submit_async_from(&self, pid: Pid, slot: &mut Option<SyscallSubmissionEntry>) -> Result<CompletionFuture> {
        let (ring, seq) = self.submit_one_from(pid, slot, true)?;
        Ok(CompletionFuture::new(ring, seq))
    }

    /// One entry, taken out of `slot` by the ring only once it accepts it (every refusal comes
    /// before the ring reads its batch; the executor is told the operation's class rather than
    /// taking it out to look).
    fn submit_one_from(
        &self,
        pid: Pid,
        slot: &mut Option<SyscallSubmissionEntry>,
        to_future: bool,
    ) -> Result<(Arc<SyscallCompletionRing>, u64)> {
        let Some(entry) = slot.as_ref() else {
            return Err(IoUringError::InvalidConfig("no entry to submit".into()));
        };
        check_pid(pid, entry)?;
        let how = Accept { to_future, waits_alone: Some(entry.op.may_wait_on_peer()), ..Accept::default() };
        self.enqueue(pid, TakeOne(slot), how)
    }

    /// Takes up to `max` (default: all) completions from the CQ, in completion order, without
    /// blocking.
    pub fn reap_completions(&self, pid: Pid, max: Option<usize>) -> Result<Vec<SyscallCompletionEntry>> {
        Ok(self.ring(pid)?.reap(max.unwrap_or(usize::MAX)))
    }

    /// Blocks until operation `seq` completes and takes its completion, wherever it stands in the
    /// CQ. Fails at once for a seq never issued, already taken, or owned by a future.
    pub fn wait_completion(&self, pid: Pid, seq: u64) -> Result<SyscallCompletionEntry> {
        self.ring(pid)?.wait(seq, None)
    }

    /// [`wait_completion`](Self::wait_completion) giving up after `timeout` with
    /// [`IoUringError::Timeout`]; the operation stays outstanding.
    ///
    /// ```
    /// use ai_os_kernel::syscalls::{IoUringError, IoUringManager, SyscallOpType};
    /// use std::time::Duration;
    ///
    /// let m = IoUringManager::new();
    /// let slow = m.submit(1, SyscallOpType::Timeout { duration: Duration::from_secs(60) }).unwrap();
    /// let waited = m.wait_completion_timeout(1, slow, Duration::from_millis(10));
    /// assert!(matches!(waited, Err(IoUringError::Timeout { .. })), "still outstanding");
    /// m.cancel(1, slow).unwrap();
    /// assert!(m.wait_completion(1, slow).unwrap().status.is_cancelled());
    /// ```
    pub fn wait_completion_timeout(&self, pid: Pid, seq: u64, timeout: Duration) -> Result<SyscallCompletionEntry> {
        self.ring(pid)?.wait(seq, Instant::now().checked_add(timeout))
    }

    /// The CQ of `pid` as a `Stream`; it ends when the ring is destroyed.
    ///
    /// ```
    /// use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType};
    /// use futures::StreamExt;
    ///
    /// let m = IoUringManager::new();
    /// m.create_ring(1, None, None).unwrap();
    /// let mut stream = m.completions(1).unwrap();
    /// let seq = m.submit(1, SyscallOpType::Nop).unwrap();
    /// assert_eq!(futures::executor::block_on(stream.next()).unwrap().seq, seq);
    /// ```
    pub fn completions(&self, pid: Pid) -> Result<CompletionStream> {
        Ok(self.ring(pid)?.completions())
    }

    /// Cancels `seq`: it completes with status `Cancelled` unless it already finished (then this
    /// is `Ok` and changes nothing) or can no longer be stopped (then it completes as it ran).
    pub fn cancel(&self, pid: Pid, seq: u64) -> Result<()> {
        self.ring(pid)?.cancel(seq)
    }

    /// Ends the process `pid` altogether: cancels its queued and running operations, closes its
    /// descriptors, forgets its policy, and wakes every waiter: blocked `wait_completion` calls
    /// return [`IoUringError::RingDestroyed`], futures not yet resolved resolve `Cancelled` (or,
    /// if their operation had already finished, with its outcome, except that one which created
    /// a descriptor resolves `Cancelled`: the descriptor was closed with the process), streams
    /// end.
    ///
    /// A pid has one lifecycle: its policy, descriptors, ring and sequence numbers begin with
    /// its first `set_policy`, `create_ring` or submission, and all end here together. The next
    /// use of the pid starts a new process: deny-all until given a policy, no descriptors, and
    /// sequence numbers no earlier ring ever issued (a stale one is
    /// [`UnknownSeq`](IoUringError::UnknownSeq)). A ring created or a submission made while the
    /// destroy runs belongs either to the old process (and is destroyed with it) or to the new
    /// one, never half to each. Fails with [`IoUringError::NoRing`] only if the pid has neither a
    /// ring nor a policy.
    ///
    /// ```
    /// use ai_os_kernel::syscalls::{IoUringError, IoUringManager, SyscallOpType};
    ///
    /// let m = IoUringManager::new();
    /// let seq = m.submit(1, SyscallOpType::Nop).unwrap();
    /// m.destroy_ring(1).unwrap();
    /// assert!(matches!(m.wait_completion(1, seq), Err(IoUringError::NoRing { .. })));
    /// ```
    pub fn destroy_ring(&self, pid: Pid) -> Result<()> {
        // Both leave the tables under the rings' lock, which every ring creation holds while it
        // looks up its process: no new ring can bind to the process being torn down.
        let (ring, process) = {
            let mut rings = self.inner.rings.write();
            (rings.remove(&pid), self.inner.processes.take(pid))
        };
        if ring.is_none() && process.is_none() {
            return Err(IoUringError::NoRing { pid });
        }
        if let Some(ring) = ring {
            ring.destroy();
            // A throttled ring leaves the timer's wait now, its queue emptied.
            self.inner.executor.reconsider(&ring);
        }
        if let Some(process) = process {
            process.close_all();
        }
        Ok(())
    }

    /// Registers a pool of `count` buffers of `size` bytes for `pid` (creating its ring with
    /// default sizes if it has none): memory the process reads into and writes from with
    /// [`ReadFixed`](SyscallOpType::ReadFixed) and [`WriteFixed`](SyscallOpType::WriteFixed)
    /// and gets back with each completion. On io_uring each kernel ring that runs one of those
    /// registers the pool once (`READ_FIXED`, `WRITE_FIXED`: no page lookup per request); where
    /// it cannot, and on the other backends, they are plain reads and writes of the same memory.
    ///
    /// The pool's memory counts against the process's buffer budget
    /// ([`Policy::max_buffered_bytes`](crate::sandbox::Policy::max_buffered_bytes)) until it is
    /// freed after [`unregister_buffers`](Self::unregister_buffers), or the ring destroyed. One pool per process: `EBUSY` if it has one; `ENOMEM`
    /// past the budget (nothing is allocated) or if the memory cannot be had; `EINVAL` for a
    /// `count` outside 1 to [`MAX_FIXED_BUFFERS`](crate::syscalls::MAX_FIXED_BUFFERS) or a `size`
    /// outside 1 to [`MAX_FIXED_SIZE`](crate::syscalls::MAX_FIXED_SIZE).
    ///
    /// ```
    /// use ai_os_kernel::sandbox::Policy;
    /// use ai_os_kernel::syscalls::open_flags::{O_CREAT, O_RDWR};
    /// use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let m = IoUringManager::new();
    /// m.set_policy(1, Policy::rooted(dir.path()).read_write()).unwrap();
    /// let seq = m.submit(1, SyscallOpType::open("f", O_CREAT | O_RDWR)).unwrap();
    /// let fd = i32::try_from(m.wait_completion(1, seq).unwrap().result).unwrap();
    /// let pool = m.register_buffers(1, 4, 4096).unwrap();
    /// let mut buf = pool.take().unwrap();
    /// buf.extend_from_slice(b"fixed");
    /// let seq = m.submit(1, SyscallOpType::write_fixed(fd, Some(0), buf)).unwrap();
    /// let (written, buf) = m.wait_completion(1, seq).unwrap().into_fixed();
    /// assert_eq!(written.unwrap(), 5);
    /// let mut buf = buf.unwrap();
    /// buf.clear();
    /// let seq = m.submit(1, SyscallOpType::read_fixed(fd, Some(0), buf)).unwrap();
    /// let (read, buf) = m.wait_completion(1, seq).unwrap().into_fixed();
    /// assert_eq!((read.unwrap(), &buf.unwrap()[..]), (5, &b"fixed"[..]));
    /// ```
    pub fn register_buffers(&self, pid: Pid, count: usize, size: usize) -> std::io::Result<FixedBuffers> {
        Ok(self.ring_or_create(pid)?.register_buffers(count, size)?)
    }

    /// Unregisters the pool of `pid` (see [`register_buffers`](Self::register_buffers)): no
    /// buffer is taken from it again, and the kernel rings let it go (each at its next
    /// submission). Buffers still out stay the caller's, read and written as plain memory. The
    /// pool's memory stays counted against the buffer budget until its handles and buffers are
    /// all dropped (a kernel ring may hold it registered a little longer, until its next
    /// submission). Whether it had one.
    pub fn unregister_buffers(&self, pid: Pid) -> bool {
        self.ring(pid).is_ok_and(|ring| ring.unregister_buffers())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> IoUringStats {
        let active = self.inner.rings.read().len();
        self.inner.counters.snapshot(active, self.inner.executor.backend().name())
    }

    /// One process's counters (submitted, completed, failed, cancelled, in flight) and where its
    /// operations spent their time (queued → started → completed → taken, p50/p99), for its
    /// current ring.
    pub fn stats_for(&self, pid: Pid) -> Result<ProcessStats> {
        Ok(self.ring(pid)?.stats())
    }

    /// Turns the latency split of [`stats_for`](Self::stats_for) on (the default) or off; the
    /// counters are kept either way. Off, no clock is read on the submit/complete path.
    pub fn set_latency_tracking(&self, on: bool) {
        self.inner.counters.set_timing(on);
    }

    /// The process table shared by everything this manager runs.
    pub fn processes(&self) -> &Arc<ProcessTable> {
        &self.inner.processes
    }

    /// A task that does the backend's work for what this thread submits, on this thread: spawn
    /// it on the thread's local executor (`tokio::task::spawn_local` in a `LocalSet`, a smol
    /// `LocalExecutor`, a `futures` `LocalPool`) and keep submitting from that thread.
    ///
    /// On io_uring the thread gets a kernel ring of its own: while anything of the thread's
    /// waits there (a server's receives), what its tasks submit in one tick of the executor
    /// reaches the kernel in one `io_uring_enter` (an idle ring's submission is entered at once,
    /// and what completes inside the enter is delivered there), and completions are taken on
    /// this thread when the executor's reactor (tokio's inside a tokio runtime, async-io's
    /// elsewhere) reports the ring readable, with no other thread woken in between. Submitters
    /// on different threads, each with its task, share no kernel ring.
    ///
    /// It is never needed for correctness: every operation completes as it would without it,
    /// and if the executor stops polling the task while work waits (the thread blocks), the
    /// backend takes over within milliseconds. The future returns at once where the backend has
    /// no such work, or this thread has such a task already; it returns when the manager's
    /// backend shuts down, and dropping it ends its work.
    ///
    /// ```
    /// use futures::task::LocalSpawnExt;
    /// use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType};
    ///
    /// let manager = IoUringManager::new();
    /// let mut pool = futures::executor::LocalPool::new();
    /// pool.spawner().spawn_local(manager.drive()).unwrap();
    /// let nops: Vec<_> = (0..32).map(|_| manager.submit_async(1, SyscallOpType::Nop).unwrap()).collect();
    /// for done in pool.run_until(futures::future::join_all(nops)) {
    ///     assert!(done.status.is_success());
    /// }
    /// ```
    pub fn drive(&self) -> impl Future<Output = ()> + 'static {
        let task = self.inner.executor.backend().clone().drive();
        async move {
            if let Some(task) = task {
                task.await;
            }
        }
    }

    /// Runs `future` to completion on this thread, which does the backend's work for what it
    /// submits meanwhile: the simplest fast executor for a thread of tenants' tasks (join them
    /// inside `future`, or run a `FuturesUnordered`).
    ///
    /// On io_uring the thread gets a kernel ring of its own, as with [`drive`](Self::drive),
    /// and parks in the kernel between ticks: the one `io_uring_enter` that submits a tick's
    /// operations also waits for the next completion, and a task woken from another thread
    /// wakes it with a NOP. A socket round trip costs two system calls, not four (no reactor's
    /// wait beside it). The thread keeps its ring for its next `block_on` (a ring and its reaper
    /// thread cost a hundred operations to make: a `block_on` of one operation costs a few
    /// microseconds, not hundreds), until the thread or the backend ends; between two, the
    /// ring's reaper sleeps. On the other backends it polls `future` and parks the thread until
    /// it is woken. Only this crate's operations (and wakers from other threads) wake it: a future
    /// that needs another runtime's reactor or timers belongs on that runtime.
    ///
    /// ```
    /// use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType};
    ///
    /// let manager = IoUringManager::new();
    /// let all = manager.block_on(async {
    ///     let nops: Vec<_> = (0..32).map(|_| manager.submit_async(1, SyscallOpType::Nop).unwrap()).collect();
    ///     futures::future::join_all(nops).await
    /// });
    /// assert!(all.iter().all(|done| done.status.is_success()));
    /// ```
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let mut out = None;
        {
            let run = std::pin::pin!(async { out = Some(future.await) });
            self.inner.executor.backend().clone().run_here(run);
        }
        out.expect("run_here returns once the future is ready")
    }

    /// The executor feeding the backend.
    pub fn executor(&self) -> &IoUringExecutor {
        &self.inner.executor
    }
}

/// `entries` for `pid`, each checked to be its.
fn entries_for<E: IntoSubmission>(
    pid: Pid,
    entries: impl IntoIterator<Item = E>,
) -> Result<Vec<SyscallSubmissionEntry>> {
    let entries: Vec<_> = entries.into_iter().map(|e| e.into_submission(pid)).collect();
    entries.iter().try_for_each(|e| check_pid(pid, e))?;
    Ok(entries)
}

/// The one item of an `Option` it borrows, taken only if the iterator is read: what is not
/// taken stays with the lender.
struct TakeOne<'a, T>(&'a mut Option<T>);

impl<T> Iterator for TakeOne<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.0.take()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::from(self.0.is_some());
        (n, Some(n))
    }
}

impl<T> ExactSizeIterator for TakeOne<'_, T> {}

fn check_pid(pid: Pid, entry: &SyscallSubmissionEntry) -> Result<()> {
    if entry.pid != pid {
        return Err(IoUringError::InvalidConfig(format!(
            "an entry of pid {} was submitted to the ring of pid {pid}",
            entry.pid
        )));
    }
    Ok(())
}
