//! What a backend receives: an [`Operation`] to run and, with it, the duty to report its outcome
//! exactly once ([`Submission`]).

use std::sync::Arc;

use crate::op::Pid;
use crate::op::SyscallOpType;
use crate::op::{OpError, errno};
use crate::process::Process;
use crate::sandbox::Sandbox;
use crate::syscalls::iouring::cancel::CancelToken;
use crate::syscalls::iouring::ring::{AfterUnlock, Dispatched, SyscallCompletionRing};

use super::OpOutcome;

/// One operation to execute, with the process it runs for.
///
/// Descriptors in the op are the process's virtual numbers: resolve them with
/// [`Process::descriptor`], install new kernel descriptors with [`Process::install`], and open
/// paths only through the process's [`Sandbox`](crate::sandbox::Sandbox). The manager has already
/// checked sizes, flags and addresses against the policy.
pub struct Operation {
    op: SyscallOpType,
    ring: Arc<SyscallCompletionRing>,
    seq: u64,
}

impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operation").field("pid", &self.pid()).field("seq", &self.seq).field("op", &self.op).finish()
    }
}

impl Operation {
    /// The process this operation runs for.
    pub fn pid(&self) -> Pid {
        self.ring.pid()
    }

    /// The operation.
    pub fn op(&self) -> &SyscallOpType {
        &self.op
    }

    /// The operation, by value (to move its buffers into the kernel's care).
    pub fn into_op(self) -> SyscallOpType {
        self.op
    }

    /// The process: its descriptors and sandbox.
    pub fn process(&self) -> &Arc<Process> {
        self.ring.process()
    }

    /// The rights the operation was submitted with: the sandbox that decides where an `Open`
    /// resolves, how many descriptors the process may hold, and what a socket may bind. Taken
    /// at submission, whatever `set_policy` did since. `ECANCELED` if the operation's process
    /// was destroyed; `EINVAL` for an operation that acts without rights (see
    /// [`Operation::needs_rights`]).
    pub fn rights(&self) -> Result<Arc<Sandbox>, OpError> {
        self.ring.rights(self.seq)
    }

    /// [`rights`](Self::rights) if the operation needs them to run (it opens a path, creates a
    /// descriptor or may bind a socket), `None` otherwise (without asking the ring).
    pub fn needs_rights(&self) -> Result<Option<Arc<Sandbox>>, OpError> {
        self.ring.needed_rights(&self.op, self.seq)
    }

    /// The cancellation signal, for a backend that watches it while the operation waits (made
    /// on the first call; each call returns the same token).
    pub fn cancel_token(&self) -> Arc<CancelToken> {
        self.ring.cancel_token(self.seq)
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.ring.is_cancelled(self.seq)
    }

    /// Caps the bytes this operation moves at `max`: a write sends only the first `max` bytes of
    /// its data, a read or receive asks for at most `max`. For a backend that must split large
    /// transfers, or a test wrapper that injects the short reads and writes the kernel may give.
    /// It can only shrink what the policy already allowed; other operations are unchanged.
    pub fn limit_transfer(&mut self, max: usize) {
        use SyscallOpType as Op;
        match &mut self.op {
            Op::Write { data, .. } | Op::WriteAt { data, .. } | Op::Send { data, .. } | Op::SendTo { data, .. } => {
                data.truncate(max)
            }
            Op::Read { size, .. } | Op::ReadAt { size, .. } | Op::Recv { size, .. } | Op::RecvFrom { size, .. } => {
                *size = (*size).min(max)
            }
            _ => {}
        }
    }

    /// The operation and where it belongs, for a backend that keeps them apart while it runs.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    pub(crate) fn into_raw(self) -> (SyscallOpType, Arc<SyscallCompletionRing>, u64) {
        (self.op, self.ring, self.seq)
    }
}

/// An operation together with the duty to complete it.
///
/// [`complete`](Self::complete) delivers the outcome to the ring. A submission dropped without
/// completing (a backend bug, a panic inside an operation, a runtime shut down) completes with
/// `EIO` instead, so no accepted operation is ever lost.
///
/// It holds one reference, to its ring, which reaches the process and the executor: a batch of
/// submissions costs the executor one atomic reference count per operation, not three.
#[derive(Debug)]
pub struct Submission {
    op: SyscallOpType,
    completer: Completer,
}

/// The completing half of a [`Submission`].
pub struct Completer {
    ring: Arc<SyscallCompletionRing>,
    seq: u64,
    counted: bool,
    done: bool,
}

impl std::fmt::Debug for Completer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completer").field("pid", &self.ring.pid()).field("seq", &self.seq).finish()
    }
}

impl Submission {
    pub(crate) fn new(ring: &Arc<SyscallCompletionRing>, d: Dispatched, counted: bool) -> Self {
        Submission { op: d.op, completer: Completer { ring: ring.clone(), seq: d.seq, counted, done: false } }
    }

    /// The operation.
    pub fn op(&self) -> &SyscallOpType {
        &self.op
    }

    /// The process it runs for.
    pub fn process(&self) -> &Arc<Process> {
        self.completer.ring.process()
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.completer.ring.is_cancelled(self.completer.seq)
    }

    /// The rights the operation was submitted with, if it needs them to run (see
    /// [`Operation::needs_rights`]).
    pub fn needs_rights(&self) -> Result<Option<Arc<Sandbox>>, OpError> {
        self.completer.ring.needed_rights(&self.op, self.completer.seq)
    }

    /// The operation's sequence number in its ring.
    pub fn seq(&self) -> u64 {
        self.completer.seq
    }

    /// Splits into the operation and the completer, to run the one and then call the other.
    pub fn into_parts(self) -> (Operation, Completer) {
        let op = Operation { op: self.op, ring: self.completer.ring.clone(), seq: self.completer.seq };
        (op, self.completer)
    }

    /// The operation by value and the completer, which also reaches its process and
    /// cancellation: [`into_parts`](Self::into_parts) without a second reference to the ring.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    pub(crate) fn into_op(self) -> (SyscallOpType, Completer) {
        (self.op, self.completer)
    }

    /// Gives the operation's place in its executor's in-flight window back now, for an operation
    /// found to wait on a peer (see [`Completer::take_window`]).
    #[cfg(any(feature = "blocking", feature = "tokio", feature = "smol"))]
    pub(crate) fn leave_window(&mut self) {
        if self.completer.take_window() {
            release(&self.completer.ring, 1);
        }
    }

    /// Completes without running (for a backend that can tell at once).
    pub fn complete(self, outcome: OpOutcome) {
        self.completer.complete(outcome);
    }
}

/// Operations of one ring started together, sharing one reference to their ring.
///
/// A backend whose [`Capabilities::ring_batches`](super::Capabilities::ring_batches) is set gets
/// a batch that comes from a single ring (a `submit_batch` the executor has room for) this way,
/// through [`Backend::submit_ring`](super::Backend::submit_ring): keeping the ring once per
/// batch, rather than once per operation, saves two atomic reference counts per operation
/// (io_uring does: 7 % of a batch of NOPs' time). [`into_submissions`](Self::into_submissions)
/// turns it into [`Submission`]s. Dropped unstarted, its operations complete with `EIO`, as
/// dropped submissions do.
pub struct RingBatch {
    ring: Arc<SyscallCompletionRing>,
    ops: Vec<(Dispatched, bool)>,
}

impl std::fmt::Debug for RingBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBatch").field("pid", &self.ring.pid()).field("len", &self.ops.len()).finish()
    }
}

impl RingBatch {
    pub(crate) fn new(ring: &Arc<SyscallCompletionRing>, capacity: usize) -> Self {
        RingBatch { ring: ring.clone(), ops: Vec::with_capacity(capacity) }
    }

    pub(crate) fn push(&mut self, d: Dispatched, counted: bool) {
        self.ops.push((d, counted));
    }

    /// The process the operations run for.
    pub fn pid(&self) -> Pid {
        self.ring.pid()
    }

    /// How many operations the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations, each with its own duty to complete.
    pub fn into_submissions(mut self) -> Vec<Submission> {
        self.drain().collect()
    }

    /// Takes the operations out as submissions, which complete them when dropped.
    fn drain(&mut self) -> impl Iterator<Item = Submission> + '_ {
        let ring = &self.ring;
        self.ops.drain(..).map(move |(d, counted)| Submission::new(ring, d, counted))
    }

    /// The process the operations run for.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    pub(crate) fn process(&self) -> &Arc<Process> {
        self.ring.process()
    }

    /// The operations.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    pub(crate) fn ops(&self) -> impl Iterator<Item = &SyscallOpType> {
        self.ops.iter().map(|(d, _)| &d.op)
    }

    /// The ring and its operations (each with whether it counts against the executor's window),
    /// for a backend that completes them through the ring itself.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    pub(crate) fn into_parts(mut self) -> (Arc<SyscallCompletionRing>, Vec<(Dispatched, bool)>) {
        (self.ring.clone(), std::mem::take(&mut self.ops))
    }
}

impl Drop for RingBatch {
    fn drop(&mut self) {
        // Each submission completes with EIO as it drops.
        self.drain().for_each(drop);
    }
}

impl Completer {
    /// The completer of one of `ring`'s operations that a backend kept without one.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    pub(crate) fn new(ring: Arc<SyscallCompletionRing>, seq: u64, counted: bool) -> Self {
        Completer { ring, seq, counted, done: false }
    }

    /// Takes the operation's place in its executor's in-flight window off it, for an operation
    /// found to wait on a peer only once its descriptor is known (a `Read` or `Write` of a
    /// socket), which, like a `Recv`, must not hold a place while it waits: whether it had one,
    /// which the caller gives back with [`release`] once it holds no lock that starting the
    /// executor's next operations could need.
    pub(crate) fn take_window(&mut self) -> bool {
        std::mem::take(&mut self.counted)
    }

    /// The ring the operation belongs to.
    pub(crate) fn ring(&self) -> &Arc<SyscallCompletionRing> {
        &self.ring
    }

    /// Delivers the outcome to the operation's owner and frees its place in the executor.
    pub fn complete(mut self, outcome: OpOutcome) {
        self.finish(outcome);
    }

    /// The operation's sequence number in its ring.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn finish(&mut self, outcome: OpOutcome) {
        self.done = true;
        self.ring.complete(self.seq, outcome);
        release(&self.ring, usize::from(self.counted));
    }

    /// Completes many operations at once: one lock of each ring and of its executor per run of
    /// operations that share a ring, instead of one per operation. For backends that reap
    /// completions in bulk.
    pub fn complete_all(mut batch: Vec<(Completer, OpOutcome)>) {
        // A single one (a future's request, mostly) skips the gathering by ring.
        if batch.len() == 1
            && let Some((one, outcome)) = batch.pop()
        {
            return one.complete(outcome);
        }
        Self::deliver_all(batch).release();
    }

    /// The first half of [`complete_all`](Self::complete_all): delivers the outcomes to their
    /// rings (each run of one ring's operations under one lock, read as it is delivered) and
    /// returns the wake-ups and executor room that follow. For a backend that delivers under a
    /// lock of its own and must do those outside it: a woken task may come straight back for
    /// that lock, and freed room may submit the next batch.
    pub(crate) fn deliver_all(batch: impl IntoIterator<Item = (Completer, OpOutcome)>) -> Freed {
        let mut batch = batch.into_iter().peekable();
        let mut freed = Freed::default();
        while let Some((first, _)) = batch.peek() {
            let ring = first.ring.clone();
            let mut counted = 0;
            let woken = ring.complete_many(std::iter::from_fn(|| {
                let (next, _) = batch.peek()?;
                if !Arc::ptr_eq(&next.ring, &ring) {
                    return None;
                }
                let (mut next, outcome) = batch.next()?;
                next.done = true;
                counted += usize::from(next.counted);
                Some((next.seq, outcome))
            }));
            freed.push(ring, counted, woken);
        }
        freed
    }
}

/// What delivered operations leave to do once no lock is held: their waiters to wake and their
/// executor room to hand on, with [`Freed::release`].
#[must_use = "the room must be released, or the executor's window shrinks for good"]
#[derive(Default)]
pub(crate) struct Freed {
    /// Most batches come from one ring: its run needs no allocation.
    first: Option<Run>,
    rest: Vec<Run>,
}

/// A ring, the places its delivered operations held, and their wake-ups.
type Run = (Arc<SyscallCompletionRing>, usize, AfterUnlock);

impl Freed {
    /// Adds a run: `counted` places of `ring`'s operations, delivered under one lock.
    pub(crate) fn push(&mut self, ring: Arc<SyscallCompletionRing>, counted: usize, woken: AfterUnlock) {
        if self.first.is_none() {
            self.first = Some((ring, counted, woken));
        } else {
            self.rest.push((ring, counted, woken));
        }
    }

    /// Adds `other`'s runs.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    pub(crate) fn append(&mut self, other: Freed) {
        for (ring, counted, woken) in other.first.into_iter().chain(other.rest) {
            self.push(ring, counted, woken);
        }
    }

    pub(crate) fn release(self) {
        for (ring, counted, woken) in self.first.into_iter().chain(self.rest) {
            ring.finish(woken);
            release(&ring, counted);
        }
    }
}

/// Frees `counted` places in the executor of `ring` (every ring with operations running has one).
pub(crate) fn release(ring: &Arc<SyscallCompletionRing>, counted: usize) {
    ring.release(counted);
}

impl Drop for Completer {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Err(OpError::new(errno::EIO, "the backend dropped the operation without completing it")));
        }
    }
}
