//! Hostile requests: no signal, no aborting allocation, sockets that wait on every backend.

use crate::support::MakeBackend;

/// Expands to one `#[test]` per check of this module (called by `conformance_tests!`).
#[doc(hidden)]
#[macro_export]
macro_rules! __hostile_checks {
    ($make:expr, $block_on:expr) => {
        $crate::__sync_checks!($make; hostile_placeholder);
    };
}

/// Placeholder.
pub fn hostile_placeholder(make: MakeBackend) {
    let _ = make;
}
