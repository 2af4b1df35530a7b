//! Runs the conformance suite on `SmolBackend` alone, futures awaited with `smol::block_on`. The
//! tests live in `tests/conformance.rs`.
