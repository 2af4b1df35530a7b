use std::sync::Arc;

use super::SyscallCompletionRing;
use crate::op::SyscallOpType;
use crate::process::ProcessTable;
use crate::syscalls::iouring::stats::Counters;

/// A ring of `pid` with the given sizes, and the counters it reports to.
pub(crate) fn ring(pid: crate::op::Pid, sq: usize, cq: usize) -> (Arc<SyscallCompletionRing>, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let process = ProcessTable::new().get_or_create(pid);
    (SyscallCompletionRing::new(pid, sq, cq, process, counters.clone()).unwrap(), counters)
}

/// `n` NOPs, their `user_data` counting from 0.
pub(crate) fn nops(n: usize) -> impl ExactSizeIterator<Item = (SyscallOpType, u64)> {
    (0..n).map(|i| (SyscallOpType::Nop, i as u64))
}

/// Moves every queued operation to running, as the executor does; their sequence numbers.
pub(crate) fn start_all(r: &SyscallCompletionRing) -> Vec<u64> {
    let mut out = Vec::new();
    r.dispatch(usize::MAX, &mut out, |d, counts| (d, counts));
    out.into_iter().map(|(d, _)| d.seq).collect()
}
