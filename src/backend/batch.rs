//! What the executor hands a backend at once: a [`Batch`] of operations in runs, each run of one
//! process's ring, which the batch keeps once.

use std::sync::Arc;

use super::submission::{Completer, Submission};
use crate::op::{OpError, Pid, SyscallOpType};
use crate::process::Process;
use crate::sandbox::Sandbox;
use crate::syscalls::iouring::cancel::CancelToken;
pub(crate) use crate::syscalls::iouring::ring::Dispatched;
use crate::syscalls::iouring::ring::{AfterUnlock, SyscallCompletionRing};

use super::OpOutcome;

/// Where an operation comes from and where its outcome goes: its process's ring, as a backend
/// sees it. Every question a backend asks about an operation (its process, its rights, whether
/// it was cancelled) and every outcome it delivers goes through here, by sequence number.
#[derive(Clone)]
pub(crate) struct Origin(Arc<SyscallCompletionRing>);

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Origin").field(&self.pid()).finish()
    }
}

impl Origin {
    /// The origin of `ring`'s operations, for unit tests that make their own.
    #[cfg(all(test, feature = "uring", target_os = "linux"))]
    pub(crate) fn of(ring: &Arc<SyscallCompletionRing>) -> Self {
        Origin(ring.clone())
    }

    #[inline]
    pub(crate) fn pid(&self) -> Pid {
        self.0.pid()
    }

    #[inline]
    pub(crate) fn process(&self) -> &Arc<Process> {
        self.0.process()
    }

    /// The rights operation `seq` was submitted with (see [`Operation::rights`]).
    ///
    /// [`Operation::rights`]: super::Operation::rights
    #[inline]
    pub(crate) fn rights(&self, seq: u64) -> Result<Arc<Sandbox>, OpError> {
        self.0.rights(seq)
    }

    /// [`rights`](Self::rights) if `op` (operation `seq`) needs them to run, `None` otherwise.
    #[inline]
    pub(crate) fn needed_rights(&self, op: &SyscallOpType, seq: u64) -> Result<Option<Arc<Sandbox>>, OpError> {
        self.0.needed_rights(op, seq)
    }

    #[inline]
    pub(crate) fn is_cancelled(&self, seq: u64) -> bool {
        self.0.is_cancelled(seq)
    }

    #[inline]
    pub(crate) fn cancel_token(&self, seq: u64) -> Arc<CancelToken> {
        self.0.cancel_token(seq)
    }

    /// Registers `stop` as what stops each of `ops` (see `SyscallCompletionRing::stop_with`).
    #[cfg(all(feature = "uring", target_os = "linux"))]
    #[inline]
    pub(crate) fn stop_with(&self, ops: impl Iterator<Item = (u64, u64)>, stop: &std::sync::Weak<dyn super::Stop>) {
        self.0.stop_with(ops, stop)
    }

    /// Whether `self` and `other` are the same ring.
    pub(crate) fn same(&self, other: &Origin) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Delivers outcomes under one lock of the ring; the wake-ups they leave are for
    /// [`Freed::release`], once the caller holds no lock.
    #[inline]
    pub(crate) fn deliver(&self, outcomes: impl Iterator<Item = (u64, OpOutcome)>) -> Delivered {
        Delivered(self.0.complete_many(outcomes))
    }

    /// One result of multishot operation `seq` (see `SyscallCompletionRing::more`): whether its
    /// backend should go on.
    #[inline]
    pub(crate) fn more(&self, seq: u64, outcome: OpOutcome) -> bool {
        self.0.more(seq, outcome)
    }

    /// [`more`](Self::more), its wake-up left for [`Freed::release`], for a backend under a
    /// lock of its own.
    #[cfg(all(feature = "uring", target_os = "linux"))]
    #[inline]
    pub(crate) fn more_later(&self, seq: u64, outcome: OpOutcome) -> (bool, Delivered) {
        let (goes_on, after) = self.0.more_later(seq, outcome);
        (goes_on, Delivered(after))
    }

    /// Delivers one outcome and wakes its owner.
    #[inline]
    pub(crate) fn complete(&self, seq: u64, outcome: OpOutcome) {
        self.0.complete(seq, outcome);
    }

    /// Wakes, notifies and closes what a delivery left to do.
    #[inline]
    pub(crate) fn wake(&self, delivered: Delivered) {
        self.0.after_unlock(delivered.0);
    }

    /// Gives `counted` places in the executor's window back.
    #[inline]
    pub(crate) fn release(&self, counted: usize) {
        self.0.release(counted);
    }
}

/// What delivering outcomes left to do once no lock is held (wake-ups, descriptors to close).
#[must_use = "waiters stay asleep until it is finished"]
pub(crate) struct Delivered(AfterUnlock);

/// Operations started together: runs of one ring's operations, each run keeping its ring once.
///
/// A backend takes them as they are ([`Batch::into_submissions`] makes each a [`Submission`],
/// with the duty to complete it), or keeps each run's ring once for all its operations (io_uring
/// does, in its in-flight table). Dropped unstarted, its operations complete with `EIO`, as
/// dropped submissions do. A wrapper that holds some operations back hands the rest on as a
/// batch of their own ([`Batch::from_iter`](FromIterator::from_iter)).
pub struct Batch {
    runs: Runs,
    ops: Vec<Queued>,
}

/// A batch's runs, in order. Most batches have one (a `submit_batch` that skipped the SQ): it
/// needs no allocation.
#[derive(Default)]
pub(crate) struct Runs {
    first: Option<Run>,
    rest: Vec<Run>,
}

impl Runs {
    #[inline]
    fn push(&mut self, run: Run) {
        if self.first.is_none() {
            self.first = Some(run);
        } else {
            self.rest.push(run);
        }
    }

    #[inline]
    fn last_mut(&mut self) -> Option<&mut Run> {
        match self.rest.last_mut() {
            Some(last) => Some(last),
            None => self.first.as_mut(),
        }
    }

    #[inline]
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn iter(&self) -> impl Iterator<Item = &Run> {
        self.first.iter().chain(&self.rest)
    }
}

impl IntoIterator for Runs {
    type Item = Run;
    type IntoIter = RunsIter;

    #[inline]
    fn into_iter(self) -> RunsIter {
        // No iterator for an empty rest: a batch of one run frees nothing but its operations.
        RunsIter { first: self.first, rest: (!self.rest.is_empty()).then(|| self.rest.into_iter()) }
    }
}

/// The runs of a batch, in order.
pub(crate) struct RunsIter {
    first: Option<Run>,
    rest: Option<std::vec::IntoIter<Run>>,
}

impl Iterator for RunsIter {
    type Item = Run;

    #[inline]
    fn next(&mut self) -> Option<Run> {
        self.first.take().or_else(|| self.rest.as_mut()?.next())
    }
}

/// A run: its ring, and how many of the batch's operations (the next ones in order) are its.
pub(crate) type Run = (Origin, usize);

/// An operation started, and whether it holds a place in the executor's window.
pub(crate) type Queued = (Dispatched, bool);

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("runs", &self.runs.len()).field("len", &self.ops.len()).finish()
    }
}

impl Batch {
    #[inline]
    pub(crate) fn with_capacity(ops: usize) -> Self {
        Batch { runs: Runs::default(), ops: Vec::with_capacity(ops) }
    }

    /// Adds a run of `ring`'s operations: those `take` pushes (each with whether it holds a
    /// place in the window). A run of none is not kept.
    #[inline]
    pub(crate) fn run<R>(&mut self, ring: &Arc<SyscallCompletionRing>, take: impl FnOnce(&mut Vec<Queued>) -> R) -> R {
        let before = self.ops.len();
        let taken = take(&mut self.ops);
        let len = self.ops.len() - before;
        if len > 0 {
            self.runs.push((Origin(ring.clone()), len));
        }
        taken
    }

    /// How many operations the batch holds.
    #[inline]
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no operation.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations, each with its process, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&SyscallOpType, &Arc<Process>)> {
        let mut runs = self.runs.iter().flat_map(|(origin, len)| std::iter::repeat_n(origin.process(), *len));
        self.ops.iter().map(move |(d, _)| (&d.op, runs.next().expect("every operation is in a run")))
    }

    /// The operations, each with its own duty to complete.
    #[inline]
    pub fn into_submissions(self) -> impl Iterator<Item = Submission> {
        let (runs, ops) = self.into_runs();
        Submissions { runs: runs.into_iter(), run: None, ops: ops.into_iter() }
    }

    /// The runs (each ring, and how many operations it has) and the operations in run order,
    /// each with whether it holds a place in the window: for a backend that keeps each ring once.
    #[inline]
    pub(crate) fn into_runs(self) -> (Runs, Vec<Queued>) {
        // Its duty to complete goes with what is taken out: the empty shell left behind holds no
        // allocation and needs no drop.
        let mut this = std::mem::ManuallyDrop::new(self);
        (std::mem::take(&mut this.runs), std::mem::take(&mut this.ops))
    }
}

/// A batch's operations as submissions ([`Batch::into_submissions`]): each run's ring is cloned
/// for each of its operations but the last, which takes the run's own.
struct Submissions {
    runs: RunsIter,
    /// The run of the next operation, and how many of its operations are left.
    run: Option<Run>,
    ops: std::vec::IntoIter<Queued>,
}

impl Iterator for Submissions {
    type Item = Submission;

    #[inline]
    fn next(&mut self) -> Option<Submission> {
        let (d, counted) = self.ops.next()?;
        let origin = loop {
            match &mut self.run {
                Some((origin, left)) if *left > 1 => {
                    *left -= 1;
                    break origin.clone();
                }
                Some(_) => break self.run.take().map(|(origin, _)| origin).expect("a run"),
                None => self.run = Some(self.runs.next().expect("every operation is in a run")),
            }
        };
        Some(Submission::new(Completer::new(origin, d.seq, counted), d.op))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ops.size_hint()
    }
}

impl FromIterator<Submission> for Batch {
    /// A batch of submissions; consecutive ones of one ring make one run.
    fn from_iter<I: IntoIterator<Item = Submission>>(subs: I) -> Self {
        let subs = subs.into_iter();
        let mut batch = Batch { runs: Runs::default(), ops: Vec::with_capacity(subs.size_hint().0) };
        for sub in subs {
            let (origin, d, counted) = sub.into_queued();
            match batch.runs.last_mut() {
                Some((last, len)) if last.same(&origin) => *len += 1,
                _ => batch.runs.push((origin, 1)),
            }
            batch.ops.push((d, counted));
        }
        batch
    }
}

impl From<Submission> for Batch {
    fn from(sub: Submission) -> Self {
        std::iter::once(sub).collect()
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if !self.ops.is_empty() {
            // Each submission completes with EIO as it drops.
            let left = Batch { runs: std::mem::take(&mut self.runs), ops: std::mem::take(&mut self.ops) };
            left.into_submissions().for_each(drop);
        }
    }
}
