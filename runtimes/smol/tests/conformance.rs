//! The conformance suite on `SmolBackend`, with only the `smol` feature compiled in.

use std::sync::Arc;

use ai_os_kernel::backend::{Backend, SmolBackend};

fn smol_backend() -> Arc<dyn Backend> {
    Arc::new(SmolBackend::new())
}

ai_os_kernel_conformance::conformance_tests!(make: smol_backend, block_on: |f| smol::block_on(f));

#[test]
fn default_manager_is_smol() {
    assert_eq!(ai_os_kernel::backend::available(), ["smol"]);
    assert_eq!(ai_os_kernel::syscalls::IoUringManager::new().stats().backend, "smol");
}
