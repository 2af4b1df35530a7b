//! Runs the conformance suite on `UringBackend` alone (with its blocking fallback), futures
//! driven by `futures::executor::block_on`. The tests live in `tests/conformance.rs`.
