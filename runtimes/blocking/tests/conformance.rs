//! The conformance suite on `BlockingBackend`, futures driven by `futures::executor::block_on`.

use std::sync::Arc;

use ai_os_kernel::backend::{Backend, BlockingBackend};

fn blocking() -> Arc<dyn Backend> {
    Arc::new(BlockingBackend::new())
}

ai_os_kernel_conformance::conformance_tests!(
    make: blocking,
    block_on: |f| futures::executor::block_on(f),
);

#[test]
fn default_manager_is_blocking() {
    // Only the blocking backend is compiled into this crate's build.
    assert_eq!(ai_os_kernel::backend::available(), ["blocking"]);
    assert_eq!(ai_os_kernel::syscalls::IoUringManager::new().stats().backend, "blocking");
}
