//! Virtual processes: each [`Pid`] has its own descriptor table and sandbox, shared by everything
//! in the crate (rings, the handler registry, the `AsyncSyscallExecutor`), so a descriptor opened
//! one way is usable the other.

mod fd;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use fd::{CachedReads, Descriptor, DescriptorKind, FIRST_FD};

use crate::op::OpError;
use crate::op::Pid;
use crate::sandbox::{Policy, Sandbox};
use fd::FdTable;

/// One virtual process: its descriptors and its sandbox.
#[derive(Debug)]
pub struct Process {
    pid: Pid,
    sandbox: RwLock<Arc<Sandbox>>,
    fds: Mutex<FdTable>,
    /// The policy's weight, kept beside it for the executor, which reads it at every turn.
    weight: AtomicU32,
    /// Whether the policy has a rate limit: only then does the executor read the limits.
    rate_limited: AtomicBool,
    /// The policy's share of the executor's window; 0 for the executor's default.
    max_in_flight: AtomicUsize,
    /// The policy's most bytes per transfer, which handles read to size their transfers.
    max_io_bytes: AtomicUsize,
}

impl Process {
    fn new(pid: Pid, sandbox: Arc<Sandbox>) -> Self {
        let p = Process {
            pid,
            sandbox: RwLock::new(sandbox.clone()),
            fds: Mutex::new(FdTable::default()),
            weight: AtomicU32::new(1),
            rate_limited: AtomicBool::new(false),
            max_in_flight: AtomicUsize::new(0),
            max_io_bytes: AtomicUsize::new(sandbox.policy().io_byte_limit()),
        };
        p.schedule_by(&sandbox);
        p
    }

    /// Keeps the scheduling parts of `sandbox`'s policy where the executor reads them.
    fn schedule_by(&self, sandbox: &Sandbox) {
        let policy = sandbox.policy();
        self.weight.store(policy.scheduling_weight(), Ordering::Relaxed);
        let limited = policy.ops_rate_limit().is_some() || policy.bytes_rate_limit().is_some();
        self.rate_limited.store(limited, Ordering::Relaxed);
        self.max_in_flight.store(policy.in_flight_limit().unwrap_or(0), Ordering::Relaxed);
    }

    /// The most bytes one transfer may move under the policy in force (`max_io_bytes`): what a
    /// handle asks for at most, so that a large buffer makes short transfers, never a refusal
    /// (the policy itself is checked at each submission).
    pub(crate) fn io_limit(&self) -> usize {
        self.max_io_bytes.load(Ordering::Acquire)
    }

    /// The most operations the policy in force lets the process have in the backend at once, if
    /// it sets it (see [`Policy::max_in_flight`]).
    pub fn in_flight_limit(&self) -> Option<usize> {
        Some(self.max_in_flight.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }

    /// The weight of the policy in force (see [`Policy::weight`]).
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Whether the policy in force limits the process's rate (see [`Policy::ops_rate`]).
    pub fn is_rate_limited(&self) -> bool {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The sandbox in force now.
    pub fn sandbox(&self) -> Arc<Sandbox> {
        self.sandbox.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_sandbox(&self, sandbox: Arc<Sandbox>) {
        let mut current = self.sandbox.write().unwrap_or_else(|e| e.into_inner());
        self.schedule_by(&sandbox);
        let limit = sandbox.policy().io_byte_limit();
        *current = sandbox;
        // After the sandbox, under its lock: a handle that reads the new limit submits under
        // the new sandbox (or a later one), never under the old with the new limit.
        self.max_io_bytes.store(limit, Ordering::Release);
    }

    fn fds(&self) -> std::sync::MutexGuard<'_, FdTable> {
        self.fds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The descriptor behind virtual `fd`, or `EBADF`.
    pub fn descriptor(&self, fd: i32) -> Result<Arc<Descriptor>, OpError> {
        self.fds().get(fd)
    }

    /// Installs a kernel descriptor and returns its virtual number; `EMFILE` past the limit of
    /// the policy in force now (the descriptor is closed then). An operation that creates a
    /// descriptor takes its place first instead, with [`reserve_fd`](Self::reserve_fd), so that
    /// a refusal comes before the kernel acts.
    pub fn install(&self, fd: OwnedFd, kind: DescriptorKind) -> Result<i32, OpError> {
        let limit = self.sandbox().policy().open_fd_limit();
        self.fds().insert(Descriptor::new(fd, kind), limit)
    }

    /// Takes a place in the descriptor table for a descriptor an operation is about to create,
    /// under the limit of `rights` (the sandbox the operation was submitted under): `EMFILE` if
    /// open descriptors and places already taken reach it, `EBADF` once the process was
    /// destroyed. Check this before asking the kernel for the descriptor, so a refused `Open`
    /// creates or truncates nothing and a refused `Accept` leaves its connection queued.
    pub fn reserve_fd(self: &Arc<Self>, rights: &Sandbox) -> Result<FdSlot, OpError> {
        self.fds().reserve(rights.policy().open_fd_limit())?;
        Ok(FdSlot { process: self.clone(), used: false })
    }

    /// How many more places [`reserve_fd`](Self::reserve_fd) would give under the limit of
    /// `rights` now.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    pub(crate) fn fd_room(&self, rights: &Sandbox) -> usize {
        self.fds().room(rights.policy().open_fd_limit())
    }

    /// Removes virtual `fd`; the kernel descriptor closes once no running operation uses it.
    pub fn close(&self, fd: i32) -> Result<(), OpError> {
        self.fds().remove(fd).map(drop)
    }

    /// How many descriptors are open.
    pub fn open_descriptors(&self) -> usize {
        self.fds().len()
    }

    /// Closes every descriptor and refuses new ones; returns how many were open.
    pub(crate) fn close_all(&self) -> usize {
        self.fds().close_all()
    }
}

/// A place taken in a process's descriptor table ([`Process::reserve_fd`]): filled by
/// [`install`](Self::install), given back if dropped unused.
#[derive(Debug)]
#[must_use = "a place not installed into is given back"]
pub struct FdSlot {
    process: Arc<Process>,
    used: bool,
}

impl FdSlot {
    /// Installs the new descriptor in this place; returns its virtual number. `EBADF` (and the
    /// descriptor closed) if the process was destroyed meanwhile.
    pub fn install(mut self, d: Descriptor) -> Result<i32, OpError> {
        self.used = true;
        self.process.fds().insert_reserved(d)
    }
}

impl Drop for FdSlot {
    fn drop(&mut self) {
        if !self.used {
            self.process.fds().unreserve();
        }
    }
}

/// Every live process, by pid.
#[derive(Debug, Default)]
pub struct ProcessTable {
    procs: RwLock<HashMap<Pid, Arc<Process>>>,
}

impl ProcessTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process `pid`, if it exists.
    pub fn get(&self, pid: Pid) -> Option<Arc<Process>> {
        self.procs.read().unwrap_or_else(|e| e.into_inner()).get(&pid).cloned()
    }

    /// The process `pid`, created with a deny-all sandbox if new.
    pub fn get_or_create(&self, pid: Pid) -> Arc<Process> {
        if let Some(p) = self.get(pid) {
            return p;
        }
        let mut procs = self.procs.write().unwrap_or_else(|e| e.into_inner());
        procs.entry(pid).or_insert_with(|| Arc::new(Process::new(pid, Arc::new(deny_all())))).clone()
    }

    /// Sets the policy of `pid` (creating the process if new). Fails if a rooted policy's root
    /// cannot be opened.
    pub fn set_policy(&self, pid: Pid, policy: Policy) -> std::io::Result<()> {
        let sandbox = Arc::new(Sandbox::new(policy)?);
        self.get_or_create(pid).set_sandbox(sandbox);
        Ok(())
    }

    /// Removes `pid`, closing its descriptors.
    pub fn remove(&self, pid: Pid) -> Option<Arc<Process>> {
        let p = self.take(pid)?;
        p.close_all();
        Some(p)
    }

    /// Removes `pid` from the table, leaving its descriptors to the caller to close.
    pub(crate) fn take(&self, pid: Pid) -> Option<Arc<Process>> {
        self.procs.write().unwrap_or_else(|e| e.into_inner()).remove(&pid)
    }
}

fn deny_all() -> Sandbox {
    Sandbox::new(Policy::default()).expect("a policy without a root needs no file system")
}

#[cfg(test)]
mod tests;
