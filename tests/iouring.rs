//! Integration tests: the conformance suite on every backend compiled into this build
//! (`cargo test --test iouring`; `--all-features` for all of them).

#[cfg(feature = "blocking")]
mod blocking_backend {
    fn make() -> std::sync::Arc<dyn ai_os_kernel::backend::Backend> {
        std::sync::Arc::new(ai_os_kernel::backend::BlockingBackend::with_threads(4))
    }
    ai_os_kernel_conformance::conformance_tests!(make: make, block_on: |f| futures::executor::block_on(f));
}

#[cfg(feature = "tokio")]
mod tokio_backend {
    fn make() -> std::sync::Arc<dyn ai_os_kernel::backend::Backend> {
        std::sync::Arc::new(ai_os_kernel::backend::TokioBackend::new().expect("tokio runtime"))
    }
    ai_os_kernel_conformance::conformance_tests!(make: make, block_on: |f| {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(f)
    });
}

#[cfg(feature = "smol")]
mod smol_backend {
    fn make() -> std::sync::Arc<dyn ai_os_kernel::backend::Backend> {
        std::sync::Arc::new(ai_os_kernel::backend::SmolBackend::new())
    }
    ai_os_kernel_conformance::conformance_tests!(make: make, block_on: |f| smol::block_on(f));
}
