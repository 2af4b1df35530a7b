//! The io_uring instance: the submission side (any thread, under a lock), the in-flight table,
//! and the reaper thread that takes completions.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::Waker;
use std::time::Duration;

use atomic_waker::AtomicWaker;

use io_uring::{IoUring, Probe, opcode, squeue, types};
use slab::Slab;
use std::os::fd::AsRawFd;

use super::prepare::{self, Descriptors, Prepared};
use crate::backend::Stop;
use crate::backend::net_ops::provided::Provided;
use crate::backend::{Batch, BatchRuns, Completer, Dispatched, Freed, Origin, Queued, Submission};
use crate::op::SyscallOpType;
use crate::op::{OpError, errno};
use crate::process::Process;

/// `user_data` of the NOPs that wake whoever waits in the kernel (the reaper, a parked owner).
const WAKE: u64 = u64::MAX;
/// `user_data` of cancellation requests (their completions carry nothing to deliver).
const CANCEL: u64 = u64::MAX - 1;

/// Whose an operation's outcome is: the ring of its run, kept once in the table's `rings` under
/// `pin`, its sequence number there, and whether it holds a place in the executor's window.
pub(super) struct Owner {
    pin: usize,
    seq: u64,
    counted: bool,
}

impl Owner {
    fn origin<'a>(&self, rings: &'a Slab<Pin>) -> &'a Origin {
        &rings[self.pin].origin
    }

    /// Takes the operation's place in its executor's window off it: the ring whose executor
    /// gets it back, if it had one.
    fn take_window(&mut self, rings: &Slab<Pin>) -> Option<Origin> {
        std::mem::take(&mut self.counted).then(|| self.origin(rings).clone())
    }

    /// The completer of an operation that leaves the table other than in a delivered run of its
    /// ring's, with a reference of its own to the ring.
    fn completer(self, rings: &mut Slab<Pin>) -> Completer {
        let completer = Completer::new(self.origin(rings).clone(), self.seq, self.counted);
        unpin(rings, self.pin, 1);
        completer
    }
}

/// A ring kept once for a run of its operations, and how many of them the kernel still holds.
pub(super) struct Pin {
    origin: Origin,
    left: usize,
}

/// The runs of a batch being submitted, each kept in the table as its first operation is.
struct Runs {
    runs: <BatchRuns as IntoIterator>::IntoIter,
    /// The run of the last operation submitted, and how many of its operations are still to be.
    pin: usize,
    left: usize,
}

impl Runs {
    /// The run of the next operation, kept in `rings` if it is its first.
    fn pin_next(&mut self, rings: &mut Slab<Pin>) -> usize {
        if self.left == 0 {
            let (origin, len) = self.runs.next().expect("every operation is in a run");
            self.pin = rings.insert(Pin { origin, left: len });
            self.left = len;
        }
        self.left -= 1;
        self.pin
    }
}

/// Lets go of `n` of `pin`'s operations; the ring goes once none is left.
fn unpin(rings: &mut Slab<Pin>, pin: usize, n: usize) {
    rings[pin].left -= n;
    if rings[pin].left == 0 {
        rings.remove(pin);
    }
}

/// The operations the kernel holds, and the rings their batches share. Its lock also
/// serialises taking completions (the kernel's completion queue has one consumer at a time):
/// whoever holds it may take them, and `ready` is the vector a pass gathers them in, kept for
/// the next pass.
#[derive(Default)]
struct Table {
    ops: Slab<InFlight>,
    rings: Slab<Pin>,
    ready: Vec<(usize, i32)>,
}

/// What a pass over the completions leaves to do once the table's lock is let go.
#[derive(Default)]
struct Taken {
    /// Requests to hand back to the kernel.
    again: Vec<squeue::Entry>,
    /// Who each request handed back belongs to: its ring, sequence number and `user_data`.
    resent: Vec<(Origin, u64, u64)>,
    /// The rooms the delivered operations free.
    freed: Freed,
    /// The wake-ups multishot requests' results leave.
    shots: Freed,
    /// Multishot requests to stop, by `user_data`.
    stops: Vec<u64>,
}

/// An operation the kernel holds: everything it points into lives here until its completion.
struct InFlight {
    /// The high half of its `user_data`.
    generation: u32,
    /// How often the kernel cancelled it on its own.
    requeued: u8,
    /// What the kernel points into; its entry is built from it, in place (and again, to submit
    /// it again if the kernel cancels it on its own).
    prepared: Prepared,
    owner: Owner,
}

/// What a thread's batch keeps of its requests between pushing them and registering those left
/// in the kernel: kept by the thread for its next batch, empty, so that a batch allocates none.
#[derive(Default)]
struct Scratch {
    /// The requests pushed, as (`user_data`, seq); then those still in flight.
    submitted: Vec<(u64, u64)>,
    /// The rings of those still in flight, each with how many (consecutive) are its.
    runs: Vec<(Origin, usize)>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// The most requests one `io_uring_enter` submits: the kernel runs what completes at once (page-
/// cached reads) inside the enter, under its ring's lock, and the in-flight table's lock is held
/// while a batch is prepared and delivered; larger batches are cut, so another tenant's request
/// waits for at most this many of a neighbour's, not for its whole batch.
const ENTER_AT_MOST: usize = 32;

/// The most rings of provided buffers (multishot receives, see `net_ops::provided`) one
/// process may have registered with one kernel ring at once: past it, its multishot receives
/// run on the pools, so that no tenant takes the ring's buffer group ids from the others.
pub(super) const GROUPS_PER_PROCESS: usize = 16;

/// The buffer group ids of a kernel ring's multishot receives: free ones, the next never used,
/// and how many each process holds (by the address of its `Process`, alive while it holds one:
/// its operations keep it).
#[derive(Default)]
struct Groups {
    free: Vec<u16>,
    next: u32,
    held: rustc_hash::FxHashMap<usize, usize>,
}

impl Groups {
    fn has_room(&self, process: usize) -> bool {
        (!self.free.is_empty() || self.next <= u32::from(u16::MAX))
            && self.held.get(&process).is_none_or(|&n| n < GROUPS_PER_PROCESS)
    }
}

/// How often an operation is submitted again after the kernel cancelled it on its own (its
/// submitting thread exited) before the cancellation is reported.
const MAX_REQUEUES: u8 = 16;

pub(super) struct Driver {
    ring: IoUring,
    /// Serialises access to the submission queue (the kernel's ring memory).
    sq: Mutex<()>,
    /// The in-flight table; its lock is also the completion queue's (see [`Table`]).
    in_flight: Mutex<Table>,
    /// High half of every `user_data`, so a late cancel never hits a reused slot.
    generation: AtomicU32,
    supported: Vec<bool>,
    /// Whether the kernel waits on a non-blocking socket itself (see [`kernel_waits_on_sockets`]).
    sockets_wait: bool,
    shutting_down: AtomicBool,
    /// Whether the reaper is parked on `rouse`, outside the kernel. It parks whenever nothing is
    /// in flight: a submitter takes what the kernel finished inside its own enter (NOPs,
    /// page-cached reads), and a reaper waiting in the kernel meanwhile would be woken for every
    /// one of those completions only to find them taken.
    reaper_parked: Mutex<bool>,
    rouse: Condvar,
    /// Set on a thread's own ring (see [`Local`]); `None` on the shared rings.
    local: Option<Local>,
    /// The buffer group ids of the multishot receives in flight.
    groups: Mutex<Groups>,
    /// The pools of registered buffers this ring registered. After `ring`: the kernel ring is
    /// closed before they are let go.
    fixed: Mutex<super::fixed::Registered>,
    /// [`retired_pools`](super::fixed::retired_pools) at `fixed`'s last sweep.
    fixed_swept: AtomicU64,
    /// What the kernel sent back, counted for tests.
    #[cfg(test)]
    counts: Counts,
}

/// What a thread's own ring keeps for the drive task that does its work on that thread (see
/// `super::local`). While the task lives and anything is in flight on the ring, that thread's
/// submissions are pushed to the submission queue without entering the kernel and the task is
/// woken: every submission of one executor tick reaches the kernel in the task's one
/// `io_uring_enter` (an idle ring's batch is entered at once), and the task takes the
/// completions on that thread as its executor's reactor reports the ring readable. The reaper
/// then only watches: if the task makes no pass for a while with work waiting (its executor is
/// blocked), the reaper makes one, so that nothing waits on a task that cannot run.
pub(super) struct Local {
    /// The task's waker.
    waker: AtomicWaker,
    /// Whether the task is alive.
    driving: AtomicBool,
    /// Submissions were pushed and not entered since the task's last pass.
    unsubmitted: AtomicBool,
    /// Passes the task made, for the reaper's watch.
    passes: AtomicU64,
    /// Every submission is deferred, even on an idle ring: the thread parks in the kernel with
    /// the enter that submits them (`IoUringManager::block_on`).
    defer_all: AtomicBool,
}

/// How long the reaper lets a drive task go without a pass while work waits, at first (and
/// after it had to take over); doubled while the task keeps up or nothing waits, up to
/// [`WATCH_AT_MOST`].
const WATCH_EVERY: Duration = Duration::from_millis(2);
const WATCH_AT_MOST: Duration = Duration::from_millis(64);

/// Completions the driver did not deliver, or delivered otherwise than the kernel reported them.
#[cfg(test)]
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Requests interrupted on a kernel worker (`EINTR`).
    pub(super) interrupted: std::sync::atomic::AtomicUsize,
    /// Socket requests sent back to wait after an `EAGAIN`.
    pub(super) sent_back: std::sync::atomic::AtomicUsize,
    /// `io_uring_enter` calls that submitted what was pushed.
    pub(super) enters: std::sync::atomic::AtomicUsize,
    /// Passes the reaper made for a drive task that made none.
    pub(super) taken_over: std::sync::atomic::AtomicUsize,
    /// Keeps the reaper from taking over a drive task's passes.
    pub(super) hold_watch: AtomicBool,
    /// Requests prepared with a registered buffer (`READ_FIXED`, `WRITE_FIXED`).
    pub(super) fixed: std::sync::atomic::AtomicUsize,
}

impl Driver {
    /// Sets up the ring and starts the reaper. Socket requests go to the kernel only if
    /// `kernel_sockets` and the kernel waits on non-blocking sockets. A `local` ring is one
    /// thread's own, worked by a drive task on that thread while one lives.
    pub(super) fn start(entries: u32, kernel_sockets: bool, local: bool) -> io::Result<Arc<Self>> {
        // Without the SQ's index array (Linux 6.6 and later) the kernel reads entries in order,
        // one indirection less per entry; older kernels refuse the flag with EINVAL.
        let mut ring = match IoUring::builder().setup_no_sqarray().build(entries) {
            Ok(ring) => ring,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => IoUring::new(entries)?,
            Err(e) => return Err(e),
        };
        if !ring.params().is_feature_nodrop() {
            // Without NODROP a burst of completions could be lost: use another backend.
            return Err(io::Error::from_raw_os_error(rustix::io::Errno::NOSYS.raw_os_error()));
        }
        bound_kernel_workers(&ring);
        let mut probe = Probe::new();
        let supported: Vec<bool> = match ring.submitter().register_probe(&mut probe) {
            Ok(()) => (0..=u8::MAX).map(|code| probe.is_supported(code)).collect(),
            // No probe (before 5.6): only NOP is taken for granted.
            Err(_) => (0..=u8::MAX).map(|code| code == opcode::Nop::CODE).collect(),
        };
        let sockets_wait =
            kernel_sockets && supported[usize::from(opcode::Recv::CODE)] && kernel_waits_on_sockets(&mut ring);
        let driver = Arc::new(Driver {
            ring,
            sq: Mutex::new(()),
            in_flight: Mutex::new(Table::default()),
            generation: AtomicU32::new(0),
            supported,
            sockets_wait,
            shutting_down: AtomicBool::new(false),
            reaper_parked: Mutex::new(false),
            rouse: Condvar::new(),
            local: local.then(|| Local {
                waker: AtomicWaker::new(),
                driving: AtomicBool::new(false),
                unsubmitted: AtomicBool::new(false),
                passes: AtomicU64::new(0),
                defer_all: AtomicBool::new(false),
            }),
            groups: Mutex::new(Groups::default()),
            fixed: Mutex::new(super::fixed::Registered::default()),
            fixed_swept: AtomicU64::new(0),
            #[cfg(test)]
            counts: Counts::default(),
        });
        let reaper = driver.clone();
        std::thread::Builder::new().name("ai-os-kernel-uring-reaper".into()).spawn(move || reaper.reap())?;
        Ok(driver)
    }

    pub(super) fn supports(&self, code: u8) -> bool {
        self.supported[usize::from(code)]
    }

    /// Whether the kernel accepts many connections for one request (`IORING_ACCEPT_MULTISHOT`,
    /// Linux 5.19): asked of the probe through `IORING_OP_SOCKET`, which came in the same
    /// release.
    pub(super) fn multishot_accept(&self) -> bool {
        self.supports(opcode::Socket::CODE)
    }

    /// Whether the kernel receives many times for one request into provided buffers
    /// (`IORING_RECV_MULTISHOT`, Linux 6.0): asked of the probe through `IORING_OP_SEND_ZC`,
    /// which came in the same release.
    pub(super) fn multishot_recv(&self) -> bool {
        self.supports(opcode::SendZc::CODE)
    }

    /// Whether `process` may register one more ring of provided buffers with this ring.
    pub(super) fn has_group_for(&self, process: &Process) -> bool {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).has_room(process_key(process))
    }

    /// Registers `provided` under a free buffer group id, for `process`.
    fn register_group(&self, process: &Process, provided: &mut Provided) -> Result<(), OpError> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let key = process_key(process);
        if !groups.has_room(key) {
            return Err(OpError::new(
                rustix::io::Errno::NOBUFS.raw_os_error(),
                "no buffer group left for a multishot receive",
            ));
        }
        let id = match groups.free.pop() {
            Some(id) => id,
            None => {
                groups.next += 1;
                (groups.next - 1) as u16
            }
        };
        let (addr, entries) = provided.ring();
        // SAFETY: the ring and the buffers it points to are owned by `provided`, which stays in
        // the in-flight table until the request completes, and is freed only once unregistered
        // (`unregister_group`; one that fails to unregister is never freed).
        match unsafe { self.ring.submitter().register_buf_ring_with_flags(addr, entries, id, 0) } {
            Ok(()) => {
                provided.group = Some(id);
                *groups.held.entry(key).or_default() += 1;
                Ok(())
            }
            Err(e) => {
                groups.free.push(id);
                Err(OpError::from(e))
            }
        }
    }

    /// Unregisters the ring of provided buffers of a request the kernel is done with.
    fn unregister_group(&self, process: &Process, provided: &mut Provided) {
        let Some(id) = provided.group else { return };
        let unregistered = loop {
            match self.ring.submitter().unregister_buf_ring(id) {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INTR.raw_os_error()) => continue,
                done => break done.is_ok(),
            }
        };
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if unregistered {
            provided.group = None;
            groups.free.push(id);
        }
        // One left registered is never freed (see `Provided`'s drop) and its id never used
        // again; the process's count goes down either way.
        let key = process_key(process);
        if let Some(n) = groups.held.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                groups.held.remove(&key);
            }
        }
    }

    /// Whether socket requests may go to the kernel.
    pub(super) fn sockets_wait(&self) -> bool {
        self.sockets_wait
    }

    pub(super) fn in_flight(&self) -> usize {
        self.table().ops.len()
    }

    /// Rings kept for batches with operations still in the kernel.
    #[cfg(test)]
    pub(super) fn pinned_rings(&self) -> usize {
        self.table().rings.len()
    }

    /// What the kernel sent back so far.
    #[cfg(test)]
    pub(super) fn counts(&self) -> &Counts {
        &self.counts
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a batch to the kernel, [`ENTER_AT_MOST`] requests per `io_uring_enter`, each run's
    /// ring kept once for all its operations. An operation that cannot even be prepared (a bad
    /// descriptor, say) completes at once with its error.
    /// Returns the operations to run elsewhere: multishot receives with no buffer group left
    /// for their process on this ring.
    #[must_use = "the operations returned must run elsewhere"]
    pub(super) fn submit(self: &Arc<Self>, batch: Batch, fds: &mut Descriptors) -> Vec<Submission> {
        let mut elsewhere = Vec::new();
        if batch.is_empty() {
            return elsewhere;
        }
        let (runs, ops) = batch.into_runs();
        let mut runs = Runs { runs: runs.into_iter(), pin: 0, left: 0 };
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            self.submit_some(ops.by_ref().take(ENTER_AT_MOST), &mut runs, fds, &mut elsewhere);
        }
        elsewhere
    }

    /// [`submit`](Self::submit) of at most [`ENTER_AT_MOST`] requests: one enter.
    fn submit_some(
        self: &Arc<Self>,
        ops: impl Iterator<Item = Queued>,
        runs: &mut Runs,
        fds: &mut Descriptors,
        elsewhere: &mut Vec<Submission>,
    ) {
        // Retired pools of registered buffers are let go at the first submission after.
        if super::fixed::retired_pools() != self.fixed_swept.load(Ordering::Relaxed) {
            let swept = self.fixed.lock().unwrap_or_else(|e| e.into_inner()).sweep(&self.ring);
            self.fixed_swept.store(swept, Ordering::Relaxed);
        }
        // The requests pushed, for those still in flight after the enter (the thread's vector
        // from its last batch, so that each batch does not allocate one).
        let Scratch { mut submitted, runs: mut left_runs } = SCRATCH.try_with(|s| s.take()).unwrap_or_default();
        let mut refused = Vec::new();
        let mut left_window = Vec::new();
        let deferred;
        {
            let mut guard = self.table();
            let Table { ops: table, rings, .. } = &mut *guard;
            // A thread's own ring with its drive task alive: pushed here, entered by the task,
            // with whatever else this tick submits, if anything is in flight already (a tick
            // of a server's tasks). An idle ring's batch is entered at once, and what completes
            // inside the enter is delivered here: a task that submits one operation at a time
            // and waits for it gets it back without a turn of its executor.
            deferred = self.local.as_ref().is_some_and(|l| {
                l.driving.load(Ordering::Acquire) && (!table.is_empty() || l.defer_all.load(Ordering::Acquire))
            });
            let sq_lock = self.sq.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: the `sq` lock is held, so no other `SubmissionQueue` of this ring exists.
            let mut sq = unsafe { self.ring.submission_shared() };
            let generation = self.generation.fetch_add(1, Ordering::Relaxed);
            for (Dispatched { seq, op }, counted) in ops {
                let mut owner = Owner { pin: runs.pin_next(rings), seq, counted };
                // A multishot receive holds no buffer: kept to run elsewhere if it must.
                let receive = matches!(op, SyscallOpType::RecvMulti { .. }).then(|| op.clone());
                match prepare::prepare(op, owner.origin(rings), seq, fds) {
                    Ok(mut prepared) => {
                        // A registered buffer's index here, its pool registered first if it
                        // must be (a plain read or write of the same memory where it cannot).
                        if let Some((pool, index, fixed)) = prepared.fixed() {
                            *fixed =
                                self.fixed.lock().unwrap_or_else(|e| e.into_inner()).index(&self.ring, pool, index);
                            #[cfg(test)]
                            self.counts.fixed.fetch_add(usize::from(fixed.is_some()), Ordering::Relaxed);
                        }
                        // A multishot receive's buffers, registered before it is submitted; with
                        // no group left for its process here, it runs on the fallback.
                        if let Some(provided) = prepared.provided()
                            && let Err(e) = self.register_group(owner.origin(rings).process(), provided)
                        {
                            match receive {
                                Some(op) if e.errno() == rustix::io::Errno::NOBUFS.raw_os_error() => {
                                    elsewhere.push(Submission::new(owner.completer(rings), op))
                                }
                                _ => refused.push((owner.completer(rings), e)),
                            }
                            continue;
                        }
                        // A `Read` or `Write` of a socket waits on its peer as a `Recv` does,
                        // which the executor could not tell: it holds no place in the window
                        // (given back once the locks here are let go).
                        if prepared.waits_on_peer()
                            && let Some(origin) = owner.take_window(rings)
                        {
                            left_window.push(origin);
                        }
                        let slot = table.vacant_entry();
                        let user_data = u64::from(generation) << 32 | slot.key() as u64;
                        // The entry is built from the table's copy, where it stays, not built
                        // first and copied after (a store-forwarding stall on a fresh value).
                        let f = slot.insert(InFlight { generation, requeued: 0, prepared, owner });
                        let sqe = f.prepared.sqe(user_data);
                        // SAFETY: what `sqe` points to is owned by its table entry, which stays
                        // until the kernel reports the request complete: no completion is taken
                        // without the table's lock, held here.
                        unsafe { self.queue(&mut sq, &sqe) };
                        submitted.push((user_data, seq));
                    }
                    Err(e) => refused.push((owner.completer(rings), e)),
                }
            }
            // The kernel may now complete them, but they are taken only once the table is free.
            drop(guard);
            let pushed = !sq.is_empty();
            if pushed {
                sq.sync();
            }
            // The queue is let go of before the enter, which runs what completes at once (page-
            // cached reads) and may take a while: another thread's batch is pushed meanwhile,
            // and its own enter (or this one) submits it. (The queue writes its tail back when
            // dropped: dropped under the lock.)
            drop(sq);
            drop(sq_lock);
            if pushed && !deferred {
                self.submit_pushed();
            }
        }
        // Under one lock of the table: operations the kernel finished inside that enter (NOPs,
        // page-cached reads) are delivered here and now, sparing the reaper's wake-up and the
        // waiter's (deferred, the drive task enters and takes them); then only what is still
        // in the kernel can be cancelled there: each is registered with its ring as stopped by
        // this driver (no allocation; one that completes just after this is left alone by its
        // ring, or asks the kernel to cancel an unknown request, which is harmless). Whatever
        // of this batch is still there needs the reaper in the kernel (what other submitters
        // left there, they rouse it for: a reaper roused for every submission while another
        // thread's operation waits would be woken for each, for nothing). `submitted` keeps
        // them, in `left_runs` of one ring each.
        let entered_none = deferred && !submitted.is_empty();
        let taken = {
            let mut guard = self.table();
            let taken = if deferred { Taken::default() } else { self.take_ready(&mut guard) };
            let Table { ops: table, rings, .. } = &mut *guard;
            let mut last_pin = None;
            if table.is_empty() {
                submitted.clear();
            }
            submitted.retain(|&(user_data, _)| {
                let Some(f) = in_flight(table, user_data) else { return false };
                match left_runs.last_mut() {
                    Some((_, n)) if last_pin == Some(f.owner.pin) => *n += 1,
                    _ => left_runs.push((f.owner.origin(rings).clone(), 1)),
                }
                last_pin = Some(f.owner.pin);
                true
            });
            taken
        };
        self.finish(taken);
        let left_in_flight = !submitted.is_empty();
        if let (Some(local), true) = (&self.local, entered_none) {
            local.unsubmitted.store(true, Ordering::Release);
            local.waker.wake();
        } else if left_in_flight {
            self.rouse_reaper();
        }
        if left_in_flight {
            let me: Weak<dyn Stop> = Arc::downgrade(self) as Weak<Driver>;
            let mut stops = submitted.drain(..).map(|(user_data, seq)| (seq, user_data));
            for (origin, n) in left_runs.drain(..) {
                origin.stop_with(stops.by_ref().take(n), &me);
            }
        }
        // Both empty again (drained, or nothing was left in flight).
        let _ = SCRATCH.try_with(|s| s.set(Scratch { submitted, runs: left_runs }));
        // Completed outside the table's lock: completing may submit the next batch.
        for (completer, e) in refused {
            completer.complete(Err(e));
        }
        for origin in left_window {
            origin.release(1);
        }
    }

    /// Pushes entries and enters the kernel once (more often only if the queue fills up).
    fn push(&self, sqes: &[squeue::Entry]) {
        if sqes.is_empty() {
            return;
        }
        let _sq = self.sq.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the `sq` lock is held, so no other `SubmissionQueue` of this ring exists.
        let mut sq = unsafe { self.ring.submission_shared() };
        for sqe in sqes {
            // SAFETY: every pointer in `sqe` refers to memory owned by its `InFlight` entry in the
            // table (heap buffers, a boxed `open_how`, a `CString`), or to a descriptor kept open
            // by an `Arc` there; entries leave the table only when the kernel reports the
            // operation complete, so the memory outlives the kernel's use of it. (A cancel
            // request points at no memory.)
            unsafe { self.queue(&mut sq, sqe) };
        }
        sq.sync();
        self.enter(&mut sq);
    }

    /// Puts `sqe` in the submission queue, entering the kernel first if the queue is full.
    ///
    /// # Safety
    ///
    /// Everything `sqe` points to must stay valid until the kernel reports it complete.
    #[inline]
    unsafe fn queue(&self, sq: &mut io_uring::SubmissionQueue<'_>, sqe: &squeue::Entry) {
        // SAFETY: the caller keeps what `sqe` points to alive until its completion.
        while unsafe { sq.push(sqe) }.is_err() {
            sq.sync();
            self.enter(sq);
        }
    }

    fn enter(&self, sq: &mut io_uring::SubmissionQueue<'_>) {
        self.submit_pushed();
        sq.sync();
    }

    /// Submits what is pushed (by this thread or any other) with one `io_uring_enter`.
    fn submit_pushed(&self) {
        #[cfg(test)]
        self.counts.enters.fetch_add(1, Ordering::Relaxed);
        loop {
            match self.ring.submitter().submit() {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INTR.raw_os_error()) => continue,
                // EBUSY/EAGAIN: completions must be reaped first; the reaper's own enter
                // submits what is left.
                Err(e) => {
                    tracing::debug!(error = %e, "io_uring_enter deferred to the reaper");
                    break;
                }
            }
        }
    }

    /// Asks the kernel to cancel `user_data` (harmless if it already completed).
    fn cancel(&self, user_data: u64) {
        let sqe = opcode::AsyncCancel::new(user_data).build().user_data(CANCEL);
        self.push(&[sqe]);
    }

    /// Whether the ring was shut down (its reaper ends once nothing is left in flight).
    pub(super) fn is_shut_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(super) fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
        // A drive task ends at its next poll.
        if let Some(local) = &self.local {
            local.waker.wake();
        }
        // A reaper (or an owner) waiting in the kernel comes out.
        self.wake_parked();
        let _parked = self.reaper_parked.lock().unwrap_or_else(|e| e.into_inner());
        self.rouse.notify_one();
    }

    /// Sends the reaper into the kernel: something is left in flight once the submitter has
    /// taken what completed inside its enter.
    fn rouse_reaper(&self) {
        // Taken after the table showed work, under the lock the reaper parks with: a reaper about
        // to park sees that work, or is parked already and is woken.
        let parked = self.reaper_parked.lock().unwrap_or_else(|e| e.into_inner());
        if *parked {
            self.rouse.notify_one();
        }
    }

    /// Parks the reaper while nothing is in flight.
    fn park_while_idle(&self) {
        let mut parked = self.reaper_parked.lock().unwrap_or_else(|e| e.into_inner());
        while self.table().ops.is_empty() && !self.shutting_down.load(Ordering::Acquire) && self.driven().is_none() {
            *parked = true;
            parked = self.rouse.wait(parked).unwrap_or_else(|e| e.into_inner());
        }
        *parked = false;
    }

    /// The reaper: waits for completions and delivers them, until shut down with nothing left.
    fn reap(self: Arc<Self>) {
        let mut watch = WATCH_EVERY;
        loop {
            if let Some(local) = self.driven() {
                watch = self.watch(local, watch);
                continue;
            }
            self.park_while_idle();
            if self.shutting_down.load(Ordering::Acquire) && self.table().ops.is_empty() {
                return;
            }
            if self.driven().is_some() {
                continue;
            }
            match self.ring.submitter().submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INTR.raw_os_error()) => continue,
                Err(e) => tracing::debug!(error = %e, "io_uring_enter while reaping"),
            }
            self.deliver_ready();
            if self.shutting_down.load(Ordering::Acquire) && self.table().ops.is_empty() {
                return;
            }
        }
    }

    /// What a live drive task keeps, while one works this ring and the backend is not shutting
    /// down (then the reaper reaps what is left itself).
    fn driven(&self) -> Option<&Local> {
        self.local.as_ref().filter(|l| l.driving.load(Ordering::Acquire) && !self.shutting_down.load(Ordering::Acquire))
    }

    /// The reaper's turn while a drive task works the ring: waits up to `every` (or until the
    /// task ends), then, if the task made no pass meanwhile and work waits (submissions not
    /// entered, completions not taken), makes one itself. How long to wait next time.
    fn watch(&self, local: &Local, every: Duration) -> Duration {
        let before = local.passes.load(Ordering::Acquire);
        {
            let parked = self.reaper_parked.lock().unwrap_or_else(|e| e.into_inner());
            if local.driving.load(Ordering::Acquire) && !self.shutting_down.load(Ordering::Acquire) {
                drop(self.rouse.wait_timeout(parked, every).unwrap_or_else(|e| e.into_inner()));
            }
        }
        // The task is working: look less often (at most every `WATCH_AT_MOST`, which bounds how
        // long a stall goes unnoticed), so that a busy thread's reaper is not woken 500 times a
        // second for nothing.
        if local.passes.load(Ordering::Acquire) != before {
            return (every * 2).min(WATCH_AT_MOST);
        }
        #[cfg(test)]
        if self.counts.hold_watch.load(Ordering::Relaxed) {
            return WATCH_EVERY;
        }
        let waiting = local.unsubmitted.load(Ordering::Acquire) || self.needs_enter() || {
            let _table = self.table();
            // SAFETY: the table's lock is held, so no other `CompletionQueue` of this ring exists.
            !unsafe { self.ring.completion_shared() }.is_empty()
        };
        if !waiting {
            return (every * 2).min(WATCH_AT_MOST);
        }
        #[cfg(test)]
        self.counts.taken_over.fetch_add(1, Ordering::Relaxed);
        self.pass(local);
        WATCH_EVERY
    }

    /// One pass over a thread's own ring: enters the kernel for what was pushed and not
    /// entered (or for completions the kernel holds back while the queue is full), then
    /// delivers what completed.
    fn pass(&self, local: &Local) {
        local.passes.fetch_add(1, Ordering::AcqRel);
        if local.unsubmitted.swap(false, Ordering::AcqRel) || self.needs_enter() {
            self.submit_pushed();
        }
        self.deliver_ready();
    }

    /// Whether the ring itself holds work for an enter: entries pushed that the kernel has not
    /// taken (an enter refused with `EBUSY`, or cut short), or completions it keeps aside
    /// because the queue was full, which only an enter that asks for events brings back.
    fn needs_enter(&self) -> bool {
        let _sq = self.sq.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the `sq` lock is held, so no other `SubmissionQueue` of this ring exists.
        let sq = unsafe { self.ring.submission_shared() };
        !sq.is_empty() || sq.cq_overflow()
    }

    /// A drive task's pass on its thread: registers its waker, then makes a pass. False on a
    /// ring that is no thread's own, or once the backend shuts down (the task ends).
    pub(super) fn drive_pass(&self, waker: &Waker) -> bool {
        if let Some(local) = &self.local {
            local.waker.register(waker);
        }
        self.pass_here()
    }

    /// Parks the thread that owns this ring in the kernel until a completion comes (a thread
    /// waking it sends a `WAKE` NOP, [`wake_parked`](Self::wake_parked)), entering what was
    /// pushed on the way in. A completion already waiting returns at once. Takes nothing: the
    /// caller makes a pass after it.
    pub(super) fn park_in_kernel(&self) {
        let Some(local) = &self.local else { return };
        local.unsubmitted.store(false, Ordering::Release);
        #[cfg(test)]
        self.counts.enters.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.ring.submitter().submit_and_wait(1)
            && e.raw_os_error() != Some(rustix::io::Errno::INTR.raw_os_error())
        {
            // EBUSY: completions must be taken first, which the caller's pass does.
            tracing::debug!(error = %e, "io_uring_enter while parked");
        }
    }

    /// Defers every submission to this ring's owner, idle or not (see [`Local::defer_all`]).
    pub(super) fn defer_all(&self, on: bool) {
        if let Some(local) = &self.local {
            local.defer_all.store(on, Ordering::Release);
        }
    }

    /// A pass over a thread's own ring by the thread itself, its drive task's waker left as it
    /// is. False once the backend shuts down.
    pub(super) fn pass_here(&self) -> bool {
        let Some(local) = &self.local else { return false };
        if self.shutting_down.load(Ordering::Acquire) {
            return false;
        }
        self.pass(local);
        true
    }

    /// Wakes whoever waits in the kernel on this ring: the thread parked in
    /// [`park_in_kernel`](Self::park_in_kernel), or the reaper (harmless if nobody waits: the
    /// NOP's completion is taken and ignored).
    pub(super) fn wake_parked(&self) {
        self.push(&[opcode::Nop::new().build().user_data(WAKE)]);
    }

    /// Whether work waits for the drive task's next pass (pushed during its pass, or left in
    /// the ring by it).
    pub(super) fn needs_pass(&self) -> bool {
        self.local.as_ref().is_some_and(|l| l.unsubmitted.load(Ordering::Acquire)) || self.needs_enter()
    }

    /// Starts or ends the drive task's work on this ring. Ended, what it left is entered and the
    /// reaper reaps again (and, as the ring is no thread's own any more, shuts down once its
    /// last operation completes).
    pub(super) fn set_driving(&self, on: bool) {
        let Some(local) = &self.local else { return };
        local.driving.store(on, Ordering::Release);
        if on {
            // A reaper waiting in the kernel comes out to watch instead.
            self.wake_parked();
        } else if local.unsubmitted.swap(false, Ordering::AcqRel) {
            self.submit_pushed();
        }
        // A reaper parked or watching looks again.
        let _parked = self.reaper_parked.lock().unwrap_or_else(|e| e.into_inner());
        self.rouse.notify_one();
    }

    /// The ring's descriptor: readable while completions wait to be taken.
    pub(super) fn ring_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }

    /// Takes every completion ready now and delivers it.
    fn deliver_ready(&self) {
        let taken = self.take_ready(&mut self.table());
        self.finish(taken);
    }

    /// Takes every completion ready now and delivers it, under the table's lock (`table`, from
    /// its guard, proves the caller is the only one taking completions): what is left to do
    /// once the lock is let go ([`finish`](Self::finish)).
    fn take_ready(&self, table: &mut Table) -> Taken {
        // SAFETY: the table's lock is held, so no other `CompletionQueue` of this ring exists.
        let mut cq = unsafe { self.ring.completion_shared() };
        if cq.is_empty() {
            return Taken::default();
        }
        let Table { ops: table, rings, ready } = table;
        // Empty, unless a pass panicked half-way: keys it left may name reused slots by now.
        ready.clear();
        let mut again = Vec::new();
        // Who each request sent back belongs to, to ask again after it is back (see `finish`).
        let mut resent = Vec::new();
        let (mut shots, mut stops) = (Freed::default(), Vec::new());
        let freed = {
            for c in &mut cq {
                let (user_data, mut result) = (c.user_data(), stopped_is_cancelled(c.result()));
                let Some(op) = in_flight(table, user_data) else { continue };
                // A multishot request's connection: handed to its stream at once. The request
                // is stopped once its stream asks no more (or no place is left for the next);
                // it goes on unless the kernel ended it.
                if result >= 0
                    && let Some(kind) = op.prepared.multishot()
                {
                    let (origin, seq) = (op.owner.origin(rings), op.owner.seq);
                    let (shot, stop) = kind.result(result, c.flags());
                    let mut goes_on = !stop;
                    if let Some(shot) = shot {
                        let (more, delivered) = origin.more_later(seq, Ok(shot));
                        goes_on &= more;
                        shots.push(origin.clone(), 0, delivered);
                    }
                    let more = io_uring::cqueue::more(c.flags());
                    if goes_on && more {
                        kind.give_back(c.flags());
                    }
                    if !goes_on && more {
                        // Asked again at each result while it lives: a cancellation that came
                        // at a moment it could not take (`EALREADY`) is not the last word.
                        kind.stop();
                        stops.push(user_data);
                    }
                    if more {
                        continue;
                    }
                    // Its last: the kernel ended it after this result (a full CQ, say), or at a
                    // receive's end of file.
                    if origin.is_cancelled(seq) {
                        kind.cancelled();
                        result = -rustix::io::Errno::CANCELED.raw_os_error();
                    }
                    ready.push((key_of(user_data), result));
                    continue;
                }
                #[cfg(test)]
                if c.result() == -rustix::io::Errno::INTR.raw_os_error() {
                    self.counts.interrupted.fetch_add(1, Ordering::Relaxed);
                }
                // Cancelled by the kernel, or a socket request it stopped waiting for: nothing was
                // done, and unless the cancellation was asked for, the request goes back to the
                // kernel (from this thread, the reaper mostly); if it was, it ends cancelled.
                // A failed receive's buffer holds nothing: the kernel's again, for a request
                // submitted again.
                if let Some(kind) = op.prepared.multishot() {
                    kind.give_back(c.flags());
                }
                // A registered buffer's request whose slot was cleared before the kernel took it
                // (its pool retired meanwhile): the kernel found no such buffer there and
                // touched nothing. It goes back as a plain request of the same memory, once.
                if result == -rustix::io::Errno::FAULT.raw_os_error() && op.prepared.unfix() {
                    resent.push((op.owner.origin(rings).clone(), op.owner.seq, user_data));
                    again.push(op.prepared.sqe(user_data));
                    continue;
                }
                let stopped = result == -rustix::io::Errno::CANCELED.raw_os_error();
                // A multishot receive the kernel outran (its buffers, all handed back by now, were
                // full as more came) goes on, unless it is being stopped.
                let rearm = result == -rustix::io::Errno::NOBUFS.raw_os_error()
                    && op.prepared.provided().is_some()
                    && op.prepared.multishot().is_some_and(|kind| !kind.stopping());
                let waits_again =
                    rearm || result == -rustix::io::Errno::AGAIN.raw_os_error() && op.prepared.may_wait_again();
                if stopped || waits_again {
                    let (origin, seq) = (op.owner.origin(rings), op.owner.seq);
                    if origin.is_cancelled(seq) {
                        result = -rustix::io::Errno::CANCELED.raw_os_error();
                        if let Some(kind) = op.prepared.multishot() {
                            kind.cancelled();
                        }
                    } else if op.prepared.multishot().is_some_and(|kind| kind.stopping()) {
                        // Stopped by this crate: that is its completion.
                    } else if waits_again {
                        // A parked socket request never surfaces `EAGAIN`. Its poll retries are
                        // bounded: a receive woken 128 times for data others took is run blocking
                        // on a kernel worker instead, and ends `EAGAIN` there after its socket's
                        // timeout (`net_ops::KERNEL_WAIT`), which frees the worker; an accept there
                        // ends `EAGAIN` at once (its listener is non-blocking). Submitted again, it
                        // is polled afresh: never sent back in a loop, as `MSG_DONTWAIT` is never
                        // passed, and a request woken for nothing is sent back once per 128
                        // wake-ups it lost.
                        #[cfg(test)]
                        self.counts.sent_back.fetch_add(1, Ordering::Relaxed);
                        resent.push((origin.clone(), seq, user_data));
                        again.push(op.prepared.sqe(user_data));
                        continue;
                    } else if op.requeued < MAX_REQUEUES {
                        // The kernel cancels the requests of a thread that exits, but a submission
                        // outlives the thread that made it. Known limit: a connect cancelled
                        // mid-handshake this way and submitted again reports `EALREADY`.
                        op.requeued += 1;
                        resent.push((origin.clone(), seq, user_data));
                        again.push(op.prepared.sqe(user_data));
                        continue;
                    }
                }
                ready.push((key_of(user_data), result));
            }
            // Delivered to the rings as they leave the table, without being gathered first: a run
            // of one ring's operations under one lock of the ring, with the ring the table kept.
            let mut ready = ready.drain(..).peekable();
            let mut freed = Freed::default();
            while let Some(&(key, _)) = ready.peek() {
                let pin = table[key].owner.pin;
                let origin = rings[pin].origin.clone();
                let (mut counted, mut delivered) = (0, 0);
                let woken = origin.deliver(std::iter::from_fn(|| {
                    let &(key, result) = ready.peek()?;
                    let op = table.get_mut(key)?;
                    if op.owner.pin != pin {
                        return None;
                    }
                    ready.next();
                    // The kernel is done with it: a multishot receive's buffers are let go.
                    if let Some(provided) = op.prepared.provided() {
                        self.unregister_group(origin.process(), provided);
                    }
                    let outcome = prepare::outcome(&mut op.prepared, result);
                    let Owner { seq, counted: counts, .. } = table.remove(key).owner;
                    delivered += 1;
                    counted += usize::from(counts);
                    Some((seq, outcome))
                }));
                // `freed` holds the ring too: it is not dropped under this lock.
                freed.push(origin, counted, woken);
                unpin(rings, pin, delivered);
            }
            freed
        };
        // The kernel may reuse the entries taken.
        drop(cq);
        Taken { again, resent, freed, shots, stops }
    }

    /// What a pass over the completions left to do, outside the table's lock.
    fn finish(&self, Taken { again, resent, freed, shots, stops }: Taken) {
        // Hands the entries back to the kernel before anything else is submitted.
        self.push(&again);
        // A cancellation asked for while a request was out of the kernel, between its completion
        // and its return, found nothing there to cancel: each request sent back whose
        // cancellation was asked for by now is cancelled again. The cancelling thread marks the
        // operation before it asks the kernel, so one asked for later finds it back there.
        let late: Vec<_> = resent
            .into_iter()
            .filter(|(origin, seq, _)| origin.is_cancelled(*seq))
            .map(|(_, _, user_data)| user_data)
            .chain(stops)
            .map(|user_data| opcode::AsyncCancel::new(user_data).build().user_data(CANCEL))
            .collect();
        self.push(&late);
        // Outside the table's lock: freeing room may submit the next batch.
        shots.release();
        freed.release();
    }
}

/// A completion's result, with a request interrupted on a kernel worker (`EINTR`) reported as
/// the cancellation it is (`ECANCELED`), so that it is delivered as cancelled if it was asked
/// for and submitted again if not, as a request cancelled before it ran is.
///
/// The kernel's io-wq workers block every signal: the only thing that interrupts one is the
/// kernel stopping the request it runs (a cancel this crate asked for, or its submitting
/// thread's exit), which ends a request blocked in a receive or a send `EINTR`, where one still
/// queued for a worker or polled ends `ECANCELED`. An interrupted request transferred nothing (a
/// receive or send that moved some bytes reports them instead), so submitting it again loses
/// nothing.
fn stopped_is_cancelled(result: i32) -> i32 {
    if result == -rustix::io::Errno::INTR.raw_os_error() { -rustix::io::Errno::CANCELED.raw_os_error() } else { result }
}

/// A process's key among the buffer groups' holders.
fn process_key(process: &Process) -> usize {
    std::ptr::from_ref(process) as usize
}

/// The table slot a `user_data` names: its low half (the high half is the generation).
fn key_of(user_data: u64) -> usize {
    (user_data & u64::from(u32::MAX)) as usize
}

/// The operation `user_data` names, if it is still in flight (not a later one in its slot).
fn in_flight(table: &mut Slab<InFlight>, user_data: u64) -> Option<&mut InFlight> {
    table.get_mut(key_of(user_data)).filter(|f| user_data < CANCEL && f.generation == (user_data >> 32) as u32)
}

/// Whether the kernel waits on a non-blocking socket itself, polling internally as Linux does for
/// socket requests, rather than failing them with `EAGAIN` as it does reads of `O_NONBLOCK`
/// files. This crate's sockets are non-blocking (the other backends' readiness loops need it),
/// so only then can socket requests go to the kernel. Asked once, before the reaper starts: a
/// `RECV` on an empty socket pair either fails at once or waits, and is then cancelled.
fn kernel_waits_on_sockets(ring: &mut IoUring) -> bool {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    const PROBE: u64 = 0;
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let Ok((socket, peer)) = rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, flags, None) else {
        return false;
    };
    // Boxed and leaked if the request cannot be seen through to its completion, so that the
    // kernel never writes into freed memory.
    let mut buf = Box::new(0u8);
    let recv = opcode::Recv::new(types::Fd(socket.as_raw_fd()), &mut *buf, 1).build().user_data(PROBE);
    // SAFETY: `buf` and `socket` stay alive until the request's completion has been seen below
    // (or are leaked).
    if unsafe { ring.submission().push(&recv) }.is_err() || ring.submit().is_err() {
        std::mem::forget((buf, socket, peer));
        return false;
    }
    let mut waits = None;
    let mut cancel_sent = false;
    loop {
        for cqe in ring.completion() {
            if cqe.user_data() == PROBE {
                waits = Some(cqe.result() == -rustix::io::Errno::CANCELED.raw_os_error());
            }
        }
        if let Some(waits) = waits {
            return waits;
        }
        if !cancel_sent {
            let cancel = opcode::AsyncCancel::new(PROBE).build().user_data(CANCEL);
            // SAFETY: a cancel request points at no memory.
            cancel_sent = unsafe { ring.submission().push(&cancel) }.is_ok();
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INTR.raw_os_error()) => {}
            Err(_) => {
                std::mem::forget((buf, socket, peer));
                return false;
            }
        }
    }
}

/// Bounds the kernel's io-wq workers for this ring (Linux 5.15 and later; older kernels keep
/// their defaults). A request the kernel cannot complete or park at once runs on a worker
/// thread: "bound" ones for file I/O and opens, "unbound" ones for sockets and the like. The
/// kernel makes unbound workers on demand, up to the process's thread limit, one for nearly
/// every parked receive it stops polling (see the test of this bound). Each
/// thread that submits has its own workers, so the bound holds per submitting thread: four per
/// core for files (the kernel's own default, at most 64), two per core for the rest (at most
/// 32), which only ever run this crate's socket requests the kernel stopped polling. Those
/// workers are shared by every tenant's requests: none is held longer than its socket's timeout
/// (`net_ops::KERNEL_WAIT`, one scheduler tick), after which its request ends `EAGAIN` and is
/// sent back to wait, so that one tenant's receives cannot keep another's from the workers.
fn bound_kernel_workers(ring: &IoUring) {
    let cores = crate::backend::cores() as u32;
    let mut max = [(cores * 4).clamp(4, 64), (cores * 2).clamp(4, 32)];
    if let Err(e) = ring.submitter().register_iowq_max_workers(&mut max) {
        tracing::debug!(error = %e, "this kernel does not bound io_uring's workers");
    }
}

impl Stop for Driver {
    fn stop(&self, user_data: u64) {
        self.cancel(user_data);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Only the reaper's exit drops the driver, and it exits with nothing in flight.
        let Table { ops, mut rings, .. } = std::mem::take(&mut *self.table());
        if !ops.is_empty() {
            tracing::error!(left = ops.len(), "io_uring dropped with operations in flight");
        }
        for (_, op) in ops {
            op.owner.completer(&mut rings).complete(Err(OpError::new(errno::EIO, "io_uring shut down")));
        }
    }
}
