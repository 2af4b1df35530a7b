//! The checks, by topic. Each takes the backend factory and panics on a failure.

mod asynch;
mod buffers;
mod delivery;
mod files;
mod fixed;
mod handles;
mod hostile;
mod isolation;
mod lifecycle;
mod multishot;
mod net;
mod paths;
mod qos;
mod sandbox;
mod starvation;
mod time;
mod vectored;

pub use asynch::*;
pub use buffers::*;
pub use delivery::*;
pub use files::*;
pub use fixed::*;
pub use handles::*;
pub use hostile::*;
pub use isolation::*;
pub use lifecycle::*;
pub use multishot::*;
pub use net::*;
pub use paths::*;
pub use qos::*;
pub use sandbox::*;
pub use starvation::*;
pub use time::*;
pub use vectored::*;

use std::sync::Arc;

use ai_os_kernel::Pid;
use ai_os_kernel::sandbox::Policy;
use ai_os_kernel::syscalls::{IoUringManager, SyscallOpType, SyscallSubmissionEntry};

use crate::support::{Gate, Held, MakeBackend};

fn manager(make: MakeBackend) -> IoUringManager {
    IoUringManager::with_backend(make())
}

/// A manager whose operations wait at a closed gate, `window` in flight at most.
fn held(make: MakeBackend, window: usize) -> (IoUringManager, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    (IoUringManager::with_backend(Held::new(make(), gate.clone(), window)), gate)
}

fn entry(pid: Pid, op: SyscallOpType, user_data: u64) -> SyscallSubmissionEntry {
    SyscallSubmissionEntry::new(pid, op, user_data)
}

fn nop(pid: Pid) -> SyscallSubmissionEntry {
    entry(pid, SyscallOpType::Nop, 0)
}

/// A temp dir as the read-write root of `pid`.
/// Opens `path` for `pid` (beneath its root) and returns the descriptor; panics if it fails.
fn open(m: &IoUringManager, pid: Pid, path: &str, flags: u32) -> i32 {
    match crate::support::run_op(m, pid, SyscallOpType::open(path, flags)).result {
        ai_os_kernel::syscalls::OpResult::Fd(fd) => fd,
        other => panic!("open {path}: {other:?}"),
    }
}

fn rooted(m: &IoUringManager, pid: Pid) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    m.set_policy(pid, Policy::rooted(dir.path()).read_write()).expect("policy");
    dir
}

/// Makes a FIFO at `path` (owner read-write).
pub(crate) fn mkfifo(path: &std::path::Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("a path without NUL");
    // SAFETY: `c_path` is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo {path:?}");
}
