//! Integration tests: the conformance suite on every backend compiled into this build
//! (`cargo test --test iouring`; `--all-features` for all of them).

#[cfg(all(feature = "uring", target_os = "linux"))]
mod uring_backend {
    /// The real io_uring where the kernel allows it; where it does not (the crate must pass
    /// there too), the fallback the manager would pick, said out loud.
    fn make() -> std::sync::Arc<dyn ai_os_kernel::backend::Backend> {
        match ai_os_kernel::backend::UringBackend::new() {
            Ok(uring) => std::sync::Arc::new(uring),
            Err(e) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    ai_os_kernel_conformance::support::report_skipped(
                        "uring_backend::*",
                        format_args!("io_uring unavailable ({e}): these checks ran on the blocking fallback"),
                    )
                });
                std::sync::Arc::new(ai_os_kernel::backend::BlockingBackend::new())
            }
        }
    }
    ai_os_kernel_conformance::conformance_tests!(make: make, block_on: |f| futures::executor::block_on(f));
}

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
