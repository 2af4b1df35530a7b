//! Integration tests: the conformance suite on the default backend, plus what is specific to this
//! build (`cargo test --test iouring`).

use std::sync::Arc;

use ai_os_kernel::backend::{Backend, BlockingBackend};

fn blocking() -> Arc<dyn Backend> {
    Arc::new(BlockingBackend::with_threads(4))
}

mod blocking_backend {
    ai_os_kernel_conformance::conformance_tests!(
        make: super::blocking,
        block_on: |f| futures::executor::block_on(f),
    );
}
