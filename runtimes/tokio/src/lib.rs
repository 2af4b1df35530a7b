//! Runs the conformance suite on `TokioBackend` alone, futures awaited on tokio runtimes. The
//! tests live in `tests/conformance.rs`.
