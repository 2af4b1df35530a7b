//! What a backend runs: an [`Operation`] and, with it, the duty to report its outcome exactly
//! once ([`Submission`], [`Completer`]).

use std::sync::Arc;

use super::OpOutcome;
use super::batch::{Delivered, Origin};
use crate::op::{OpError, Pid, SyscallOpType, errno};
use crate::process::Process;
use crate::sandbox::Sandbox;
use crate::syscalls::iouring::cancel::CancelToken;
use crate::syscalls::iouring::ring::Dispatched;

/// One operation to execute, with the process it runs for.
///
/// Descriptors in the op are the process's virtual numbers: resolve them with
/// [`Process::descriptor`], install new kernel descriptors with [`Process::install`], and open
/// paths only through the process's [`Sandbox`](crate::sandbox::Sandbox). The manager has already
/// checked sizes, flags and addresses against the policy.
pub struct Operation {
    op: SyscallOpType,
    origin: Origin,
    seq: u64,
}

impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operation").field("pid", &self.pid()).field("seq", &self.seq).field("op", &self.op).finish()
    }
}

impl Operation {
    /// The process this operation runs for.
    #[inline]
    pub fn pid(&self) -> Pid {
        self.origin.pid()
    }

    /// The operation.
    #[inline]
    pub fn op(&self) -> &SyscallOpType {
        &self.op
    }

    /// The operation, by value (to move its buffers into the kernel's care).
    #[inline]
    pub fn into_op(self) -> SyscallOpType {
        self.op
    }

    /// The process: its descriptors and sandbox.
    #[inline]
    pub fn process(&self) -> &Arc<Process> {
        self.origin.process()
    }

    /// The caller's buffer a `ReadInto` or `WriteFrom` carries, taken out to run with and to
    /// give back with the outcome; `None` for other operations.
    pub(crate) fn take_buffer(&mut self) -> Option<crate::op::LentBuf> {
        self.op.take_buffer()
    }

    /// The rights the operation was submitted with: the sandbox that decides where an `Open`
    /// resolves, how many descriptors the process may hold, and what a socket may bind. Taken
    /// at submission, whatever `set_policy` did since. `ECANCELED` if the operation's process
    /// was destroyed; `EINVAL` for an operation that acts without rights (see
    /// [`Operation::needs_rights`]).
    pub fn rights(&self) -> Result<Arc<Sandbox>, OpError> {
        self.origin.rights(self.seq)
    }

    /// [`rights`](Self::rights) if the operation needs them to run (it opens a path, creates a
    /// descriptor or may bind a socket), `None` otherwise (without asking the ring).
    #[inline]
    pub fn needs_rights(&self) -> Result<Option<Arc<Sandbox>>, OpError> {
        self.origin.needed_rights(&self.op, self.seq)
    }

    /// The cancellation signal, for a backend that watches it while the operation waits (made
    /// on the first call; each call returns the same token).
    pub fn cancel_token(&self) -> Arc<CancelToken> {
        self.origin.cancel_token(self.seq)
    }

    /// Whether cancellation was requested.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.origin.is_cancelled(self.seq)
    }

    /// Hands one result of a multishot operation ([`SyscallOpType::is_multishot`]) to its
    /// stream, before the operation completes: whether to go on. `false` once enough results
    /// wait untaken, or nobody will take them (the operation was cancelled, its stream dropped,
    /// its ring destroyed): the backend stops and completes the operation (an `AcceptMulti`
    /// with [`OpResult::None`](crate::op::OpResult::None) when it stopped for this, not for a
    /// cancellation). A result nobody will take is dropped, a descriptor it made closed.
    #[inline]
    pub fn more(&self, outcome: super::OpOutcome) -> bool {
        self.origin.more(self.seq, outcome)
    }
}

/// An operation together with the duty to complete it.
///
/// [`complete`](Self::complete) delivers the outcome to the ring. A submission dropped without
/// completing (a backend bug, a panic inside an operation, a runtime shut down) completes with
/// `EIO` instead, so no accepted operation is ever lost.
#[derive(Debug)]
pub struct Submission {
    op: SyscallOpType,
    completer: Completer,
}

/// The completing half of a [`Submission`].
pub struct Completer {
    origin: Origin,
    seq: u64,
    counted: bool,
    done: bool,
}

impl std::fmt::Debug for Completer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completer").field("pid", &self.origin.pid()).field("seq", &self.seq).finish()
    }
}

impl Submission {
    #[inline]
    pub(crate) fn new(completer: Completer, op: SyscallOpType) -> Self {
        Submission { op, completer }
    }

    /// The operation.
    #[inline]
    pub fn op(&self) -> &SyscallOpType {
        &self.op
    }

    /// The process it runs for.
    #[inline]
    pub fn process(&self) -> &Arc<Process> {
        self.completer.origin.process()
    }

    /// Whether cancellation was requested.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.completer.origin.is_cancelled(self.completer.seq)
    }

    /// The cancellation signal (see [`Operation::cancel_token`]).
    pub fn cancel_token(&self) -> Arc<CancelToken> {
        self.completer.origin.cancel_token(self.completer.seq)
    }

    /// The rights the operation was submitted with, if it needs them to run (see
    /// [`Operation::needs_rights`]).
    #[inline]
    pub fn needs_rights(&self) -> Result<Option<Arc<Sandbox>>, OpError> {
        self.completer.origin.needed_rights(&self.op, self.completer.seq)
    }

    /// The operation's sequence number in its ring.
    #[inline]
    pub fn seq(&self) -> u64 {
        self.completer.seq
    }

    /// The caller's buffer a `ReadInto`, `WriteFrom`, `ReadFixed` or `WriteFixed` carries, taken
    /// out of it (an empty one is left), for a backend that ends the operation without running
    /// it: its error gives the buffer back with [`OpError::giving_back`]. `None` for other
    /// operations.
    pub fn take_buffer(&mut self) -> Option<crate::op::LentBuf> {
        self.op.take_buffer()
    }

    /// Caps the bytes this operation moves at `max`: a write sends only the first `max` bytes of
    /// its data, a read or receive asks for at most `max`. For a backend that must split large
    /// transfers, or a test wrapper that injects the short reads and writes the kernel may give.
    /// It can only shrink what the policy already allowed; other operations are unchanged.
    pub fn limit_transfer(&mut self, max: usize) {
        self.op.limit_transfer(max);
    }

    /// Splits into the operation and the completer, to run the one and then call the other.
    #[inline]
    pub fn into_parts(self) -> (Operation, Completer) {
        let op = Operation { op: self.op, origin: self.completer.origin.clone(), seq: self.completer.seq };
        (op, self.completer)
    }

    /// The completer alone, for an operation answered without running it further.
    #[inline]
    pub fn into_completer(self) -> Completer {
        self.completer
    }

    /// Gives the operation's place in its executor's in-flight window back now, for an operation
    /// found to wait on a peer (see [`Completer::leave_window`]).
    #[inline]
    pub fn leave_window(&mut self) {
        self.completer.leave_window();
    }

    /// Completes without running (for a backend that can tell at once).
    #[inline]
    pub fn complete(self, outcome: OpOutcome) {
        self.completer.complete(outcome);
    }

    /// Its ring, the operation and whether it holds a place in the window, for a [`Batch`]
    /// (its duty to complete goes with them).
    ///
    /// [`Batch`]: super::Batch
    #[inline]
    pub(crate) fn into_queued(self) -> (Origin, Dispatched, bool) {
        let Submission { op, mut completer } = self;
        completer.done = true;
        let seq = completer.seq;
        (completer.origin.clone(), Dispatched { seq, op }, completer.counted)
    }
}

impl Completer {
    #[inline]
    pub(crate) fn new(origin: Origin, seq: u64, counted: bool) -> Self {
        Completer { origin, seq, counted, done: false }
    }

    /// Gives the operation's place in its executor's in-flight window back now, for an operation
    /// found to wait on a peer only once its descriptor is known (a `Read` or `Write` of a
    /// socket), which, like a `Recv`, must not hold a place while it waits. Call it holding no
    /// lock that starting the executor's next operations could need.
    #[inline]
    pub fn leave_window(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.origin.release(1);
        }
    }

    /// Delivers the outcome to the operation's owner and frees its place in the executor.
    #[inline]
    pub fn complete(mut self, outcome: OpOutcome) {
        self.deliver(outcome);
    }

    /// The operation's sequence number in its ring.
    #[inline]
    pub fn seq(&self) -> u64 {
        self.seq
    }

    #[inline]
    fn deliver(&mut self, outcome: OpOutcome) {
        self.done = true;
        self.origin.complete(self.seq, outcome);
        self.origin.release(usize::from(self.counted));
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
        let mut batch = batch.into_iter().peekable();
        let mut freed = Freed::default();
        while let Some((first, _)) = batch.peek() {
            let origin = first.origin.clone();
            let mut counted = 0;
            let delivered = origin.deliver(std::iter::from_fn(|| {
                let (next, _) = batch.peek()?;
                if !next.origin.same(&origin) {
                    return None;
                }
                let (mut next, outcome) = batch.next()?;
                next.done = true;
                counted += usize::from(next.counted);
                Some((next.seq, outcome))
            }));
            freed.push(origin, counted, delivered);
        }
        freed.release();
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if !self.done {
            self.deliver(Err(OpError::new(errno::EIO, "the backend dropped the operation without completing it")));
        }
    }
}

/// What delivered operations leave to do once no lock is held: their waiters to wake and their
/// executor room to hand on, with [`Freed::release`].
#[must_use = "the room must be released, or the executor's window shrinks for good"]
#[derive(Default)]
pub(crate) struct Freed {
    /// Most batches come from one ring: its run needs no allocation.
    first: Option<(Origin, usize, Delivered)>,
    rest: Vec<(Origin, usize, Delivered)>,
}

impl Freed {
    /// Adds a run: `counted` places of `origin`'s operations, delivered under one lock.
    pub(crate) fn push(&mut self, origin: Origin, counted: usize, delivered: Delivered) {
        if self.first.is_none() {
            self.first = Some((origin, counted, delivered));
        } else {
            self.rest.push((origin, counted, delivered));
        }
    }

    pub(crate) fn release(self) {
        for (origin, counted, delivered) in self.first.into_iter().chain(self.rest) {
            origin.wake(delivered);
            origin.release(counted);
        }
    }
}
