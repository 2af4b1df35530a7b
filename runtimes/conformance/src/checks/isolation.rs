//! Isolation: rights taken at submission, refusals without trace, one lifecycle per pid.

use crate::support::MakeBackend;

/// Expands to one `#[test]` per check of this module (called by `conformance_tests!`).
#[doc(hidden)]
#[macro_export]
macro_rules! __isolation_checks {
    ($make:expr, $block_on:expr) => {
        $crate::__sync_checks!($make; isolation_placeholder);
    };
}

/// Placeholder.
pub fn isolation_placeholder(make: MakeBackend) {
    let _ = make;
}
