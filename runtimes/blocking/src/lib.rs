//! Runs the conformance suite on `BlockingBackend` with no async runtime at all: futures are
//! driven by `futures::executor::block_on`. The tests live in `tests/conformance.rs`.
