//! The conformance suite on `UringBackend`, with only the `uring` feature compiled in. Where the
//! kernel refuses io_uring, the checks run on the fallback the manager itself would choose.

use std::sync::Arc;

use ai_os_kernel::backend::{Backend, BlockingBackend, UringBackend};

fn uring() -> Arc<dyn Backend> {
    match UringBackend::new() {
        Ok(b) => Arc::new(b),
        Err(e) => {
            eprintln!("io_uring unavailable ({e}): running on the blocking fallback");
            Arc::new(BlockingBackend::new())
        }
    }
}

ai_os_kernel_conformance::conformance_tests!(make: uring, block_on: |f| futures::executor::block_on(f));

#[test]
fn default_manager_prefers_uring_where_allowed() {
    assert_eq!(ai_os_kernel::backend::available(), ["uring", "blocking"]);
    let expect = if UringBackend::new().is_ok() { "uring" } else { "blocking" };
    assert_eq!(ai_os_kernel::syscalls::IoUringManager::new().stats().backend, expect);
}

#[test]
fn probe_reports_the_opcodes_used() {
    let Ok(b) = UringBackend::new() else { return };
    let probe = b.probe();
    let names: Vec<_> = probe.opcodes.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["NOP", "READ", "WRITE", "FSYNC", "OPENAT2", "ASYNC_CANCEL"]);
    assert!(probe.opcodes.iter().any(|(n, ok)| *n == "NOP" && *ok));
    assert_eq!(b.in_flight(), 0);
}
